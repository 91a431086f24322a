"""Inventory (hosts by identity), collections, deployments, runs, approvals, audit, API tokens, reports."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime
import hashlib
import io
import logging
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, TypeVar

import orjson
from sqlalchemy import ColumnElement, Connection, Engine, and_, bindparam, delete, func, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..policy.deploy import Collection, Deployment, Profile
from ..policy.identity import Candidate, Identity, Match, good_serial, good_uuid, match_identity
from ..policy.rules import HostFacts, in_collection
from . import schema
from .index import (CHECK_INTERVAL, Changes, HostRow, IdentityIndex, MacRow, bump_generation, read_generation,
                    read_generation_sqlite)

log = logging.getLogger("bootgate.store")

__all__ = ["Conflict", "InventoryMixin", "NotFound", "ROLES", "REPORT_KEYS", "render_name"]

IDENTIFY_BATCH = 200  # identifications (registrations) per group-commit transaction
_T = TypeVar("_T")

ROLES = ("read-only", "operator", "admin")
REPORT_KEYS = ("day", "collection", "model", "result")


class NotFound(Exception):
    pass


class Conflict(Exception):
    pass


def _j(value: Any) -> str:
    return orjson.dumps(value).decode()


_NAME_PART = re.compile(r"\{([a-z0-9|]+)\}")


def render_name(pattern: str, *, uuid: str, serial: str, mac: str, host_id: int) -> str:
    """A host name from a pattern: {serial}, {uuid}, {uuid8}, {mac}, {id}; `a|b` takes the first
    trustworthy one. Only letters, digits and '-' survive; at most 63 characters."""
    u = good_uuid(uuid)
    values = {"serial": good_serial(serial), "uuid": u, "uuid8": u[:8], "mac": mac.replace(":", ""),
              "id": str(host_id)}

    def sub(m: re.Match[str]) -> str:
        for alt in m.group(1).split("|"):
            if values.get(alt):
                return values[alt]
        return values["mac"]

    name = re.sub(r"[^A-Za-z0-9-]+", "-", _NAME_PART.sub(sub, pattern)).strip("-")[:63].strip("-")
    return name or f"host-{host_id}"


def _host_dict(r: Any, macs: Sequence[str] = ()) -> dict[str, Any]:
    return {"id": r.id, "name": r.name, "uuid": r.uuid, "serial": r.serial, "manufacturer": r.manufacturer,
            "product": r.product, "known": bool(r.known), "registered": r.registered, "last_seen": r.last_seen,
            "installed_at": r.installed_at, "wipe_approved": bool(r.wipe_approved), "macs": list(macs)}


def _deployment_dict(r: Any) -> dict[str, Any]:
    return {"id": r.id, "name": r.name, "collection_id": r.collection_id, "profile": orjson.loads(r.profile),
            "intent": r.intent, "countdown": r.countdown, "window_start": r.window_start,
            "window_end": r.window_end, "one_shot": bool(r.one_shot), "require_approval": bool(r.require_approval),
            "enabled": bool(r.enabled), "priority": r.priority, "created": r.created,
            "require_login": bool(r.require_login)}


def deployment_from_row(r: Any) -> Deployment:
    return Deployment(id=r.id, name=r.name, collection_id=r.collection_id,
                      profile=Profile.from_json(orjson.loads(r.profile)), intent=r.intent, countdown=r.countdown,
                      window_start=r.window_start, window_end=r.window_end, one_shot=bool(r.one_shot),
                      require_approval=bool(r.require_approval), enabled=bool(r.enabled), priority=r.priority,
                      require_login=bool(r.require_login))


def _collection_dict(r: Any, members: Sequence[int] = ()) -> dict[str, Any]:
    return {"id": r.id, "name": r.name, "description": r.description, "rules": orjson.loads(r.rules),
            "members": list(members), "created": r.created, "require_login": bool(r.require_login)}


def dialect_insert(conn: AsyncConnection | Connection, table: Any) -> Any:
    """INSERT with the dialect's ON CONFLICT support (SQLite and PostgreSQL spell it alike)."""
    if conn.dialect.name == "postgresql":
        return pg_insert(table)
    return sqlite_insert(table)


def serialize(conn: Connection, keys: Sequence[str]) -> None:
    """Serializes this transaction against every other one (in any process on the same database) that
    names one of `keys`, until it ends. PostgreSQL: transaction-scoped advisory locks, taken in a fixed
    (sorted) order in one statement, so two transactions cannot deadlock. SQLite: a database has one
    writer at a time, so the transaction starts by writing (it then holds the write lock; others wait
    for it, busy_timeout)."""
    if conn.dialect.name == "postgresql":
        ids = sorted({int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8).digest(), "big", signed=True)
                      for k in keys})
        conn.execute(text("SELECT count(pg_advisory_xact_lock(k)) FROM "
                          "(SELECT unnest(CAST(:ids AS bigint[])) AS k ORDER BY 1) AS s"), {"ids": ids})
    elif conn.dialect.name == "sqlite":
        t = schema.store_settings
        conn.execute(update(t).where(t.c.key == "").values(value=t.c.value))


def identity_keys(ident: Identity) -> list[str]:
    """The serialization keys of an identification: its MAC and its trustworthy UUID and serial."""
    u, s = ident.good_uuid, ident.good_serial
    return [f"mac:{ident.mac}"] + ([f"uuid:{u}"] if u else []) + ([f"serial:{s}"] if s else [])


def audit_row(actor: str, action: str, target: str, allowed: bool | None, detail: dict[str, Any],
              now: float) -> dict[str, Any]:
    return {"time": now, "actor": actor[:128], "action": action, "target": target[:256], "allowed": allowed,
            "detail": _j(detail)}


def _decide_identity(ident: Identity, rows: Sequence[Any], mac_rows: Sequence[Any], shared: bool
                     ) -> tuple[Match, Any, bool]:
    """(match, the matched host's row or None, whether that host already has this MAC)."""
    macs: dict[int, set[str]] = {r.id: set() for r in rows}
    for mr in mac_rows:
        macs[mr.host_id].add(mr.mac)
    m = match_identity(ident, [Candidate(r.id, r.uuid, r.serial, frozenset(macs[r.id])) for r in rows], shared)
    row = next((r for r in rows if r.id == m.host_id), None)
    return m, row, m.host_id is not None and ident.mac in macs.get(m.host_id, ())


