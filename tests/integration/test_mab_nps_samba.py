"""The NPS backend (one AD account per MAC) against a real Samba AD DC over LDAPS and StartTLS.

NPS authenticates a MAB request as the user named by the MAC with the MAC as password, so "the exception
works" is checked the way NPS checks it: a bind as that account with that password succeeds while the
exception holds and fails before, after revoke and after accountExpires."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import ldap3
import pytest

from bootgate.integrations.mab import MabManager
from bootgate.integrations.nps import NpsBackend, NpsError, filetime
from tests.integration import samba_lab as sl

pytestmark = pytest.mark.skipif(not sl.AVAILABLE, reason=sl.SKIP_REASON)

OU = f"OU=bootgate MAB,{sl.BASE}"
GROUP = f"CN=MAB Imaging,{OU}"
MAC = "52:54:00:12:ab:cd"
NAME = "52540012abcd"


def admin(dc: sl.SambaDc) -> ldap3.Connection:
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(dc.ca_pem))
    return ldap3.Connection(ldap3.Server(dc.ldaps_url, use_ssl=True, tls=tls), sl.ADMIN, sl.ADMIN_PW,
                            auto_bind=True, raise_exceptions=True)


def prepare_directory(dc: sl.SambaDc) -> None:
    """What the operator sets up once (docs/security.md): the OU, the group NPS' policy matches, and a
    fine-grained password policy for the group (a MAC is not a complex password)."""
    c = admin(dc)
    c.add(OU, ["top", "organizationalUnit"])
    c.add(GROUP, ["top", "group"], {"sAMAccountName": "MAB Imaging", "groupType": -2147483646})
    c.add(f"CN=bootgate-mab,CN=Password Settings Container,CN=System,{sl.BASE}", ["top", "msDS-PasswordSettings"], {
        "msDS-PasswordSettingsPrecedence": 1, "msDS-PasswordReversibleEncryptionEnabled": "FALSE",
        "msDS-PasswordHistoryLength": 0, "msDS-PasswordComplexityEnabled": "FALSE",
        "msDS-MinimumPasswordLength": 12, "msDS-MinimumPasswordAge": 0,
        "msDS-MaximumPasswordAge": -9223372036854775808, "msDS-LockoutThreshold": 0,
        "msDS-LockoutObservationWindow": 0, "msDS-LockoutDuration": 0, "msDS-PSOAppliesTo": GROUP})
    c.unbind()


@pytest.fixture(scope="module")
def dc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sl.SambaDc]:
    dc = sl.start(tmp_path_factory.mktemp("samba"))
    try:
        prepare_directory(dc)
        yield dc
    finally:
        dc.stop()


def backend(dc: sl.SambaDc, **kw: object) -> NpsBackend:
    args: dict[str, object] = {"ou_dn": OU, "group_dn": GROUP, "ca_cert": str(dc.ca_pem), **kw}
    url = str(args.pop("url", dc.ldaps_url))
    password = str(args.pop("password", sl.ADMIN_PW))
    return NpsBackend(url, sl.ADMIN, password, **args)  # type: ignore[arg-type]


def nps_accepts(dc: sl.SambaDc, name: str, password: str | None = None) -> bool:
    """What NPS asks AD for a MAB request: does this user name + password authenticate?"""
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(dc.ca_pem))
    c = ldap3.Connection(ldap3.Server(dc.ldaps_url, use_ssl=True, tls=tls), f"BOOTGATE\\{name}",
                         password if password is not None else name, raise_exceptions=False)
    ok = bool(c.bind())
    c.unbind()
    return ok


def account(dc: sl.SambaDc, name: str) -> dict[str, object] | None:
    c = admin(dc)
    c.search(sl.BASE, f"(sAMAccountName={name})", attributes=["userAccountControl", "accountExpires", "memberOf",
                                                                  "distinguishedName"])
    entries = [dict(e["attributes"]) for e in c.response if e["type"] == "searchResEntry"]
    c.unbind()
    return entries[0] if entries else None


def clear(dc: sl.SambaDc, name: str) -> None:
    found = account(dc, name)
    if found is not None:
        c = admin(dc)
        c.delete(str(found["distinguishedName"]))
        c.unbind()


async def test_grant_enables_an_account_nps_accepts_until_revoke(dc: sl.SambaDc) -> None:
    clear(dc, NAME)
    b = backend(dc)
    assert not nps_accepts(dc, NAME)
    expires = time.time() + 900
    await b.grant("52-54-00-12-AB-CD", expires, "tech")
    acct = account(dc, NAME)
    assert acct is not None
    assert acct["distinguishedName"] == f"CN={NAME},{OU}" and acct["memberOf"] == [GROUP]
    assert int(str(acct["userAccountControl"])) & 0x2 == 0  # enabled
    assert abs(_expires_epoch(acct) - expires) < 2
    assert nps_accepts(dc, NAME) and not nps_accepts(dc, NAME, "wrong-password")

    await b.grant(MAC, expires + 60, "tech")  # twice: same account, same state, new expiry
    again = account(dc, NAME)
    assert again is not None and again["distinguishedName"] == acct["distinguishedName"]
    assert again["memberOf"] == [GROUP] and abs(_expires_epoch(again) - expires - 60) < 2
    assert nps_accepts(dc, NAME)

    await b.revoke("5254.0012.abcd")
    revoked = account(dc, NAME)
    assert revoked is not None and int(str(revoked["userAccountControl"])) & 0x2  # disabled, kept
    assert not nps_accepts(dc, NAME)
    await b.revoke(MAC)  # idempotent
    await b.grant(MAC, time.time() + 900, "tech")  # a later exception re-enables the same account
    assert nps_accepts(dc, NAME)
    await b.revoke(MAC)


def _expires_epoch(acct: dict[str, object]) -> float:
    raw = acct["accountExpires"]
    if hasattr(raw, "timestamp"):  # ldap3 decodes accountExpires to a datetime
        return float(raw.timestamp())
    return int(str(raw)) / 10_000_000 - 11_644_473_600


async def test_delete_mode_over_starttls_with_a_hyphen_spelling(dc: sl.SambaDc) -> None:
    name = "52-54-00-00-00-02"
    clear(dc, name)
    b = backend(dc, url=dc.ldap_url, revoke_mode="delete", mac_format="HYPHEN")
    await b.grant("525400000002", time.time() + 600, "tech")
    assert nps_accepts(dc, name)
    await b.revoke(name)
    assert account(dc, name) is None and not nps_accepts(dc, name)
    await b.revoke(name)  # nothing left to delete: fine


async def test_expired_account_is_refused_by_ad_and_swept(dc: sl.SambaDc) -> None:
    name = "525400000003"
    clear(dc, name)
    b = backend(dc)
    await b.grant(name, time.time() - 60, "tech")  # an exception whose end has passed
    assert not nps_accepts(dc, name)  # AD itself refuses it (accountExpires)
    await b.grant(name, time.time() + 600, "tech")
    assert nps_accepts(dc, name)
    await b.grant(name, time.time() - 1, "tech")
    assert "52:54:00:00:00:03" in await b.expired()
    m = MabManager([b], backoff=0.01)
    assert "52:54:00:00:00:03" in await m.expire()
    acct = account(dc, name)
    assert acct is not None and int(str(acct["userAccountControl"])) & 0x2
    assert "52:54:00:00:00:03" not in await b.expired()


async def test_accounts_outside_the_ou_are_never_touched(dc: sl.SambaDc) -> None:
    name = "525400000004"
    clear(dc, name)
    c = admin(dc)
    c.add(f"CN={name},CN=Users,{sl.BASE}", ["top", "person", "organizationalPerson", "user"],
          {"sAMAccountName": name, "userAccountControl": 0x202})
    c.unbind()
    b = backend(dc)
    await b.revoke(name)  # not in bootgate's OU: left alone
    acct = account(dc, name)
    assert acct is not None and acct["distinguishedName"] == f"CN={name},CN=Users,{sl.BASE}"
    with pytest.raises(NpsError):  # and bootgate does not create a second one beside it
        await b.grant(name, time.time() + 600, "tech")
    clear(dc, name)


async def test_directory_trouble_is_an_error_the_manager_records(dc: sl.SambaDc) -> None:
    with pytest.raises(NpsError, match="bind"):
        await backend(dc, password="wrong").grant(MAC, time.time() + 600, "tech")
    with pytest.raises(NpsError):  # a certificate from another CA is refused
        await backend(dc, ca_cert="/etc/ssl/certs/ca-certificates.crt").grant(MAC, time.time() + 600, "tech")
    m = MabManager([backend(dc, password="wrong")], attempts=2, backoff=0.01)
    assert not await m.grant_and_reauthenticate(MAC, "tech")
    [entry] = m.exceptions()
    assert entry["backends"]["nps"]["state"] == "grant_failed" and "bind" in entry["backends"]["nps"]["error"]
    assert m.counts[("nps", "grant", False)] == 1
    assert filetime(0) == 116444736000000000


async def test_the_group_password_policy_is_what_admits_a_mac_as_password(dc: sl.SambaDc) -> None:
    name = "525400000005"
    clear(dc, name)
    with pytest.raises(NpsError, match="complexity"):  # outside the group the domain policy applies
        await backend(dc, group_dn="").grant(name, time.time() + 600, "tech")
    acct = account(dc, name)
    assert acct is not None and int(str(acct["userAccountControl"])) & 0x2  # left disabled, never half-enabled
    assert not nps_accepts(dc, name)
    await backend(dc).grant(name, time.time() + 600, "tech")  # into the group first, then the password
    assert nps_accepts(dc, name)
    clear(dc, name)
