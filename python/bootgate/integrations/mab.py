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
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..auth.tokens import normalize_mac
from . import radius

__all__ = ["CoaTarget", "ExceptionTable", "FreeRadiusRestBackend", "MabBackend", "MabCollector", "MabManager",
           "MabOutcome", "coa_reauthenticate", "mac_formats", "normalize_mac"]

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


async def coa_reauthenticate(targets: Sequence[CoaTarget], mac: str, timeout: float) -> None:
    """CoA to each switch in turn until one ACKs (the one that holds the port); RuntimeError naming every
    failure otherwise. No targets: nothing to do (the port re-authenticates on its own timer)."""
    errors = []
    for t in targets:
        try:
            await send_coa(t, mac, timeout=timeout, attempts=1)  # the manager retries
            return
        except RuntimeError as e:
            errors.append(str(e))
    if errors:
        raise RuntimeError("; ".join(errors))


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
        await coa_reauthenticate(self.coa_targets, mac, self.coa_timeout)

    async def expired(self) -> list[str]:
        return self.table.expired()


@dataclass
class MabOutcome:
    time: float
    mac: str
    backend: str
    operation: str  # grant | revoke | reauthenticate
    ok: bool
    attempts: int
    error: str = ""


Audit = Callable[[str, str, str, "bool | None", dict[str, Any]], Awaitable[Any]]  # the store's audit() signature


