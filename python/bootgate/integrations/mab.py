"""MAB (MAC Authentication Bypass) exceptions on the 802.1X authentication server.

After a successful login bootgate grants the machine's MAC a temporary exception, then asks the switch to
re-authenticate the port so the installer reaches the authorised network; the exception is revoked when
it expires or the install reports success.

One plugin interface, :class:`MabBackend` (grant / revoke / reauthenticate), with backends:

* :class:`FreeRadiusRestBackend` - bootgate's own exception table, answered to FreeRADIUS ``rlm_rest``
  ``authorize`` calls by the ``/api/v1/mab/authorize`` route; re-authentication by RADIUS CoA to the switch.
* ``bootgate.integrations.ise.IseBackend`` - Cisco ISE ERS API.
* ``bootgate.integrations.clearpass.ClearPassBackend`` - Aruba ClearPass API.

:class:`MabManager` runs the backends: every call is idempotent, has a timeout, is retried with backoff,
and runs in the background so it never blocks a boot; outcomes land in `history` (shown by the API) and in
counters (metrics).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson

from ..auth.tokens import normalize_mac
from . import radius

__all__ = ["CoaTarget", "ExceptionTable", "FreeRadiusRestBackend", "MabBackend", "MabManager", "MabOutcome",
           "mac_formats", "normalize_mac"]

log = logging.getLogger("bootgate.mab")


def mac_formats(mac: str) -> dict[str, str]:
    """The usual vendor spellings of one MAC (for backends that want a given one)."""
    h = normalize_mac(mac).replace(":", "")
    pairs = [h[i:i + 2] for i in range(0, 12, 2)]
    return {"colon": ":".join(pairs), "COLON": ":".join(pairs).upper(), "hyphen": "-".join(pairs),
            "HYPHEN": "-".join(pairs).upper(), "dot": f"{h[0:4]}.{h[4:8]}.{h[8:12]}", "bare": h,
            "BARE": h.upper()}


@runtime_checkable
class MabBackend(Protocol):
    name: str

    async def grant(self, mac: str, expires: float, user: str) -> None:
        """Make `mac` (aa:bb:..) pass MAB until `expires` (epoch seconds). Idempotent."""

    async def revoke(self, mac: str) -> None:
        """Remove the exception. Idempotent (revoking a MAC without one is fine)."""

    async def reauthenticate(self, mac: str) -> None:
        """Ask the switch (or the NAC that owns the CoA) to re-authenticate the port of `mac`."""


@dataclass
class _Entry:
    mac: str
    expires: float
    user: str
    granted: float


class ExceptionTable:
    """MAC -> exception expiry, persisted as JSON (atomic rename) so a restart keeps them."""

    def __init__(self, path: Path | None, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        if path is not None and path.exists():
            try:
                for item in orjson.loads(path.read_bytes()):
                    e = _Entry(**item)
                    self._entries[e.mac] = e
            except (orjson.JSONDecodeError, TypeError, ValueError) as err:
                log.warning("mab: ignoring unreadable exception table %s: %s", path, err)

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_bytes(orjson.dumps([asdict(e) for e in self._entries.values()]))
        os.replace(tmp, self.path)

    def grant(self, mac: str, expires: float, user: str = "") -> None:
        m = normalize_mac(mac)
        self._entries[m] = _Entry(m, expires, user, self._clock())
        self._save()

    def revoke(self, mac: str) -> bool:
        had = self._entries.pop(normalize_mac(mac), None) is not None
        if had:
            self._save()
        return had

    def lookup(self, mac: str) -> float | None:
        """Seconds the exception has left, or None (no exception, or expired)."""
        e = self._entries.get(normalize_mac(mac))
        if e is None:
            return None
        left = e.expires - self._clock()
        return left if left > 0 else None

    def expired(self) -> list[str]:
        now = self._clock()
        return [m for m, e in self._entries.items() if e.expires <= now]

    def entries(self) -> list[dict[str, object]]:
        return [asdict(e) for e in self._entries.values()]


@dataclass(frozen=True)
class CoaTarget:
    host: str
    port: int
    secret: bytes
    mode: str = "cisco-reauth"  # "cisco-reauth" (Cisco-AVPair subscriber:command=reauthenticate) or "disconnect"
    mac_format: str = "HYPHEN"  # Calling-Station-Id spelling the switch uses (see mac_formats)


async def send_coa(target: CoaTarget, mac: str, *, timeout: float = 2.0, attempts: int = 3) -> None:
    """One CoA (or Disconnect) for `mac`; raises RuntimeError unless the switch ACKs."""
    csid = mac_formats(mac)[target.mac_format].encode()
    attrs = [radius.Attr(radius.CALLING_STATION_ID, csid)]
    if target.mode == "cisco-reauth":
        code = radius.CODES["CoA-Request"]
        attrs.append(radius.Attr(radius.CISCO_AVPAIR, b"subscriber:command=reauthenticate", vendor=radius.CISCO))
    elif target.mode == "disconnect":
        code = radius.CODES["Disconnect-Request"]
    else:
        raise ValueError(f"unknown CoA mode {target.mode!r}")
    try:
        res = await radius.send_request(target.host, target.port, target.secret, code, attrs, timeout=timeout,
                                        attempts=attempts)
    except (radius.RadiusError, OSError) as e:
        raise RuntimeError(f"CoA to {target.host}:{target.port}: {e}") from None
    if not res.acked:
        raise RuntimeError(f"CoA to {target.host}:{target.port} refused (code {res.code}, "
                           f"Error-Cause {res.error_cause})")


class FreeRadiusRestBackend:
    """Exceptions live in bootgate's table; FreeRADIUS asks ``/api/v1/mab/authorize`` (rlm_rest)."""

    name = "freeradius"

    def __init__(self, table: ExceptionTable, coa_targets: Sequence[CoaTarget] = (), coa_timeout: float = 2.0) -> None:
        self.table = table
        self.coa_targets = list(coa_targets)
        self.coa_timeout = coa_timeout

    async def grant(self, mac: str, expires: float, user: str) -> None:
        self.table.grant(mac, expires, user)

    async def revoke(self, mac: str) -> None:
        self.table.revoke(mac)

    async def reauthenticate(self, mac: str) -> None:
        errors = []
        for t in self.coa_targets:
            try:
                await send_coa(t, mac, timeout=self.coa_timeout, attempts=1)  # the manager retries
                return  # the switch that holds the port ACKed
            except RuntimeError as e:
                errors.append(str(e))
        if errors:
            raise RuntimeError("; ".join(errors))


