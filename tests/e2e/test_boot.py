"""End to end: real VMs network-boot from a real bootgate inside network namespaces.

One bootgate (`bootgate serve`, DHCP on the lab bridge, TFTP serving Debian trixie's iPXE, HTTP(S)
boot service) and a site DHCP server (dnsmasq, addresses only) run in the lab of e2e_lab.py. Two VMs
boot in QEMU:

- BIOS: SeaBIOS + the NIC's stock iPXE ROM (Debian 12, no HTTPS) -> proxyDHCP -> TFTP undionly.kpxe
  (trixie) -> iPXE DHCP again (175.20) -> script URL -> /boot.ipxe -> /boot -> kernel + initrd from
  /content -> the initramfs reports success -> poweroff.
- UEFI: OVMF, NIC ROM disabled -> OVMF's PXE (67; 4011 only if the offer asks for boot server
  discovery) -> TFTP snponly.efi -> same as above.

Runs: BIOS and UEFI with bootgate's default https script URL (trixie's iPXE trusts bootgate's private
CA through the 175.90 fingerprint in bootgate's proxy offer, which the firmware hands to iPXE), and UEFI
with script_scheme = "http".

Every assertion reads bootgate's own records (admin API /api/v1/events and /api/v1/boots), never log
text. The wall time of each boot is printed in the terminal summary.
"""

from __future__ import annotations

import json
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

pytestmark = pytest.mark.e2e

BOOTGATE = Path(os.environ.get("BOOTGATE_BIN", str(e2e_lab.REPO / ".venv" / "bin" / "bootgate")))
HTTP_PORT = 8050
HTTPS_PORT = 8051
VM_TIMEOUT = float(os.environ.get("BOOTGATE_E2E_VM_TIMEOUT", "300"))
# Who answers iPXE's IPv6 Router Solicitations: "bootgate" ([dhcp] ipv6_ra, the default), "lab" (the lab's
# own periodic RA sender, e2e_lab.send_router_advertisements) or "none" (iPXE waits for IPv6 autoconfiguration).
RA_MODE = os.environ.get("BOOTGATE_E2E_RA", "bootgate")

MACS = {"bios-https": "52:54:00:e2:e0:11", "uefi-http": "52:54:00:e2:e0:12", "uefi-https": "52:54:00:e2:e0:13",
        "bios-http": "52:54:00:e2:e0:14"}
BOOT_PROGRAM = {"bios": "undionly.kpxe", "uefi": "snponly.efi"}
PLATFORM = {"bios": "pcbios", "uefi": "efi"}

# Filled by the tests, printed by conftest.py's terminal summary: name -> (wall seconds, how it ended).
BOOT_TIMES = e2e_lab.BOOT_TIMES


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "the VM lab needs root (network namespaces, taps, DHCP on port 67)"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing (QEMU tap networking)"
    if shutil.which(e2e_lab.QEMU) is None:
        return f"{e2e_lab.QEMU} is not installed (package qemu-system-x86)"
    return None


_reason = _skip_reason()
if _reason is not None:
    pytestmark = [pytest.mark.e2e, pytest.mark.skip(reason=_reason)]


