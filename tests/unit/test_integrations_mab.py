from __future__ import annotations

from pathlib import Path

import pytest

from bootgate.integrations.mab import ExceptionTable, MabBackend, MabManager, mac_formats

MAC = "52:54:00:aa:bb:cc"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Flaky:
    name = "flaky"

    def __init__(self, fail_times: int) -> None:
        self.fail_times = fail_times
        self.calls: list[str] = []

    async def grant(self, mac: str, expires: float, user: str) -> None:
        self.calls.append("grant")
        if self.fail_times > 0:
            self.fail_times -= 1
            raise ConnectionError("NAC down")

    async def revoke(self, mac: str) -> None:
        self.calls.append("revoke")

    async def reauthenticate(self, mac: str) -> None:
        self.calls.append("reauthenticate")


def test_table_persists_and_expires(tmp_path: Path) -> None:
    c = Clock()
    t = ExceptionTable(tmp_path / "x.json", clock=c)
    t.grant("52-54-00-AA-BB-CC", 1100, "alice")
    t2 = ExceptionTable(tmp_path / "x.json", clock=c)
    assert t2.lookup("5254.00aa.bbcc") == pytest.approx(100)
    c.t = 1100
    assert t2.lookup(MAC) is None and t2.expired() == [MAC]
    assert t2.revoke(MAC) and not t2.revoke(MAC)
    (tmp_path / "bad.json").write_text("{not json")
    assert ExceptionTable(tmp_path / "bad.json").entries() == []


async def test_retries_then_success_and_failure_recorded() -> None:
    b = Flaky(fail_times=2)
    assert isinstance(b, MabBackend)
    m = MabManager([b], attempts=3, backoff=0.001, clock=Clock())
    assert await m.grant_and_reauthenticate(MAC, "alice")
    assert b.calls == ["grant", "grant", "grant", "reauthenticate"]
    assert [(h.operation, h.ok, h.attempts) for h in m.history] == [("grant", True, 3), ("reauthenticate", True, 1)]
    b2 = Flaky(fail_times=5)
    m2 = MabManager([b2], attempts=2, backoff=0.001, clock=Clock())
    assert not await m2.grant_and_reauthenticate(MAC, "alice")
    assert b2.calls == ["grant", "grant"]  # no reauthenticate without the exception in place
    assert m2.history[-1].error == "ConnectionError: NAC down" and m2.counts[("flaky", "grant", False)] == 1


async def test_expiry_sweep_revokes() -> None:
    c = Clock()
    b = Flaky(0)
    m = MabManager([b], ttl=60, clock=c, backoff=0.001)
    await m.grant_and_reauthenticate(MAC, "u")
    assert await m.expire() == []
    c.t += 61
    assert await m.expire() == [MAC]
    assert b.calls[-1] == "revoke"


def test_mac_formats() -> None:
    f = mac_formats("AABB.CCDD.EEFF")
    assert f["HYPHEN"] == "AA-BB-CC-DD-EE-FF" and f["dot"] == "aabb.ccdd.eeff" and f["BARE"] == "AABBCCDDEEFF"
