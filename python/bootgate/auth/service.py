"""The security service the web layer talks to: login (rate limit -> directory -> token -> MAB exception),
boot-token checks, and the install-success hook.

Built once by the composition root (:func:`build_security`) and kept on ``app.state.security``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..integrations.mab import ExceptionTable, MabManager
from .ldap import AuthResult
from .ratelimit import LoginLimiter
from .settings import SecuritySettings
from .tokens import BootToken, TokenSigner, normalize_mac

__all__ = ["Authenticator", "LoginOutcome", "SecurityService"]

log = logging.getLogger("bootgate.auth")


class Authenticator(Protocol):
    def authenticate(self, username: str, password: str) -> AuthResult: ...


@dataclass(frozen=True)
class LoginOutcome:
    ok: bool
    reason: str  # AuthResult reasons, plus "locked", "bad_mac", "no_directory"
    token: str = ""
    retry_after: float = 0.0
    user: str = ""


@dataclass
class SecurityService:
    authenticator: Authenticator | None
    signer: TokenSigner
    limiter: LoginLimiter
    mab: MabManager | None = None
    realm: str = "bootgate"
    allow_http_login: bool = False
    http_script_clients: tuple[str, ...] = ()  # client IPs/MACs allowed to fetch scripts over plain HTTP
    mab_table: ExceptionTable | None = None  # answered to FreeRADIUS rlm_rest
    mab_rest_secret: str = ""  # HTTP Basic password rlm_rest must send ("" = none; loopback/ACL only)
    counts: dict[str, int] = field(default_factory=dict)

    def _count(self, reason: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1

    async def login(self, username: str, password: str, mac: str, client_ip: str = "",
                    claims: dict[str, object] | None = None) -> LoginOutcome:
        """Never logs or keeps the password."""
        try:
            m = normalize_mac(mac)
        except ValueError:
            self._count("bad_mac")
            return LoginOutcome(False, "bad_mac")
        if self.authenticator is None:
            self._count("no_directory")
            return LoginOutcome(False, "no_directory")
        gate = self.limiter.check(username, m)
        if not gate.allowed:
            self._count("locked")
            log.warning("login: %r from %s (%s) refused: %s locked for %.0f s", username, m, client_ip, gate.key,
                        gate.retry_after)
            return LoginOutcome(False, "locked", retry_after=gate.retry_after)
        result = await asyncio.to_thread(self.authenticator.authenticate, username, password)
        if not result.ok:
            if result.reason not in ("directory_unavailable", "directory_error"):
                self.limiter.failure(username, m)  # the directory's own trouble is not the user's attempt
            self._count(result.reason)
            log.warning("login: %r from %s (%s) refused: %s", username, m, client_ip, result.reason)
            return LoginOutcome(False, result.reason)
        self.limiter.success(username, m)
        self._count("ok")
        token = self.signer.issue(m, username, claims=claims)
        log.info("login: %r from %s (%s) accepted", username, m, client_ip)
        if self.mab is not None:
            self.mab.schedule(self.mab.grant_and_reauthenticate(m, username))
        return LoginOutcome(True, "ok", token=token, user=username)

    def check_token(self, token: str, mac: str) -> BootToken:
        """The verified token; raises TokenError (reason) otherwise."""
        return self.signer.verify(token, mac=mac)

    def install_finished(self, mac: str, success: bool) -> None:
        """Hook for the status route: on success the machine's tokens die and its MAB exception is revoked
        (its installed OS authenticates with its own identity from now on)."""
        if not success:
            return
        try:
            m = normalize_mac(mac)
        except ValueError:
            return
        self.signer.revoke_machine(m)
        if self.mab is not None:
            self.mab.schedule(self.mab.revoke(m))

    def http_script_allowed(self, client_ip: str, mac: str = "", *, mac_later: bool = False) -> bool:
        """Plain-HTTP scripts only for clients named in [auth] http_script_clients (old iPXE without TLS):
        by IP or subnet of `client_ip`, or by MAC or MAC prefix. `mac_later`: the request carries no MAC
        (the /boot.ipxe bootstrap) but the next one will and is checked then, so MAC entries admit it."""
        names = self.http_script_clients
        if "*" in names:
            return True
        try:
            ip = ipaddress.ip_address(client_ip)
        except ValueError:
            ip = None
        for n in names:
            if n.startswith("net:") and ip is not None and ip in ipaddress.ip_network(n[4:]):
                return True
        if mac_later:
            return any(n.startswith("mac:") for n in names)
        try:
            m = normalize_mac(mac)
        except ValueError:
            return False
        return any(n.startswith("mac:") and (m == n[4:] or m.startswith(n[4:] + ":")) for n in names)


def build_security(sec: SecuritySettings, data_dir: Path) -> SecurityService:
    """The composition root's call: ``app.state.security = build_security(settings.security, data_dir)``,
    then run ``service.mab.expiry_loop()`` as a background task when ``service.mab`` is set."""
    from ..integrations.backends import build_mab  # noqa: PLC0415
    from .ldap import LdapAuthenticator  # noqa: PLC0415

    mab, table = build_mab(sec.mab, data_dir)  # [mab]: python/bootgate/integrations/backends.py
    return SecurityService(
        authenticator=LdapAuthenticator(sec.ldap) if sec.ldap is not None else None,
        signer=TokenSigner.from_data_dir(data_dir, ttl=sec.auth.token_ttl),
        limiter=LoginLimiter(sec.auth.limits), mab=mab, mab_table=table, mab_rest_secret=sec.mab.rest_secret,
        allow_http_login=sec.auth.allow_http_login, http_script_clients=sec.auth.http_script_clients)