class Server:
    """The running bootgate inside the lab, and how to read its records."""

    def __init__(self, lab: e2e_lab.Lab, data_dir: Path, proc: Any) -> None:
        self.lab = lab
        self.data_dir = data_dir
        self.proc = proc
        self.base = f"http://{e2e_lab.SERVER_IP}:{HTTP_PORT}"
        self.token = (data_dir / "admin.token").read_text().strip()

    def api(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        status, out = self.lab.http(method, self.base + path, token=self.token, body=body)
        assert status == expect, f"{method} {path}: HTTP {status}: {out[:500]!r}"
        return json.loads(out) if out.strip() else None

    def events(self, **query: str) -> list[dict[str, Any]]:
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        rows = self.api("GET", f"/api/v1/events?limit=1000&{qs}")
        return sorted(rows, key=lambda e: e["id"])

    def boots(self, mac: str) -> list[dict[str, Any]]:
        return self.api("GET", f"/api/v1/boots?mac={mac}")  # type: ignore[no-any-return]


def write_config(path: Path, data_dir: Path, scheme: str, *, content: Path = e2e_lab.CONTENT_DIR,
                 ra: bool | None = None, extra: str = "") -> None:
    """The lab's bootgate config; `ra` defaults to BOOTGATE_E2E_RA=bootgate, `extra` is appended (more sections)."""
    ra = RA_MODE == "bootgate" if ra is None else ra
    path.write_text(f"""\
# bootgate e2e lab config (written by tests/e2e/test_boot.py)
[server]
data_dir = "{data_dir}"

[http]
bind = "{e2e_lab.SERVER_IP}"
port = {HTTP_PORT}
https_port = {HTTPS_PORT}

[tftp]
bind = "{e2e_lab.SERVER_IP}"
root = "{e2e_lab.IPXE_TRIXIE_DIR}"

[dhcp]
interface = "{e2e_lab.BRIDGE}"
server_ip = "{e2e_lab.SERVER_IP}"
script_scheme = "{scheme}"
ipv6_ra = {"true" if ra else "false"}

[content]
root = "{content}"
""" + extra)


class Bootgate:
    """Starts bootgate in the lab with a given script scheme (restarting it when the scheme changes;
    the data directory, CA and admin token are kept across restarts)."""

    def __init__(self, lab: e2e_lab.Lab, work: Path) -> None:
        self.lab = lab
        self.work = work
        self.data_dir = work / "data"
        self.scheme: str | None = None
        self.proc: Any = None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTGATE_")}

    def server(self, scheme: str) -> Server:
        if self.scheme != scheme or self.proc is None or self.proc.poll() is not None:
            self.stop()
            config = self.work / f"bootgate-{scheme}.toml"
            write_config(config, self.data_dir, scheme)
            self.proc = self.lab.spawn("bootgate", [str(BOOTGATE), "serve", "--config", str(config)],
                                       ns=self.lab.ns_b, env=self.env)
            try:
                self.lab.wait_tcp(e2e_lab.SERVER_IP, HTTP_PORT, timeout=60, proc=self.proc)
                self.lab.wait_tcp(e2e_lab.SERVER_IP, HTTPS_PORT, timeout=30, proc=self.proc)
            except (RuntimeError, TimeoutError) as e:
                pytest.fail(f"bootgate did not start: {e}\n{self.lab.log_text('bootgate')[-4000:]}")
            self.scheme = scheme
        return Server(self.lab, self.data_dir, self.proc)

    def stop(self) -> int | None:
        rc = None
        if self.proc is not None:
            rc = self.lab.stop(self.proc)
            self.proc = None
        self.scheme = None
        return rc


@pytest.fixture(scope="module")
def bootgate(request: pytest.FixtureRequest) -> Iterator[Bootgate]:
    if not BOOTGATE.exists():
        pytest.fail(f"{BOOTGATE} does not exist: build it first with `make develop-release`")
    if not e2e_lab.lab_prepared():
        e2e_lab.prepare_lab()
    assert e2e_lab.lab_prepared(), "tests/e2e/lab.sh prepare did not produce the lab files"
    work = Path(tempfile.mkdtemp(prefix="bootgate-e2e-"))
    e2e_lab.log(f"work directory {work}")
    failed_before = request.session.testsfailed
    # bootgate answers iPXE's IPv6 Router Solicitations itself ([dhcp] ipv6_ra): no RA sender of the lab.
    with e2e_lab.Lab(work / "lab", ra=RA_MODE == "lab") as lab:
        bg = Bootgate(lab, work)
        try:
            yield bg
        finally:
            rc = bg.stop()
            if request.session.testsfailed != failed_before:
                print(f"--- bootgate log (last exit {rc}) ---\n{lab.log_text('bootgate')[-6000:]}")
                print(f"--- site dnsmasq log ---\n{lab.log_text('site-dnsmasq')[-2000:]}")
    if request.session.testsfailed == failed_before:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept {work} for inspection")


def dhcp_wire(lab: e2e_lab.Lab, mac: str) -> str:
    """The captured DHCP packets to and from mac, one line each (diagnostics only)."""
    if not lab.pcap.exists():
        return "(no capture)"
    import e2e_pcap as pcap
    lines = []
    for d in pcap.read_udp(lab.pcap):
        if ":".join(f"{b:02x}" for b in d.payload[28:34]) == mac:
            lines.append(f"  {pcap.describe(d)[:400]}")
    return "\n".join(lines)


def _describe(events: list[dict[str, Any]]) -> str:
    return "\n".join(f"  {e['id']} {e['kind']} mac={e.get('mac')} ip={e.get('client_ip')} {e['detail']}"
                     for e in events)


@pytest.mark.parametrize("firmware,scheme", [
    ("bios", "https"),
    ("uefi", "http"),
    # Needs option 67 last in bootgate's replies: edk2 NUL-terminates 67 in place, clobbering the
    # next option (it used to be 175, and the trust was lost: ipxe.org/0216eb8f). docs/trust.md.
    ("uefi", "https"),
])
def test_vm_boots_end_to_end(bootgate: Bootgate, firmware: str, scheme: str) -> None:
    server = bootgate.server(scheme)
    mac = MACS[f"{firmware}-{scheme}"]
    program = BOOT_PROGRAM[firmware]
    content = e2e_lab.CONTENT_DIR
    server.api("PUT", f"/api/v1/machines/{mac}/action",
               {"kernel": "vmlinuz", "initrd": "initrd.img", "args": "console=ttyS0 panic=-1"})

    res = server.lab.boot_vm(f"vm-{firmware}-{scheme}", firmware, mac, timeout=VM_TIMEOUT)
    BOOT_TIMES[f"{firmware} ({scheme} script)"] = (
        res.wall_s, "QEMU start to power-off" if not res.timed_out else "killed: no power-off (boot failed)")
    print(f"E2E BOOT {firmware} {scheme}: wall {res.wall_s:.1f} s (QEMU exit {res.returncode}, "
          f"timed out: {res.timed_out})")
    context = f"\n--- serial console tail of {res.name} ---\n{res.serial_tail(40)}"
    context += f"\n--- DHCP on the bridge for {mac} ---\n{dhcp_wire(server.lab, mac)}"

    # Let the web app and the engines' event pumps write what they have.
    time.sleep(1.0)
    dhcp = server.events(kind="dhcp", mac=mac)
    boots = server.boots(mac)
    context += f"\n--- dhcp events for {mac} ---\n{_describe(dhcp)}\n--- boots ---\n{boots}"

    # 1. proxyDHCP: first the boot program for the firmware, then the script URL for trixie's iPXE.
    to_program = [e for e in dhcp if e["detail"]["answer"] == program]
    assert to_program, f"no DHCP answer with the boot program {program}{context}"
    script_answers = [e for e in dhcp if e["detail"]["answer"].endswith("/boot.ipxe")]
    assert script_answers, f"no DHCP answer with the script URL{context}"
    assert to_program[0]["id"] < script_answers[-1]["id"], f"script URL was answered before the program{context}"
    script_url = script_answers[-1]["detail"]["answer"]
    assert script_url.startswith(f"{scheme}://{e2e_lab.SERVER_IP}:"), script_url + context
    assert script_answers[-1]["detail"]["is_ipxe"] is True, context
    if firmware == "bios":
        assert any(e["detail"]["arch"] == 0 for e in to_program), context
    else:
        assert any(e["detail"]["arch"] in (7, 9) for e in to_program), context

    # 2. /boot recorded with action "boot" and the success status from the initramfs.
    booted = [b for b in boots if b["action"] == "boot"]
    assert booted, f"no /boot record with action boot{context}"
    rec = booted[0]
    ipxe_dhcp = [e for e in dhcp if e["detail"]["is_ipxe"]]
    if ipxe_dhcp:  # iPXE's DHCP + IPv6 autoconfiguration wait + script fetches (the part the RA shortens)
        BOOT_TIMES[f"{firmware} ({scheme}) first iPXE DHCP to /boot"] = (
            rec["time"] - ipxe_dhcp[0]["time"], f"IPv6 RA from {RA_MODE}")
    assert rec["platform"] == PLATFORM[firmware], context
    assert rec["scheme"] == scheme, context
    states = [s["state"] for s in rec["statuses"]]
    assert "success" in states, f"no success status from the initramfs (statuses {states}){context}"
    client_ip = rec["client_ip"]

    # 3. TFTP: the boot program went out whole to this client.
    tftp = server.events(kind="tftp", client_ip=client_ip)
    context += f"\n--- tftp events for {client_ip} ---\n{_describe(tftp)}"
    size = (e2e_lab.IPXE_TRIXIE_DIR / program).stat().st_size
    sent = [e for e in tftp if e["detail"]["file"].lstrip("/") == program and e["detail"]["ok"]]
    assert sent, f"no successful TFTP transfer of {program} to {client_ip}{context}"
    assert sent[-1]["detail"]["bytes"] == size, context

    # 4. Content: kernel and initrd fetched in full by this client.
    fetched = server.events(kind="content", client_ip=client_ip)
    context += f"\n--- content events for {client_ip} ---\n{_describe(fetched)}"
    for name in ("vmlinuz", "initrd.img"):
        full = [e for e in fetched if e["detail"]["path"].lstrip("/") == name and e["detail"]["status"] == 200
                and e["detail"]["bytes"] == (content / name).stat().st_size]
        assert full, f"{name} was not fetched whole from /content{context}"

    # 5. The status event names this boot.
    status = server.events(kind="status", mac=mac)
    assert any(e["detail"]["boot_id"] == rec["id"] and e["detail"]["state"] == "success" for e in status), \
        f"no status event for boot {rec['id']}{context}"

    # The VM powered itself off (QEMU exits on its own) rather than being killed at the timeout.
    assert not res.timed_out, f"the VM did not power off within {VM_TIMEOUT} s{context}"
