"""End to end: zero-touch provisioning of a brand-new VM, then its next boot goes to the local disk.

Same lab and bootgate as test_boot.py (BIOS, SeaBIOS + the NIC's iPXE ROM -> proxyDHCP -> TFTP
undionly.kpxe -> https /boot.ipxe -> /boot). bootgate is told only a name pattern and one required
deployment (countdown 0) to the built-in "unknown" collection; the VM's MAC is never given to it.

1. First boot: bootgate registers the VM (host named from the pattern and the VM's SMBIOS serial), the
   required deployment is sent at once (kernel + the lab's busybox initramfs, which reports success to
   the status callback and powers off).
2. Second boot of the same VM: the one-shot deployment is done and the re-image guard keeps an
   installed machine out of unknown-machine deployments, so /boot answers `exit` (next boot device;
   there is none in the VM, so SeaBIOS gives up and the lab stops QEMU).

Every assertion reads bootgate's records through its admin API.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import e2e_lab  # noqa: E402
import test_boot as tb  # noqa: E402  (the lab's bootgate, its config and API reader)
from test_boot import bootgate  # noqa: E402,F401  (module-scoped fixture: one lab for this file)

pytestmark = tb.pytestmark

MAC = "52:54:00:e2:e0:51"  # never announced to bootgate
SERIAL = "ZT0051"
UUID = "5a7e0c1d-0b57-4a7e-9e2e-000000000051"
NAME = f"VM-{SERIAL}"
VM_TIMEOUT = float(os.environ.get("BOOTGATE_E2E_VM_TIMEOUT", "300"))


def _with_smbios(lab: e2e_lab.Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    """The VM gets an SMBIOS serial and UUID (type 1) like a real PC, so its name is predictable."""
    orig = lab.qemu_argv

    def argv(*args: Any, **kwargs: Any) -> list[str]:
        return orig(*args, **kwargs) + ["-uuid", UUID, "-smbios", f"type=1,serial={SERIAL}"]

    monkeypatch.setattr(lab, "qemu_argv", argv)


def _boot(server: tb.Server, name: str) -> tuple[e2e_lab.VmResult, str]:
    res = server.lab.boot_vm(name, "bios", MAC, timeout=VM_TIMEOUT)
    tb.BOOT_TIMES[f"zero-touch {name}"] = (res.wall_s, "power-off" if not res.timed_out else "stopped by the lab")
    time.sleep(1.0)  # let the event recorder write what it has
    return res, f"\n--- serial console tail of {name} ---\n{res.serial_tail(40)}"


def test_zero_touch_registers_deploys_once_then_exits(bootgate: tb.Bootgate,  # noqa: F811
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    server = bootgate.server("https")
    _with_smbios(server.lab, monkeypatch)
    server.api("PUT", "/api/v1/settings/name-pattern", {"name_pattern": "VM-{serial|uuid8}"})
    dep = server.api("POST", "/api/v1/deployments", {
        "name": "zero-touch install", "collection": "unknown", "intent": "required", "countdown": 0,
        "profile": {"kind": "kernel", "kernel": "vmlinuz", "initrds": ["initrd.img"],
                    "args": "console=ttyS0 panic=-1"}}, expect=201)
    assert server.api("GET", "/api/v1/hosts")["items"] == [], "the store should start without machines"

    # 1. first network boot of the unknown VM: registered, named, deployed, success reported
    res1, context = _boot(server, "zt-first")
    boots = server.boots(MAC)
    context += f"\n--- boots ---\n{boots}"
    assert len(boots) == 1, f"expected one /boot record after the first boot{context}"
    first = boots[0]
    assert first["action"] == "deploy", context
    assert first["deployment_id"] == dep["id"], context
    assert first["serial"] == SERIAL and first["capabilities"]["identity"], context
    assert "success" in [s["state"] for s in first["statuses"]], f"no success from the initramfs{context}"
    assert not res1.timed_out, f"the deployed initramfs did not power the VM off{context}"

    hosts = server.api("GET", "/api/v1/hosts")["items"]
    assert len(hosts) == 1, f"one machine expected, got {hosts}{context}"
    host = hosts[0]
    assert host["name"] == NAME and MAC in host["macs"], host
    assert host["serial"] == SERIAL and host["uuid"].lower() == UUID, host
    assert host["installed_at"] is not None and host["known"] is False, host
    assert first["host_id"] == host["id"], context
    audit = server.api("GET", "/api/v1/audit?action=host.registered")
    assert [a["target"] for a in audit] == [NAME], audit
    runs = server.api("GET", f"/api/v1/deployments/{dep['id']}/runs")["items"]
    assert len(runs) == 1 and runs[0]["boot_id"] == first["id"] and runs[0]["state"] == "success", runs
    assert runs[0]["host_id"] == host["id"], runs

    # the installer asking to wipe this machine now is refused: it has a recorded install
    status, out = server.lab.http("POST", f"{server.base}/api/v1/guard/wipe", body={
        "boot_id": first["id"], "mac": MAC, "uuid": UUID, "serial": SERIAL,
        "disks": [{"name": "sda", "size": 8 << 30, "has_os": True}]})
    assert status == 200, out
    guard = json.loads(out)
    assert guard["allowed"] is False and guard["host_id"] == host["id"], guard

    # 2. the same VM boots from the network again: nothing to do -> next boot device
    _res2, context = _boot(server, "zt-second")
    boots = server.boots(MAC)
    context += f"\n--- boots ---\n{boots}"
    assert len(boots) == 2, f"expected a second /boot record{context}"
    second = boots[0]  # newest first
    assert second["id"] != first["id"] and second["action"] == "exit", context
    assert second["host_id"] == host["id"] and second["deployment_id"] is None, context
    assert len(server.api("GET", "/api/v1/hosts")["items"]) == 1, "the second boot registered another machine"
    runs = server.api("GET", f"/api/v1/deployments/{dep['id']}/runs")["items"]
    assert len(runs) == 1, f"the one-shot deployment ran again: {runs}"
    boot_events = server.events(kind="boot", mac=MAC)
    assert [e["detail"]["action"] for e in boot_events] == ["deploy", "exit"], boot_events
