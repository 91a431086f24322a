"""The identity index: an in-memory copy of what identifying a booting machine reads (hosts' UUID,
serial, make and model; the MACs of each host; shared MACs; the per-MAC actions), so that /boot of a
known machine reads nothing from the database.

Coherence. Every transaction that changes one of these (identification and registration, marking a MAC
shared or not, setting or deleting a per-MAC action) bumps a generation counter in the database
(`store_settings` key `identity_gen`) in the same transaction. This process applies its own
identifications to its index as soon as they commit (the writer returns the rows it wrote); its other
such writes (operator actions, rare) drop the index, which the next /boot reloads. Other processes' changes are
found by reading the counter at most every CHECK_INTERVAL seconds (on the first identification after
that interval): when it moved by more than this process's own bumps, the index is reloaded whole.

Staleness bound: a change committed by another process is used by this process's /boot at most
CHECK_INTERVAL seconds (plus one reload) later. Until then a known machine may be identified as it was
before that change (for example by a MAC another process has just marked shared). Anything the index
does not find as known and unchanged (a new machine, a new MAC, changed identity fields) takes the
serialized write path, which reads the database itself, so staleness never registers a machine twice.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Connection, Integer, Text, cast, select

from ..policy import MachineAction
from ..policy.identity import Identity
from . import schema

__all__ = ["CHECK_INTERVAL", "GEN_KEY", "HostRow", "IdentityIndex", "bump_generation", "read_generation", "read_generation_sqlite"]

CHECK_INTERVAL = 1.0  # seconds between reads of the generation counter (the staleness bound)
KNOWN_MAX = 1 << 17  # remembered "known and unchanged" decisions (see IdentityIndex.known; ~0.5 KB each); cleared when full
GEN_KEY = "identity_gen"

_GEN_SQL = f"SELECT value FROM store_settings WHERE key = '{GEN_KEY}'"
_LOAD_SQL = (
    "SELECT id, uuid, serial, manufacturer, product FROM hosts",
    "SELECT host_id, mac FROM host_macs",
    "SELECT mac FROM shared_macs",
    "SELECT mac, kernel, initrd, args FROM actions",
)


class HostRow(NamedTuple):
    id: int
    uuid: str
    serial: str
    manufacturer: str
    product: str


class MacRow(NamedTuple):
    host_id: int
    mac: str


def _gen(rows: Sequence[Any]) -> int:
    return int(rows[0][0]) if rows else 0


def read_generation(conn: Connection) -> int:
    return _gen(conn.exec_driver_sql(_GEN_SQL).all())


def read_generation_sqlite(db: sqlite3.Connection) -> int:
    return _gen(db.execute(_GEN_SQL).fetchall())


def bump_generation(conn: Connection) -> int:
    """+1 on the identity generation, in the caller's transaction; returns the new value."""
    from .inventory import dialect_insert

    t = schema.store_settings
    ins = dialect_insert(conn, t).values(key=GEN_KEY, value="1")
    conn.execute(ins.on_conflict_do_update(index_elements=[t.c.key],
                                           set_={"value": cast(cast(t.c.value, Integer) + 1, Text)}))
    return int(conn.execute(select(t.c.value).where(t.c.key == GEN_KEY)).scalar_one())


class Changes(NamedTuple):
    """What one write transaction did to identities, for the writer's own index (see IdentityIndex.apply)."""

    generation: int  # the counter after this transaction's bump
    hosts: list[HostRow]
    macs: list[MacRow]
    shared: list[str]


