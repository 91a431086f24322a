"""LDAP / Active Directory login with ldap3.

Rules this module keeps:

* TLS always: ``ldaps://`` URLs, or ``ldap://`` with StartTLS; the server certificate is validated against
  ``ca_cert`` (or the system store) and its name; a plain ``ldap://`` without StartTLS is refused at
  configuration time.
* User input is escaped before it enters a filter (RFC 4515) or a DN (RFC 4514).
* The password is checked by binding *as the user*; empty passwords are refused before any network traffic
  (an empty password is an unauthenticated bind that most servers answer with success, RFC 4513 5.1.2).
* Group membership is asked of the directory: Active Directory's transitive matching rule
  (LDAP_MATCHING_RULE_IN_CHAIN) or, for other servers, a breadth-first walk of ``member`` values done by
  search queries, so nested groups count.
* Nothing here logs or keeps a password.

ldap3 is blocking; callers in async code run :meth:`LdapAuthenticator.authenticate` in a thread.
"""

from __future__ import annotations

import logging
import math
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import ldap3  # type: ignore[import-untyped]
from ldap3.core import exceptions as ldap_exc  # type: ignore[import-untyped]
from ldap3.utils.conv import escape_filter_chars  # type: ignore[import-untyped]
from ldap3.utils.dn import escape_rdn  # type: ignore[import-untyped]

__all__ = ["AuthResult", "LdapAuthenticator", "LdapSettings", "LdapConfigError", "IN_CHAIN_OID"]

log = logging.getLogger("bootgate.auth.ldap")

# Active Directory's LDAP_MATCHING_RULE_IN_CHAIN: transitive membership evaluated by the DC.
IN_CHAIN_OID = "1.2.840.113556.1.4.1941"
_MAX_NEST_DEPTH = 16


class LdapConfigError(ValueError):
    """The [ldap] settings cannot work (message fit to show a person)."""


@dataclass(frozen=True)
class LdapSettings:
    url: str = ""  # ldaps://host:636 or ldap://host:389 (then start_tls must be true)
    start_tls: bool = True
    ca_cert: str = ""  # PEM file of the CA(s) that signed the directory's certificate; "" = system store
    base_dn: str = ""  # where users are searched
    user_filter: str = "(&(objectClass=person)(uid={username}))"  # {username} is escaped (RFC 4515)
    user_dn_template: str = ""  # e.g. "uid={username},ou=people,dc=example,dc=org" (RFC 4514-escaped); no search
    bind_dn: str = ""  # service account used to find the user's DN (optional)
    bind_password: str = ""
    group_base_dn: str = ""  # default base_dn
    group_filter: str = "(|(objectClass=groupOfNames)(objectClass=group))"
    member_attribute: str = "member"
    nested: str = "walk"  # "walk" (search member values level by level), "in_chain" (AD), "none"
    required_groups: tuple[str, ...] = ()  # DNs; login needs membership (direct or nested) in at least one
    timeout: float = 5.0

    def validate(self) -> None:
        if not self.url:
            raise LdapConfigError("[ldap] url is empty: set it to ldaps://host:636 or ldap://host:389")
        parts = urlsplit(self.url)
        if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
            raise LdapConfigError(f"[ldap] url {self.url!r} is not an ldap:// or ldaps:// URL")
        if parts.scheme == "ldap" and not self.start_tls:
            raise LdapConfigError(
                "[ldap] url is ldap:// without start_tls: passwords would cross the network in clear; "
                "set start_tls = true or use ldaps://")
        if not self.user_dn_template and not self.base_dn:
            raise LdapConfigError("[ldap] needs base_dn (to search users) or user_dn_template")
        if self.user_dn_template and "{username}" not in self.user_dn_template:
            raise LdapConfigError("[ldap] user_dn_template must contain {username}")
        if not self.user_dn_template and "{username}" not in self.user_filter:
            raise LdapConfigError("[ldap] user_filter must contain {username}")
        if self.nested not in ("walk", "in_chain", "none"):
            raise LdapConfigError(f'[ldap] nested is {self.nested!r}: use "walk", "in_chain" or "none"')
        if self.ca_cert and not Path(self.ca_cert).is_file():
            raise LdapConfigError(f"[ldap] ca_cert {self.ca_cert!r} is not a file")
        if self.timeout <= 0:
            raise LdapConfigError("[ldap] timeout must be positive")


@dataclass(frozen=True)
class AuthResult:
    ok: bool
    username: str
    # "ok", "empty_password", "bad_username", "invalid_credentials", "unknown_user", "not_in_group",
    # "directory_unavailable", "directory_error"
    reason: str
    user_dn: str = ""
    groups: frozenset[str] = field(default_factory=frozenset)  # lower-cased DNs (direct + nested)


def _norm_dn(dn: str) -> str:
    return ",".join(part.strip() for part in dn.split(",")).lower()


