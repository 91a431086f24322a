"""ISE and ClearPass backends against fakes of their documented APIs (tests/unit/nac_fakes.py)."""

from __future__ import annotations

import httpx
import pytest

from bootgate.integrations.clearpass import ClearPassBackend
from bootgate.integrations.ise import IseBackend
from bootgate.integrations.mab import MabBackend, MabManager
from tests.unit.nac_fakes import FakeClearPass, FakeIse

MAC = "52-54-00-aa-bb-cc"
ISE_MAC = "52:54:00:AA:BB:CC"


def ise_backend(fake: FakeIse, **kw: object) -> IseBackend:
    args: dict[str, object] = {"psn": fake.psn, **kw}
    password = str(args.pop("password", fake.password))
    return IseBackend("https://ise.test:9060", fake.user, password, exception_group="bootgate-imaging",
                      transport=httpx.ASGITransport(app=fake.app), **args)  # type: ignore[arg-type]


async def test_ise_grant_creates_then_is_idempotent_then_revoke_moves_back() -> None:
    fake = FakeIse()
    b = ise_backend(fake)
    assert isinstance(b, MabBackend)
    await b.grant(MAC, 1_900_000_000, "alice")
    assert fake.group_of(ISE_MAC) == "bootgate-imaging"
    ep = next(iter(fake.endpoints.values()))
    assert ep["staticGroupAssignment"] and "alice" in ep["description"]
    n = len(fake.requests)
    await b.grant(MAC, 1_900_000_000, "alice")  # already there: lookups only
    assert [m for m, _ in fake.requests[n:]] == ["GET", "GET"]
    await b.reauthenticate(MAC)
    assert fake.coa == [ISE_MAC]
    await b.revoke(MAC)
    assert fake.group_of(ISE_MAC) == "Unknown"
    await b.revoke(MAC)  # idempotent: not in the exception group any more, nothing changes
    assert fake.group_of(ISE_MAC) == "Unknown"


async def test_ise_moves_an_existing_endpoint_and_leaves_foreign_groups_alone_on_revoke() -> None:
    fake = FakeIse()
    fake.endpoints["x"] = {"id": "x", "name": ISE_MAC, "mac": ISE_MAC, "groupId": fake.groups["Blocked List"],
                           "staticGroupAssignment": True, "description": ""}
    b = ise_backend(fake)
    await b.revoke(MAC)
    assert fake.group_of(ISE_MAC) == "Blocked List"
    await b.grant(MAC, 1_900_000_000, "bob")
    assert fake.group_of(ISE_MAC) == "bootgate-imaging" and len(fake.endpoints) == 1


async def test_ise_errors_surface_and_manager_retries() -> None:
    fake = FakeIse()
    with pytest.raises(RuntimeError, match="HTTP 401"):
        await ise_backend(fake, password="wrong").grant(MAC, 1_900_000_000, "a")
    fake.fail_next = 2
    m = MabManager([ise_backend(fake)], attempts=3, backoff=0.001)
    assert await m.grant_and_reauthenticate(MAC, "alice")
    assert m.history[0].attempts == 3 and fake.group_of(ISE_MAC) == "bootgate-imaging"
    with pytest.raises(RuntimeError, match="psn"):
        await ise_backend(fake, psn="").reauthenticate(MAC)


async def test_clearpass_grant_patch_revoke_and_coa() -> None:
    fake = FakeClearPass()
    b = ClearPassBackend("https://cppm.test", fake.client_id, fake.client_secret, coa_profile="bootgate-reauth",
                         transport=httpx.ASGITransport(app=fake.app))
    assert isinstance(b, MabBackend)
    await b.grant(MAC, 1_900_000_000, "alice")
    ep = fake.endpoints["525400aabbcc"]
    assert ep["status"] == "Known" and ep["attributes"]["MAC-Auth Expiry"] == "2030-03-17 17:46:40"
    await b.grant(MAC, 1_900_000_600, "alice")  # existing endpoint: expiry moved
    assert len(fake.endpoints) == 1 and ep["attributes"]["MAC-Auth Expiry"] == "2030-03-17 17:56:40"
    await b.reauthenticate(MAC)
    assert fake.coa == [("525400aabbcc", ["bootgate-reauth"])]
    await b.revoke(MAC)
    assert ep["status"] == "Unknown" and "MAC-Auth Expiry" not in ep["attributes"]
    await b.revoke("52:54:00:00:00:01")  # unknown endpoint: nothing to do


async def test_clearpass_token_refresh_and_bad_credentials() -> None:
    fake = FakeClearPass()
    b = ClearPassBackend("https://cppm.test", fake.client_id, fake.client_secret,
                         transport=httpx.ASGITransport(app=fake.app))
    await b.grant(MAC, 1_900_000_000, "alice")
    fake.tokens.clear()  # server-side revocation: the backend fetches a new token once
    await b.revoke(MAC)
    assert fake.endpoints["525400aabbcc"]["status"] == "Unknown"
    assert sum(1 for m, p in fake.requests if p == "/api/oauth") == 2
    bad = ClearPassBackend("https://cppm.test", fake.client_id, "nope", transport=httpx.ASGITransport(app=fake.app))
    with pytest.raises(RuntimeError, match="OAuth"):
        await bad.grant(MAC, 1_900_000_000, "a")
