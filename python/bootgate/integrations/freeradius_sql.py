"""FreeRADIUS over SQL: bootgate writes the MAB exception table, FreeRADIUS ``rlm_sql`` reads it.

bootgate owns one table and two views in a database both can reach (SQLite file or PostgreSQL):

  <table>            mac (12 lower-case hex digits, primary key), expires, granted (epoch seconds), login
  <table>_radcheck   radcheck-shaped rows (id, username, attribute, op, value): Auth-Type := Accept
  <table>_radreply   radreply-shaped rows: Session-Timeout := <seconds left>, Reply-Message := ...

The views keep only rows whose ``expires`` lies in the future, computed by the database at query time, so an
expired exception never authorises even before bootgate's sweep deletes it. FreeRADIUS' stock
``queries.conf`` works unchanged with ``authcheck_table = "<table>_radcheck"`` and ``authreply_table =
"<table>_radreply"``, ``read_groups = no``, and ``sql_user_name`` set to the MAC normalised to 12 lower-case
hex digits (docs/security.md has the unlang). grant is an upsert, revoke a delete: both idempotent.
Re-authentication is a RADIUS CoA to the switch, as for the rlm_rest backend.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .mab import CoaTarget, coa_reauthenticate, normalize_mac

__all__ = ["TABLE_NAME", "FreeRadiusSqlBackend", "sql_url"]

TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")
# "now" in epoch seconds, per SQL dialect, evaluated by the database when FreeRADIUS queries the view
_NOW = {"sqlite": "CAST(strftime('%s','now') AS INTEGER)",
        "postgresql": "CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)"}


def sql_url(url: str) -> str:
    """The async SQLAlchemy URL for a plain one (sqlite:///x.db -> sqlite+aiosqlite:///x.db, postgresql://
    -> postgresql+asyncpg://); ValueError for other databases."""
    if url.startswith("sqlite:"):
        return "sqlite+aiosqlite:" + url[len("sqlite:"):]
    if url.startswith(("postgresql:", "postgres:")):
        return "postgresql+asyncpg:" + url.split(":", 1)[1]
    if url.startswith(("sqlite+aiosqlite:", "postgresql+asyncpg:")):
        return url
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///path.db or postgresql://user@host/db")


def bare_mac(mac: str) -> str:
    return normalize_mac(mac).replace(":", "")


class FreeRadiusSqlBackend:
    name = "freeradius-sql"

    def __init__(self, url: str, table: str = "bootgate_mab", coa_targets: Sequence[CoaTarget] = (),
                 coa_timeout: float = 2.0, clock: Callable[[], float] = time.time) -> None:
        if not TABLE_NAME.match(table):
            raise ValueError(f"table name {table!r}: use lower-case letters, digits and _ (at most 41)")
        self.url = sql_url(url)
        self.table = table
        self.coa_targets = list(coa_targets)
        self.coa_timeout = coa_timeout
        self.clock = clock
        self._engine: AsyncEngine | None = None
        self._engine_lock = asyncio.Lock()
        self.dialect = "sqlite" if self.url.startswith("sqlite") else "postgresql"

    async def _db(self) -> AsyncEngine:
        async with self._engine_lock:  # the first calls may come together: create the schema once
            if self._engine is None:
                engine = create_async_engine(self.url)
                try:
                    await self._create(engine)
                except Exception:
                    await engine.dispose()
                    raise
                self._engine = engine
        return self._engine

    async def _create(self, engine: AsyncEngine) -> None:
        t, now = self.table, _NOW[self.dialect]
        async with engine.begin() as c:
            if self.dialect == "sqlite":
                # WAL: FreeRADIUS reads while bootgate writes (readers never wait for the writer)
                await c.exec_driver_sql("PRAGMA journal_mode=WAL")
            await c.exec_driver_sql(
                f"CREATE TABLE IF NOT EXISTS {t} (mac VARCHAR(12) PRIMARY KEY, expires BIGINT NOT NULL, "
                f"granted BIGINT NOT NULL, login VARCHAR(256) NOT NULL DEFAULT '')")
            replace = "CREATE VIEW IF NOT EXISTS" if self.dialect == "sqlite" else "CREATE OR REPLACE VIEW"
            await c.exec_driver_sql(
                f"{replace} {t}_radcheck AS SELECT 1 AS id, mac AS username, 'Auth-Type' AS attribute, "
                f"':=' AS op, 'Accept' AS value FROM {t} WHERE expires > {now}")
            await c.exec_driver_sql(
                f"{replace} {t}_radreply AS "
                f"SELECT 1 AS id, mac AS username, 'Session-Timeout' AS attribute, ':=' AS op, "
                f"CAST(expires - {now} AS VARCHAR(20)) AS value FROM {t} WHERE expires > {now} "
                f"UNION ALL SELECT 2 AS id, mac AS username, 'Reply-Message' AS attribute, ':=' AS op, "
                f"'bootgate imaging exception' AS value FROM {t} WHERE expires > {now}")

    async def grant(self, mac: str, expires: float, user: str) -> None:
        db = await self._db()
        async with db.begin() as c:  # delete + insert in one transaction: an upsert every dialect has
            await c.execute(text(f"DELETE FROM {self.table} WHERE mac = :mac"), {"mac": bare_mac(mac)})
            await c.execute(text(f"INSERT INTO {self.table} (mac, expires, granted, login) "
                                 "VALUES (:mac, :expires, :granted, :login)"),
                            {"mac": bare_mac(mac), "expires": int(expires), "granted": int(self.clock()),
                             "login": user[:256]})

    async def revoke(self, mac: str) -> None:
        db = await self._db()
        async with db.begin() as c:
            await c.execute(text(f"DELETE FROM {self.table} WHERE mac = :mac"), {"mac": bare_mac(mac)})

    async def reauthenticate(self, mac: str) -> None:
        await coa_reauthenticate(self.coa_targets, mac, self.coa_timeout)

    async def expired(self) -> list[str]:
        db = await self._db()
        async with db.connect() as c:
            rows = await c.execute(text(f"SELECT mac FROM {self.table} WHERE expires <= :now"),
                                   {"now": int(self.clock())})
            return [normalize_mac(r[0]) for r in rows]

    async def rows(self) -> list[dict[str, object]]:
        """The table as stored (tests, diagnostics)."""
        db = await self._db()
        async with db.connect() as c:
            rows = await c.execute(text(f"SELECT mac, expires, granted, login FROM {self.table} ORDER BY mac"))
            return [dict(r._mapping) for r in rows]

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
