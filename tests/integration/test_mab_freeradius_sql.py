"""MAB exceptions through FreeRADIUS rlm_sql: bootgate writes the SQLite exception table, a real FreeRADIUS 3.2
reads it through the radcheck/radreply-shaped views, radclient plays the switch's MAB Access-Requests, and a
second FreeRADIUS plays the switch that must receive the CoA."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from bootgate.integrations.freeradius_sql import FreeRadiusSqlBackend
from bootgate.integrations.mab import CoaTarget, MabManager
from tests.integration import freeradius_lab as fr
from tests.integration.pgserver import PgServer, pg_server  # noqa: F401

needs_freeradius = pytest.mark.skipif(not fr.SQL_AVAILABLE, reason=fr.SKIP_REASON + " (and rlm_sql_sqlite)")

MAC = "52:54:00:12:ab:cd"
SPELLINGS = ["52-54-00-12-AB-CD", "5254.0012.abcd", "52540012ABCD", "52:54:00:12:ab:cd"]
TABLE = "bootgate_mab"


@dataclass
class Lab:
    backend: FreeRadiusSqlBackend
    mab: MabManager
    radius: fr.Radius
    switch: fr.Radius


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    switch = fr.start_switch(tmp_path / "switch")
    radius = None
    backend = FreeRadiusSqlBackend(f"sqlite:///{tmp_path / 'mab.db'}", TABLE,
                                   [CoaTarget("127.0.0.1", switch.port, fr.SECRET.encode())])
    try:
        await backend.revoke(MAC)  # creates the table and views before FreeRADIUS first reads them
        radius = fr.start_sql_auth_server(tmp_path / "radius", tmp_path / "mab.db", TABLE)
        yield Lab(backend, MabManager([backend], ttl=600, backoff=0.05, state_path=tmp_path / "state.json"),
                  radius, switch)
    finally:
        await backend.close()
        if radius is not None:
            radius.stop()
        switch.stop()


async def answers(lab: Lab) -> list[str]:
    return [await fr.mab_request(lab.radius.port, s) for s in SPELLINGS]


@needs_freeradius
async def test_rejected_before_grant_accepted_during_rejected_after_revoke(lab: Lab) -> None:
    assert all(a.startswith("Access-Reject") for a in await answers(lab))

    assert await lab.mab.grant_and_reauthenticate("5254.0012.ABCD", "tech")
    for spelling, answer in zip(SPELLINGS, await answers(lab)):
        assert answer.startswith("Access-Accept"), (spelling, answer, lab.radius.log()[-2000:])
        assert 0 < int(answer.split()[1]) <= 600  # Session-Timeout from the radreply view
    assert lab.switch.coa_lines() == ["CoA-Request 52-54-00-12-AB-CD subscriber:command=reauthenticate"]
    # another service type is refused even for the excepted MAC
    assert (await fr.mab_request(lab.radius.port, SPELLINGS[0], "Framed-User")).startswith("Access-Reject")

    rows = await lab.backend.rows()
    assert [(r["mac"], r["login"]) for r in rows] == [("52540012abcd", "tech")]
    assert await lab.mab.grant_and_reauthenticate(MAC, "tech")  # twice: still one row, same MAC
    assert [(r["mac"], r["login"]) for r in await lab.backend.rows()] == [("52540012abcd", "tech")]
    [entry] = lab.mab.exceptions()
    assert entry["state"] == "active" and entry["backends"]["freeradius-sql"]["state"] == "granted"

    assert await lab.mab.revoke("52-54-00-12-ab-cd")
    assert await lab.backend.rows() == []
    assert all(a.startswith("Access-Reject") for a in await answers(lab))
    assert await lab.mab.revoke(MAC)  # idempotent
    assert lab.mab.exceptions() == []


@needs_freeradius
async def test_expired_rows_never_authorise_and_the_sweep_deletes_them(lab: Lab) -> None:
    # the view compares with the database's clock at query time: a row whose expiry has passed is inert
    await lab.backend.grant(MAC, time.time() - 5, "tech")
    assert len(await lab.backend.rows()) == 1
    assert all(a.startswith("Access-Reject") for a in await answers(lab))
    await lab.backend.grant(MAC, time.time() + 300, "tech")
    assert (await fr.mab_request(lab.radius.port, SPELLINGS[2])).startswith("Access-Accept")
    await lab.backend.grant(MAC, time.time() - 1, "tech")
    assert (await fr.mab_request(lab.radius.port, SPELLINGS[2])).startswith("Access-Reject")
    # bootgate's sweep finds the expired row in the table (even one it has no state for) and deletes it
    assert await lab.mab.expire() == [MAC]
    assert await lab.backend.rows() == []


@needs_freeradius
async def test_switch_down_keeps_the_exception_and_records_the_failure(lab: Lab) -> None:
    lab.switch.stop()
    assert not await lab.mab.grant_and_reauthenticate(MAC, "tech")
    assert [(h.operation, h.ok) for h in lab.mab.history] == [("grant", True), ("reauthenticate", False)]
    [entry] = lab.mab.exceptions()
    b = entry["backends"]["freeradius-sql"]
    assert b["state"] == "granted" and b["reauthenticated"] is False and "no answer" in b["error"]
    assert (await fr.mab_request(lab.radius.port, SPELLINGS[0])).startswith("Access-Accept")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_views_on_both_databases(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The table and the radcheck/radreply views FreeRADIUS reads, on SQLite and on PostgreSQL (the rows
    rlm_sql_postgresql would read; the FreeRADIUS run above uses SQLite): only unexpired rows appear."""
    if kind == "postgresql":
        pg: PgServer = request.getfixturevalue("pg_server")
        url = await pg.new_database()
    else:
        url = f"sqlite:///{tmp_path / 'v.db'}"
    b = FreeRadiusSqlBackend(url, "mab_x")
    engine = create_async_engine(b.url)
    try:
        await b.grant("52-54-00-00-00-01", time.time() + 300, "alice")
        await b.grant("52-54-00-00-00-02", time.time() - 1, "bob")
        await b.grant("52-54-00-00-00-01", time.time() + 300, "alice")  # idempotent
        async with engine.connect() as c:
            check = (await c.execute(sa.text("SELECT id, username, attribute, value, op FROM mab_x_radcheck "
                                             "WHERE username = '525400000001' ORDER BY id"))).all()
            reply = (await c.execute(sa.text("SELECT id, username, attribute, value, op FROM mab_x_radreply "
                                             "WHERE username = '525400000001' ORDER BY id"))).all()
            expired = (await c.execute(sa.text("SELECT * FROM mab_x_radcheck WHERE username = '525400000002'"))).all()
        assert [tuple(r) for r in check] == [(1, "525400000001", "Auth-Type", "Accept", ":=")]
        assert [r[2] for r in reply] == ["Session-Timeout", "Reply-Message"] and 290 <= int(reply[0][3]) <= 300
        assert expired == []
        assert await b.expired() == ["52:54:00:00:00:02"]
        await b.revoke("525400000001")
        await b.revoke("525400000001")
        assert [r["mac"] for r in await b.rows()] == ["525400000002"]
        b2 = FreeRadiusSqlBackend(url, "mab_x")  # a restart: the schema is there already
        assert [r["mac"] for r in await b2.rows()] == ["525400000002"]
        await b2.close()
    finally:
        await engine.dispose()
        await b.close()


@needs_freeradius
async def test_an_unreachable_database_fails_closed(tmp_path: Path) -> None:
    radius = fr.start_sql_auth_server(tmp_path / "radius", tmp_path / "missing" / "mab.db", TABLE)
    try:
        assert (await fr.mab_request(radius.port, SPELLINGS[0])).startswith("Access-Reject")
        assert "[bootgate_mab_sql] = fail" in radius.log()
    finally:
        radius.stop()
