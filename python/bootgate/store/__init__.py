"""The store: machines, their actions, boots, boot statuses and events (SQLAlchemy 2 Core, async)."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, bindparam, case, create_engine, delete, event, func, insert, select, update
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..policy import MachineAction
from . import migrate, schema
from .index import IdentityIndex
from .inventory import Conflict, InventoryMixin, NotFound, dialect_insert, upsert_runs

__all__ = ["BootRecord", "Conflict", "EventRecord", "NotFound", "Store", "BOOT_STATES"]

log = logging.getLogger("bootgate.store")

BOOT_STATES = ("started", "step", "success", "failure")
WRITE_BATCH = 500  # boots per group-commit transaction


@dataclass(frozen=True)
class BootRecord:
    id: str
    time: float
    mac: str
    uuid: str
    serial: str
    manufacturer: str
    product: str
    buildarch: str
    platform: str
    reported_ip: str
    client_ip: str
    scheme: str
    action: str  # "exit" | "boot"
    kernel: str = ""
    initrd: str = ""
    args: str = ""
    host_id: int | None = None
    deployment_id: int | None = None
    capabilities: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EventRecord:
    kind: str  # dhcp | tftp | boot | content | status
    time: float
    mac: str | None = None
    client_ip: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")  # other processes on the same file
    cur.close()


def _event_row(r: EventRecord) -> dict[str, Any]:
    return {"kind": r.kind, "time": r.time, "mac": r.mac, "client_ip": r.client_ip,
            "detail": orjson.dumps(r.detail).decode()}


def _sqlite_reader(path: str) -> sqlite3.Connection:
    """A read-only connection for the /boot hot path's few indexed lookups, used on the event loop's
    thread: a lookup takes microseconds, far less than handing it to aiosqlite's thread and back. WAL
    mode: it reads the last committed state and never blocks the writer."""
    uri = "file:" + urllib.parse.quote(str(Path(path).resolve())) + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=1000")
    conn.execute("PRAGMA query_only=1")
    return conn


def _native_writer(path: str) -> Any:
    """The GIL-free group-commit writer (bootgate._native.SqliteWriter) for a SQLite file, or None
    (the Python writer is used) when it cannot share the libsqlite3 of Python's sqlite3 module or
    BOOTGATE_SQLITE_WRITER=python asks for the Python one."""
    if os.environ.get("BOOTGATE_SQLITE_WRITER") == "python":
        return None
    from .. import _native

    try:
        return _native.SqliteWriter(path, 30000)
    except OSError as e:
        log.info("SQLite writes go through Python's sqlite3", extra={"kv": {"reason": str(e)}})
        return None


def _boot_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id, "time": row.time, "mac": row.mac, "uuid": row.uuid, "serial": row.serial,
        "manufacturer": row.manufacturer, "product": row.product, "buildarch": row.buildarch,
        "platform": row.platform, "ip": row.reported_ip, "client_ip": row.client_ip, "scheme": row.scheme,
        "action": row.action, "kernel": row.kernel, "initrd": row.initrd, "args": row.args,
        "host_id": row.host_id, "deployment_id": row.deployment_id,
        "capabilities": orjson.loads(row.capabilities or "{}"),
    }


_BOOT_FIELDS = tuple(f for f in BootRecord.__dataclass_fields__)
assert _BOOT_FIELDS[-1] == "capabilities"  # written as JSON, after the plain fields
_MACHINE_FIELDS = ("mac", "first_seen", "last_seen", "uuid", "serial", "manufacturer", "product")

# The same writes as the SQLAlchemy statements in _write_batch, written out for SQLite's own driver as
# multi-row statements: a group commit of a few hundred boots is then a handful of sqlite3_step calls.
# Python's sqlite3 releases the GIL around each step and must take it back after; with executemany
# (a step per row) the writer thread queued for the GIL behind the event loop hundreds of times per
# commit, commits took 4x their CPU time, and the requests waiting on them left the loop idle.
_SQLITE_ROWS = {  # table -> (SQL before the VALUES rows, one row's placeholders, SQL after the rows)
    "boots": (f"INSERT INTO boots ({', '.join(_BOOT_FIELDS)}) VALUES ", "(" + ", ".join("?" * len(_BOOT_FIELDS)) + ")",
              ""),
    # Another server (or a slower batch) may write an older boot after a newer one: last_seen and the
    # identity fields follow the newest boot, first_seen the oldest (SQLite's two-argument max/min).
    "machines": (f"INSERT INTO machines ({', '.join(_MACHINE_FIELDS)}) VALUES ", "(?, ?, ?, ?, ?, ?, ?)",
                 " ON CONFLICT (mac) DO UPDATE SET "
                 "last_seen = max(coalesce(machines.last_seen, excluded.last_seen), excluded.last_seen), "
                 "first_seen = min(coalesce(machines.first_seen, excluded.first_seen), excluded.first_seen), "
                 + ", ".join(f"{f} = CASE WHEN excluded.last_seen >= coalesce(machines.last_seen, excluded.last_seen) "
                             f"THEN excluded.{f} ELSE machines.{f} END"
                             for f in ("uuid", "serial", "manufacturer", "product"))),
    "events": ("INSERT INTO events (kind, time, mac, client_ip, detail) VALUES ", "(?, ?, ?, ?, ?)", ""),
    "host": ("WITH v(hid, t) AS (VALUES ", "(?, ?)",
             ") UPDATE hosts SET last_seen = max(coalesce(hosts.last_seen, v.t), v.t) FROM v WHERE hosts.id = v.hid"),
    "host_mac": ("WITH v(hid, m, t) AS (VALUES ", "(?, ?, ?)",
                 ") UPDATE host_macs SET last_seen = max(coalesce(host_macs.last_seen, v.t), v.t) FROM v "
                 "WHERE host_macs.host_id = v.hid AND host_macs.mac = v.m"),
}
_SQLITE_CHUNK = 128  # rows per statement (boots: 19 x 128 parameters, far under SQLite's limit of 32 766)


def _sqlite_rows(cur: sqlite3.Cursor, table: str, rows: list[tuple[Any, ...]]) -> None:
    """`rows` into `table` (see _SQLITE_ROWS), _SQLITE_CHUNK rows per statement."""
    head, one, tail = _SQLITE_ROWS[table]
    for i in range(0, len(rows), _SQLITE_CHUNK):
        chunk = rows[i:i + _SQLITE_CHUNK]
        cur.execute(head + ", ".join([one] * len(chunk)) + tail, [v for row in chunk for v in row])


def _per_mac(boots: list[BootRecord]) -> dict[str, dict[str, Any]]:
    """One machines row per MAC (the newest boot's fields; first_seen the oldest)."""
    per_mac: dict[str, dict[str, Any]] = {}
    for boot in sorted(boots, key=lambda b: b.time):
        first = per_mac.get(boot.mac, {}).get("first_seen", boot.time)
        per_mac[boot.mac] = {"mac": boot.mac, "first_seen": first, "last_seen": boot.time, "uuid": boot.uuid,
                             "serial": boot.serial, "manufacturer": boot.manufacturer, "product": boot.product}
    return per_mac


def _sqlite_tables(boots: list[BootRecord], events: list[dict[str, Any]],
                   touches: list[dict[str, Any]]) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """The rows of one group commit on SQLite, table by table (see _SQLITE_ROWS), in writing order
    (runs excepted: see _write_batch_sqlite)."""
    out: list[tuple[str, list[tuple[Any, ...]]]] = []
    if boots:
        dumps = orjson.dumps
        out.append(("boots", [(*(b.__dict__[f] for f in _BOOT_FIELDS[:-1]), dumps(b.capabilities).decode())
                              for b in boots]))
        out.append(("machines", [tuple(r[f] for f in _MACHINE_FIELDS) for r in _per_mac(boots).values()]))
    if events:
        out.append(("events", [(e["kind"], e["time"], e["mac"], e["client_ip"], e["detail"]) for e in events]))
    if touches:
        newest: dict[int, float] = {}  # a host booted through two MACs: its newest time (one row per host)
        for t in touches:
            newest[t["hid"]] = max(t["t"], newest.get(t["hid"], t["t"]))
        out.append(("host", list(newest.items())))
        out.append(("host_mac", [(t["hid"], t["m"], t["t"]) for t in touches]))
    return out


def _runs_of(boots: list[BootRecord]) -> list[dict[str, Any]]:
    return [{"deployment_id": b.deployment_id, "host_id": b.host_id, "boot_id": b.id, "started": b.time}
            for b in boots if b.deployment_id is not None and b.host_id is not None]


def _native_statements(tables: list[tuple[str, list[tuple[Any, ...]]]]) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """_sqlite_tables as (one-row statement, rows) for SqliteWriter (it steps each row in C)."""
    return [("".join(_SQLITE_ROWS[table]), rows) for table, rows in tables]


def _write_batch_sqlite(conn: Connection, boots: list[BootRecord], events: list[dict[str, Any]],
                        touches: list[dict[str, Any]]) -> None:
    """_write_batch on SQLite: the same rows through the driver, in the caller's transaction (the same
    DBAPI connection)."""
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        for table, rows in _sqlite_tables(boots, events, touches):
            _sqlite_rows(cur, table, rows)
            if table == "machines" and (runs := _runs_of(boots)):
                upsert_runs(conn, runs)
    finally:
        cur.close()


def _write_records(conn: Connection, boots: list[BootRecord], records: list[EventRecord],
                   touches: list[dict[str, Any]]) -> None:
    """_write_batch with the events as records (their rows built here, on the writer's side)."""
    _write_batch(conn, boots, [_event_row(e) for e in records], touches)


def _later(conn: Connection, old: Any, new: Any) -> Any:
    """The later of a column's stored time and a new one (the new one when none is stored)."""
    if conn.dialect.name == "postgresql":
        return func.greatest(old, new)  # GREATEST skips NULL
    return func.max(func.coalesce(old, new), new)  # SQLite's two-argument max


def _earlier(conn: Connection, old: Any, new: Any) -> Any:
    """The earlier of a column's stored time and a new one (the new one when none is stored)."""
    if conn.dialect.name == "postgresql":
        return func.least(old, new)
    return func.min(func.coalesce(old, new), new)


def _write_batch(conn: Connection, boots: list[BootRecord], events: list[dict[str, Any]],
                 touches: list[dict[str, Any]]) -> None:
    """One group-commit round: boots (with their per-MAC rows and runs), their events, deferred
    last_seen updates."""
    if conn.dialect.name == "sqlite" and conn.dialect.driver == "pysqlite":
        _write_batch_sqlite(conn, boots, events, touches)
        return
    m, h, hm = schema.machines, schema.hosts, schema.host_macs
    if boots:
        rows = []
        for boot in boots:
            values = dict(boot.__dict__)
            values["capabilities"] = orjson.dumps(boot.capabilities).decode()
            rows.append(values)
        conn.execute(insert(schema.boots), rows)
        # one row per MAC (the newest boot's fields; first_seen the oldest); an upsert, so two processes
        # recording a MAC's first boot at once both succeed, and an older boot written after a newer one
        # (another server's batch) changes neither last_seen nor the identity fields
        per_mac = _per_mac(boots)
        ins = dialect_insert(conn, m)
        newer = ins.excluded.last_seen >= func.coalesce(m.c.last_seen, ins.excluded.last_seen)
        conn.execute(ins.on_conflict_do_update(index_elements=[m.c.mac], set_={
            "last_seen": _later(conn, m.c.last_seen, ins.excluded.last_seen),
            "first_seen": _earlier(conn, m.c.first_seen, ins.excluded.first_seen),
            **{k: case((newer, getattr(ins.excluded, k)), else_=getattr(m.c, k))
               for k in ("uuid", "serial", "manufacturer", "product")}}),
            list(per_mac.values()))
        if runs := _runs_of(boots):
            upsert_runs(conn, runs)
    if events:
        conn.execute(insert(schema.events), events)
    if touches:
        conn.execute(update(h).where(h.c.id == bindparam("hid"))
                     .values(last_seen=_later(conn, h.c.last_seen, bindparam("t"))), touches)
        conn.execute(update(hm).where((hm.c.host_id == bindparam("hid")) & (hm.c.mac == bindparam("m")))
                     .values(last_seen=_later(conn, hm.c.last_seen, bindparam("t"))), touches)


class Store(InventoryMixin):
    """Async access to the database. Create with :meth:`open`; close with :meth:`close`."""

    def __init__(self, engine: AsyncEngine, sync_engine: Engine | None = None) -> None:
        self.engine = engine
        self._write_lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self._index: IdentityIndex | None = None
        self._reader: sqlite3.Connection | None = None
        self._sync_engine = sync_engine
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="bootgate-store") if sync_engine else None
        self._write_queue: list[tuple[BootRecord, EventRecord | None, asyncio.Future[None]]] = []
        self._native_writer: Any = None  # SQLite file: _native.SqliteWriter when it can share Python's libsqlite3
        self._writer: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, url: str) -> Store:
        u: URL = make_url(url)
        kwargs: dict[str, Any] = {}
        sqlite_file = u.get_backend_name() == "sqlite" and bool(u.database) and u.database != ":memory:"
        if sqlite_file:
            Path(str(u.database)).parent.mkdir(parents=True, exist_ok=True)
        elif u.get_backend_name() != "sqlite":
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        engine = create_async_engine(u, **kwargs)
        if u.get_backend_name() == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(migrate.upgrade)
        except BaseException:
            await engine.dispose()
            raise
        sync_engine = None
        if sqlite_file:
            # the writer thread's own connection to the same file (Store._write_sync)
            sync_engine = create_engine(u.set(drivername="sqlite+pysqlite"), pool_size=1, max_overflow=0)
            event.listen(sync_engine, "connect", _sqlite_pragmas)
        store = cls(engine, sync_engine)
        if sqlite_file:
            store._reader = _sqlite_reader(str(u.database))
            store._native_writer = _native_writer(str(u.database))
        return store

    async def _write_native(self, boots: list[BootRecord], records: list[EventRecord],
                            touches: list[dict[str, Any]]) -> None:
        """One group commit through the SqliteWriter, on the writer thread, under the writer lock."""
        assert self._write_lock is not None and self._executor is not None
        writer = self._native_writer

        def write() -> None:
            events = [_event_row(e) for e in records]
            writer.write(_native_statements(_sqlite_tables(boots, events, touches)))
        async with self._write_lock:
            await asyncio.get_running_loop().run_in_executor(self._executor, write)

    async def close(self) -> None:
        await self.flush_writes()
        refresh = self.__dict__.get("_index_refresh")
        if refresh is not None:
            await asyncio.gather(refresh, return_exceptions=True)
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._native_writer is not None:
            self._native_writer.close()
            self._native_writer = None
        if self._sync_engine is not None:
            self._sync_engine.dispose()
            self._sync_engine = None
        await self.engine.dispose()

    # machines and actions

    async def record_boot(self, boot: BootRecord, event: EventRecord | None = None) -> None:
        """Stores a boot and updates (or creates) the machine it came from; returns once committed.

        Group commit: the boots and deferred last_seen updates (identify) queued while one transaction
        commits are written together in the next one, so the store sees one write transaction per
        round instead of one per request. A failed round fails its callers. `event` (the boot's event)
        is written in the same transaction: an answered boot always has it. A boot that names a
        deployment (and a host) records that deployment's run in the same transaction too (see
        `upsert_runs`)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._write_queue.append((boot, event, fut))
        self._schedule_writes()
        await fut

    def _schedule_writes(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_batches())

    async def _write_batches(self) -> None:
        while self._write_queue or self.__dict__.get("_touches"):
            batch, self._write_queue = self._write_queue[:WRITE_BATCH], self._write_queue[WRITE_BATCH:]
            touches = self._take_touches()
            try:
                # the rows are built on the writer's side (its thread for a SQLite file), not the event loop's
                boots = [b for b, _, _ in batch]
                records = [e for _, e, _ in batch if e is not None]
                if self._native_writer is not None and not _runs_of(boots):
                    await self._write_native(boots, records, touches)
                else:
                    await self._write_sync(_write_records, boots, records, touches)
            except BaseException as e:
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e if isinstance(e, Exception) else RuntimeError("store writer stopped"))
                if not isinstance(e, Exception):
                    raise
                continue
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_result(None)

    async def flush_writes(self) -> None:
        """Waits until every queued identification, boot and touch is written."""
        await self.flush_identify()
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)
        if self._write_queue or self.__dict__.get("_touches"):
            self._schedule_writes()
            await self.flush_writes()

    async def get_action(self, mac: str) -> MachineAction | None:
        return (await self.identity_index()).actions.get(mac)

    async def set_action(self, mac: str, action: MachineAction) -> None:
        a, m = schema.actions, schema.machines
        now = time.time()
        values = {"kernel": action.kernel, "initrd": action.initrd, "args": action.args, "updated": now}
        async with self._begin() as conn:
            res = await conn.execute(update(a).where(a.c.mac == mac).values(**values))
            if res.rowcount == 0:
                await conn.execute(insert(a).values(mac=mac, **values))
            exists = (await conn.execute(select(m.c.mac).where(m.c.mac == mac))).first()
            if exists is None:
                await conn.execute(insert(m).values(mac=mac))
            await self._identity_changed(conn)

    async def delete_action(self, mac: str) -> bool:
        a = schema.actions
        async with self._begin() as conn:
            res = await conn.execute(delete(a).where(a.c.mac == mac))
            await self._identity_changed(conn)
        return bool(res.rowcount)

    async def list_machines(self) -> list[dict[str, Any]]:
        m, a, b = schema.machines, schema.actions, schema.boots
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                select(m, a.c.kernel, a.c.initrd, a.c.args, a.c.updated)
                .select_from(m.outerjoin(a, a.c.mac == m.c.mac))
                .order_by(m.c.mac)
            )).all()
            latest = (
                select(b.c.mac, func.max(b.c.time).label("t")).group_by(b.c.mac).subquery()
            )
            last_rows = (await conn.execute(
                select(b).join(latest, (b.c.mac == latest.c.mac) & (b.c.time == latest.c.t))
            )).all()
        last = {r.mac: _boot_dict(r) for r in last_rows}
        out = []
        for r in rows:
            action = None
            if r.kernel is not None:
                action = {"kernel": r.kernel, "initrd": r.initrd, "args": r.args, "updated": r.updated}
            out.append({
                "mac": r.mac, "uuid": r.uuid, "serial": r.serial, "manufacturer": r.manufacturer,
                "product": r.product, "first_seen": r.first_seen, "last_seen": r.last_seen,
                "action": action, "last_boot": last.get(r.mac),
            })
        return out

    # boots and statuses

    async def list_boots(self, mac: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        b, s = schema.boots, schema.boot_statuses
        q = select(b).order_by(b.c.time.desc(), b.c.id).limit(limit)
        if mac is not None:
            q = q.where(b.c.mac == mac)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
            ids = [r.id for r in rows]
            statuses: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
            if ids:
                srows = (await conn.execute(
                    select(s).where(s.c.boot_id.in_(ids)).order_by(s.c.id)
                )).all()
                for sr in srows:
                    statuses[sr.boot_id].append({"time": sr.time, "state": sr.state, "message": sr.message})
        out = []
        for r in rows:
            d = _boot_dict(r)
            d["statuses"] = statuses[r.id]
            out.append(d)
        return out

    async def get_boot(self, boot_id: str) -> dict[str, Any] | None:
        b = schema.boots
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(b).where(b.c.id == boot_id))).first()
        return _boot_dict(row) if row is not None else None

    async def add_status(self, boot_id: str, state: str, message: str, at: float | None = None,
                         rename: str | None = None) -> bool:
        """Records a status for a boot; False when the boot is unknown."""
        if state not in BOOT_STATES:
            raise ValueError(f"state {state!r} is not one of {', '.join(BOOT_STATES)}")
        b = schema.boots
        async with self._begin() as conn:
            exists = (await conn.execute(select(b.c.id).where(b.c.id == boot_id))).first()
            if exists is None:
                return False
            now = time.time() if at is None else at
            await conn.execute(insert(schema.boot_statuses).values(
                boot_id=boot_id, time=now, state=state, message=message))
            await self._status_effects(conn, boot_id, state, now, rename)
        return True

    # events

    async def add_events(self, records: list[EventRecord]) -> None:
        if not records:
            return
        rows = [_event_row(r) for r in records]
        async with self._begin() as conn:
            await conn.execute(insert(schema.events), rows)

    async def list_events(self, *, kind: str | None = None, mac: str | None = None,
                          client_ip: str | None = None, limit: int = 100,
                          before_id: int | None = None) -> list[dict[str, Any]]:
        e = schema.events
        q = select(e).order_by(e.c.id.desc()).limit(limit)
        if kind is not None:
            q = q.where(e.c.kind == kind)
        if mac is not None:
            q = q.where(e.c.mac == mac)
        if client_ip is not None:
            q = q.where(e.c.client_ip == client_ip)
        if before_id is not None:
            q = q.where(e.c.id < before_id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [{"id": r.id, "time": r.time, "kind": r.kind, "mac": r.mac, "client_ip": r.client_ip,
                 "detail": orjson.loads(r.detail)} for r in rows]