def _unchanged(row: Any, ident: Identity, manufacturer: str, product: str) -> bool:
    """True when identifying would write nothing but last_seen to this host row."""
    u, s = ident.good_uuid, ident.good_serial
    return ((not u or row.uuid == u) and (not s or row.serial == s) and (not manufacturer or row.manufacturer == manufacturer)
            and (not product or row.product == product))


def _candidate_queries() -> dict[Any, Any]:
    """The identification writer's statements, built once (a statement built per call costs more Python
    than executing it): candidates by MAC [, UUID] [, serial]; their MACs; the shared flag; a name
    check; the inserts of a new host and of its MAC."""
    h, hm, sm = schema.hosts, schema.host_macs, schema.shared_macs
    by_mac = h.c.id.in_(select(hm.c.host_id).where(hm.c.mac == bindparam("mac")))
    cols = select(h.c.id, h.c.uuid, h.c.serial, h.c.manufacturer, h.c.product)
    q: dict[Any, Any] = {(bool(u), bool(s)): cols.where(or_(by_mac, *([h.c.uuid == bindparam("u")] if u else []),
                                                             *([h.c.serial == bindparam("s")] if s else []))).limit(50)
                         for u in (0, 1) for s in (0, 1)}
    q["macs"] = select(hm.c.host_id, hm.c.mac).where(hm.c.host_id.in_(bindparam("ids", expanding=True)))
    q["shared"] = select(sm.c.mac).where(sm.c.mac == bindparam("mac"))
    q["name"] = select(h.c.id).where(h.c.name == bindparam("name"))
    q["host"] = insert(h).returning(h.c.id)
    q["mac"] = insert(hm)
    return q


_Q = _candidate_queries()


def _candidates(conn: Connection, ident: Identity) -> tuple[Match, Any, bool]:
    """The identity decision from what the store holds: (match, the matched host's row or None,
    whether that host already has this MAC)."""
    u, s = ident.good_uuid, ident.good_serial
    rows = conn.execute(_Q[(bool(u), bool(s))], {"mac": ident.mac, "u": u, "s": s}).all()
    ids = [r.id for r in rows]
    mac_rows = conn.execute(_Q["macs"], {"ids": ids}).all() if ids else []
    shared = conn.execute(_Q["shared"], {"mac": ident.mac}).first() is not None
    return _decide_identity(ident, rows, mac_rows, shared)


def setting(conn: Connection, key: str, default: Any) -> Any:
    t = schema.store_settings
    row = conn.execute(select(t.c.value).where(t.c.key == key)).first()
    return default if row is None else orjson.loads(row.value)


def _identify_batch(conn: Connection, items: Sequence[tuple[Identity, str, str, float]]
                    ) -> tuple[list[tuple[int | None, Match]], Changes]:
    """Identifies (registering the new ones) a batch of booting clients in one transaction, in order:
    a later client of the batch sees what an earlier one wrote. Serialized first on every key of the
    batch (see `serialize`), so the candidates read here cannot change before the commit."""
    h, hm, sm = schema.hosts, schema.host_macs, schema.shared_macs
    serialize(conn, [k for ident, *_ in items for k in identity_keys(ident)])
    pattern: str | None = None
    out: list[tuple[int | None, Match]] = []
    audits: list[dict[str, Any]] = []
    touched: set[int] = set()
    shared_now: list[str] = []
    for ident, manufacturer, product, now in items:
        u, s = ident.good_uuid, ident.good_serial
        m, _row, _known = _candidates(conn, ident)
        if m.mark_mac_shared:
            conn.execute(dialect_insert(conn, sm).values(mac=ident.mac, time=now, reason=m.reason)
                         .on_conflict_do_nothing())
            audits.append(audit_row("bootgate", "mac.shared", ident.mac, None, {"reason": m.reason}, now))
        host_id = m.host_id
        if host_id is None and m.register:
            if pattern is None:
                pattern = str(setting(conn, "name_pattern", "PC-{serial|uuid8}"))
            host_id, name = _register(conn, ident, manufacturer, product, now, pattern)
            audits.append(audit_row("bootgate", "host.registered", name, None,
                                    {"host_id": host_id, "mac": ident.mac, "uuid": ident.uuid,
                                     "serial": ident.serial}, now))
        elif host_id is not None:
            values: dict[str, Any] = {"last_seen": now}
            if u:
                values["uuid"] = u
            if s:
                values["serial"] = s
            if manufacturer:
                values["manufacturer"] = manufacturer
            if product:
                values["product"] = product
            conn.execute(update(h).where(h.c.id == host_id).values(**values))
            res = conn.execute(update(hm).where((hm.c.host_id == host_id) & (hm.c.mac == ident.mac))
                               .values(last_seen=now))
            if res.rowcount == 0:
                conn.execute(insert(hm).values(host_id=host_id, mac=ident.mac, first_seen=now, last_seen=now))
        out.append((host_id, m))
        if host_id is not None:
            touched.add(host_id)
        if m.mark_mac_shared:
            shared_now.append(ident.mac)
    if audits:
        conn.execute(insert(schema.audit_log), audits)
    ids = sorted(touched)
    changes = Changes(
        bump_generation(conn),
        [HostRow(*r) for r in conn.execute(select(h.c.id, h.c.uuid, h.c.serial, h.c.manufacturer, h.c.product)
                                           .where(h.c.id.in_(ids))).all()] if ids else [],
        [MacRow(*r) for r in conn.execute(select(hm.c.host_id, hm.c.mac).where(hm.c.host_id.in_(ids))).all()]
        if ids else [],
        shared_now)
    return out, changes


