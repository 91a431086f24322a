"""Short-lived signed boot tokens.

After a successful login the boot flow hands the machine a token that every later URL carries (``bgt=``).
A token is ``v1.<payload>.<mac>`` where payload is base64url JSON and mac is HMAC-SHA256 over ``v1.<payload>``
with a 32-byte key kept in ``<data_dir>/auth/token.key`` (mode 0600, created on first use).

The payload binds the token to one machine (MAC), a purpose ("boot" for the script/content chain), an
expiry (long enough for a multi-minute image download), a random id, the user who logged in and any claims
the boot flow wants protected from tampering (e.g. the deployment id: read them from the token, not the
query string). Verification is constant-time and checks, in order: format, signature, expiry, purpose,
machine, revocation (`revoke_machine`, e.g. on the install's success report) and, for single-use checks,
replay.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

__all__ = ["BootToken", "TokenError", "TokenSigner", "load_or_create_key", "normalize_mac"]

_PREFIX = "v1"


class TokenError(Exception):
    """A token was refused; `reason` is one of malformed, bad_signature, expired, wrong_purpose,
    wrong_machine, revoked, replayed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def normalize_mac(mac: str) -> str:
    """aa:bb:cc:dd:ee:ff from any common vendor spelling; ValueError if it is not a MAC."""
    hexdigits = "".join(c for c in mac if c not in ":-. ").lower()
    if len(hexdigits) != 12 or any(c not in "0123456789abcdef" for c in hexdigits):
        raise ValueError(f"not a MAC address: {mac!r}")
    return ":".join(hexdigits[i:i + 2] for i in range(0, 12, 2))


def load_or_create_key(path: Path) -> bytes:
    """The HMAC key at `path` (32 random bytes, mode 0600), created atomically when missing."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(32))
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if another process won the race: then use theirs
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        key = path.read_bytes()
    if len(key) < 32:
        raise ValueError(f"{path}: token key shorter than 32 bytes; delete it to have a new one created")
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" for c in text):
        raise TokenError("malformed")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class BootToken:
    mac: str
    user: str
    purpose: str
    issued: float
    expires: float
    nonce: str
    claims: Mapping[str, Any] = field(default_factory=dict)


class TokenSigner:
    def __init__(self, key: bytes, *, ttl: float = 3600.0, clock: Callable[[], float] = time.time) -> None:
        if len(key) < 32:
            raise ValueError("token key must be at least 32 bytes")
        self._key = key
        self.ttl = ttl
        self._clock = clock
        self._not_before: dict[str, float] = {}  # mac -> tokens issued before this are revoked
        self._used: dict[str, float] = {}  # nonce -> expiry, for single-use checks

    @classmethod
    def from_data_dir(cls, data_dir: Path, **kw: Any) -> TokenSigner:
        return cls(load_or_create_key(data_dir / "auth" / "token.key"), **kw)

    def issue(self, mac: str, user: str, *, purpose: str = "boot", ttl: float | None = None,
              claims: Mapping[str, Any] | None = None) -> str:
        now = self._clock()
        payload = {"m": normalize_mac(mac), "u": user, "p": purpose, "iat": round(now, 3),
                   "exp": round(now + (self.ttl if ttl is None else ttl), 3), "n": secrets.token_hex(12),
                   "c": dict(claims or {})}
        body = _PREFIX + "." + _b64(orjson.dumps(payload))
        return body + "." + _b64(hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest())

    def verify(self, token: str, *, mac: str, purpose: str = "boot", once: bool = False) -> BootToken:
        parts = token.split(".") if isinstance(token, str) and len(token) <= 4096 else []
        if len(parts) != 3 or parts[0] != _PREFIX:
            raise TokenError("malformed")
        body = parts[0] + "." + parts[1]
        want = hmac.new(self._key, body.encode("ascii", "replace"), hashlib.sha256).digest()
        if not hmac.compare_digest(want, _unb64(parts[2])):
            raise TokenError("bad_signature")
        try:
            p = orjson.loads(_unb64(parts[1]))
            tok = BootToken(mac=str(p["m"]), user=str(p["u"]), purpose=str(p["p"]), issued=float(p["iat"]),
                            expires=float(p["exp"]), nonce=str(p["n"]), claims=dict(p["c"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise TokenError("malformed") from None
        now = self._clock()
        if now >= tok.expires:
            raise TokenError("expired")
        if tok.purpose != purpose:
            raise TokenError("wrong_purpose")
        try:
            if normalize_mac(mac) != tok.mac:
                raise TokenError("wrong_machine")
        except ValueError:
            raise TokenError("wrong_machine") from None
        if tok.issued < self._not_before.get(tok.mac, 0.0):
            raise TokenError("revoked")
        if once:
            self._used = {n: e for n, e in self._used.items() if e > now}
            if tok.nonce in self._used:
                raise TokenError("replayed")
            self._used[tok.nonce] = tok.expires
        return tok

    def revoke_machine(self, mac: str) -> None:
        """Every token issued to `mac` until now stops working (e.g. the install reported success)."""
        self._not_before[normalize_mac(mac)] = self._clock() + 0.001
