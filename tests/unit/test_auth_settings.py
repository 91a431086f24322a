from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bootgate.auth.service import build_security
from bootgate.auth.settings import SECURITY_SCHEMA, build_security_settings


class Fail(Exception):
    pass


def fail(section: str, key: str, problem: str, fix: str) -> Exception:
    return Fail(f"[{section}] {key} {problem}: {fix}")


def values(**over: dict[str, Any]) -> dict[str, dict[str, Any]]:
    v = {s: {k: d for k, (_t, d, _c) in keys.items()} for s, keys in SECURITY_SCHEMA.items()}
    for section, kv in over.items():
        v[section].update(kv)
    return v


def test_defaults_disable_login_and_mab(tmp_path: Path) -> None:
    s = build_security_settings(values(), fail)
    assert s.ldap is None and s.mab.backend == "" and s.auth.token_ttl == 3600
    svc = build_security(s, tmp_path)
    assert svc.authenticator is None and svc.mab is None
    assert (tmp_path / "auth" / "token.key").stat().st_mode & 0o077 == 0


def test_full_config(tmp_path: Path) -> None:
    s = build_security_settings(values(
        auth={"http_script_clients": "10.0.0.5, 52-54-00-AA-BB-CC", "max_failures": 3},
        ldap={"url": "ldaps://dc.example.org", "base_dn": "dc=example,dc=org",
              "required_groups": "cn=a,dc=x; cn=b,dc=x"},
        mab={"backend": "freeradius", "coa_targets": "127.0.0.1:3799, 10.1.1.1:1700", "coa_secret": "s"}), fail)
    assert s.ldap is not None and s.ldap.required_groups == ("cn=a,dc=x", "cn=b,dc=x")
    assert s.mab.coa_targets == (("127.0.0.1", 3799), ("10.1.1.1", 1700))
    assert s.auth.limits.max_failures == 3
    svc = build_security(s, tmp_path)
    assert svc.mab is not None and svc.mab_table is not None
    assert svc.http_script_allowed("10.0.0.5", "")
    assert svc.http_script_allowed("10.9.9.9", "52:54:00:aa:bb:cc")
    assert not svc.http_script_allowed("10.9.9.9", "52:54:00:aa:bb:cd")


def test_http_script_clients_ips_subnets_macs_prefixes(tmp_path: Path) -> None:
    names = "198.18.4.0/24, 10.0.0.5, 52-54-00, AABB.CCDD.EEFF"
    s = build_security_settings(values(auth={"http_script_clients": names}), fail)
    assert s.auth.http_script_clients == ("net:198.18.4.0/24", "net:10.0.0.5/32", "mac:52:54:00",
                                          "mac:aa:bb:cc:dd:ee:ff")
    svc = build_security(s, tmp_path)
    assert svc.http_script_allowed("198.18.4.77") and svc.http_script_allowed("10.0.0.5")
    assert not svc.http_script_allowed("198.18.5.1") and not svc.http_script_allowed("10.0.0.6")
    assert svc.http_script_allowed("10.9.9.9", "52:54:00:12:34:56")
    assert not svc.http_script_allowed("10.9.9.9", "52:54:01:12:34:56")
    assert svc.http_script_allowed("10.9.9.9", "aa-bb-cc-dd-ee-ff")
    assert not svc.http_script_allowed("10.9.9.9", "aa-bb-cc-dd-ee-fe")
    assert not svc.http_script_allowed("10.9.9.9", "not a mac")
    # the bootstrap carries no MAC: MAC entries let it through, the MAC is checked on /boot
    assert svc.http_script_allowed("10.9.9.9", mac_later=True)
    nobody = build_security(build_security_settings(values(), fail), tmp_path)
    assert not nobody.http_script_allowed("10.0.0.5", "52:54:00:12:34:56", mac_later=True)
    everyone = build_security(build_security_settings(values(auth={"http_script_clients": "*"}), fail), tmp_path)
    assert everyone.http_script_allowed("203.0.113.9", "")


@pytest.mark.parametrize("over, match", [
    ({"ldap": {"url": "ldap://dc", "start_tls": False, "base_dn": "x"}}, "start_tls"),
    ({"ldap": {"url": "http://dc", "base_dn": "x"}}, "ldap://"),
    ({"mab": {"backend": "tacacs"}}, "backend"),
    ({"mab": {"coa_targets": "switch:3799", "coa_secret": "s"}}, "coa_targets"),
    ({"mab": {"coa_targets": "10.0.0.1:3799"}}, "coa_secret"),
    ({"auth": {"http_script_clients": "pc-42"}}, "http_script_clients"),
    ({"auth": {"http_script_clients": "52:54:0"}}, "http_script_clients"),
    ({"auth": {"http_script_clients": "10.0.0.0/33"}}, "http_script_clients"),
    ({"auth": {"token_ttl": 0}}, "token_ttl"),
])
def test_errors_name_the_key(over: dict[str, dict[str, Any]], match: str) -> None:
    with pytest.raises(Fail, match=match):
        build_security_settings(values(**over), fail)


@pytest.mark.parametrize("backend", ["ise", "clearpass"])
def test_nac_backends_built(tmp_path: Path, backend: str) -> None:
    s = build_security_settings(values(mab={"backend": backend, "nac_url": "https://nac.test", "nac_username": "u",
                                            "nac_password": "p", "ise_psn": "psn1"}), fail)
    svc = build_security(s, tmp_path)
    assert svc.mab is not None and svc.mab.backends[0].name == backend and svc.mab_table is None
    with pytest.raises(Fail, match="nac_url"):
        build_security_settings(values(mab={"backend": backend, "nac_url": "http://nac.test"}), fail)
