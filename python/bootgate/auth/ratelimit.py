"""Login rate limit and lockout, per user and per machine.

Each key ("user:alice", "mac:52:54:00:..") counts failed logins in a sliding window; at `max_failures` the
key is locked for `lockout_seconds` (doubling on each further lockout, up to `max_lockout_seconds`). A
success clears the user's and the machine's counters. Checking happens *before* the directory is asked, so
a locked key costs the directory nothing. In memory: a restart forgets (documented in docs/security.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["LoginLimiter", "LimitSettings", "Decision"]


@dataclass(frozen=True)
class LimitSettings:
    max_failures: int = 5  # failures within window_seconds that lock the key
    window_seconds: float = 300.0
    lockout_seconds: float = 300.0
    max_lockout_seconds: float = 3600.0
    max_keys: int = 100_000  # bound on memory: oldest entries are dropped beyond this


@dataclass
class _Entry:
    failures: list[float] = field(default_factory=list)
    locked_until: float = 0.0
    lockouts: int = 0


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float = 0.0  # seconds until the lock ends
    key: str = ""  # the key that is locked


class LoginLimiter:
    def __init__(self, settings: LimitSettings | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings or LimitSettings()
        self._clock = clock
        self._entries: dict[str, _Entry] = {}

    @staticmethod
    def keys(username: str, mac: str) -> list[str]:
        out = []
        if username:
            out.append("user:" + username.lower())
        if mac:
            out.append("mac:" + mac.lower())
        return out

    def check(self, username: str, mac: str) -> Decision:
        now = self._clock()
        for key in self.keys(username, mac):
            e = self._entries.get(key)
            if e is not None and e.locked_until > now:
                return Decision(False, e.locked_until - now, key)
        return Decision(True)

    def failure(self, username: str, mac: str) -> None:
        s = self.settings
        now = self._clock()
        for key in self.keys(username, mac):
            e = self._entries.get(key)
            if e is None:
                if len(self._entries) >= s.max_keys:
                    self._entries.pop(next(iter(self._entries)))
                e = self._entries[key] = _Entry()
            e.failures = [t for t in e.failures if now - t < s.window_seconds]
            e.failures.append(now)
            if len(e.failures) >= s.max_failures:
                e.lockouts += 1
                e.locked_until = now + min(s.lockout_seconds * 2 ** (e.lockouts - 1), s.max_lockout_seconds)
                e.failures.clear()

    def success(self, username: str, mac: str) -> None:
        for key in self.keys(username, mac):
            self._entries.pop(key, None)

    def locked_keys(self) -> list[str]:
        now = self._clock()
        return [k for k, e in self._entries.items() if e.locked_until > now]