class IdentityIndex:
    def __init__(self, generation: int, rows: Sequence[Sequence[Sequence[Any]]]) -> None:
        self.generation = generation
        self.checked = 0.0  # time.monotonic() of the last generation check
        self.hosts: dict[int, HostRow] = {}
        self.by_uuid: dict[str, set[int]] = {}
        self.by_serial: dict[str, set[int]] = {}
        self.macs_of: dict[int, set[str]] = {}
        self.by_mac: dict[str, set[int]] = {}
        hosts, macs, shared, actions = rows
        # the bulk build (a reload of a large inventory): plain loops, no per-row checks
        make = HostRow._make
        self.hosts = {r[0]: make(r) for r in hosts}
        by_uuid, by_serial = self.by_uuid, self.by_serial
        for hid, uuid, serial, _m, _p in hosts:
            if uuid:
                by_uuid.setdefault(uuid, set()).add(hid)
            if serial:
                by_serial.setdefault(serial, set()).add(hid)
        macs_of, by_mac = self.macs_of, self.by_mac
        for hid, mac in macs:
            macs_of.setdefault(hid, set()).add(mac)
            by_mac.setdefault(mac, set()).add(hid)
        self.shared: set[str] = {r[0] for r in shared}
        # (mac, uuid, serial, make, model) as reported -> (host id, match) of a client that identified as a
        # known machine with nothing to write: its next boot with the same report skips the candidates
        # and the decision. A decision depends only on this index, so any change to it clears these.
        self.known: dict[tuple[str, str, str, str, str], tuple[int, Any]] = {}
        self.actions: dict[str, MachineAction] = {r[0]: MachineAction(kernel=r[1], initrd=r[2], args=r[3])
                                                  for r in actions}

    @classmethod
    def load(cls, execute: Any) -> IdentityIndex:
        """From a query function (sql -> rows): the generation first, so that rows newer than it can
        only cause one extra reload, never a missed change."""
        gen = _gen(execute(_GEN_SQL))
        return cls(gen, [execute(sql) for sql in _LOAD_SQL])

    def _put_hosts(self, rows: Iterable[HostRow]) -> None:
        for r in rows:
            old = self.hosts.get(r.id)
            if old is not None:
                self.by_uuid.get(old.uuid, set()).discard(r.id)
                self.by_serial.get(old.serial, set()).discard(r.id)
            self.hosts[r.id] = r
            if r.uuid:
                self.by_uuid.setdefault(r.uuid, set()).add(r.id)
            if r.serial:
                self.by_serial.setdefault(r.serial, set()).add(r.id)

    def _put_macs(self, rows: Iterable[MacRow]) -> None:
        for r in rows:
            self.macs_of.setdefault(r.host_id, set()).add(r.mac)
            self.by_mac.setdefault(r.mac, set()).add(r.host_id)

    def remember(self, key: tuple[str, str, str, str, str], answer: tuple[int, Any]) -> None:
        """Remembers a "known, nothing to write" answer for `key` (see `known`); the table is emptied
        when it holds KNOWN_MAX answers."""
        if len(self.known) >= KNOWN_MAX:
            self.known.clear()
        self.known[key] = answer

    def apply(self, ch: Changes) -> None:
        """This process's own committed changes. The generation follows only when nobody else wrote
        in between (else the next check reloads)."""
        self.known.clear()
        self._put_hosts(ch.hosts)
        self._put_macs(ch.macs)
        self.shared.update(ch.shared)
        if ch.generation == self.generation + 1:
            self.generation = ch.generation

    def candidates(self, ident: Identity) -> tuple[list[HostRow], list[MacRow], bool]:
        """What `_candidates` reads from the database: hosts sharing the MAC, the trustworthy UUID or
        serial (at most 50), their MACs, and whether the MAC is shared."""
        ids = set(self.by_mac.get(ident.mac, ()))
        u, s = ident.good_uuid, ident.good_serial
        if u:
            ids.update(self.by_uuid.get(u, ()))
        if s:
            ids.update(self.by_serial.get(s, ()))
        rows = [self.hosts[i] for i in sorted(ids)[:50]]
        mac_rows = [MacRow(r.id, m) for r in rows for m in self.macs_of.get(r.id, ())]
        return rows, mac_rows, ident.mac in self.shared
