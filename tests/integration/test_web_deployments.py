"""Deployments end to end through the ASGI app and a real SQLite store: zero-touch registration, required
deployment once, menus, approvals, the re-image guard, roles, reports, OpenAPI."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bootgate.events import EventRecorder
from bootgate.metrics import Metrics
from bootgate.store import Store
from bootgate.web import Deps, create_app
from tests.conftest import ADMIN_TOKEN, AppEnv, settings_for
from tests.integration.pgserver import PgServer, pg_server  # noqa: F401

MAC = "52:54:00:12:34:56"
UUID = "8d1f4a2e-1b3c-4d5e-9f60-0a1b2c3d4e5f"
IDENT = {"mac": MAC, "uuid": UUID, "serial": "QEMU0001", "manufacturer": "QEMU", "product": "Standard PC",
         "buildarch": "x86_64", "platform": "efi", "ip": "198.18.0.10"}
KERNEL = {"kind": "kernel", "kernel": "debian/vmlinuz", "initrds": ["debian/initrd.gz"], "args": "auto=true"}


@pytest.fixture(params=["sqlite", "postgresql"])
async def app_env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AppEnv]:
    """The app on a real SQLite store and on a real PostgreSQL store."""
    settings = settings_for(tmp_path, '[tftp]\nenabled = false\n[auth]\nhttp_script_clients = "198.18.0.10"\n')
    settings.content.root.mkdir(parents=True)
    url = settings.store.url
    if request.param == "postgresql":
        pg: PgServer = request.getfixturevalue("pg_server")
        url = await pg.new_database()
    store = await Store.open(url)
    recorder = EventRecorder(store)
    metrics = Metrics()
    app = create_app(settings, Deps(store=store, recorder=recorder, metrics=metrics, admin_token=ADMIN_TOKEN))
    transport = httpx.ASGITransport(app=app, client=("198.18.0.10", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://boot.example:8050") as client:
        yield AppEnv(settings, store, recorder, metrics, client, settings.content.root, app)
    await recorder.flush()
    await store.close()


async def _deploy(env: AppEnv, **kw: object) -> dict[str, object]:
    body = {"name": "install", "collection": "unknown", "profile": KERNEL, "intent": "required", "countdown": 0,
            **kw}
    r = await env.client.post("/api/v1/deployments", headers=env.auth, json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _boot_id(script: str) -> str:
    m = re.search(r"bootgate\.boot=([0-9a-f]{32})", script) or re.search(r"boot=([0-9a-f]{32})", script)
    assert m, script
    return m.group(1)


async def test_zero_touch_required_once_then_local_disk(app_env: AppEnv) -> None:
    c = app_env.client
    r = await c.put("/api/v1/settings/name-pattern", headers=app_env.auth, json={"name_pattern": "LAB-{serial}"})
    assert r.status_code == 200
    dep = await _deploy(app_env)
    s1 = (await c.get("/boot", params=dict(IDENT, version="1.21.1+ (g123)", nic="virtio-net", asset="A-1"))).text
    assert f"kernel http://boot.example:8050/content/debian/vmlinuz auto=true bootgate.boot=" in s1
    assert f"bootgate.deployment={dep['id']}" in s1 and "initrd http://boot.example:8050/content/debian/initrd.gz" in s1
    hosts = (await c.get("/api/v1/hosts", headers=app_env.auth)).json()["items"]
    assert [(h["name"], h["known"], h["macs"]) for h in hosts] == [("LAB-QEMU0001", False, [MAC])]
    boot_id = _boot_id(s1)
    boot = (await c.get("/api/v1/boots", headers=app_env.auth)).json()[0]
    assert boot["action"] == "deploy" and boot["deployment_id"] == dep["id"]
    caps = boot["capabilities"]
    assert caps["buildarch"] == "x86_64" and caps["identity"] == "new machine" and caps["client_ip"] == "198.18.0.10"
    assert (caps["version"], caps["nic"], caps["asset"], caps["platform"]) == ("1.21.1+ (g123)", "virtio-net", "A-1",
                                                                               "efi")
    # the installer may wipe the new machine, reports success and renames it
    g = await c.post("/api/v1/guard/wipe", json={"boot_id": boot_id, "mac": MAC, "uuid": UUID, "serial": "QEMU0001",
                                                 "disks": [{"name": "vda", "has_os": False}]})
    assert g.json() == {"allowed": True, "reason": "new machine", "host_id": hosts[0]["id"]}
    r = await c.post(f"/api/v1/boots/{boot_id}/status", json={"state": "success", "message": "ok",
                                                              "name": "web-01"})
    assert r.status_code == 200
    s2 = (await c.get("/boot", params=IDENT)).text
    assert s2.endswith("exit\n") and "kernel" not in s2
    host = (await c.get(f"/api/v1/hosts/{hosts[0]['id']}", headers=app_env.auth)).json()
    assert host["name"] == "web-01" and host["installed_at"] is not None
    runs = (await c.get(f"/api/v1/deployments/{dep['id']}/runs", headers=app_env.auth)).json()["items"]
    assert [r["state"] for r in runs] == ["success"]
    # now the guard says no, and the answers are audited
    g = await c.post("/api/v1/guard/wipe", json={"boot_id": _boot_id_from_last(await _last_boot(app_env)),
                                                 "mac": MAC, "uuid": UUID, "serial": "QEMU0001", "disks": []})
    assert g.json()["allowed"] is False
    audit = (await c.get("/api/v1/audit", headers=app_env.auth, params={"action": "wipe.asked"})).json()
    assert [a["allowed"] for a in audit] == [False, True]


async def _last_boot(env: AppEnv) -> dict[str, object]:
    return dict((await env.client.get("/api/v1/boots", headers=env.auth)).json()[0])


def _boot_id_from_last(b: dict[str, object]) -> str:
    return str(b["id"])


async def test_menu_required_preselected_and_run_checks(app_env: AppEnv) -> None:
    c = app_env.client
    req = await _deploy(app_env, name="win11", countdown=7,
                        profile={"kind": "wimboot", "kernel": "wimboot",
                                 "initrds": ["win/bootmgr.efi", "win/BCD", "win/boot.sdi", "win/boot.wim"]})
    avail = await _deploy(app_env, name="memtest", intent="available", one_shot=False,
                          profile={"kind": "chain", "url": "https://tools.example/memtest.ipxe"})
    s = (await c.get("/boot", params=IDENT)).text
    assert f"item d{req['id']} [required] win11" in s and f"item d{avail['id']} memtest" in s
    assert f"choose --timeout 7000 --default d{req['id']} target || goto local" in s
    assert "item technician Technician menu (login)" in s
    boot_id = _boot_id(s)
    r = await c.get("/boot/run", params={"boot": boot_id, "deployment": str(req["id"])})
    assert r.status_code == 200
    assert "initrd --name BCD http://boot.example:8050/content/win/BCD" in r.text
    assert "kernel http://boot.example:8050/content/wimboot" in r.text
    r = await c.get("/boot/run", params={"boot": boot_id, "deployment": "999"})
    assert r.status_code == 403
    r = await c.get("/boot/technician", params={"boot": boot_id})
    assert r.status_code == 200 and "login" in r.text
    # a per-MAC action (the foundation's) still wins over deployments
    await c.put(f"/api/v1/machines/{MAC}/action", headers=app_env.auth, json={"kernel": "k"})
    assert "kernel http://boot.example:8050/content/k " in (await c.get("/boot", params=IDENT)).text


async def test_approval_needed_then_given(app_env: AppEnv) -> None:
    c = app_env.client
    dep = await _deploy(app_env, require_approval=True)
    assert (await c.get("/boot", params=IDENT)).text.endswith("exit\n")
    pending = (await c.get("/api/v1/approvals/pending", headers=app_env.auth)).json()
    assert [p["deployment_id"] for p in pending] == [dep["id"]]
    r = await c.post("/api/v1/approvals", headers=app_env.auth,
                     json={"deployment_id": dep["id"], "host_id": pending[0]["host_id"], "note": "ticket 42"})
    assert r.status_code == 201
    assert "bootgate.deployment=" in (await c.get("/boot", params=IDENT)).text
    assert (await c.get("/api/v1/approvals/pending", headers=app_env.auth)).json() == []


async def test_time_window_and_collection_rules(app_env: AppEnv) -> None:
    c = app_env.client
    r = await c.post("/api/v1/collections", headers=app_env.auth,
                     json={"name": "qemu-efi", "rules": [{"manufacturer": "qemu*", "platform": "efi"}]})
    assert r.status_code == 201
    await _deploy(app_env, collection="qemu-efi", window_start=0, window_end=1)  # long past
    assert (await c.get("/boot", params=IDENT)).text.endswith("exit\n")
    await _deploy(app_env, name="now", collection="qemu-efi", window_start=0, window_end=4e9)
    assert "bootgate.deployment=" in (await c.get("/boot", params=IDENT)).text
    bios = dict(IDENT, platform="pcbios", mac="52:54:00:12:34:57", uuid="", serial="OTHER0001")
    assert (await c.get("/boot", params=bios)).text.endswith("exit\n")


@pytest.mark.parametrize("body", [
    {"name": "x\nshell", "collection": "unknown", "profile": KERNEL},
    {"name": "x\n", "collection": "unknown", "profile": KERNEL},
    {"name": "x", "collection": "nope", "profile": KERNEL},
    {"name": "x", "collection": "unknown", "profile": {"kind": "chain", "url": "https://a/${x}"}},
    {"name": "x", "collection": "unknown", "profile": {"kind": "chain", "url": "http://a/b c"}},
    {"name": "x", "collection": "unknown", "profile": {"kind": "kernel", "kernel": "../etc/passwd"}},
    {"name": "x", "collection": "unknown", "profile": dict(KERNEL, args="a || shell")},
    {"name": "x", "collection": "unknown", "profile": {"kind": "template", "template": "chain {{evil}}"}},
    {"name": "x", "collection": "unknown", "profile": KERNEL, "intent": "maybe"},
    {"name": "x", "collection": "unknown", "profile": KERNEL, "window_start": 5, "window_end": 1},
])
async def test_bad_deployments_are_rejected(app_env: AppEnv, body: dict[str, object]) -> None:
    r = await app_env.client.post("/api/v1/deployments", headers=app_env.auth, json=body)
    assert r.status_code in (400, 404) and r.json()["error"]
    assert (await app_env.client.get("/api/v1/deployments", headers=app_env.auth)).json()["items"] == []


async def test_hostile_identity_cannot_inject(app_env: AppEnv) -> None:
    await _deploy(app_env, profile={"kind": "template",
                                    "template": "#!ipxe\necho {{name}} {{mac}}\nchain {{content}}/x?b={{boot_id}}"})
    evil = dict(IDENT, serial="X\nshell ${evil} || reboot", product="a\nchain http://evil/")
    s = (await app_env.client.get("/boot", params=evil)).text
    assert s.splitlines()[2] == "set peerdist 1"  # BranchCache's setting, made by bootgate before the profile
    lines = [ln for ln in s.splitlines() if ln != "set peerdist 1"]
    assert [ln.split()[0] for ln in lines] == ["#!ipxe", "echo", "echo", "chain"]
    assert "${" not in s and "||" not in s and "http://evil" not in s
    assert re.fullmatch(r"echo [A-Za-z0-9-]+ 52:54:00:12:34:56", lines[2])
    assert re.fullmatch(r"chain http://boot\.example:8050/content/x\?b=[0-9a-f]{32}", lines[3])


async def test_roles(app_env: AppEnv) -> None:
    c, admin = app_env.client, app_env.auth
    tokens = {}
    for role in ("read-only", "operator"):
        r = await c.post("/api/v1/tokens", headers=admin, json={"name": role, "role": role})
        assert r.status_code == 201
        tokens[role] = {"Authorization": f"Bearer {r.json()['token']}"}
    assert (await c.get("/api/v1/hosts", headers=tokens["read-only"])).status_code == 200
    assert (await c.get("/api/v1/boots", headers=tokens["read-only"])).status_code == 200
    r = await c.post("/api/v1/collections", headers=tokens["read-only"], json={"name": "a"})
    assert r.status_code == 403 and "operator" in r.json()["error"]
    assert (await c.post("/api/v1/collections", headers=tokens["operator"], json={"name": "a"})).status_code == 201
    assert (await c.get("/api/v1/tokens", headers=tokens["operator"])).status_code == 403
    r = await c.put(f"/api/v1/machines/{MAC}/action", headers=tokens["read-only"], json={"kernel": "k"})
    assert r.status_code == 403
    assert (await c.delete("/api/v1/tokens/operator", headers=admin)).status_code == 204
    assert (await c.get("/api/v1/hosts", headers=tokens["operator"])).status_code == 401
    created = [a["target"] for a in (await c.get("/api/v1/audit", headers=admin)).json()
               if a["action"] == "collection.created"]
    assert created == ["a"]


async def test_pagination(app_env: AppEnv) -> None:
    c = app_env.client
    for i in range(5):
        await c.get("/boot", params={"mac": f"52:54:00:00:10:{i:02x}", "serial": f"SER{i:05d}"})
    seen, after = [], 0
    while True:
        page = (await c.get("/api/v1/hosts", headers=app_env.auth, params={"limit": 2, "after": after})).json()
        seen += [h["serial"] for h in page["items"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert seen == [f"SER{i:05d}" for i in range(5)]


async def test_reports_json_and_csv(app_env: AppEnv) -> None:
    c = app_env.client
    await _deploy(app_env)
    s = (await c.get("/boot", params=IDENT)).text
    await c.post(f"/api/v1/boots/{_boot_id(s)}/status", json={"state": "failure", "message": "disk"})
    await c.get("/boot", params=dict(IDENT, mac="52:54:00:00:00:99", uuid="", serial="ZZZ99999"))
    j = (await c.get("/api/v1/reports/boots", headers=app_env.auth, params={"by": "result"})).json()
    assert {r["result"]: r["boots"] for r in j["rows"]} == {"failure": 1, "unfinished": 1}
    r = await c.get("/api/v1/reports/boots", headers=app_env.auth, params={"by": "model", "format": "csv"})
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows == [["model", "boots", "deployments_started", "installs_succeeded", "installs_failed"],
                    ["QEMU Standard PC", "2", "2", "0", "1"]]
    assert (await c.get("/api/v1/reports/boots", headers=app_env.auth, params={"by": "x"})).status_code == 400


async def test_openapi_lists_every_api_route(app_env: AppEnv) -> None:
    doc = (await app_env.client.get("/api/v1/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    for route in app_env.app.routes:
        path = getattr(route, "path", "")
        if not path.startswith("/api/v1"):
            continue
        clean = re.sub(r"\{(\w+):\w+\}", r"{\1}", path)
        for method in getattr(route, "methods", set()) - {"HEAD"}:
            assert method.lower() in doc["paths"][clean], (method, path)


async def test_relay_and_static_membership_rules(app_env: AppEnv) -> None:
    from bootgate.store import EventRecord

    c = app_env.client
    r = await c.post("/api/v1/collections", headers=app_env.auth,
                     json={"name": "site-b", "rules": [{"relay": "198.18.5.1"}]})
    site_b = r.json()["id"]
    await _deploy(app_env, name="site-b-image", collection="site-b", intent="available")
    assert (await c.get("/boot", params=IDENT)).text.endswith("exit\n")  # no DHCP event: no relay
    await app_env.store.add_events([EventRecord(kind="dhcp", time=1.0, mac=MAC, client_ip="198.18.5.20",
                                                detail={"relay": "198.18.5.1"})])
    s = (await c.get("/boot", params=IDENT)).text
    assert "item d" in s and "site-b-image" in s
    boot = (await c.get("/api/v1/boots", headers=app_env.auth)).json()[0]
    assert boot["capabilities"]["relay"] == "198.18.5.1" and boot["action"] == "menu"
    # static membership: another machine, no relay, added by hand
    other = dict(IDENT, mac="52:54:00:12:99:99", uuid="", serial="STATIC001")
    assert (await c.get("/boot", params=other)).text.endswith("exit\n")
    hid = [h["id"] for h in (await c.get("/api/v1/hosts", headers=app_env.auth)).json()["items"]
           if h["serial"] == "STATIC001"][0]
    assert (await c.put(f"/api/v1/collections/{site_b}/members/{hid}", headers=app_env.auth)).status_code == 200
    assert "site-b-image" in (await c.get("/boot", params=other)).text
