"""Admin API, status callback, events API and /metrics (in-process ASGI, real SQLite store)."""

from __future__ import annotations

import pytest

from tests.conftest import AppEnv

MAC = "52:54:00:aa:bb:cc"


@pytest.mark.parametrize("method,path", [
    ("PUT", f"/api/v1/machines/{MAC}/action"), ("DELETE", f"/api/v1/machines/{MAC}/action"),
    ("GET", "/api/v1/machines"), ("GET", "/api/v1/boots"), ("GET", "/api/v1/events"),
])
async def test_admin_routes_need_the_token(app_env: AppEnv, method: str, path: str) -> None:
    r = await app_env.client.request(method, path, json={"kernel": "k"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = await app_env.client.request(method, path, json={"kernel": "k"},
                                     headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    r = await app_env.client.request(method, path, json={"kernel": "k"},
                                     headers={"Authorization": "Basic dGVzdA=="})
    assert r.status_code == 401
    assert await app_env.store.get_action(MAC) is None


async def test_set_list_and_delete_action(app_env: AppEnv) -> None:
    c, auth = app_env.client, app_env.auth
    r = await c.put("/api/v1/machines/52-54-00-AA-BB-CC/action", headers=auth,
                    json={"kernel": "vmlinuz", "initrd": "initrd.img", "args": "console=ttyS0"})
    assert r.status_code == 200 and r.json()["mac"] == MAC
    machines = (await c.get("/api/v1/machines", headers=auth)).json()
    assert machines[0]["mac"] == MAC and machines[0]["action"]["kernel"] == "vmlinuz"
    assert machines[0]["last_boot"] is None
    await c.get("/boot", params={"mac": MAC})
    machines = (await c.get("/api/v1/machines", headers=auth)).json()
    assert machines[0]["last_boot"]["action"] == "boot"
    assert (await c.delete(f"/api/v1/machines/{MAC}/action", headers=auth)).status_code == 204
    assert (await c.delete(f"/api/v1/machines/{MAC}/action", headers=auth)).status_code == 404
    assert await app_env.store.get_action(MAC) is None


@pytest.mark.parametrize("body", [
    {}, {"kernel": ""}, {"kernel": "../etc/shadow"}, {"kernel": "/abs"}, {"kernel": "k", "args": "a\nshell"},
    {"kernel": "k", "args": "x || shell"}, {"kernel": "k", "initrd": 5}, {"kernel": "k", "extra": 1},
])
async def test_bad_actions_are_400(app_env: AppEnv, body: dict[str, object]) -> None:
    r = await app_env.client.put(f"/api/v1/machines/{MAC}/action", headers=app_env.auth, json=body)
    assert r.status_code == 400 and r.json()["error"]
    assert await app_env.store.get_action(MAC) is None


async def test_bad_mac_in_path_is_400(app_env: AppEnv) -> None:
    r = await app_env.client.put("/api/v1/machines/nope/action", headers=app_env.auth, json={"kernel": "k"})
    assert r.status_code == 400 and "MAC" in r.json()["error"]


async def _boot_id(app_env: AppEnv) -> str:
    await app_env.client.get("/boot", params={"mac": MAC})
    return str((await app_env.store.list_boots(mac=MAC))[0]["id"])


async def test_status_callback_json_and_form(app_env: AppEnv) -> None:
    boot_id = await _boot_id(app_env)
    r = await app_env.client.post(f"/api/v1/boots/{boot_id}/status", json={"state": "started", "message": "hi"})
    assert r.status_code == 200 and r.json()["state"] == "started"
    r = await app_env.client.post(f"/api/v1/boots/{boot_id}/status", content=b"state=success&message=all+done",
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200
    boots = (await app_env.client.get("/api/v1/boots", params={"mac": MAC}, headers=app_env.auth)).json()
    assert [(s["state"], s["message"]) for s in boots[0]["statuses"]] == [("started", "hi"),
                                                                          ("success", "all done")]
    for key in ("id", "time", "mac", "uuid", "serial", "manufacturer", "product", "buildarch", "platform",
                "client_ip", "scheme", "action", "statuses"):
        assert key in boots[0]
    events = (await app_env.client.get("/api/v1/events", params={"kind": "status"}, headers=app_env.auth)).json()
    assert [e["detail"]["state"] for e in events] == ["success", "started"] and events[0]["mac"] == MAC


async def test_status_callback_errors(app_env: AppEnv) -> None:
    boot_id = await _boot_id(app_env)
    r = await app_env.client.post("/api/v1/boots/ffffffff/status", json={"state": "started"})
    assert r.status_code == 404
    r = await app_env.client.post(f"/api/v1/boots/{boot_id}/status", json={"state": "exploded"})
    assert r.status_code == 400
    r = await app_env.client.post(f"/api/v1/boots/{boot_id}/status", content=b"{not json",
                                  headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    r = await app_env.client.post(f"/api/v1/boots/{boot_id}/status", content=b"x" * 70000,
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400


async def test_boots_newest_first(app_env: AppEnv) -> None:
    first = await _boot_id(app_env)
    await app_env.client.get("/boot", params={"mac": "52:54:00:00:00:02"})
    boots = (await app_env.client.get("/api/v1/boots", headers=app_env.auth)).json()
    assert len(boots) == 2 and boots[1]["id"] == first
    only = (await app_env.client.get("/api/v1/boots", params={"mac": MAC}, headers=app_env.auth)).json()
    assert [b["id"] for b in only] == [first]


async def test_events_filters(app_env: AppEnv) -> None:
    await app_env.client.get("/boot", params={"mac": MAC})
    await app_env.client.get("/boot", params={"mac": "52:54:00:00:00:02"})
    c, auth = app_env.client, app_env.auth
    events = (await c.get("/api/v1/events", params={"kind": "boot", "mac": MAC}, headers=auth)).json()
    assert len(events) == 1 and events[0]["kind"] == "boot" and events[0]["mac"] == MAC
    assert set(events[0]) == {"id", "time", "kind", "mac", "client_ip", "detail"}
    assert events[0]["detail"]["action"] == "exit"
    by_ip = (await c.get("/api/v1/events", params={"client_ip": "198.18.0.10"}, headers=auth)).json()
    assert len(by_ip) == 2
    assert (await c.get("/api/v1/events", params={"kind": "nope"}, headers=auth)).status_code == 400
    assert (await c.get("/api/v1/events", params={"client_ip": "x"}, headers=auth)).status_code == 400
    assert (await c.get("/api/v1/events", params={"limit": "0"}, headers=auth)).status_code == 400


async def test_metrics_endpoint(app_env: AppEnv) -> None:
    await app_env.client.get("/boot", params={"mac": MAC})
    r = await app_env.client.get("/metrics")
    assert r.status_code == 200
    assert 'bootgate_boots_total{action="exit"} 1.0' in r.text
    assert 'bootgate_http_requests_total{method="GET",route="/boot",status="200"} 1.0' in r.text
