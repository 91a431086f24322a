"""Collections: static membership plus rules (pure).

A rule is a JSON object; all its keys must match (AND), and a machine is in the collection when it is a
static member or any rule matches (OR). Keys:

- ``mac_prefix``: "52:54:00" (any spelling; compared on the booting MAC)
- ``manufacturer``, ``product``, ``uuid``, ``serial``, ``name``: shell-style patterns, case-insensitive
- ``subnet``: CIDR the client's IP (or the IP iPXE reported) is in
- ``relay``: IP of the DHCP relay agent (giaddr) the client came through
- ``buildarch``, ``platform``: exact (e.g. x86_64, efi)
- ``unknown``: true matches machines registered by zero-touch and not marked known
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RULE_KEYS", "HostFacts", "in_collection", "is_unknown_collection", "rule_matches", "validate_rules"]

RULE_KEYS = ("mac_prefix", "manufacturer", "product", "uuid", "serial", "name", "subnet", "relay", "buildarch",
             "platform", "unknown")
_GLOBS = ("manufacturer", "product", "uuid", "serial", "name")


@dataclass(frozen=True)
class HostFacts:
    """Everything the decision knows about a booting machine."""

    host_id: int
    mac: str
    name: str = ""
    uuid: str = ""
    serial: str = ""
    manufacturer: str = ""
    product: str = ""
    known: bool = False
    installed: bool = False
    wipe_approved: bool = False
    client_ip: str = ""
    reported_ip: str = ""
    relay: str = ""
    buildarch: str = ""
    platform: str = ""
    static_collections: frozenset[int] = field(default_factory=frozenset)


def _mac_prefix(value: str) -> str:
    compact = value.strip().lower().replace(":", "").replace("-", "").replace(".", "")
    if not compact or len(compact) > 12 or any(c not in "0123456789abcdef" for c in compact):
        raise ValueError(f"mac_prefix {value!r} is not hex digits of a MAC address")
    return compact


def validate_rules(rules: Any) -> list[dict[str, Any]]:
    """Checks a rule list (from the API); returns it with values normalised. Raises ValueError."""
    if not isinstance(rules, list):
        raise ValueError("rules must be a list of objects")
    out: list[dict[str, Any]] = []
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict) or not rule:
            raise ValueError(f"rule {i} must be a non-empty object")
        clean: dict[str, Any] = {}
        for k, v in rule.items():
            if k not in RULE_KEYS:
                raise ValueError(f"rule {i}: unknown key {k!r} (known: {', '.join(RULE_KEYS)})")
            if k == "unknown":
                if v is not True:
                    raise ValueError(f"rule {i}: unknown must be true")
                clean[k] = True
                continue
            if not isinstance(v, str) or not v or len(v) > 256:
                raise ValueError(f"rule {i}: {k} must be a non-empty string")
            if k == "mac_prefix":
                clean[k] = _mac_prefix(v)
            elif k == "subnet":
                try:
                    clean[k] = str(ipaddress.ip_network(v, strict=False))
                except ValueError:
                    raise ValueError(f"rule {i}: subnet {v!r} is not a CIDR network") from None
            elif k == "relay":
                try:
                    clean[k] = str(ipaddress.ip_address(v))
                except ValueError:
                    raise ValueError(f"rule {i}: relay {v!r} is not an IP address") from None
            else:
                clean[k] = v
        out.append(clean)
    return out


def _in_subnet(ip: str, net: str) -> bool:
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(net)
    except ValueError:
        return False


def rule_matches(rule: Mapping[str, Any], h: HostFacts) -> bool:
    for k, v in rule.items():
        if k == "unknown":
            ok = not h.known
        elif k == "mac_prefix":
            ok = h.mac.replace(":", "").startswith(str(v))
        elif k in _GLOBS:
            ok = fnmatch.fnmatchcase(str(getattr(h, k)).lower(), str(v).lower())
        elif k == "subnet":
            ok = any(_in_subnet(ip, str(v)) for ip in (h.client_ip, h.reported_ip) if ip)
        elif k == "relay":
            ok = bool(h.relay) and h.relay == v
        elif k in ("buildarch", "platform"):
            ok = getattr(h, k) == v
        else:
            ok = False
        if not ok:
            return False
    return True


def in_collection(collection_id: int, rules: Sequence[Mapping[str, Any]], h: HostFacts) -> bool:
    return collection_id in h.static_collections or any(rule_matches(r, h) for r in rules)


def is_unknown_collection(rules: Sequence[Mapping[str, Any]]) -> bool:
    """A collection that targets unknown machines (the re-image guard keeps installed machines out)."""
    return any(r.get("unknown") is True for r in rules)
