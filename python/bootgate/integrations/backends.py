"""The configured MAB backends: the [mab] config section (schema, validation) and their construction.

auth/settings.py merges the schema (``"mab": MAB_SCHEMA``) and calls :func:`build_mab_settings`;
auth/service.py calls :func:`build_mab` once at start.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .mab import CoaTarget, ExceptionTable, MabBackend, MabManager

__all__ = ["BACKENDS", "MAB_SCHEMA", "MabSettings", "build_mab", "build_mab_settings"]

BACKENDS = ("freeradius", "freeradius-sql", "ise", "clearpass", "nps")
MAC_SPELLINGS = ("HYPHEN", "hyphen", "COLON", "colon", "dot", "BARE", "bare")

MAB_SCHEMA: dict[str, tuple[type, Any, str]] = {
    "backend": (str, "", '"freeradius" (rlm_rest asks bootgate), "freeradius-sql" (bootgate writes the table '
                         'rlm_sql reads), "ise", "clearpass", "nps" (an AD account per MAC); several: comma-separated; '
                         "empty = no MAB exceptions"),
    "exception_ttl": (int, 3600, "seconds a MAC exception lasts after a login"),
    "rest_secret": (str, "", "HTTP Basic password FreeRADIUS rlm_rest sends to /api/v1/mab/authorize"),
    "sql_url": (str, "", "freeradius-sql: database FreeRADIUS reads, sqlite:////var/lib/bootgate/mab.db or "
                         "postgresql://bootgate@db/radius"),
    "sql_table": (str, "bootgate_mab", "freeradius-sql: table name; the views are <table>_radcheck, <table>_radreply"),
    "coa_targets": (str, "", "comma-separated switch host:port receiving RADIUS CoA (RFC 5176), e.g. 10.0.0.2:3799 "
                             "(freeradius, freeradius-sql, nps)"),
    "coa_secret": (str, "", "RADIUS shared secret for the CoA targets"),
    "coa_mode": (str, "cisco-reauth", '"cisco-reauth" (Cisco-AVPair reauthenticate) or "disconnect"'),
    "coa_mac_format": (str, "HYPHEN", "Calling-Station-Id spelling: HYPHEN, hyphen, COLON, colon, dot, BARE, bare"),
    "nac_url": (str, "", "ise: https://ise:9060 (ERS); clearpass: https://clearpass; nps: ldaps://dc:636 (or "
                         "ldap://dc:389, StartTLS)"),
    "nac_username": (str, "", "ise: ERS admin user; clearpass: API client id; nps: account that manages the OU"),
    "nac_password": (str, "", "ise: its password; clearpass: API client secret; nps: its password"),
    "nac_ca_cert": (str, "", "PEM file of the CA of the NAC's (or DC's) certificate; empty = system store"),
    "ise_exception_group": (str, "bootgate-imaging", "ISE endpoint identity group that the MAB policy permits"),
    "ise_fallback_group": (str, "Unknown", "ISE group an endpoint returns to on revoke"),
    "ise_psn": (str, "", "ISE policy service node name for the MnT CoA (re-authentication)"),
    "clearpass_expiry_attribute": (str, "MAC-Auth Expiry", "ClearPass endpoint attribute holding the expiry"),
    "clearpass_coa_profile": (str, "", "ClearPass enforcement profile sent with the CoA (empty = default)"),
    "nps_ou": (str, "", "nps: DN of the OU that holds bootgate's MAC accounts (bootgate only touches accounts there)"),
    "nps_group": (str, "", "nps: DN of the group NPS' network policy matches (and the no-complexity password policy)"),
    "nps_mac_format": (str, "bare", "nps: account name and password spelling of the MAC: bare, BARE, hyphen, HYPHEN"),
    "nps_revoke": (str, "disable", 'nps: "disable" the account on revoke, or "delete" it'),
    "attempts": (int, 3, "tries per NAC call (with backoff)"),
    "timeout": (int, 10, "seconds per NAC call"),
}


@dataclass(frozen=True)
class MabSettings:
    backend: str = ""  # comma-separated when several
    exception_ttl: int = 3600
    rest_secret: str = ""
    sql_url: str = ""
    sql_table: str = "bootgate_mab"
    coa_targets: tuple[tuple[str, int], ...] = ()
    coa_secret: str = ""
    coa_mode: str = "cisco-reauth"
    coa_mac_format: str = "HYPHEN"
    attempts: int = 3
    timeout: int = 10
    nac_url: str = ""
    nac_username: str = ""
    nac_password: str = ""
    nac_ca_cert: str = ""
    ise_exception_group: str = "bootgate-imaging"
    ise_fallback_group: str = "Unknown"
    ise_psn: str = ""
    clearpass_expiry_attribute: str = "MAC-Auth Expiry"
    clearpass_coa_profile: str = ""
    nps_ou: str = ""
    nps_group: str = ""
    nps_mac_format: str = "bare"
    nps_revoke: str = "disable"

    @property
    def backends(self) -> tuple[str, ...]:
        return tuple(b.strip() for b in self.backend.split(",") if b.strip())


Fail = Callable[[str, str, str, str], Exception]


def _choice(m: Mapping[str, Any], fail: Fail, key: str, allowed: tuple[str, ...]) -> None:
    if m[key] not in allowed:
        raise fail("mab", key, f"is {m[key]!r}", "use " + ", ".join(allowed))


def build_mab_settings(m: Mapping[str, Any], fail: Fail) -> MabSettings:
    """The [mab] values checked; `fail(section, key, problem, fix)` makes config.py's ConfigError."""
    names = [b.strip() for b in m["backend"].split(",") if b.strip()]
    for name in names:
        if name not in BACKENDS:
            raise fail("mab", "backend", f"has {name!r}", "use " + ", ".join(f'"{b}"' for b in BACKENDS) +
                       " (comma-separated for several) or leave it empty")
    if len(set(names)) != len(names):
        raise fail("mab", "backend", "names a backend twice", "name each backend once")
    for name in set(names) & {"ise", "clearpass"}:
        if not m["nac_url"].startswith("https://"):
            raise fail("mab", "nac_url", f"is {m['nac_url']!r}", f"set the {name} API base URL (https://...)")
    if "nps" in names:
        if not m["nac_url"].startswith(("ldaps://", "ldap://")):
            raise fail("mab", "nac_url", f"is {m['nac_url']!r}", "set the domain controller's URL for nps: "
                                                                 "ldaps://dc.example:636 or ldap://dc.example:389")
        if not m["nps_ou"]:
            raise fail("mab", "nps_ou", "is empty", "name the OU that holds bootgate's MAC accounts, e.g. "
                                                    '"OU=MAB,DC=corp,DC=example"')
        _choice(m, fail, "nps_mac_format", ("bare", "BARE", "hyphen", "HYPHEN"))
        _choice(m, fail, "nps_revoke", ("disable", "delete"))
    if set(names) & {"ise", "clearpass", "nps"} and (not m["nac_username"] or not m["nac_password"]):
        raise fail("mab", "nac_username", "or nac_password is empty", "set the NAC/directory credentials")
    if "freeradius-sql" in names:
        from .freeradius_sql import TABLE_NAME, sql_url  # noqa: PLC0415

        try:
            sql_url(m["sql_url"])
        except ValueError:
            raise fail("mab", "sql_url", f"is {m['sql_url']!r}", "give the database FreeRADIUS reads: "
                       "sqlite:////var/lib/bootgate/mab.db or postgresql://user@host/db") from None
        if not TABLE_NAME.match(m["sql_table"]):
            raise fail("mab", "sql_table", f"is {m['sql_table']!r}", "use lower-case letters, digits and _")
    _choice(m, fail, "coa_mode", ("cisco-reauth", "disconnect"))
    _choice(m, fail, "coa_mac_format", MAC_SPELLINGS)
    targets: list[tuple[str, int]] = []
    for part in (p.strip() for p in m["coa_targets"].split(",")):
        if not part:
            continue
        host, _, port_s = part.rpartition(":")
        try:
            ipaddress.ip_address(host.strip("[]"))
            port = int(port_s)
            if not 0 < port < 65536:
                raise ValueError
        except ValueError:
            raise fail("mab", "coa_targets", f"has {part!r}", "write switch addresses as ip:port, e.g. "
                                                              "10.0.0.2:3799") from None
        targets.append((host.strip("[]"), port))
    if targets and not m["coa_secret"]:
        raise fail("mab", "coa_secret", "is empty but coa_targets are set", "set the switches' RADIUS CoA secret")
    for key in ("exception_ttl", "attempts", "timeout"):
        if m[key] <= 0:
            raise fail("mab", key, f"is {m[key]}", "use a positive number")
    plain = {k: m[k] for k in MAB_SCHEMA if k != "coa_targets"}
    plain["backend"] = ", ".join(names)
    return MabSettings(coa_targets=tuple(targets), **plain)


