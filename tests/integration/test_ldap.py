"""LDAP login against a real OpenLDAP slapd on loopback (LDAPS and StartTLS with a test CA)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from bootgate.auth.ldap import LdapAuthenticator, LdapConfigError, LdapSettings

from tests.integration import slapd_lab as lab
from tests.integration.slapd_lab import slapd  # noqa: F401 - the fixture

pytestmark = pytest.mark.skipif(not lab.AVAILABLE, reason=lab.SKIP_REASON)


def settings(s: lab.Slapd, **kw: object) -> LdapSettings:
    base = LdapSettings(url=s.ldaps_url, start_tls=False, ca_cert=str(s.ca_pem), base_dn=f"ou=people,{lab.BASE}",
                        user_filter="(&(objectClass=inetOrgPerson)(uid={username}))",
                        group_base_dn=f"ou=groups,{lab.BASE}", required_groups=(lab.TECHS,), timeout=3.0)
    return replace(base, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["ldaps", "starttls"])
def test_direct_and_nested_members_log_in(slapd: lab.Slapd, mode: str) -> None:
    kw: dict[str, object] = {} if mode == "ldaps" else {"url": slapd.ldap_url, "start_tls": True}
    auth = LdapAuthenticator(settings(slapd, **kw))
    a = auth.authenticate("alice", lab.PASSWORDS["alice"])
    assert a.ok and a.reason == "ok" and a.user_dn == f"uid=alice,ou=people,{lab.BASE}"
    b = auth.authenticate("bob", lab.PASSWORDS["bob"])  # member of subteam, which is member of techs
    assert b.ok, b
    assert lab.TECHS.lower() in b.groups and lab.SUBTEAM.lower() in b.groups


def test_nested_membership_not_followed_when_disabled(slapd: lab.Slapd) -> None:
    auth = LdapAuthenticator(settings(slapd, nested="none"))
    assert auth.authenticate("alice", lab.PASSWORDS["alice"]).ok
    r = auth.authenticate("bob", lab.PASSWORDS["bob"])
    assert not r.ok and r.reason == "not_in_group"


def test_wrong_password_unknown_user_outside_group(slapd: lab.Slapd) -> None:
    auth = LdapAuthenticator(settings(slapd))
    assert auth.authenticate("alice", "nope").reason == "invalid_credentials"
    assert auth.authenticate("mallory", "whatever").reason == "unknown_user"
    r = auth.authenticate("carol", lab.PASSWORDS["carol"])
    assert not r.ok and r.reason == "not_in_group"
    # No group required: carol's password is right, so she logs in.
    assert LdapAuthenticator(settings(slapd, required_groups=())).authenticate("carol", lab.PASSWORDS["carol"]).ok


def test_empty_password_refused_even_though_ldap_would_accept_unauthenticated_bind(slapd: lab.Slapd) -> None:
    auth = LdapAuthenticator(settings(slapd))
    r = auth.authenticate("alice", "")
    assert not r.ok and r.reason == "empty_password"


def test_filter_injection_is_escaped(slapd: lab.Slapd) -> None:
    auth = LdapAuthenticator(settings(slapd, required_groups=()))
    # Unescaped, "*" would match every person (and "alice)(uid=*" would change the filter).
    assert auth.authenticate("*", lab.PASSWORDS["alice"]).reason == "unknown_user"
    assert auth.authenticate("alice)(uid=*", lab.PASSWORDS["alice"]).reason == "unknown_user"
    assert auth.authenticate("ali*", lab.PASSWORDS["alice"]).reason == "unknown_user"
    # A real uid holding filter metacharacters still works, because it is escaped, not stripped.
    assert auth.authenticate("st*r(x)", lab.PASSWORDS["st*r(x)"]).ok


def test_dn_template_with_escaping_and_service_bind(slapd: lab.Slapd) -> None:
    tmpl = LdapAuthenticator(settings(slapd, base_dn="", user_dn_template=f"uid={{username}},ou=people,{lab.BASE}",
                                      required_groups=()))
    assert tmpl.authenticate("alice", lab.PASSWORDS["alice"]).ok
    assert tmpl.authenticate("st*r(x)", lab.PASSWORDS["st*r(x)"]).ok
    assert tmpl.authenticate("alice,ou=people", lab.PASSWORDS["alice"]).reason == "invalid_credentials"
    svc = LdapAuthenticator(settings(slapd, bind_dn=lab.ROOT_DN, bind_password=lab.ROOT_PW))
    assert svc.authenticate("bob", lab.PASSWORDS["bob"]).ok


def test_certificate_validation_rejects_unknown_ca(slapd: lab.Slapd, tmp_path: Path) -> None:
    other_ca, *_ = lab.make_ca(tmp_path, cn="someone else's CA")
    for kw in ({}, {"url": slapd.ldap_url, "start_tls": True}):
        r = LdapAuthenticator(settings(slapd, ca_cert=str(other_ca), **kw)).authenticate(
            "alice", lab.PASSWORDS["alice"])
        assert not r.ok and r.reason == "directory_unavailable"


def test_directory_down(slapd: lab.Slapd) -> None:
    r = LdapAuthenticator(settings(slapd, url=f"ldaps://127.0.0.1:{lab.free_port()}", timeout=1.0)).authenticate(
        "alice", lab.PASSWORDS["alice"])
    assert not r.ok and r.reason == "directory_unavailable"


def test_plain_ldap_without_starttls_is_a_config_error() -> None:
    with pytest.raises(LdapConfigError, match="start_tls"):
        LdapAuthenticator(LdapSettings(url="ldap://127.0.0.1:389", start_tls=False, base_dn="dc=x"))
    with pytest.raises(LdapConfigError, match="nested"):
        LdapAuthenticator(LdapSettings(url="ldaps://127.0.0.1", base_dn="dc=x", nested="deep"))
