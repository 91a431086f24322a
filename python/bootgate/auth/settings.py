"""The [auth], [ldap] and [mab] config sections (schema and validation), kept here so config.py only
merges them: ``_SCHEMA.update(SECURITY_SCHEMA)`` and ``security=build_security_settings(values, fail)``."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..integrations.backends import MAB_SCHEMA, MabSettings, build_mab_settings
from .ldap import LdapConfigError, LdapSettings
from .ratelimit import LimitSettings
from .tokens import normalize_mac

__all__ = ["AuthSettings", "MabSettings", "SECURITY_SCHEMA", "SecuritySettings", "build_security_settings",
           "parse_client_name"]

SECURITY_SCHEMA: dict[str, dict[str, tuple[type, Any, str]]] = {
    "auth": {
        "token_ttl": (int, 3600, "seconds a boot token stays valid after login (covers a multi-minute image download)"),
        "max_failures": (int, 5, "failed logins per user or per machine within failure_window that lock it"),
        "failure_window": (int, 300, "seconds over which failed logins are counted"),
        "lockout": (int, 300, "seconds of the first lockout (doubles on each further one, up to an hour)"),
        "allow_http_login": (bool, False, "accept credentials over plain HTTP (never do this outside a lab)"),
        "http_script_clients": (str, "", "clients allowed boot scripts over plain HTTP (old iPXE builds without "
                                         "HTTPS), comma-separated: IPs, subnets (10.1.0.0/16), MACs, MAC prefixes "
                                         '(52:54:00), or "*" (everyone: labs only); empty = nobody'),
    },
    "ldap": {
        "url": (str, "", "ldaps://dc.example.org:636 or ldap://...:389 with start_tls; empty = login disabled"),
        "start_tls": (bool, True, "StartTLS on ldap:// URLs (required: plain LDAP is refused)"),
        "ca_cert": (str, "", "PEM file of the CA that signed the directory's certificate; empty = system store"),
        "base_dn": (str, "", "where users are searched"),
        "user_filter": (str, "(&(objectClass=person)(uid={username}))",
                        "user search filter; {username} is escaped (AD: (sAMAccountName={username}))"),
        "user_dn_template": (str, "", "bind DN built from the name instead of a search, e.g. "
                                      "uid={username},ou=people,dc=example,dc=org"),
        "bind_dn": (str, "", "service account for the user search (empty = anonymous search)"),
        "bind_password": (str, "", "its password"),
        "group_base_dn": (str, "", "where groups are searched (default base_dn)"),
        "group_filter": (str, "(|(objectClass=groupOfNames)(objectClass=group))", "what a group is"),
        "member_attribute": (str, "member", "group attribute that lists members (DNs)"),
        "nested": (str, "walk", '"walk" (follow nested groups by searches), "in_chain" (Active Directory), "none"'),
        "required_groups": (str, "", "semicolon-separated group DNs; login needs (nested) membership in one"),
        "timeout": (int, 5, "seconds per directory operation"),
    },
    "mab": MAB_SCHEMA,  # python/bootgate/integrations/backends.py
}


@dataclass(frozen=True)
class AuthSettings:
    token_ttl: int = 3600
    limits: LimitSettings = field(default_factory=LimitSettings)
    allow_http_login: bool = False
    http_script_clients: tuple[str, ...] = ()


@dataclass(frozen=True)
class SecuritySettings:
    auth: AuthSettings = field(default_factory=AuthSettings)
    ldap: LdapSettings | None = None  # None: login disabled
    mab: MabSettings = field(default_factory=MabSettings)


Fail = Callable[[str, str, str, str], Exception]


def parse_client_name(text: str) -> str:
    """One http_script_clients entry in canonical form: "*", "net:<network>" (an IP is a /32 or /128),
    or "mac:<colon-separated lowercase prefix of 1..6 octets>". ValueError otherwise."""
    text = text.strip()
    if text == "*":
        return "*"
    try:
        return "net:" + str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        pass
    hexdigits = "".join(c for c in text if c not in ":-.").lower()
    if (not hexdigits or len(hexdigits) % 2 or len(hexdigits) > 12
            or any(c not in "0123456789abcdef" for c in hexdigits)):
        raise ValueError(f"not an IP, subnet, MAC or MAC prefix: {text!r}")
    if len(hexdigits) == 12:
        return "mac:" + normalize_mac(hexdigits)
    return "mac:" + ":".join(hexdigits[i:i + 2] for i in range(0, len(hexdigits), 2))


def build_security_settings(values: Mapping[str, Mapping[str, Any]], fail: Fail) -> SecuritySettings:
    """`fail(section, key, problem, fix)` makes config.py's ConfigError (naming file and line)."""
    a = values["auth"]
    for key in ("token_ttl", "max_failures", "failure_window", "lockout"):
        if a[key] <= 0:
            raise fail("auth", key, f"is {a[key]}", "use a positive number")
    clients: list[str] = []
    for part in (p.strip() for p in a["http_script_clients"].split(",")):
        if not part:
            continue
        try:
            clients.append(parse_client_name(part))
        except ValueError:
            raise fail("auth", "http_script_clients", f"has {part!r}, not an IP, subnet, MAC or MAC prefix",
                       'list IPs, subnets (10.1.0.0/16), MACs or MAC prefixes (52:54:00) separated by commas, '
                       'or "*"') from None
    auth = AuthSettings(token_ttl=a["token_ttl"],
                        limits=LimitSettings(max_failures=a["max_failures"], window_seconds=a["failure_window"],
                                             lockout_seconds=a["lockout"]),
                        allow_http_login=a["allow_http_login"], http_script_clients=tuple(clients))

    lv = values["ldap"]
    ldap = None
    if lv["url"]:
        ldap = LdapSettings(url=lv["url"], start_tls=lv["start_tls"], ca_cert=lv["ca_cert"], base_dn=lv["base_dn"],
                            user_filter=lv["user_filter"], user_dn_template=lv["user_dn_template"],
                            bind_dn=lv["bind_dn"], bind_password=lv["bind_password"],
                            group_base_dn=lv["group_base_dn"], group_filter=lv["group_filter"],
                            member_attribute=lv["member_attribute"], nested=lv["nested"],
                            required_groups=tuple(g.strip() for g in lv["required_groups"].split(";") if g.strip()),
                            timeout=float(lv["timeout"]))
        try:
            ldap.validate()
        except LdapConfigError as e:
            raise fail("ldap", "url", "does not work: " + str(e), "fix the [ldap] section as the message says") from None

    mab = build_mab_settings(values["mab"], fail)  # [mab]: python/bootgate/integrations/backends.py
    return SecuritySettings(auth=auth, ldap=ldap, mab=mab)
