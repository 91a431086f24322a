"""Every HTTP NAC backend through the manager: grant twice and revoke twice leave the NAC in the same state,
in whatever MAC spelling the caller uses; a NAC that never answers times out and is recorded."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import httpx
import pytest

from bootgate.integrations.clearpass import ClearPassBackend
from bootgate.integrations.ise import IseBackend
from bootgate.integrations.mab import MabBackend, MabManager
from tests.unit.nac_fakes import FakeClearPass, FakeIse


def ise(fake: FakeIse) -> IseBackend:
    return IseBackend("https://ise.test:9060", fake.user, fake.password, exception_group="bootgate-imaging",
                      psn=fake.psn, transport=httpx.ASGITransport(app=fake.app))


def clearpass(fake: FakeClearPass) -> ClearPassBackend:
    return ClearPassBackend("https://cppm.test", fake.client_id, fake.client_secret,
                            transport=httpx.ASGITransport(app=fake.app))


@pytest.mark.parametrize("kind", ["ise", "clearpass"])
async def test_twice_is_the_same_state(kind: str) -> None:
    fake: Any = FakeIse() if kind == "ise" else FakeClearPass()
    backend: MabBackend = ise(fake) if kind == "ise" else clearpass(fake)
    t = [1_900_000_000.0]
    m = MabManager([backend], ttl=600, backoff=0.001, clock=lambda: t[0])
    assert await m.grant_and_reauthenticate("52-54-00-AA-BB-CC", "alice")
    once = copy.deepcopy(fake.endpoints)
    assert await m.grant_and_reauthenticate("5254.00aa.bbcc", "alice")
    assert fake.endpoints == once and len(once) == 1
    assert await m.revoke("525400AABBCC")
    revoked = copy.deepcopy(fake.endpoints)
    assert revoked != once
    assert await m.revoke("52:54:00:aa:bb:cc")
    assert fake.endpoints == revoked and m.exceptions() == []
    assert [(h.operation, h.ok) for h in m.history] == [("grant", True), ("reauthenticate", True)] * 2 + [
        ("revoke", True)] * 2


class Silent(httpx.AsyncBaseTransport):
    """A NAC that accepts the connection and never answers."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


async def test_a_silent_nac_times_out() -> None:
    b = IseBackend("https://ise.test:9060", "u", "p", exception_group="g", psn="psn", transport=Silent())
    m = MabManager([b], attempts=2, backoff=0.001, call_timeout=0.05)
    assert not await m.grant_and_reauthenticate("52:54:00:aa:bb:cc", "a")
    [e] = m.exceptions()
    assert e["backends"]["ise"] == {**e["backends"]["ise"], "state": "grant_failed",
                                    "error": "TimeoutError: no answer within 0.05 s"}
    assert m.history[-1].attempts == 2
