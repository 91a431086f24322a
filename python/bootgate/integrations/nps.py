"""Microsoft NPS backend: one Active Directory account per excepted MAC.

NPS authenticates MAB requests as ordinary users: the switch sends User-Name = User-Password = the MAC, and
NPS (its "User Identity Attribute" set to Calling-Station-Id, or the switch's own spelling) looks the name up
in AD. bootgate therefore keeps, in an OU dedicated to it, one user per excepted MAC:

  sAMAccountName = the MAC in the configured spelling (default 12 lower-case hex digits), password the same,
  member of the configured group (the group NPS' network policy matches, and the group a fine-grained
  password policy without complexity applies to: a MAC is not a complex password),
  accountExpires = the exception's end (AD itself refuses the account after it), enabled.

revoke disables the account (or deletes it, ``revoke_mode = "delete"``); both are idempotent, and an account
outside the OU is never touched. Passwords can only be set over TLS: LDAPS, or ldap:// with StartTLS, with
the server certificate validated. ldap3 is synchronous, so every call runs in a worker thread. The switch
port is re-authenticated by RADIUS CoA (NPS does not send one for bootgate).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any

import ldap3  # type: ignore[import-untyped]
from ldap3.core.exceptions import LDAPException  # type: ignore[import-untyped]
from ldap3.utils.conv import escape_filter_chars  # type: ignore[import-untyped]
from ldap3.utils.dn import escape_rdn  # type: ignore[import-untyped]

from .mab import CoaTarget, coa_reauthenticate, mac_formats, normalize_mac

__all__ = ["NPS_MAC_FORMATS", "NpsBackend", "NpsError", "filetime"]

NPS_MAC_FORMATS = ("bare", "BARE", "hyphen", "HYPHEN")  # spellings that are valid sAMAccountNames
UAC_DISABLED = 0x2
UAC_NORMAL = 0x200
UAC_DONT_EXPIRE_PASSWORD = 0x10000
_EPOCH_AS_FILETIME = 11_644_473_600  # seconds from 1601-01-01 to 1970-01-01
_OBJECT_CLASSES = ["top", "person", "organizationalPerson", "user"]


class NpsError(RuntimeError):
    pass


def filetime(epoch: float) -> int:
    """AD's accountExpires: 100 ns intervals since 1601-01-01 UTC."""
    return int((epoch + _EPOCH_AS_FILETIME) * 10_000_000)


