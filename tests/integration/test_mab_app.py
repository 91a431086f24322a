"""MAB backends through the real app (config file -> create_app): two backends at once, outcomes in the
audit log, bootgate_mab_* metrics, the exceptions API, and the SQL table FreeRADIUS reads."""

from __future__ import annotations

from pathlib import Path

import httpx

from bootgate.events import EventRecorder
from bootgate.integrations.freeradius_sql import FreeRadiusSqlBackend
from bootgate.metrics import Metrics
from bootgate.store import Store
from bootgate.web import Deps, create_app
from tests.conftest import ADMIN_TOKEN, settings_for

MAC = "52:54:00:0a:0b:0d"


async def test_grant_and_failed_coa_are_audited_counted_and_listed(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, f"""
        [tftp]
        enabled = false
        [mab]
        backend = "freeradius, freeradius-sql"
        sql_url = "sqlite:///{tmp_path / 'mab.db'}"
        coa_targets = "127.0.0.1:9"
        coa_secret = "s"
        attempts = 1
        timeout = 1
        """)
    store = await Store.open(settings.store.url)
    try:
        app = create_app(settings, Deps(store=store, recorder=EventRecorder(store), metrics=Metrics(),
                                        admin_token=ADMIN_TOKEN))
        sec = app.state.security
        assert [b.name for b in sec.mab.backends] == ["freeradius", "freeradius-sql"]
        # what a login schedules: the grant works on both backends; nothing answers the CoA on port 9
        assert not await sec.mab.grant_and_reauthenticate("52-54-00-0A-0B-0D", "tech")
        sql = sec.mab.backends[1]
        assert isinstance(sql, FreeRadiusSqlBackend) and [r["mac"] for r in await sql.rows()] == ["5254000a0b0d"]
        await sql.close()
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://b.example") as c:
            audit = (await c.get("/api/v1/audit", params={"action": "mab.grant"}, headers=auth)).json()
            rows = audit["items"] if isinstance(audit, dict) else audit
            assert sorted((r["target"], r["allowed"], r["detail"]["backend"]) for r in rows) == [
                (MAC, True, "freeradius"), (MAC, True, "freeradius-sql")]
            audit = (await c.get("/api/v1/audit", params={"action": "mab.reauthenticate"}, headers=auth)).json()
            rows = audit["items"] if isinstance(audit, dict) else audit
            assert [r["allowed"] for r in rows] == [False, False] and "127.0.0.1:9" in rows[0]["detail"]["error"]
            text = (await c.get("/metrics")).text
            for backend in ("freeradius", "freeradius-sql"):
                assert (f'bootgate_mab_calls_total{{backend="{backend}",operation="grant",result="ok"}} 1.0'
                        in text)
                assert (f'bootgate_mab_calls_total{{backend="{backend}",operation="reauthenticate",'
                        'result="error"} 1.0' in text)
            assert 'bootgate_mab_exceptions{state="active"} 1.0' in text
            body = (await c.get("/api/v1/mab/exceptions", headers=auth)).json()
            assert body["history"][0]["operation"] == "reauthenticate" and not body["history"][0]["ok"]
            assert [e["mac"] for e in body["exceptions"]] == [MAC]
            # the API lists every backend's state, not only the rlm_rest table
            assert body["backends"] == ["freeradius", "freeradius-sql"]
            assert {n: b["state"] for n, b in body["exceptions"][0]["backends"].items()} == {
                "freeradius": "granted", "freeradius-sql": "granted"}
        # the state behind the list: per backend granted, CoA not acknowledged, with the error
        [entry] = sec.mab.exceptions()
        assert {n: (b["state"], b["reauthenticated"]) for n, b in entry["backends"].items()} == {
            "freeradius": ("granted", False), "freeradius-sql": ("granted", False)}
    finally:
        await store.close()