@dataclass
class MabManager:
    """Runs every backend for each exception and keeps their state.

    The state (MAC -> user, expiry, per-backend state and last error) is persisted to `state_path` (JSON,
    atomic rename) so exceptions granted on a NAC are still revoked after a restart; an exception whose
    revoke failed stays listed as ``revoke_failed`` and the expiry sweep tries again."""

    backends: list[MabBackend]
    ttl: float = 3600.0  # exception lifetime after a login
    call_timeout: float = 10.0
    attempts: int = 3
    backoff: float = 1.0  # first retry delay (doubles, up to max_backoff)
    clock: Callable[[], float] = time.time
    state_path: Path | None = None
    max_backoff: float = 30.0
    max_concurrent: int = 8  # NAC calls in flight at once (a boot storm queues instead of flooding the NAC)
    audit: Audit | None = None  # e.g. the store's audit(): one record per final outcome
    reauth_retries: int = 5  # sweeps that ask the switch again after a failed CoA
    history: deque[MabOutcome] = field(default_factory=lambda: deque(maxlen=1000))
    counts: dict[tuple[str, str, bool], int] = field(default_factory=dict)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _state: dict[str, dict[str, Any]] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _slots: asyncio.Semaphore | None = None

    def __post_init__(self) -> None:
        if self.state_path is not None and self.state_path.exists():
            try:
                data = orjson.loads(self.state_path.read_bytes())
                for e in data:
                    if (isinstance(e, dict) and isinstance(e.get("backends"), dict)
                            and all(isinstance(e.get(k), (int, float)) for k in ("granted", "expires"))):
                        e["mac"] = normalize_mac(str(e.get("mac")))
                        self._state[e["mac"]] = e
            except (orjson.JSONDecodeError, TypeError, ValueError) as err:
                log.warning("mab: ignoring unreadable exception state %s: %s", self.state_path, err)

    # -- state ------------------------------------------------------------------------------------------------
    def _save(self) -> None:
        if self.state_path is None:
            return
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.state_path.with_name(self.state_path.name + ".tmp")
            tmp.write_bytes(orjson.dumps(list(self._state.values())))
            os.replace(tmp, self.state_path)
        except OSError as e:  # the NAC calls go on; the state is kept in memory
            log.warning("mab: cannot save exception state to %s: %s", self.state_path, e)

    def _set(self, mac: str, backend: str, **values: Any) -> None:
        entry = self._state.get(mac)
        if entry is not None:
            entry["backends"].setdefault(backend, {}).update(values, time=self.clock())

    def exceptions(self) -> list[dict[str, Any]]:
        """Every exception bootgate holds or failed to remove, for the API: mac, user, granted, expires,
        seconds_left, state (active | expired | revoke_failed) and per backend its state and last error."""
        now = self.clock()
        out = []
        for e in sorted(self._state.values(), key=lambda e: e["granted"], reverse=True):
            states = {b.get("state") for b in e["backends"].values()}
            state = "revoke_failed" if "revoke_failed" in states else ("active" if e["expires"] > now else "expired")
            out.append({**e, "seconds_left": max(0, int(e["expires"] - now)), "state": state,
                        "ok": not states & {"grant_failed", "revoke_failed"}})
        return out

    def api_view(self, history: int = 200) -> dict[str, Any]:
        """What GET /api/v1/mab/exceptions shows: the backends, every exception with its per-backend state and
        last error, and the newest NAC calls first."""
        return {"configured": True, "backends": [b.name for b in self.backends], "exceptions": self.exceptions(),
                "history": [asdict(h) for h in list(self.history)[-history:]][::-1]}

    # -- calls ------------------------------------------------------------------------------------------------
    async def _call(self, backend: MabBackend, op: str, mac: str, expires: float = 0.0, user: str = "") -> bool:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrent)
        delay = self.backoff
        err = ""
        async with self._slots:
            for attempt in range(1, self.attempts + 1):
                try:
                    if op == "grant":
                        await asyncio.wait_for(backend.grant(mac, expires, user), self.call_timeout)
                    elif op == "revoke":
                        await asyncio.wait_for(backend.revoke(mac), self.call_timeout)
                    else:
                        await asyncio.wait_for(backend.reauthenticate(mac), self.call_timeout)
                    await self._record(backend.name, op, mac, True, attempt)
                    return True
                except Exception as e:  # noqa: BLE001 - any backend trouble is recorded, never raised to a boot
                    err = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                    if isinstance(e, TimeoutError):
                        err = f"TimeoutError: no answer within {self.call_timeout:g} s"
                    if attempt < self.attempts:
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, self.max_backoff)
        await self._record(backend.name, op, mac, False, self.attempts, err)
        log.warning("mab: %s %s for %s failed after %d attempts: %s", backend.name, op, mac, self.attempts, err)
        return False

    async def _record(self, backend: str, op: str, mac: str, ok: bool, attempts: int, error: str = "") -> None:
        self.history.append(MabOutcome(self.clock(), mac, backend, op, ok, attempts, error))
        self.counts[(backend, op, ok)] = self.counts.get((backend, op, ok), 0) + 1
        if self.audit is not None:
            try:
                await self.audit("bootgate", f"mab.{op}", mac, ok, {"backend": backend, "attempts": attempts,
                                                                    "error": error})
            except Exception:  # noqa: BLE001 - the audit log's trouble must not undo a NAC call
                log.exception("mab: audit record for %s %s failed", op, mac)

    def _lock(self, mac: str) -> asyncio.Lock:
        return self._locks.setdefault(mac, asyncio.Lock())

    async def grant_and_reauthenticate(self, mac: str, user: str) -> bool:
        """Grants (or extends) the exception on every backend, then re-authenticates the port where the
        grant worked. Idempotent: a second call leaves the same state with a later expiry."""
        m = normalize_mac(mac)
        async with self._lock(m):
            now = self.clock()
            expires = now + self.ttl
            entry = self._state.setdefault(m, {"mac": m, "user": user, "granted": now, "expires": expires,
                                               "backends": {}})
            entry.update(user=user, granted=now, expires=expires)
            self._save()
            ok = True
            for b in self.backends:
                if await self._call(b, "grant", m, expires, user):
                    self._set(m, b.name, state="granted", error="")
                    reauth = await self._call(b, "reauthenticate", m)
                    self._set(m, b.name, reauthenticated=reauth, error="" if reauth else self._last_error())
                    ok = reauth and ok
                else:
                    self._set(m, b.name, state="grant_failed", error=self._last_error())
                    ok = False
            self._save()
            return ok

    def _last_error(self) -> str:
        return self.history[-1].error if self.history else ""

    async def revoke(self, mac: str, reauthenticate: bool = False) -> bool:
        """Removes the exception from every backend (idempotent). One that fails keeps the entry listed as
        revoke_failed, due at once, so the expiry sweep tries again."""
        m = normalize_mac(mac)
        async with self._lock(m):
            results: dict[str, dict[str, str]] = {}
            for b in self.backends:
                if await self._call(b, "revoke", m):
                    results[b.name] = {"state": "revoked", "error": ""}
                else:
                    results[b.name] = {"state": "revoke_failed", "error": self._last_error()}
                if reauthenticate:
                    await self._call(b, "reauthenticate", m)
            ok = all(r["state"] == "revoked" for r in results.values())
            if ok:
                self._state.pop(m, None)
            else:  # keep it listed (an unknown MAC too: the NAC may still hold it), due at once for the sweep
                now = self.clock()
                entry = self._state.setdefault(m, {"mac": m, "user": "", "granted": now, "expires": now,
                                                   "backends": {}})
                entry["expires"] = min(entry["expires"], now)
                for name, r in results.items():
                    self._set(m, name, **r)
            self._save()
            self._locks.pop(m, None)
            return ok

    async def expire(self) -> list[str]:
        """Revokes every exception whose time is up (and retries failed revokes); returns their MACs."""
        now = self.clock()
        due = [m for m, e in self._state.items() if e["expires"] <= now]
        for b in self.backends:
            expired = getattr(b, "expired", None)
            if expired is not None:
                try:
                    due += [m for m in map(normalize_mac, await expired()) if m not in due]
                except Exception as e:  # noqa: BLE001
                    log.warning("mab: %s: listing expired exceptions failed: %s", b.name, e)
        for m in due:
            await self.revoke(m)
        await self._retry_reauthentication()
        return due

    async def _retry_reauthentication(self) -> None:
        """An exception in place whose CoA failed leaves the port in the restricted VLAN until the switch
        re-authenticates by itself (often never): each sweep asks again, up to `reauth_retries` times."""
        now = self.clock()
        for m, entry in list(self._state.items()):
            if entry["expires"] <= now:
                continue
            for b in self.backends:
                st = entry["backends"].get(b.name, {})
                if st.get("state") != "granted" or st.get("reauthenticated") is not False:
                    continue
                if st.get("reauth_retries", 0) >= self.reauth_retries:
                    continue
                async with self._lock(m):
                    ok = await self._call(b, "reauthenticate", m)
                    self._set(m, b.name, reauthenticated=ok, reauth_retries=st.get("reauth_retries", 0) + 1,
                              error="" if ok else self._last_error())
                    self._save()

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

    # -- wiring -----------------------------------------------------------------------------------------------
    def attach(self, audit: Audit | None = None, registry: CollectorRegistry | None = None) -> None:
        """Called once by the composition root: audit records go to `audit` (the store's audit()), metrics
        (bootgate_mab_calls_total{backend,operation,result}, bootgate_mab_exceptions{state}) to `registry`."""
        if audit is not None:
            self.audit = audit
        if registry is not None:
            registry.register(MabCollector(self))


class MabCollector(Collector):
    def __init__(self, manager: MabManager) -> None:
        self.manager = manager

    def collect(self) -> Iterator[Metric]:
        calls = CounterMetricFamily("bootgate_mab_calls", "MAB backend calls by backend, operation and result "
                                    "(after retries)", labels=["backend", "operation", "result"])
        for (backend, op, ok), n in sorted(self.manager.counts.items()):
            calls.add_metric([backend, op, "ok" if ok else "error"], n)
        yield calls
        held = GaugeMetricFamily("bootgate_mab_exceptions", "MAB exceptions bootgate holds, by state",
                                 labels=["state"])
        states: dict[str, int] = {"active": 0, "expired": 0, "revoke_failed": 0}
        for e in self.manager.exceptions():
            states[e["state"]] = states.get(e["state"], 0) + 1
        for state, n in sorted(states.items()):
            held.add_metric([state], n)
        yield held

    def describe(self) -> Iterator[Metric]:
        return iter(())