class NpsBackend:
    name = "nps"

    def __init__(self, url: str, bind_dn: str, bind_password: str, *, ou_dn: str, group_dn: str = "",
                 ca_cert: str = "", mac_format: str = "bare", revoke_mode: str = "disable",
                 coa_targets: Sequence[CoaTarget] = (), coa_timeout: float = 2.0, timeout: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        if not url.startswith(("ldaps://", "ldap://")):
            raise ValueError(f"NPS directory URL {url!r}: use ldaps://dc:636 or ldap://dc:389 (StartTLS)")
        if mac_format not in NPS_MAC_FORMATS:
            raise ValueError(f"mac_format {mac_format!r}: use one of {', '.join(NPS_MAC_FORMATS)}")
        if revoke_mode not in ("disable", "delete"):
            raise ValueError(f"revoke_mode {revoke_mode!r}: use disable or delete")
        if not ou_dn:
            raise ValueError("ou_dn is empty: name the OU that holds bootgate's MAB accounts")
        self.url = url
        self.bind_dn = bind_dn
        self.bind_password = bind_password
        self.ou_dn = ou_dn
        self.group_dn = group_dn
        self.ca_cert = ca_cert
        self.mac_format = mac_format
        self.revoke_mode = revoke_mode
        self.coa_targets = list(coa_targets)
        self.coa_timeout = coa_timeout
        self.timeout = timeout
        self.clock = clock

    # -- directory plumbing (runs in a worker thread) -----------------------------------------------------------
    def _connect(self) -> ldap3.Connection:
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=self.ca_cert or None,
                        version=ssl.PROTOCOL_TLS_CLIENT)
        server = ldap3.Server(self.url, use_ssl=self.url.startswith("ldaps://"), tls=tls, get_info=ldap3.NONE,
                              connect_timeout=max(1, int(self.timeout)))
        conn = ldap3.Connection(server, self.bind_dn, self.bind_password, receive_timeout=max(1, int(self.timeout)),
                                raise_exceptions=False, auto_referrals=False)
        try:
            if not conn.open() and conn.closed:
                raise NpsError(f"NPS directory {self.url}: cannot connect")
            if self.url.startswith("ldap://") and not conn.start_tls():
                raise NpsError(f"NPS directory {self.url}: StartTLS refused: {conn.result.get('description')}")
            if not conn.bind():
                raise NpsError(f"NPS directory {self.url}: bind as {self.bind_dn} refused: "
                               f"{conn.result.get('description')}")
        except LDAPException as e:
            conn.unbind()
            raise NpsError(f"NPS directory {self.url}: {type(e).__name__}: {e}") from None
        return conn

    @staticmethod
    def _ok(conn: ldap3.Connection, what: str, ok: bool, *allowed: str) -> None:
        if not ok and conn.result.get("description") not in allowed:
            raise NpsError(f"NPS {what}: {conn.result.get('description')} {conn.result.get('message', '')}".strip())

    def _account(self, conn: ldap3.Connection, name: str) -> dict[str, Any] | None:
        conn.search(self.ou_dn, f"(&(objectClass=user)(sAMAccountName={escape_filter_chars(name)}))",
                    ldap3.SUBTREE, attributes=["userAccountControl"])
        self._ok(conn, f"search for {name}", conn.result.get("result") == 0)
        found = [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
        return found[0] if found else None

    def _run(self, fn: Callable[[ldap3.Connection], Any]) -> Any:
        conn = self._connect()
        try:
            return fn(conn)
        except LDAPException as e:
            raise NpsError(f"NPS directory {self.url}: {type(e).__name__}: {e}") from None
        finally:
            conn.unbind()

    def account_name(self, mac: str) -> str:
        return mac_formats(mac)[self.mac_format]

    # -- MabBackend -------------------------------------------------------------------------------------------
    async def grant(self, mac: str, expires: float, user: str) -> None:
        name = self.account_name(mac)
        until = dt.datetime.fromtimestamp(expires, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        description = f"bootgate MAB exception until {until} (login {user})"[:1024]

        def grant(conn: ldap3.Connection) -> None:
            found = self._account(conn, name)
            if found is None:
                dn = f"CN={escape_rdn(name)},{self.ou_dn}"
                # created disabled and without a password; the password comes after the group membership so the
                # group's fine-grained password policy (no complexity) is the one that applies
                self._ok(conn, f"add {dn}", conn.add(dn, _OBJECT_CLASSES, {
                    "sAMAccountName": name, "userAccountControl": UAC_NORMAL | UAC_DISABLED,
                    "description": description}))
            else:
                dn = found["dn"]
            if self.group_dn:
                self._ok(conn, f"add {dn} to {self.group_dn}",
                         conn.modify(self.group_dn, {"member": [(ldap3.MODIFY_ADD, [dn])]}),
                         "attributeOrValueExists", "entryAlreadyExists")
            pw = f'"{name}"'.encode("utf-16-le")
            self._ok(conn, f"set the password of {dn}", conn.modify(dn, {"unicodePwd": [(ldap3.MODIFY_REPLACE, [pw])]}))
            self._ok(conn, f"enable {dn}", conn.modify(dn, {
                "userAccountControl": [(ldap3.MODIFY_REPLACE, [UAC_NORMAL | UAC_DONT_EXPIRE_PASSWORD])],
                "accountExpires": [(ldap3.MODIFY_REPLACE, [filetime(expires)])],
                "description": [(ldap3.MODIFY_REPLACE, [description])]}))

        await asyncio.to_thread(self._run, grant)

    async def revoke(self, mac: str) -> None:
        name = self.account_name(mac)

        def revoke(conn: ldap3.Connection) -> None:
            found = self._account(conn, name)
            if found is None:
                return
            dn = found["dn"]
            if self.revoke_mode == "delete":
                self._ok(conn, f"delete {dn}", conn.delete(dn), "noSuchObject")
                return
            self._ok(conn, f"disable {dn}", conn.modify(dn, {
                "userAccountControl": [(ldap3.MODIFY_REPLACE, [UAC_NORMAL | UAC_DISABLED | UAC_DONT_EXPIRE_PASSWORD])],
                "accountExpires": [(ldap3.MODIFY_REPLACE, [filetime(self.clock())])],
                "description": [(ldap3.MODIFY_REPLACE, ["bootgate MAB exception revoked"])]}))

        await asyncio.to_thread(self._run, revoke)

    async def reauthenticate(self, mac: str) -> None:
        await coa_reauthenticate(self.coa_targets, mac, self.coa_timeout)

    async def expired(self) -> list[str]:
        """Enabled accounts in the OU whose accountExpires has passed (the sweep disables or deletes them)."""
        now = filetime(self.clock())

        def expired(conn: ldap3.Connection) -> list[str]:
            conn.search(self.ou_dn, f"(&(objectClass=user)(accountExpires<={now})(!(accountExpires=0))"
                                    "(!(userAccountControl:1.2.840.113556.1.4.803:=2)))",
                        ldap3.SUBTREE, attributes=["sAMAccountName"])
            self._ok(conn, "search for expired accounts", conn.result.get("result") == 0)
            macs = []
            for e in conn.response or []:
                if e.get("type") != "searchResEntry":
                    continue
                name = e.get("attributes", {}).get("sAMAccountName")
                if isinstance(name, list):  # without the schema ldap3 returns every attribute as a list
                    name = name[0] if name else ""
                try:
                    macs.append(normalize_mac(str(name)))
                except ValueError:
                    continue  # not one of ours
            return macs

        result: list[str] = await asyncio.to_thread(self._run, expired)
        return result