def _register(conn: Connection, ident: Identity, manufacturer: str, product: str, now: float, pattern: str
              ) -> tuple[int, str]:
    """A new host with its name from the pattern (made unique with its id when taken) and its MAC:
    (id, name)."""
    h = schema.hosts
    values = dict(uuid=ident.good_uuid, serial=ident.good_serial, manufacturer=manufacturer, product=product,
                  known=False, registered=now, last_seen=now, wipe_approved=False, installed_at=None)
    name = None
    if "{id" not in pattern:  # the name does not need the id: one INSERT when it is free
        name = render_name(pattern, uuid=ident.uuid, serial=ident.serial, mac=ident.mac, host_id=0)
        if name == "host-0" or conn.execute(_Q["name"], {"name": name}).first() is not None:
            name = None
    host_id = int(conn.execute(_Q["host"], {"name": name, **values}).scalar_one())
    if name is None:
        name = render_name(pattern, uuid=ident.uuid, serial=ident.serial, mac=ident.mac, host_id=host_id)
        taken = conn.execute(select(h.c.id).where((h.c.name == name) & (h.c.id != host_id))).first()
        if taken is not None:
            name = f"{name[:63 - len(str(host_id)) - 1]}-{host_id}"
        conn.execute(update(h).where(h.c.id == host_id).values(name=name))
    conn.execute(_Q["mac"], {"host_id": host_id, "mac": ident.mac, "first_seen": now, "last_seen": now})
    return host_id, name


