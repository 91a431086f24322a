"""End to end: UEFI HTTP Boot. OVMF's HTTP Boot path (PXE over IPv4 and IPv6 switched off through
fw_cfg) gets bootgate's proxy offer with option 60 `HTTPClient` and the URL of snponly.efi in bootgate's
[content] root, fetches it over HTTP from bootgate, and the iPXE in it then boots as in test_boot.py:
proxyDHCP script URL -> /boot.ipxe -> /boot -> kernel + initrd from /content -> success status -> poweroff.

Assertions read bootgate's own records (/api/v1/events, /api/v1/boots) and bootgate's proxy offer in the
capture of the lab bridge. The same lab as test_boot.py (e2e_lab.py); bootgate also answers the IPv6
Router Solicitations ([dhcp] ipv6_ra), so the lab's own RA sender is off.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import e2e_lab  # noqa: E402
import e2e_pcap  # noqa: E402
import test_boot as tb  # noqa: E402

pytestmark = tb.pytestmark
MAC = "52:54:00:e2:e0:21"
PROGRAM = "snponly.efi"


class HttpBootLab(e2e_lab.Lab):
    """The lab with OVMF's PXE switched off, so its HTTP Boot option runs first."""

    def qemu_argv(self, firmware: str, mac: str, tap: str, serial_log: Path, **kw: Any) -> list[str]:
        argv = super().qemu_argv(firmware, mac, tap, serial_log, **kw)
        return argv + ["-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n"]


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> Iterator[tb.Server]:
    if not tb.BOOTGATE.exists():
        pytest.fail(f"{tb.BOOTGATE} does not exist: build it first with `make develop-release`")
    if not e2e_lab.lab_prepared():
        e2e_lab.prepare_lab()
    assert e2e_lab.lab_prepared(), "tests/e2e/lab.sh prepare did not produce the lab files"
    work = Path(tempfile.mkdtemp(prefix="bootgate-e2e-http-"))
    content = work / "content"
    content.mkdir()
    for name in ("vmlinuz", "initrd.img"):
        shutil.copy(e2e_lab.CONTENT_DIR / name, content / name)
    shutil.copy(e2e_lab.IPXE_TRIXIE_DIR / PROGRAM, content / PROGRAM)
    config = work / "bootgate.toml"
    # bootgate answers the VM's router solicitations itself (the lab's own RA is off below)
    tb.write_config(config, work / "data", "http", content=content, ra=True,
                    extra=f'\n[boot]\nhttp_efi_x64 = "{PROGRAM}"\n')
    failed_before = request.session.testsfailed
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTGATE_")}
    with HttpBootLab(work / "lab", ra=False) as lab:
        proc = lab.spawn("bootgate", [str(tb.BOOTGATE), "serve", "--config", str(config)], ns=lab.ns_b, env=env)
        try:
            lab.wait_tcp(e2e_lab.SERVER_IP, tb.HTTP_PORT, timeout=60, proc=proc)
        except (RuntimeError, TimeoutError) as e:
            pytest.fail(f"bootgate did not start: {e}\n{lab.log_text('bootgate')[-4000:]}")
        try:
            yield tb.Server(lab, work / "data", proc)
        finally:
            rc = lab.stop(proc)
            if request.session.testsfailed != failed_before:
                print(f"--- bootgate log (exit {rc}) ---\n{lab.log_text('bootgate')[-6000:]}")
    if request.session.testsfailed == failed_before:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept {work} for inspection")


def proxy_offers_to(lab: e2e_lab.Lab, mac: str) -> list[dict[int, bytes]]:
    """Options of bootgate's replies (from the server's port 67) to `mac` in the bridge capture."""
    out = []
    for d in e2e_pcap.read_udp(lab.pcap):
        if d.src == e2e_lab.SERVER_IP and d.sport == 67 and d.payload[0] == 2 and \
                ":".join(f"{b:02x}" for b in d.payload[28:34]) == mac:
            out.append(e2e_pcap.dhcp_options(d.payload))
    return out


