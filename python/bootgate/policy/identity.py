"""Matching a booting client to a known machine by SMBIOS UUID, MAC and serial together (pure).

What real estates look like, and how each case is handled:

- a USB Ethernet dongle shared by many laptops: the same MAC with different (trustworthy) UUIDs or
  serials. Such a MAC is *shared*: it never identifies a machine on its own again;
- bogus UUIDs (all zero, all FF, vendor placeholders) and bogus serials ("To be filled by O.E.M.",
  "Default string", ...): ignored for matching;
- duplicate UUIDs (cloned firmware): a UUID match whose trustworthy serial disagrees is not a match;
- replaced NICs: a machine found by UUID/serial keeps its identity and gains the new MAC.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Candidate", "Identity", "Match", "good_serial", "good_uuid", "is_bogus_serial", "is_bogus_uuid", "match_identity",
           "normalize_uuid"]

_BOGUS_UUIDS = {
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "03000200-0400-0500-0006-000700080009",  # AMI/"To be filled" boards
    "00020003-0004-0005-0006-000700080009",  # the same placeholder, byte-swapped
    "12345678-1234-5678-90ab-cddeefaabbcc",
    "4c4c4544-0000-0000-0000-000000000000",
}
_BOGUS_SERIALS = {
    "", "0", "00000000", "0000000000", "000000000000", "1234567890", "123456789", "none", "null", "n/a", "na",
    "default string", "to be filled by o.e.m.", "to be filled by oem", "system serial number",
    "not specified", "not applicable", "invalid", "chassis serial number", "serial", "oem", "xxxxxxxxxx",
    "base board serial number", "empty",
}
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@functools.lru_cache(maxsize=1 << 16)
def normalize_uuid(value: str) -> str:
    """Lowercase canonical form; '' for anything that is not a UUID."""
    v = value.strip().lower().strip("{}")
    if re.fullmatch(r"[0-9a-f]{32}", v):
        v = f"{v[:8]}-{v[8:12]}-{v[12:16]}-{v[16:20]}-{v[20:]}"
    return v if _UUID.fullmatch(v) else ""


@functools.lru_cache(maxsize=1 << 16)
def is_bogus_uuid(value: str) -> bool:
    u = normalize_uuid(value)
    if not u or u in _BOGUS_UUIDS:
        return True
    hexes = u.replace("-", "")
    return len(set(hexes)) <= 1


@functools.lru_cache(maxsize=1 << 16)
def is_bogus_serial(value: str) -> bool:
    s = value.strip().lower()
    if s in _BOGUS_SERIALS or len(s) < 3:
        return True
    return len(set(s)) == 1  # "0000000", "xxxxxxxx", "........"


@dataclass(frozen=True)
class Identity:
    """What a booting client reports."""

    mac: str
    uuid: str = ""
    serial: str = ""

    @property
    def good_uuid(self) -> str:
        return good_uuid(self.uuid)

    @property
    def good_serial(self) -> str:
        return good_serial(self.serial)


# (functools.cached_property takes a lock on every first access: these remembered functions cost less)
@functools.lru_cache(maxsize=1 << 16)
def good_uuid(value: str) -> str:
    """The canonical UUID, '' when it is not one or is bogus."""
    return "" if is_bogus_uuid(value) else normalize_uuid(value)


@functools.lru_cache(maxsize=1 << 16)
def good_serial(value: str) -> str:
    """The stripped serial, '' when it is bogus."""
    return "" if is_bogus_serial(value) else value.strip()


@dataclass(frozen=True)
class Candidate:
    """A known machine that shares the UUID, the serial or a MAC with the client."""

    host_id: int
    uuid: str
    serial: str
    macs: frozenset[str]


@dataclass(frozen=True)
class Match:
    host_id: int | None  # None: a new machine
    reason: str
    mark_mac_shared: bool = False  # the MAC was seen on a different machine: stop trusting it
    add_mac: bool = False  # the matched machine gains this MAC (replaced NIC, dongle)
    register: bool = True  # False: nothing identifies the client; do not create a machine for it


def _good(c: Candidate) -> tuple[str, str]:
    return good_uuid(c.uuid), good_serial(c.serial)


def _conflicts(ident: Identity, c: Candidate) -> bool:
    """True when a trustworthy UUID or serial on both sides disagrees."""
    cu, cs = _good(c)
    return bool((ident.good_uuid and cu and cu != ident.good_uuid)
                or (ident.good_serial and cs and cs != ident.good_serial))


def match_identity(ident: Identity, candidates: Sequence[Candidate], mac_shared: bool) -> Match:
    """The known machine `ident` belongs to, if any.

    Order: trustworthy UUID and serial both agree; trustworthy UUID (serial not contradicting);
    trustworthy serial (UUID not contradicting); finally the MAC alone, only if the MAC is not shared
    and the client offers nothing that contradicts the machine that owns it.
    """
    u, s = ident.good_uuid, ident.good_serial
    by_mac = [c for c in candidates if ident.mac in c.macs]
    ranked: list[tuple[int, Candidate, str]] = []
    for c in candidates:
        cu, cs = _good(c)
        if _conflicts(ident, c):
            continue
        if u and s and cu == u and cs == s:
            ranked.append((0, c, "uuid and serial"))
        elif u and cu == u:
            ranked.append((1, c, "uuid"))
        elif s and cs == s:
            ranked.append((2, c, "serial"))
    if ranked:
        ranked.sort(key=lambda t: (t[0], t[1].host_id))
        _, best, why = ranked[0]
        add = ident.mac not in best.macs
        shared = any(c.host_id != best.host_id for c in by_mac) and not mac_shared
        return Match(best.host_id, f"matched by {why}" + (" (new MAC)" if add else ""), shared, add)
    # nothing trustworthy matched: the MAC alone
    if by_mac and not mac_shared:
        owner = min(by_mac, key=lambda c: c.host_id)
        if not _conflicts(ident, owner) and len(by_mac) == 1:
            return Match(owner.host_id, "matched by MAC")
        return Match(None, "MAC is known from a different machine: marked shared", mark_mac_shared=True)
    if mac_shared and not (u or s):
        return Match(None, "shared MAC and no trustworthy UUID or serial: cannot identify", register=False)
    return Match(None, "new machine")
