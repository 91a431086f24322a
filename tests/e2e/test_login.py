"""End to end with a login at the iPXE prompt (BIOS and UEFI): the VM's iPXE asks for a name and password,
the test types them through QEMU's monitor (`sendkey`), bootgate checks them against a private slapd, grants
the VM's MAC a MAB exception that a private FreeRADIUS 3.2 (rlm_rest -> bootgate) answers to radclient,
sends a CoA to a second FreeRADIUS playing the switch, and the deployment continues over HTTPS with the
boot token on every URL; the installer's success report revokes the exception.

Everything runs inside the lab's server namespace (e2e_lab.py): bootgate, slapd, both FreeRADIUS, radclient.
Assertions read bootgate's API, radclient's answers and the switch's CoA log, never bootgate's log text.
"""

from __future__ import annotations

import asyncio
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
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import e2e_lab  # noqa: E402
import test_boot as tb  # noqa: E402  (the lab's bootgate config and API reader)

from tests.integration import freeradius_lab as fr  # noqa: E402
from tests.integration import slapd_lab  # noqa: E402

pytestmark: list[pytest.MarkDecorator] = [pytest.mark.e2e]

MACS = {"bios": "52:54:00:e2:e0:21", "uefi": "52:54:00:e2:e0:22"}
USER, PASSWORD = "bob", slapd_lab.PASSWORDS["bob"]  # bob: in techs through the nested subteam group
REST_SECRET = "rlm-rest-e2e"


def _skip_reason() -> str | None:
    reason = tb._skip_reason()
    if reason is None and not slapd_lab.AVAILABLE:
        reason = slapd_lab.SKIP_REASON
    if reason is None and not fr.AVAILABLE:
        reason = fr.SKIP_REASON
    return reason


_REASON = _skip_reason()
if _REASON is not None:
    pytestmark.append(pytest.mark.skip(reason=_REASON))


def in_namespace(tools: Path, ns: str, program: str) -> str:
    """A wrapper that runs `program` inside namespace `ns` (exec all the way, so the PID is the program's)."""
    tools.mkdir(parents=True, exist_ok=True)
    path = tools / Path(program).name
    path.write_text(f'#!/bin/sh\nexec ip netns exec {ns} {program} "$@"\n')
    path.chmod(0o755)
    return str(path)


def mab_answer(port: int, mac: str) -> str:
    """One MAB Access-Request (Call-Check, User-Name = Calling-Station-Id = MAC) from radclient in the
    server namespace: "Access-Accept <Session-Timeout>", "Access-Reject" or "timeout:..."."""
    return asyncio.run(fr.mab_request(port, mac.replace(":", "-").upper()))


class LoginLab:
    def __init__(self, lab: e2e_lab.Lab, work: Path) -> None:
        self.lab = lab
        self.work = work
        self.data_dir = work / "data"
        self.slapd: slapd_lab.Slapd | None = None
        self.radius: fr.Radius | None = None
        self.switch: fr.Radius | None = None
        self.saved = (fr.FREERADIUS, fr.RADCLIENT)

    def start(self) -> None:
        """slapd, the switch, bootgate, the RADIUS server, all in the server namespace."""
        lab, work = self.lab, self.work
        self.slapd = slapd_lab.start(work / "slapd", netns=lab.ns_b)
        # freeradius_lab's servers and radclient, run inside the server namespace through wrappers
        assert fr.FREERADIUS and fr.RADCLIENT
        fr.FREERADIUS = in_namespace(work / "tools", lab.ns_b, fr.FREERADIUS)
        fr.RADCLIENT = in_namespace(work / "tools", lab.ns_b, fr.RADCLIENT)
        self.switch = fr.start_switch(work / "switch")
        config = work / "bootgate-login.toml"
        tb.write_config(config, self.data_dir, "https")
        with config.open("a") as f:
            f.write(f"""
[ldap]
url = "{self.slapd.ldaps_url}"
ca_cert = "{self.slapd.ca_pem}"
base_dn = "ou=people,{slapd_lab.BASE}"
user_filter = "(uid={{username}})"
group_base_dn = "ou=groups,{slapd_lab.BASE}"
required_groups = "{slapd_lab.TECHS}"

[mab]
backend = "freeradius"
rest_secret = "{REST_SECRET}"
coa_targets = "127.0.0.1:{self.switch.port}"
coa_secret = "{fr.SECRET}"
exception_ttl = 900
""")
        env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTGATE_")}
        self.proc = lab.spawn("bootgate", [str(tb.BOOTGATE), "serve", "--config", str(config)], ns=lab.ns_b, env=env)
        try:
            lab.wait_tcp(e2e_lab.SERVER_IP, tb.HTTP_PORT, timeout=60, proc=self.proc)
            lab.wait_tcp(e2e_lab.SERVER_IP, tb.HTTPS_PORT, timeout=30, proc=self.proc)
        except (RuntimeError, TimeoutError) as e:
            pytest.fail(f"bootgate did not start: {e}\n{lab.log_text('bootgate')[-4000:]}")
        self.server = tb.Server(lab, self.data_dir, self.proc)
        self.radius = fr.start_auth_server(work / "radius", f"http://{e2e_lab.SERVER_IP}:{tb.HTTP_PORT}", REST_SECRET)

    def mab(self, mac: str) -> str:
        assert self.radius is not None
        return mab_answer(self.radius.port, mac)

    def coa_lines(self) -> list[str]:
        return self.switch.coa_lines() if self.switch is not None else []

    def close(self) -> None:
        for r in (self.radius, self.switch, self.slapd):
            if r is not None:
                r.stop()
        fr.FREERADIUS, fr.RADCLIENT = self.saved