def test_uefi_http_boot_end_to_end(server: tb.Server) -> None:
    url = f"http://{e2e_lab.SERVER_IP}:{tb.HTTP_PORT}/content/{PROGRAM}"
    server.api("PUT", f"/api/v1/machines/{MAC}/action",
               {"kernel": "vmlinuz", "initrd": "initrd.img", "args": "console=ttyS0 panic=-1"})
    res = server.lab.boot_vm("vm-uefi-httpboot", "uefi", MAC, timeout=tb.VM_TIMEOUT)
    tb.BOOT_TIMES["uefi (HTTP Boot)"] = (
        res.wall_s, "QEMU start to power-off" if not res.timed_out else "killed: no power-off (boot failed)")
    print(f"E2E BOOT uefi http-boot: wall {res.wall_s:.1f} s (QEMU exit {res.returncode}, timed out: {res.timed_out})")
    context = f"\n--- serial console tail ---\n{res.serial_tail(40)}"
    context += f"\n--- DHCP on the bridge for {MAC} ---\n{tb.dhcp_wire(server.lab, MAC)}"
    time.sleep(1.0)  # the event pumps write what they have
    dhcp = server.events(kind="dhcp", mac=MAC)
    boots = server.boots(MAC)
    context += f"\n--- dhcp events ---\n{tb._describe(dhcp)}\n--- boots ---\n{boots}"

    # 1. proxyDHCP: the firmware's HTTP Boot request (arch 16, HTTPClient) got the URL of snponly.efi ...
    http_answers = [e for e in dhcp if e["detail"]["answer"] == url]
    assert http_answers, f"no DHCP answer with {url}{context}"
    first = http_answers[0]["detail"]
    assert first["arch"] == 16 and first["vendor_class"].startswith("HTTPClient"), context
    assert not first["is_ipxe"], context
    # ... in a proxy offer carrying option 60 "HTTPClient" and the URL in option 67 (what EDK2 reads).
    offers = [o for o in proxy_offers_to(server.lab, MAC) if o.get(67, b"").rstrip(b"\0") == url.encode()]
    assert offers, f"no proxy offer with option 67 {url} in the capture{context}"
    assert all(o.get(60) == b"HTTPClient" for o in offers), f"option 60 of the offers: {[o.get(60) for o in offers]}"

    # 2. The firmware fetched snponly.efi whole from /content.
    fetched = server.events(kind="content")
    context += f"\n--- content events ---\n{tb._describe(fetched)}"
    size = (e2e_lab.IPXE_TRIXIE_DIR / PROGRAM).stat().st_size
    got = [e for e in fetched if e["detail"]["path"].lstrip("/") == PROGRAM and e["detail"]["status"] == 200
           and e["detail"]["bytes"] == size]
    assert got, f"{PROGRAM} was not fetched whole over HTTP{context}"

    # 3. The iPXE in it asked again (user class iPXE) and got the script URL, after the HTTP Boot answer.
    scripts = [e for e in dhcp if e["detail"]["answer"].endswith("/boot.ipxe")]
    assert scripts and scripts[-1]["detail"]["is_ipxe"], f"no script URL answer to iPXE{context}"
    assert scripts[-1]["id"] > http_answers[0]["id"], context
    assert scripts[-1]["detail"]["answer"].startswith(f"http://{e2e_lab.SERVER_IP}:"), context

    # 4. /boot with action boot, kernel and initrd whole, the initramfs's success status, poweroff.
    booted = [b for b in boots if b["action"] == "boot"]
    assert booted, f"no /boot record with action boot{context}"
    rec = booted[0]
    assert rec["platform"] == "efi" and rec["scheme"] == "http", context
    assert "success" in [s["state"] for s in rec["statuses"]], context
    mine = server.events(kind="content", client_ip=rec["client_ip"])
    for name in ("vmlinuz", "initrd.img"):
        assert any(e["detail"]["path"].lstrip("/") == name and e["detail"]["status"] == 200 for e in mine), \
            f"{name} not fetched{context}"
    assert any(e["detail"]["path"].lstrip("/") == PROGRAM for e in mine), \
        f"{PROGRAM} was fetched from another address than the one that booted{context}"
    assert not res.timed_out, f"the VM did not power off within {tb.VM_TIMEOUT} s{context}"