def upsert_runs(conn: Connection, runs: list[dict[str, Any]]) -> None:
    """Deployments sent to hosts ({deployment_id, host_id, boot_id, started}), in order. A host has at
    most one unfinished run of a deployment (a unique index): sending it again before a result (a
    retried or concurrent boot, here or in another process on the same database) restarts that run
    with the newer boot instead of adding one."""
    r = schema.deployment_runs
    ins = dialect_insert(conn, r)
    stmt = ins.on_conflict_do_update(
        # the predicate as literal SQL: PostgreSQL infers a partial index only from constants
        index_elements=[r.c.deployment_id, r.c.host_id], index_where=text(schema.RUN_ACTIVE_SQL),
        set_={"boot_id": ins.excluded.boot_id, "started": ins.excluded.started, "state": "sent"})
    for run in runs:  # one at a time: a batch may send one deployment to one host twice
        conn.execute(stmt, {**run, "state": "sent"})


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class InventoryMixin:
    engine: AsyncEngine
    _reader: sqlite3.Connection | None
    _index: IdentityIndex | None
    _reader_lock = threading.Lock()  # the reader is used by one thread at a time
    _write_lock: asyncio.Lock | None  # SQLite: one writer at a time, queued here instead of busy-polling
    _sync_engine: Engine | None  # SQLite file: the same database for whole transactions in one thread hop
    _executor: ThreadPoolExecutor | None

    @contextlib.asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction. With SQLite the process's writers take turns on a lock (the database
        allows one writer; waiting here is fair and needs no busy-timeout polling)."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
        else:
            async with self._write_lock, self.engine.begin() as conn:
                yield conn

    async def _write_sync(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Runs `fn(conn, *args)` (synchronous Core) as one write transaction. SQLite file: on the
        store's own writer thread with a synchronous connection, so the whole transaction costs one
        hop between the event loop and a thread instead of one per statement (aiosqlite), under the
        same writer lock as `_begin`. Otherwise (PostgreSQL, in-memory SQLite): `run_sync` on an async
        connection."""
        if self._sync_engine is None or self._executor is None or self._write_lock is None:
            async with self._begin() as conn:
                return await conn.run_sync(fn, *args)
        sync_engine = self._sync_engine

        def tx() -> _T:
            with sync_engine.begin() as conn:
                return fn(conn, *args)

        async with self._write_lock:
            return await asyncio.get_running_loop().run_in_executor(self._executor, tx)

    # ---- identity and zero-touch registration

    async def identify(self, ident: Identity, *, manufacturer: str, product: str, now: float) -> tuple[int | None, Match]:
        """Finds (or registers) the host a booting client is; keeps its MACs and the shared-MAC list.

        A known machine that boots as it did before needs no read and no write: it is found in the
        identity index (store/index.py: in memory, kept coherent with the database; its staleness
        bound is documented there) and its last_seen is written with the next batch of boots (see
        record_boot).
        Anything else (a new machine, a new MAC, changed identity fields, a MAC seen on two machines)
        is queued for the identification writer, which handles everything queued meanwhile in one
        transaction (group commit: a storm of first boots costs one commit per batch, not per
        machine), serialized against other processes by the database (advisory locks on the
        MAC/UUID/serial of every machine in the batch / the SQLite write lock), so two first boots of
        one machine, here or in another process, register it once."""
        idx = await self.identity_index()
        key = (ident.mac, ident.uuid, ident.serial, manufacturer, product)
        hit = idx.known.get(key)
        if hit is not None:  # the same report as a known machine's earlier boot, nothing changed since
            self._touch(hit[0], ident.mac, now)
            return hit
        rows, mac_rows, shared = idx.candidates(ident)
        m, row, known = _decide_identity(ident, rows, mac_rows, shared)
        if known and row is not None and not m.mark_mac_shared and _unchanged(row, ident, manufacturer, product):
            assert m.host_id is not None
            idx.remember(key, (m.host_id, m))
            self._touch(m.host_id, ident.mac, now)
            return m.host_id, m
        if m.host_id is None and not m.register and not m.mark_mac_shared:
            return None, m  # nothing identifies the client and nothing is to be recorded about it
        fut: asyncio.Future[tuple[int | None, Match]] = asyncio.get_running_loop().create_future()
        queue: list[tuple[Identity, str, str, float, asyncio.Future[tuple[int | None, Match]]]] = \
            self.__dict__.setdefault("_ident_queue", [])
        queue.append((ident, manufacturer, product, now, fut))
        task = self.__dict__.get("_identifier")
        if task is None or task.done():
            self.__dict__["_identifier"] = asyncio.get_running_loop().create_task(self._identify_batches())
        return await fut

    async def _identify_batches(self) -> None:
        """The identification writer: everything queued while a batch commits goes in the next one. A
        unique-key collision (another process registered the same name or MAC meanwhile) or an
        operational error (a deadlock PostgreSQL broke, SQLite busy beyond its timeout) rolls the batch
        back; its machines are then identified one per transaction, each tried up to 3 times."""
        queue: list[Any] = self.__dict__["_ident_queue"]
        while queue:
            batch = queue[:IDENTIFY_BATCH]
            del queue[:IDENTIFY_BATCH]
            items = [b[:4] for b in batch]
            results: list[Any]
            try:
                results = await self._identify_tx(items)
            except (IntegrityError, OperationalError):
                results = []
                for item in items:
                    for attempt in range(3):
                        try:
                            results += await self._identify_tx([item])
                            break
                        except (IntegrityError, OperationalError) as e:
                            if attempt == 2:
                                results.append(e)
                        except Exception as e:
                            results.append(e)
                            break
            except BaseException as e:
                for *_, fut in batch:
                    if not fut.done():
                        fut.set_exception(e if isinstance(e, Exception) else RuntimeError("store writer stopped"))
                if not isinstance(e, Exception):
                    raise
                continue
            for (*_, fut), res in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(res, BaseException):
                    fut.set_exception(res)
                else:
                    fut.set_result(res)

    async def _identify_tx(self, items: list[tuple[Identity, str, str, float]]) -> list[tuple[int | None, Match]]:
        results, changes = await self._write_sync(_identify_batch, items)
        if self._index is not None:
            self._index.apply(changes)
        return results

    async def identity_index(self) -> IdentityIndex:
        """The identity index (store/index.py), loaded on first use. Every CHECK_INTERVAL seconds the
        generation counter is read (in the background: the current index keeps answering meanwhile),
        and the index is reloaded when another process changed identities."""
        idx = self._index
        if idx is not None:
            if time.monotonic() - idx.checked >= CHECK_INTERVAL:
                idx.checked = time.monotonic()  # one refresh at a time
                self.__dict__["_index_refresh"] = asyncio.get_running_loop().create_task(self._refresh_index(idx))
            return idx
        async with self.__dict__.setdefault("_index_lock", asyncio.Lock()):
            if self._index is None:
                self._index = await self._load_index(None)
            return self._index

    async def _refresh_index(self, idx: IdentityIndex) -> None:
        try:
            new = await self._load_index(idx)
        except Exception:
            log.exception("reloading the identity index failed (the current one stays in use)")
            return
        if self._index is idx and new is not idx:
            self._index = new

    async def _load_index(self, current: IdentityIndex | None) -> IdentityIndex:
        """`current` when the generation has not moved, else a fresh load (SQLite: on a thread, on the
        read-only connection; PostgreSQL: on a pooled connection)."""
        reader = self._reader
        if reader is not None:
            def load() -> IdentityIndex:
                with self._reader_lock:
                    return load_locked()

            def load_locked() -> IdentityIndex:
                assert reader is not None
                if current is not None and read_generation_sqlite(reader) == current.generation:
                    return current
                return IdentityIndex.load(lambda sql: reader.execute(sql).fetchall())
            idx = await asyncio.to_thread(load)
        else:
            def load_sa(c: Connection) -> IdentityIndex:
                if current is not None and read_generation(c) == current.generation:
                    return current
                return IdentityIndex.load(lambda sql: c.exec_driver_sql(sql).all())
            async with self.engine.connect() as conn:
                idx = await conn.run_sync(load_sa)
        idx.checked = time.monotonic()
        return idx

    async def _identity_changed(self, conn: AsyncConnection) -> None:
        """In a write transaction that changes identities, MAC sharing or per-MAC actions: bumps the
        generation (other processes reload) and drops this process's index (reloaded on next use)."""
        await conn.run_sync(bump_generation)
        self._index = None

    async def flush_identify(self) -> None:
        """Waits until every queued identification is written."""
        while (task := self.__dict__.get("_identifier")) is not None and not task.done():
            await asyncio.shield(task)

    def _touch(self, host_id: int, mac: str, now: float) -> None:
        """last_seen of a host and its MAC, written with the next batch of boots."""
        touches: dict[tuple[int, str], float] = self.__dict__.setdefault("_touches", {})
        touches[(host_id, mac)] = max(now, touches.get((host_id, mac), now))
        self._schedule_writes()

    def _schedule_writes(self) -> None:
        raise NotImplementedError  # the Store starts its batch writer

    def _take_touches(self) -> list[dict[str, Any]]:
        touches: dict[tuple[int, str], float] = self.__dict__.get("_touches") or {}
        self.__dict__["_touches"] = {}
        return [{"hid": k[0], "m": k[1], "t": t} for k, t in touches.items()]

    async def _setting(self, conn: AsyncConnection, key: str, default: Any) -> Any:
        return await conn.run_sync(setting, key, default)

    async def get_setting(self, key: str, default: Any = None) -> Any:
        async with self.engine.connect() as conn:
            return await self._setting(conn, key, default)

    async def set_setting(self, key: str, value: Any) -> None:
        t = schema.store_settings
        async with self._begin() as conn:
            res = await conn.execute(update(t).where(t.c.key == key).values(value=_j(value)))
            if res.rowcount == 0:
                await conn.execute(insert(t).values(key=key, value=_j(value)))

    # ---- the decision's inputs

    _DEPLOYMENT_CACHE_TTL = 2.0

    def _invalidate(self) -> None:
        self.__dict__["_deployment_cache"] = None

    async def _active_deployments(self, conn: AsyncConnection) -> tuple[list[Deployment], dict[int, Collection]]:
        """Enabled deployments and their collections, cached briefly (writes through this store clear it)."""
        cached = self.__dict__.get("_deployment_cache")
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        d, c = schema.deployments, schema.collections
        deps = [deployment_from_row(x) for x in (await conn.execute(select(d).where(d.c.enabled.is_(True)))).all()]
        colls = {x.id: Collection(x.id, x.name, tuple(orjson.loads(x.rules)), bool(x.require_login)) for x in (await conn.execute(
            select(c).where(c.c.id.in_({dd.collection_id for dd in deps})))).all()} if deps else {}
        self.__dict__["_deployment_cache"] = (now + self._DEPLOYMENT_CACHE_TTL, deps, colls)
        return deps, colls

    async def boot_inputs(self, host_id: int, mac: str, *, client_ip: str, reported_ip: str, buildarch: str,
                          platform: str) -> tuple[HostFacts, list[Deployment], dict[int, Collection],
                                                  frozenset[int], frozenset[int]]:
        """What the decision needs about a host. Queries only what can matter: nothing more when no
        deployment exists, the relay only when a rule asks for it, runs and approvals only when a
        deployment targets the host."""
        h, cm, r, a = schema.hosts, schema.collection_members, schema.deployment_runs, schema.approvals
        cached = self.__dict__.get("_deployment_cache")
        if cached is None or cached[0] <= time.monotonic():
            # one reload at a time: the boots arriving meanwhile wait for it instead of each reading
            async with self.__dict__.setdefault("_deployment_reload", asyncio.Lock()):
                cached = self.__dict__.get("_deployment_cache")
                if cached is None or cached[0] <= time.monotonic():
                    async with self.engine.connect() as conn:
                        await self._active_deployments(conn)
        cached = self.__dict__.get("_deployment_cache")
        if cached is not None and not cached[1]:
            # no deployment at all: nothing to read (not even a pooled connection)
            return (HostFacts(host_id=host_id, mac=mac, client_ip=client_ip, reported_ip=reported_ip,
                              buildarch=buildarch, platform=platform), [], {}, frozenset(), frozenset())
        async with self.engine.connect() as conn:
            deps, colls = await self._active_deployments(conn)
            if not deps:
                return (HostFacts(host_id=host_id, mac=mac, client_ip=client_ip, reported_ip=reported_ip,
                                  buildarch=buildarch, platform=platform), [], {}, frozenset(), frozenset())
            row = (await conn.execute(select(h).where(h.c.id == host_id))).first()
            if row is None:
                raise NotFound(f"host {host_id}")
            static = frozenset(x.collection_id for x in (await conn.execute(
                select(cm.c.collection_id).where(cm.c.host_id == host_id))).all())
            relay = ""
            if any("relay" in rule for coll in colls.values() for rule in coll.rules):
                relay = await self._last_relay(conn, mac)
            facts = HostFacts(host_id=host_id, mac=mac, name=row.name or "", uuid=row.uuid, serial=row.serial,
                              manufacturer=row.manufacturer, product=row.product, known=bool(row.known),
                              installed=row.installed_at is not None, wipe_approved=bool(row.wipe_approved),
                              client_ip=client_ip, reported_ip=reported_ip, relay=relay, buildarch=buildarch,
                              platform=platform, static_collections=static)
            if not any(dd.collection_id in colls and in_collection(dd.collection_id, colls[dd.collection_id].rules,
                                                                    facts) for dd in deps):
                return facts, deps, colls, frozenset(), frozenset()
            done = frozenset(x.deployment_id for x in (await conn.execute(
                select(r.c.deployment_id).where((r.c.host_id == host_id) & (r.c.state == "success")))).all())
            approved = frozenset(x.deployment_id for x in (await conn.execute(
                select(a.c.deployment_id).where(a.c.host_id == host_id))).all())
        return facts, deps, colls, done, approved

    async def _last_relay(self, conn: AsyncConnection, mac: str) -> str:
        """The relay agent (giaddr) of the newest DHCP event from this MAC, '' if none."""
        e = schema.events
        row = (await conn.execute(select(e.c.detail).where((e.c.kind == "dhcp") & (e.c.mac == mac))
                                  .order_by(e.c.id.desc()).limit(1))).first()
        if row is None:
            return ""
        relay = orjson.loads(row.detail).get("relay") or ""
        return str(relay) if relay not in ("0.0.0.0",) else ""

    # ---- deployment runs and statuses

    async def record_run(self, deployment_id: int, host_id: int, boot_id: str, now: float) -> None:
        """A deployment sent to a host (see `upsert_runs`); the boot names the deployment."""
        def write(conn: Connection) -> None:
            upsert_runs(conn, [{"deployment_id": deployment_id, "host_id": host_id, "boot_id": boot_id,
                                "started": now}])
            conn.execute(update(schema.boots).where(schema.boots.c.id == boot_id).values(deployment_id=deployment_id))
        await self._write_sync(write)

    async def _status_effects(self, conn: AsyncConnection, boot_id: str, state: str, now: float,
                              rename: str | None) -> None:
        """A status from an installer: runs and the host follow it (success marks the host installed)."""
        r, h, b = schema.deployment_runs, schema.hosts, schema.boots
        boot = (await conn.execute(select(b.c.host_id, b.c.deployment_id).where(b.c.id == boot_id))).first()
        if boot is None or boot.host_id is None:
            return
        # this boot's run, or (a boot whose run was restarted by a concurrent boot) the open run of its deployment
        mine = r.c.boot_id == boot_id
        if boot.deployment_id is not None:
            mine = or_(mine, (r.c.deployment_id == boot.deployment_id) & (r.c.host_id == boot.host_id)
                       & schema.RUN_ACTIVE)
        if state in ("started", "step"):
            await conn.execute(update(r).where(mine & (r.c.state == "sent")).values(state="running"))
        elif state in ("success", "failure"):
            await conn.execute(update(r).where(mine).values(state=state, finished=now))
            if state == "success":
                await conn.execute(update(h).where(h.c.id == boot.host_id)
                                   .values(installed_at=now, wipe_approved=False))
        if rename:
            name = re.sub(r"[^A-Za-z0-9-]+", "-", rename).strip("-")[:63]
            if name:
                clash = (await conn.execute(select(h.c.id).where((h.c.name == name) & (h.c.id != boot.host_id)))
                         ).first()
                if clash is None:
                    await conn.execute(update(h).where(h.c.id == boot.host_id).values(name=name))
                    await self._audit(conn, "installer", "host.renamed", name, True,
                                      {"host_id": boot.host_id, "boot_id": boot_id}, now)
                else:
                    await self._audit(conn, "installer", "host.renamed", name, False,
                                      {"host_id": boot.host_id, "boot_id": boot_id, "reason": "name taken"}, now)

    # ---- hosts

    async def list_hosts(self, *, limit: int = 100, after: int = 0, collection: int | None = None
                         ) -> list[dict[str, Any]]:
        h, hm, cm = schema.hosts, schema.host_macs, schema.collection_members
        q = select(h).where(h.c.id > after).order_by(h.c.id).limit(limit)
        if collection is not None:
            q = q.where(h.c.id.in_(select(cm.c.host_id).where(cm.c.collection_id == collection)))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
            macs: dict[int, list[str]] = {r.id: [] for r in rows}
            if rows:
                for mr in (await conn.execute(select(hm.c.host_id, hm.c.mac).where(hm.c.host_id.in_(list(macs)))
                                              .order_by(hm.c.first_seen))).all():
                    macs[mr.host_id].append(mr.mac)
        return [_host_dict(r, macs[r.id]) for r in rows]

    async def get_host(self, host_id: int) -> dict[str, Any]:
        h, hm, cm = schema.hosts, schema.host_macs, schema.collection_members
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(h).where(h.c.id == host_id))).first()
            if row is None:
                raise NotFound(f"no host {host_id}")
            macs = [x.mac for x in (await conn.execute(select(hm.c.mac).where(hm.c.host_id == host_id)
                                                       .order_by(hm.c.first_seen))).all()]
            static = [x.collection_id for x in (await conn.execute(
                select(cm.c.collection_id).where(cm.c.host_id == host_id))).all()]
        d = _host_dict(row, macs)
        d["static_collections"] = static
        return d

    async def update_host(self, host_id: int, actor: str, **values: Any) -> dict[str, Any]:
        h = schema.hosts
        allowed = {"name", "known", "wipe_approved", "installed_at"}
        bad = set(values) - allowed
        if bad:
            raise ValueError(f"cannot change {', '.join(sorted(bad))}")
        async with self._begin() as conn:
            try:
                res = await conn.execute(update(h).where(h.c.id == host_id).values(**values))
            except IntegrityError:
                raise Conflict(f"name {values.get('name')!r} is taken") from None
            if res.rowcount == 0:
                raise NotFound(f"no host {host_id}")
            await self._audit(conn, actor, "host.updated", str(host_id), None, values, time.time())
        return await self.get_host(host_id)

    async def shared_mac_list(self) -> list[dict[str, Any]]:
        sm = schema.shared_macs
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(sm).order_by(sm.c.mac))).all()
        return [{"mac": r.mac, "time": r.time, "reason": r.reason} for r in rows]

    async def set_mac_shared(self, mac: str, shared: bool, actor: str) -> None:
        sm = schema.shared_macs
        now = time.time()
        async with self._begin() as conn:
            await conn.execute(delete(sm).where(sm.c.mac == mac))
            if shared:
                await conn.execute(insert(sm).values(mac=mac, time=now, reason=f"marked by {actor}"))
            await self._identity_changed(conn)
            await self._audit(conn, actor, "mac.shared" if shared else "mac.unshared", mac, None, {}, now)

    # ---- collections

    async def create_collection(self, name: str, rules: list[dict[str, Any]], description: str, actor: str,
                                require_login: bool = False) -> dict[str, Any]:
        c = schema.collections
        now = time.time()
        self._invalidate()
        async with self._begin() as conn:
            try:
                res = await conn.execute(insert(c).values(name=name, rules=_j(rules), description=description,
                                                          created=now, require_login=require_login).returning(c.c.id))
            except IntegrityError:
                raise Conflict(f"a collection named {name!r} exists") from None
            cid = int(res.scalar_one())
            await self._audit(conn, actor, "collection.created", name, None, {"id": cid, "rules": rules}, now)
        return await self.get_collection(cid)

    async def get_collection(self, cid: int) -> dict[str, Any]:
        c, cm = schema.collections, schema.collection_members
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(c).where(c.c.id == cid))).first()
            if row is None:
                raise NotFound(f"no collection {cid}")
            members = [x.host_id for x in (await conn.execute(
                select(cm.c.host_id).where(cm.c.collection_id == cid).order_by(cm.c.host_id))).all()]
        return _collection_dict(row, members)

    async def collection_id(self, ref: str) -> int:
        """A collection's id from its id or name."""
        c = schema.collections
        async with self.engine.connect() as conn:
            q = select(c.c.id).where(c.c.id == int(ref)) if ref.isdigit() else select(c.c.id).where(c.c.name == ref)
            row = (await conn.execute(q)).first()
        if row is None:
            raise NotFound(f"no collection {ref!r}")
        return int(row.id)

    async def list_collections(self, *, limit: int = 100, after: int = 0) -> list[dict[str, Any]]:
        c, cm = schema.collections, schema.collection_members
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(c).where(c.c.id > after).order_by(c.c.id).limit(limit))).all()
            counts = {x.collection_id: x.n for x in (await conn.execute(
                select(cm.c.collection_id, func.count().label("n")).group_by(cm.c.collection_id))).all()}
        out = []
        for r in rows:
            d = _collection_dict(r)
            del d["members"]
            d["static_members"] = counts.get(r.id, 0)
            out.append(d)
        return out

    async def update_collection(self, cid: int, actor: str, **values: Any) -> dict[str, Any]:
        c = schema.collections
        if "rules" in values:
            values["rules"] = _j(values["rules"])
        self._invalidate()
        async with self._begin() as conn:
            try:
                res = await conn.execute(update(c).where(c.c.id == cid).values(**values))
            except IntegrityError:
                raise Conflict("a collection with that name exists") from None
            if res.rowcount == 0:
                raise NotFound(f"no collection {cid}")
            await self._audit(conn, actor, "collection.updated", str(cid), None,
                              {k: (orjson.loads(v) if k == "rules" else v) for k, v in values.items()}, time.time())
        return await self.get_collection(cid)

    async def delete_collection(self, cid: int, actor: str) -> None:
        c, cm, d = schema.collections, schema.collection_members, schema.deployments
        self._invalidate()
        async with self._begin() as conn:
            used = (await conn.execute(select(d.c.id).where(d.c.collection_id == cid).limit(1))).first()
            if used is not None:
                raise Conflict(f"collection {cid} has deployments: delete them first")
            await conn.execute(delete(cm).where(cm.c.collection_id == cid))
            res = await conn.execute(delete(c).where(c.c.id == cid))
            if res.rowcount == 0:
                raise NotFound(f"no collection {cid}")
            await self._audit(conn, actor, "collection.deleted", str(cid), None, {}, time.time())

    async def set_member(self, cid: int, host_id: int, member: bool, actor: str) -> None:
        cm, c, h = schema.collection_members, schema.collections, schema.hosts
        async with self._begin() as conn:
            if (await conn.execute(select(c.c.id).where(c.c.id == cid))).first() is None:
                raise NotFound(f"no collection {cid}")
            if (await conn.execute(select(h.c.id).where(h.c.id == host_id))).first() is None:
                raise NotFound(f"no host {host_id}")
            await conn.execute(delete(cm).where((cm.c.collection_id == cid) & (cm.c.host_id == host_id)))
            if member:
                await conn.execute(insert(cm).values(collection_id=cid, host_id=host_id))
            await self._audit(conn, actor, "collection.member.added" if member else "collection.member.removed",
                              str(cid), None, {"host_id": host_id}, time.time())

    # ---- deployments

    async def create_deployment(self, values: dict[str, Any], actor: str) -> dict[str, Any]:
        d = schema.deployments
        now = time.time()
        row = dict(values)
        row["profile"] = _j(row["profile"])
        self._invalidate()
        async with self._begin() as conn:
            try:
                res = await conn.execute(insert(d).values(created=now, **row).returning(d.c.id))
            except IntegrityError:
                raise Conflict(f"a deployment named {values['name']!r} exists, or its collection does not") from None
            did = int(res.scalar_one())
            await self._audit(conn, actor, "deployment.created", values["name"], None, {"id": did, **values}, now)
        return await self.get_deployment(did)

    async def get_deployment(self, did: int) -> dict[str, Any]:
        d = schema.deployments
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(d).where(d.c.id == did))).first()
        if row is None:
            raise NotFound(f"no deployment {did}")
        return _deployment_dict(row)

    async def deployment(self, did: int) -> Deployment | None:
        d = schema.deployments
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(d).where(d.c.id == did))).first()
        return None if row is None else deployment_from_row(row)

    async def list_deployments(self, *, limit: int = 100, after: int = 0) -> list[dict[str, Any]]:
        d = schema.deployments
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(d).where(d.c.id > after).order_by(d.c.id).limit(limit))).all()
        return [_deployment_dict(r) for r in rows]

    async def update_deployment(self, did: int, values: dict[str, Any], actor: str) -> dict[str, Any]:
        d = schema.deployments
        row = dict(values)
        if "profile" in row:
            row["profile"] = _j(row["profile"])
        self._invalidate()
        async with self._begin() as conn:
            try:
                res = await conn.execute(update(d).where(d.c.id == did).values(**row))
            except IntegrityError:
                raise Conflict("name taken or collection missing") from None
            if res.rowcount == 0:
                raise NotFound(f"no deployment {did}")
            await self._audit(conn, actor, "deployment.updated", str(did), None, values, time.time())
        return await self.get_deployment(did)

    async def delete_deployment(self, did: int, actor: str) -> None:
        d, a = schema.deployments, schema.approvals
        self._invalidate()
        async with self._begin() as conn:
            await conn.execute(delete(a).where(a.c.deployment_id == did))
            res = await conn.execute(delete(d).where(d.c.id == did))
            if res.rowcount == 0:
                raise NotFound(f"no deployment {did}")
            await self._audit(conn, actor, "deployment.deleted", str(did), None, {}, time.time())

    async def list_runs(self, *, host_id: int | None = None, deployment_id: int | None = None, limit: int = 100,
                        after: int = 0) -> list[dict[str, Any]]:
        r = schema.deployment_runs
        q = select(r).where(r.c.id > after).order_by(r.c.id).limit(limit)
        if host_id is not None:
            q = q.where(r.c.host_id == host_id)
        if deployment_id is not None:
            q = q.where(r.c.deployment_id == deployment_id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [{"id": x.id, "deployment_id": x.deployment_id, "host_id": x.host_id, "boot_id": x.boot_id,
                 "started": x.started, "state": x.state, "finished": x.finished} for x in rows]

    # ---- approvals

    async def approve(self, did: int, host_id: int, actor: str, note: str = "") -> dict[str, Any]:
        a, d, h = schema.approvals, schema.deployments, schema.hosts
        now = time.time()
        async with self._begin() as conn:
            if (await conn.execute(select(d.c.id).where(d.c.id == did))).first() is None:
                raise NotFound(f"no deployment {did}")
            if (await conn.execute(select(h.c.id).where(h.c.id == host_id))).first() is None:
                raise NotFound(f"no host {host_id}")
            await conn.execute(delete(a).where((a.c.deployment_id == did) & (a.c.host_id == host_id)))
            res = await conn.execute(insert(a).values(deployment_id=did, host_id=host_id, approved_by=actor,
                                                      time=now, note=note).returning(a.c.id))
            aid = int(res.scalar_one())
            await self._audit(conn, actor, "approval.granted", f"{did}/{host_id}", True, {"note": note}, now)
        return {"id": aid, "deployment_id": did, "host_id": host_id, "approved_by": actor, "time": now, "note": note}

    async def revoke(self, aid: int, actor: str) -> None:
        a = schema.approvals
        async with self._begin() as conn:
            res = await conn.execute(delete(a).where(a.c.id == aid))
            if res.rowcount == 0:
                raise NotFound(f"no approval {aid}")
            await self._audit(conn, actor, "approval.revoked", str(aid), None, {}, time.time())

    async def list_approvals(self, *, limit: int = 100, after: int = 0) -> list[dict[str, Any]]:
        a = schema.approvals
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(a).where(a.c.id > after).order_by(a.c.id).limit(limit))).all()
        return [{"id": r.id, "deployment_id": r.deployment_id, "host_id": r.host_id, "approved_by": r.approved_by,
                 "time": r.time, "note": r.note} for r in rows]

    async def pending_approvals(self, deployment_id: int | None = None) -> list[dict[str, Any]]:
        """Hosts that booted while a deployment needing approval targeted them (from the audit log)."""
        al = schema.audit_log
        q = select(al).where(al.c.action == "approval.needed").order_by(al.c.id.desc()).limit(1000)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
            granted = {(x.deployment_id, x.host_id) for x in (await conn.execute(select(schema.approvals))).all()}
        seen: set[tuple[int, int]] = set()
        out = []
        for r in rows:
            det = orjson.loads(r.detail)
            key = (int(det["deployment_id"]), int(det["host_id"]))
            if key in seen or key in granted or (deployment_id is not None and key[0] != deployment_id):
                continue
            seen.add(key)
            out.append({"deployment_id": key[0], "host_id": key[1], "time": r.time})
        return out

    # ---- re-image guard

    async def wipe_decision(self, boot_id: str, ident: Identity, disks: list[dict[str, Any]], now: float
                            ) -> tuple[bool, str, int | None]:
        """May the installer of `boot_id` wipe its disk? Yes only for a new machine (no recorded install)
        or one explicitly approved for wiping. Every answer is audited."""
        b, h = schema.boots, schema.hosts
        async with self._begin() as conn:
            boot = (await conn.execute(select(b.c.host_id, b.c.mac).where(b.c.id == boot_id))).first()
            host = None
            if boot is not None and boot.host_id is not None:
                host = (await conn.execute(select(h).where(h.c.id == boot.host_id))).first()
            if boot is None:
                allowed, reason = False, "unknown boot id"
            elif host is None:
                allowed, reason = False, "the boot is not tied to an identified machine"
            elif boot.mac != ident.mac or (ident.good_uuid and host.uuid and ident.good_uuid != host.uuid) or (
                    ident.good_serial and host.serial and ident.good_serial != host.serial):
                allowed, reason = False, "identity does not match the machine this boot was given to"
            elif host.wipe_approved:
                allowed, reason = True, "explicitly approved for wiping"
            elif host.installed_at is not None:
                allowed, reason = False, "machine has a recorded successful install; approve the wipe first"
            elif any(bool(d.get("has_os")) for d in disks):
                allowed, reason = False, "a disk holds an operating system bootgate did not install; approve first"
            else:
                allowed, reason = True, "new machine"
            await self._audit(conn, "installer", "wipe.asked", boot_id[:64], allowed,
                              {"reason": reason, "mac": ident.mac, "uuid": ident.uuid, "serial": ident.serial,
                               "disks": disks[:32], "host_id": host.id if host is not None else None}, now)
        return allowed, reason, (host.id if host is not None else None)

    # ---- audit

    async def _audit(self, conn: AsyncConnection, actor: str, action: str, target: str, allowed: bool | None,
                     detail: dict[str, Any], now: float) -> None:
        await conn.execute(insert(schema.audit_log).values(**audit_row(actor, action, target, allowed, detail, now)))

    async def audit(self, actor: str, action: str, target: str, allowed: bool | None, detail: dict[str, Any]) -> None:
        async with self._begin() as conn:
            await self._audit(conn, actor, action, target, allowed, detail, time.time())

    async def list_audit(self, *, action: str | None = None, limit: int = 100, before: int | None = None
                         ) -> list[dict[str, Any]]:
        al = schema.audit_log
        q = select(al).order_by(al.c.id.desc()).limit(limit)
        if action:
            q = q.where(al.c.action == action)
        if before is not None:
            q = q.where(al.c.id < before)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [{"id": r.id, "time": r.time, "actor": r.actor, "action": r.action, "target": r.target,
                 "allowed": r.allowed if r.allowed is None else bool(r.allowed), "detail": orjson.loads(r.detail)}
                for r in rows]

    # ---- API tokens

    async def create_token(self, name: str, role: str, actor: str) -> str:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        t = schema.api_tokens
        token = "bgt_" + secrets.token_urlsafe(32)
        async with self._begin() as conn:
            try:
                await conn.execute(insert(t).values(name=name, role=role, token_sha256=token_hash(token),
                                                    created=time.time()))
            except IntegrityError:
                raise Conflict(f"a token named {name!r} exists") from None
            await self._audit(conn, actor, "token.created", name, None, {"role": role}, time.time())
        return token

    async def token_role(self, token: str) -> tuple[str, str] | None:
        t = schema.api_tokens
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(t.c.name, t.c.role).where(t.c.token_sha256 == token_hash(token)))).first()
        return None if row is None else (str(row.name), str(row.role))

    async def list_tokens(self) -> list[dict[str, Any]]:
        t = schema.api_tokens
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(t).order_by(t.c.id))).all()
        return [{"id": r.id, "name": r.name, "role": r.role, "created": r.created} for r in rows]

    async def delete_token(self, name: str, actor: str) -> None:
        t = schema.api_tokens
        async with self._begin() as conn:
            res = await conn.execute(delete(t).where(t.c.name == name))
            if res.rowcount == 0:
                raise NotFound(f"no token {name!r}")
            await self._audit(conn, actor, "token.deleted", name, None, {}, time.time())

    # ---- reports

    async def report(self, by: str, *, since: float | None = None, until: float | None = None
                     ) -> list[dict[str, Any]]:
        """Boots and installs grouped by day, collection (static), model or result."""
        if by not in REPORT_KEYS:
            raise ValueError(f"by must be one of {', '.join(REPORT_KEYS)}")
        b, r, cm, c = schema.boots, schema.deployment_runs, schema.collection_members, schema.collections
        conds: list[ColumnElement[bool]] = []
        if since is not None:
            conds.append(b.c.time >= since)
        if until is not None:
            conds.append(b.c.time < until)
        q = (select(b.c.id, b.c.time, b.c.host_id, b.c.manufacturer, b.c.product, b.c.action, r.c.state)
             .select_from(b.outerjoin(r, r.c.boot_id == b.c.id)))
        if conds:
            q = q.where(and_(*conds))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
            colls: dict[int, list[str]] = {}
            if by == "collection":
                for m in (await conn.execute(select(cm.c.host_id, c.c.name)
                                             .select_from(cm.join(c, c.c.id == cm.c.collection_id)))).all():
                    colls.setdefault(m.host_id, []).append(m.name)
        groups: dict[str, dict[str, Any]] = {}
        for x in rows:
            keys = self._report_keys(by, x, colls)
            for k in keys:
                g = groups.setdefault(k, {by: k, "boots": 0, "deployments_started": 0, "installs_succeeded": 0,
                                          "installs_failed": 0})
                g["boots"] += 1
                if x.state is not None:
                    g["deployments_started"] += 1
                    if x.state == "success":
                        g["installs_succeeded"] += 1
                    elif x.state == "failure":
                        g["installs_failed"] += 1
        return [groups[k] for k in sorted(groups)]

    @staticmethod
    def _report_keys(by: str, x: Any, colls: dict[int, list[str]]) -> list[str]:
        if by == "day":
            return [datetime.datetime.fromtimestamp(x.time, datetime.UTC).strftime("%Y-%m-%d")]
        if by == "model":
            return [f"{x.manufacturer} {x.product}".strip() or "(unknown)"]
        if by == "collection":
            return colls.get(x.host_id, ["(none)"]) if x.host_id is not None else ["(none)"]
        if x.state is not None:
            return [x.state if x.state in ("success", "failure") else "unfinished"]
        return [f"no deployment ({x.action})"]


def report_csv(rows: list[dict[str, Any]], by: str) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    cols = [by, "boots", "deployments_started", "installs_succeeded", "installs_failed"]
    w.writerow(cols)
    for r in rows:
        w.writerow([r[k] for k in cols])
    return out.getvalue()