def build_mab(s: MabSettings, data_dir: Path) -> tuple[MabManager | None, ExceptionTable | None]:
    """The manager running the configured backends (None without any), and the exception table the
    rlm_rest route answers from (None unless "freeradius" is configured)."""
    if not s.backends:
        return None, None
    targets = [CoaTarget(h, p, s.coa_secret.encode(), s.coa_mode, s.coa_mac_format) for h, p in s.coa_targets]
    # every switch is asked in turn within one call: each gets a share of [mab] timeout, at most 2 s
    coa_timeout = min(2.0, s.timeout / (len(targets) + 1))
    verify: str | bool = s.nac_ca_cert or True
    table = None
    backends: list[MabBackend] = []
    for name in s.backends:
        if name == "freeradius":
            from .mab import FreeRadiusRestBackend  # noqa: PLC0415

            table = ExceptionTable(data_dir / "auth" / "mab_exceptions.json")
            backends.append(FreeRadiusRestBackend(table, targets, coa_timeout))
        elif name == "freeradius-sql":
            from .freeradius_sql import FreeRadiusSqlBackend  # noqa: PLC0415

            backends.append(FreeRadiusSqlBackend(s.sql_url, s.sql_table, targets, coa_timeout))
        elif name == "ise":
            from .ise import IseBackend  # noqa: PLC0415

            backends.append(IseBackend(s.nac_url, s.nac_username, s.nac_password,
                                       exception_group=s.ise_exception_group, fallback_group=s.ise_fallback_group,
                                       psn=s.ise_psn, verify=verify, timeout=float(s.timeout)))
        elif name == "clearpass":
            from .clearpass import ClearPassBackend  # noqa: PLC0415

            backends.append(ClearPassBackend(s.nac_url, s.nac_username, s.nac_password,
                                             expiry_attribute=s.clearpass_expiry_attribute,
                                             coa_profile=s.clearpass_coa_profile, verify=verify,
                                             timeout=float(s.timeout)))
        elif name == "nps":
            from .nps import NpsBackend  # noqa: PLC0415

            backends.append(NpsBackend(s.nac_url, s.nac_username, s.nac_password, ou_dn=s.nps_ou,
                                       group_dn=s.nps_group, ca_cert=s.nac_ca_cert, mac_format=s.nps_mac_format,
                                       revoke_mode=s.nps_revoke, coa_targets=targets, coa_timeout=coa_timeout,
                                       timeout=float(s.timeout)))
    manager = MabManager(backends, ttl=s.exception_ttl, call_timeout=s.timeout, attempts=s.attempts,
                         state_path=data_dir / "auth" / "mab_state.json")
    return manager, table
