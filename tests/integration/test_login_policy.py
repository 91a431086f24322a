"""Policy can require a login per collection or per deployment (store column from migration 0003)."""

from __future__ import annotations

from tests.conftest import AppEnv

KERNEL = {"kind": "kernel", "kernel": "vmlinuz", "initrds": ["initrd.img"], "args": ""}


async def test_require_login_flags_round_trip(app_env: AppEnv) -> None:
    c, auth = app_env.client, app_env.auth
    r = await c.post("/api/v1/collections", headers=auth, json={"name": "desks", "rules": [{"mac_prefix": "52:54:00"}],
                                                                "require_login": True})
    assert r.status_code == 201 and r.json()["require_login"] is True
    cid = r.json()["id"]
    r = await c.post("/api/v1/collections", headers=auth, json={"name": "plain", "require_login": "yes"})
    assert r.status_code == 400 and "require_login" in r.json()["error"]
    r = await c.patch(f"/api/v1/collections/{cid}", headers=auth, json={"require_login": False})
    assert r.status_code == 200 and r.json()["require_login"] is False
    r = await c.post("/api/v1/deployments", headers=auth, json={"name": "d1", "collection": cid, "profile": KERNEL})
    assert r.status_code == 201 and r.json()["require_login"] is False
    did = r.json()["id"]
    r = await c.patch(f"/api/v1/deployments/{did}", headers=auth, json={"require_login": True})
    assert r.status_code == 200 and r.json()["require_login"] is True
    dep = await app_env.store.deployment(did)
    assert dep is not None and dep.require_login is True
    audit = (await c.get("/api/v1/audit", headers=auth, params={"action": "deployment.updated"})).json()
    assert audit[0]["detail"] == {"require_login": True}