@dataclass
class MabOutcome:
    time: float
    mac: str
    backend: str
    operation: str  # grant | revoke | reauthenticate
    ok: bool
    attempts: int
    error: str = ""


@dataclass
class MabManager:
    backends: list[MabBackend]
    ttl: float = 3600.0  # exception lifetime after a login
    call_timeout: float = 10.0
    attempts: int = 3
    backoff: float = 1.0  # first retry delay (doubles)
    clock: Callable[[], float] = time.time
    history: deque[MabOutcome] = field(default_factory=lambda: deque(maxlen=1000))
    counts: dict[tuple[str, str, bool], int] = field(default_factory=dict)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _granted: dict[str, float] = field(default_factory=dict)  # mac -> expiry (for the expiry sweep)

    async def _call(self, backend: MabBackend, op: str, mac: str, expires: float = 0.0, user: str = "") -> bool:
        delay = self.backoff
        err = ""
        for attempt in range(1, self.attempts + 1):
            try:
                if op == "grant":
                    await asyncio.wait_for(backend.grant(mac, expires, user), self.call_timeout)
                elif op == "revoke":
                    await asyncio.wait_for(backend.revoke(mac), self.call_timeout)
                else:
                    await asyncio.wait_for(backend.reauthenticate(mac), self.call_timeout)
                self._record(backend.name, op, mac, True, attempt)
                return True
            except Exception as e:  # noqa: BLE001 - any backend trouble is recorded, never raised to a boot
                err = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                if attempt < self.attempts:
                    await asyncio.sleep(delay)
                    delay *= 2
        self._record(backend.name, op, mac, False, self.attempts, err)
        log.warning("mab: %s %s for %s failed after %d attempts: %s", backend.name, op, mac, self.attempts, err)
        return False

    def _record(self, backend: str, op: str, mac: str, ok: bool, attempts: int, error: str = "") -> None:
        self.history.append(MabOutcome(self.clock(), mac, backend, op, ok, attempts, error))
        self.counts[(backend, op, ok)] = self.counts.get((backend, op, ok), 0) + 1

    async def grant_and_reauthenticate(self, mac: str, user: str) -> bool:
        m = normalize_mac(mac)
        expires = self.clock() + self.ttl
        self._granted[m] = expires
        ok = True
        for b in self.backends:
            if await self._call(b, "grant", m, expires, user):
                ok = await self._call(b, "reauthenticate", m) and ok
            else:
                ok = False
        return ok

    async def revoke(self, mac: str, reauthenticate: bool = False) -> bool:
        m = normalize_mac(mac)
        self._granted.pop(m, None)
        ok = True
        for b in self.backends:
            ok = await self._call(b, "revoke", m) and ok
            if reauthenticate:
                ok = await self._call(b, "reauthenticate", m) and ok
        return ok

    async def expire(self) -> list[str]:
        """Revokes every exception whose time is up; returns their MACs."""
        now = self.clock()
        due = [m for m, exp in self._granted.items() if exp <= now]
        for b in self.backends:
            if isinstance(b, FreeRadiusRestBackend):
                due += [m for m in b.table.expired() if m not in due]
        for m in due:
            await self.revoke(m)
        return due

    def schedule(self, coro: Coroutine[Any, Any, bool]) -> None:
        """Runs a manager coroutine in the background (a boot never waits for a NAC)."""
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Waits for background calls (tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def expiry_loop(self, interval: float = 30.0) -> None:
        while True:
            try:
                await self.expire()
            except Exception:  # noqa: BLE001
                log.exception("mab: expiry sweep failed")
            await asyncio.sleep(interval)