class LdapAuthenticator:
    def __init__(self, settings: LdapSettings) -> None:
        settings.validate()
        self.settings = settings
        parts = urlsplit(settings.url)
        self._use_ssl = parts.scheme == "ldaps"
        self._host = parts.hostname or ""
        self._port = parts.port or (636 if self._use_ssl else 389)

    # -- connection helpers --------------------------------------------------------------------------------
    def _server(self) -> Any:
        s = self.settings
        tls = ldap3.Tls(
            validate=ssl.CERT_REQUIRED,
            version=ssl.PROTOCOL_TLS_CLIENT,
            ca_certs_file=s.ca_cert or None,
            valid_names=[self._host],
        )
        return ldap3.Server(self._host, port=self._port, use_ssl=self._use_ssl, tls=tls,
                            get_info=ldap3.NONE, connect_timeout=s.timeout)

    def _bind(self, dn: str, password: str) -> Any:
        """A connection bound as dn over TLS; raises ldap3 exceptions."""
        conn = ldap3.Connection(self._server(), user=dn, password=password, auto_bind=ldap3.AUTO_BIND_NONE,
                                receive_timeout=max(1, math.ceil(self.settings.timeout)), raise_exceptions=False,
                                read_only=True)
        conn.open()
        if not self._use_ssl:
            if not conn.start_tls():
                conn.unbind()
                raise ldap_exc.LDAPStartTLSError("StartTLS refused: " + str(conn.result))
        if not conn.bind():
            result = conn.result or {}
            conn.unbind()
            if result.get("result") == 49:  # invalidCredentials
                raise ldap_exc.LDAPInvalidCredentialsResult(str(result.get("description")))
            raise ldap_exc.LDAPBindError(str(result.get("description")))
        return conn

    # -- public --------------------------------------------------------------------------------------------
    def authenticate(self, username: str, password: str) -> AuthResult:
        """Checks username/password against the directory, then group membership. Never raises for
        directory trouble: the result says what happened."""
        if not password:
            return AuthResult(False, username, "empty_password")
        if not username or len(username) > 256 or any(ord(c) < 0x20 or c == "\x7f" for c in username):
            return AuthResult(False, username, "bad_username")
        try:
            return self._authenticate(username, password)
        except ldap_exc.LDAPInvalidCredentialsResult:
            return AuthResult(False, username, "invalid_credentials")
        except (ldap_exc.LDAPSocketOpenError, ldap_exc.LDAPSocketReceiveError, ldap_exc.LDAPSocketSendError,
                ldap_exc.LDAPSessionTerminatedByServerError, ldap_exc.LDAPStartTLSError, ssl.SSLError,
                OSError) as e:
            log.warning("ldap: directory unavailable for %r: %s", username, type(e).__name__)
            return AuthResult(False, username, "directory_unavailable")
        except Exception as e:  # noqa: BLE001 - any other trouble is a refusal, never a crash of the boot
            log.warning("ldap: directory error for %r: %s", username, type(e).__name__)
            return AuthResult(False, username, "directory_error")

    def _find_user_dn(self, username: str) -> str | None:
        s = self.settings
        if s.user_dn_template:
            return s.user_dn_template.replace("{username}", escape_rdn(username))
        if s.bind_dn:
            conn = self._bind(s.bind_dn, s.bind_password)
        else:  # anonymous search over TLS
            conn = self._bind("", "")
        try:
            flt = s.user_filter.replace("{username}", escape_filter_chars(username))
            conn.search(s.base_dn, flt, search_scope=ldap3.SUBTREE, attributes=[], size_limit=2)
            entries = [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
            if len(entries) != 1:
                return None  # unknown, or ambiguous (never guess between two people)
            return str(entries[0]["dn"])
        finally:
            conn.unbind()

    def _authenticate(self, username: str, password: str) -> AuthResult:
        s = self.settings
        dn = self._find_user_dn(username)
        if dn is None:
            return AuthResult(False, username, "unknown_user")
        try:
            conn = self._bind(dn, password)
        except ldap_exc.LDAPInvalidCredentialsResult:
            # With a template DN an unknown user also lands here; both look the same to the client.
            return AuthResult(False, username, "invalid_credentials", user_dn=dn)
        try:
            groups = self._groups(conn, dn)
        finally:
            conn.unbind()
        if s.required_groups:
            wanted = {_norm_dn(g) for g in s.required_groups}
            if not wanted & groups:
                return AuthResult(False, username, "not_in_group", user_dn=dn, groups=frozenset(groups))
        return AuthResult(True, username, "ok", user_dn=dn, groups=frozenset(groups))

    def _search_groups(self, conn: Any, member_filter: str) -> list[str]:
        s = self.settings
        flt = f"(&{s.group_filter}{member_filter})"
        conn.search(s.group_base_dn or s.base_dn, flt, search_scope=ldap3.SUBTREE, attributes=[],
                    paged_size=500)
        return [str(e["dn"]) for e in conn.response or [] if e.get("type") == "searchResEntry"]

    def _groups(self, conn: Any, user_dn: str) -> set[str]:
        s = self.settings
        attr = s.member_attribute
        if s.nested == "in_chain":
            return {_norm_dn(g) for g in self._search_groups(conn, f"({attr}:{IN_CHAIN_OID}:="
                                                                     f"{escape_filter_chars(user_dn)})")}
        found: dict[str, str] = {}
        frontier = [user_dn]
        for _depth in range(_MAX_NEST_DEPTH if s.nested == "walk" else 1):
            if not frontier:
                break
            next_frontier: list[str] = []
            for chunk in _chunks(frontier, 50):
                flt = "(|" + "".join(f"({attr}={escape_filter_chars(d)})" for d in chunk) + ")"
                for g in self._search_groups(conn, flt):
                    key = _norm_dn(g)
                    if key not in found:
                        found[key] = g
                        next_frontier.append(g)
            frontier = next_frontier
        return set(found)


def _chunks(items: list[str], n: int) -> Iterable[list[str]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]