@pytest.fixture(scope="module")
def login_lab(request: pytest.FixtureRequest) -> Iterator[LoginLab]:
    if not tb.BOOTGATE.exists():
        pytest.fail(f"{tb.BOOTGATE} does not exist: build it first with `make develop-release`")
    if not e2e_lab.lab_prepared():
        e2e_lab.prepare_lab()
    work = Path(tempfile.mkdtemp(prefix="bootgate-e2e-login-"))
    failed_before = request.session.testsfailed
    with e2e_lab.Lab(work / "lab") as lab:
        ll = LoginLab(lab, work)
        try:
            ll.start()
            yield ll
        finally:
            if request.session.testsfailed != failed_before:
                print(f"--- bootgate log ---\n{lab.log_text('bootgate')[-5000:]}")
                for r in (ll.radius, ll.switch):
                    if r is not None:
                        print(f"--- {r.dir.name} log ---\n{r.log()[-5000:]}")
            ll.close()
    if request.session.testsfailed == failed_before:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept {work} for inspection")


class Typist:
    """Watches the serial console; at iPXE's login prompt types the credentials once, then checks what
    FreeRADIUS answers for the VM's MAC while the exception is in place (before the installer's success
    report revokes it)."""

    def __init__(self, ll: LoginLab, monitor: Path, mac: str) -> None:
        self.ll = ll
        self.mac = mac
        self.monitor = monitor
        self.typed_at: float | None = None
        self.during: str | None = None
        self.exceptions: Any = None
        self._next_poll = 0.0
        self._login_seen: float | None = None
        self.trigger = ""

    def _login_served(self) -> bool:
        boots = self.ll.server.boots(self.mac)
        return any(b["action"] == "login" for b in boots)

    def __call__(self, serial: str) -> None:
        now = time.monotonic()
        if self.typed_at is None:
            if "sername" in serial:
                self.trigger = "the login form on the serial console"
            elif now >= self._next_poll and self._login_served_long_ago(now):
                self.trigger = "8 s after bootgate served the login script"
            else:
                return
            time.sleep(2.0)  # let the form draw completely before typing
            e2e_lab.send_keys(self.monitor, f"{USER}\n")
            time.sleep(0.5)
            e2e_lab.send_keys(self.monitor, f"{PASSWORD}\n")
            self.typed_at = now
            return
        if self.during is None and now >= self._next_poll:
            self._next_poll = now + 0.3
            listed = self.ll.server.api("GET", "/api/v1/mab/exceptions")
            if any(e.get("mac") == self.mac for e in listed.get("exceptions", [])):
                self.exceptions = listed
                self.during = self.ll.mab(self.mac)

    def _login_served_long_ago(self, now: float) -> bool:
        """Fallback when the console does not show the form's text: /boot answered the login script
        more than 8 s ago."""
        self._next_poll = now + 2.0
        if self._login_seen is None:
            if self._login_served():
                self._login_seen = now
            return False
        return now - self._login_seen > 8.0


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_login_at_the_ipxe_prompt_mab_exception_and_tokened_deployment(login_lab: LoginLab, firmware: str) -> None:
    server = login_lab.server
    lab = login_lab.lab
    mac = MACS[firmware]
    dep = next((d for d in server.api("GET", "/api/v1/deployments")["items"] if d["name"] == "install-with-login"),
               None) or server.api("POST", "/api/v1/deployments", {
        "name": "install-with-login", "collection": "unknown", "intent": "required", "countdown": 0,
        "require_login": True,
        "profile": {"kind": "kernel", "kernel": "vmlinuz", "initrds": ["initrd.img"],
                    "args": "console=ttyS0 panic=-1"}}, expect=201)
    assert login_lab.mab(mac).startswith("Access-Reject")  # no exception yet

    monitor = login_lab.work / f"qemu-monitor-{firmware}.sock"
    typist = Typist(login_lab, monitor, mac)
    res = lab.boot_vm(f"vm-login-{firmware}", firmware, mac, timeout=tb.VM_TIMEOUT, monitor=monitor, watch=typist)
    e2e_lab.BOOT_TIMES[f"{firmware} (login, https)"] = (
        res.wall_s, "QEMU start to power-off" if not res.timed_out else "killed: no power-off (boot failed)")
    time.sleep(1.0)
    boots = server.boots(mac)
    context = (f"\n--- serial console tail ---\n{res.serial_tail(60)}\n--- boots ---\n{json.dumps(boots)[:3000]}"
               f"\n--- typed at {typist.typed_at}, radius during: {typist.during} ---")
    assert typist.typed_at is not None, f"the login prompt never showed{context}"
    print(f"E2E LOGIN: typed after {typist.trigger}; radclient during the install: {typist.during}; "
          f"switch CoA log: {login_lab.coa_lines()}")

    # 1. /boot answered the login script; after the login the deployment ran from /boot/run
    assert boots and boots[-1]["action"] == "login", context
    runs = [r for r in server.api("GET", f"/api/v1/deployments/{dep['id']}/runs")["items"]
            if r["boot_id"] in {b["id"] for b in boots}]
    assert len(runs) == 1, f"runs {runs}{context}"
    audit = server.api("GET", "/api/v1/audit?action=login")
    assert any(a["actor"] == USER and a["allowed"] and a["target"] == mac for a in audit), f"{audit}{context}"

    # 2. the MAB exception was in FreeRADIUS's answers during the install, the switch got the CoA
    assert typist.during is not None and typist.during.startswith("Access-Accept"), context
    assert int(typist.during.split()[1]) > 0, context
    assert any(line.startswith("CoA-Request") and mac.replace(":", "-").upper() in line
               for line in login_lab.coa_lines()), f"switch CoA log {login_lab.coa_lines()}{context}"

    # 3. kernel + initrd fetched whole with the token, over HTTPS; the install reported success
    rec = boots[-1]
    fetched = server.events(kind="content", client_ip=rec["client_ip"])
    for name in ("vmlinuz", "initrd.img"):
        size = (e2e_lab.CONTENT_DIR / name).stat().st_size
        assert any(e["detail"]["path"].lstrip("/") == name and e["detail"]["status"] == 200
                   and e["detail"]["bytes"] == size for e in fetched), f"{name} not fetched whole{context}"
    boot_events = server.events(kind="boot", mac=mac)
    assert all(e["detail"]["scheme"] == "https" for e in boot_events), context
    statuses = [s["state"] for b in boots for s in b["statuses"]]
    assert "success" in statuses, f"no success status{context}"
    assert not res.timed_out, f"the VM did not power off{context}"

    # 4. the success report revoked the exception: FreeRADIUS rejects the MAC again
    deadline = time.monotonic() + 20
    while login_lab.mab(mac) != "Access-Reject":
        assert time.monotonic() < deadline, f"exception not revoked after success{context}"
        time.sleep(1.0)
    # the file needs the token: without one bootgate refuses it
    status, _ = lab.http("GET", f"https://{e2e_lab.SERVER_IP}:{tb.HTTPS_PORT}/content/vmlinuz")
    assert status == 401
