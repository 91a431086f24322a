"""MabManager robustness: idempotent grant/revoke, retries with backoff, timeouts, persisted state with per
backend state and last error, failed revokes retried by the sweep, audit records, metrics, MAC spellings."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from bootgate.integrations.mab import ExceptionTable, FreeRadiusRestBackend, MabManager, mac_formats, normalize_mac
from tests.unit.test_integrations_mab import Clock

MAC = "52:54:00:aa:bb:cc"


class Nac:
    """A NAC whose state is a set of MACs; `down` makes every call fail, `hang` makes them never answer."""

    def __init__(self, name: str = "nac") -> None:
        self.name = name
        self.excepted: dict[str, float] = {}
        self.calls: list[tuple[str, str]] = []
        self.down = 0  # calls still to fail
        self.hang = False

    async def _enter(self, op: str, mac: str) -> None:
        self.calls.append((op, mac))
        if self.hang:
            await asyncio.sleep(3600)
        if self.down > 0:
            self.down -= 1
            raise ConnectionError(f"{self.name} unreachable")

    async def grant(self, mac: str, expires: float, user: str) -> None:
        await self._enter("grant", mac)
        self.excepted[mac] = expires

    async def revoke(self, mac: str) -> None:
        await self._enter("revoke", mac)
        self.excepted.pop(mac, None)

    async def reauthenticate(self, mac: str) -> None:
        await self._enter("reauthenticate", mac)


def manager(*backends: Any, **kw: Any) -> MabManager:
    kw.setdefault("backoff", 0.001)
    kw.setdefault("clock", Clock())
    return MabManager(list(backends), **kw)


@pytest.mark.parametrize("spelling", ["52-54-00-AA-BB-CC", "52-54-00-aa-bb-cc", "5254.00aa.bbcc", "5254.00AA.BBCC",
                                      "525400AABBCC", "525400aabbcc", "52:54:00:AA:BB:CC", "52:54:00:aa:bb:cc",
                                      "525400-aabbcc", " 52:54:00:aa:bb:cc "])
def test_every_vendor_spelling_is_one_mac(spelling: str) -> None:
    assert normalize_mac(spelling) == MAC


@pytest.mark.parametrize("bad", ["", "52:54:00:aa:bb", "52:54:00:aa:bb:cc:dd", "52:54:00:aa:bb:cg", "zz"])
def test_not_a_mac(bad: str) -> None:
    with pytest.raises(ValueError):
        normalize_mac(bad)


def test_spellings_for_backends() -> None:
    assert mac_formats("5254.00aa.bbcc") == {
        "colon": MAC, "COLON": MAC.upper(), "hyphen": "52-54-00-aa-bb-cc", "HYPHEN": "52-54-00-AA-BB-CC",
        "dot": "5254.00aa.bbcc", "bare": "525400aabbcc", "BARE": "525400AABBCC"}


async def test_grant_and_revoke_twice_leave_the_same_state(tmp_path: Path) -> None:
    nac = Nac()
    m = manager(nac, ttl=60, state_path=tmp_path / "state.json")
    assert await m.grant_and_reauthenticate("52-54-00-AA-BB-CC", "alice")
    first = m.exceptions()
    assert await m.grant_and_reauthenticate("5254.00aa.bbcc", "alice")
    assert m.exceptions() == first and nac.excepted == {MAC: 1060.0}
    [e] = first
    assert e["mac"] == MAC and e["state"] == "active" and e["ok"] and e["seconds_left"] == 60
    assert e["backends"]["nac"]["state"] == "granted" and e["backends"]["nac"]["reauthenticated"] is True
    assert await m.revoke(MAC) and await m.revoke(MAC)
    assert m.exceptions() == [] and nac.excepted == {}


async def test_state_survives_a_restart_and_the_sweep_revokes_after_it(tmp_path: Path) -> None:
    clock = Clock()
    nac = Nac()
    await manager(nac, ttl=60, clock=clock, state_path=tmp_path / "s.json").grant_and_reauthenticate(MAC, "a")
    clock.t += 61
    again = manager(nac, ttl=60, clock=clock, state_path=tmp_path / "s.json")  # bootgate restarted
    assert [e["state"] for e in again.exceptions()] == ["expired"]
    assert await again.expire() == [MAC]
    assert nac.excepted == {} and again.exceptions() == []
    (tmp_path / "bad.json").write_text("[{")
    assert manager(nac, state_path=tmp_path / "bad.json").exceptions() == []
    (tmp_path / "odd.json").write_text('[{"mac": "52-54-00-aa-bb-cc", "granted": 1, "expires": 2, "backends": {}},'
                                       ' {"mac": "x"}, 7, {"mac": "525400aabbcd", "expires": "soon"}]')
    assert [e["mac"] for e in manager(nac, state_path=tmp_path / "odd.json").exceptions()] == [MAC]
    (tmp_path / "a-file").write_text("")
    unsaved = manager(nac, state_path=tmp_path / "a-file" / "s.json")  # cannot be written, even by root
    assert await unsaved.grant_and_reauthenticate(MAC, "a") and unsaved.exceptions()  # the NAC work goes on


async def test_failed_revoke_stays_listed_and_the_sweep_retries(tmp_path: Path) -> None:
    clock = Clock()
    nac = Nac()
    m = manager(nac, ttl=600, clock=clock, attempts=2)
    await m.grant_and_reauthenticate(MAC, "a")
    nac.down = 2
    assert not await m.revoke(MAC)
    [e] = m.exceptions()
    assert e["state"] == "revoke_failed" and not e["ok"]
    assert e["backends"]["nac"] == {**e["backends"]["nac"], "state": "revoke_failed",
                                    "error": "ConnectionError: nac unreachable"}
    assert nac.excepted  # still excepted on the NAC
    assert await m.expire() == [MAC]  # due at once, not after the original expiry
    assert nac.excepted == {} and m.exceptions() == []


async def test_retries_back_off_and_give_up() -> None:
    nac = Nac()
    nac.down = 2
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(d: float) -> None:
        slept.append(d)
        await real_sleep(0)

    m = manager(nac, attempts=3, backoff=0.5, max_backoff=0.8)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(asyncio, "sleep", sleep)
        assert await m.grant_and_reauthenticate(MAC, "a")
        nac.down = 5
        assert not await m.revoke(MAC)
    assert slept == [0.5, 0.8, 0.5, 0.8]  # doubling, capped at max_backoff
    assert [(h.operation, h.ok, h.attempts) for h in m.history] == [
        ("grant", True, 3), ("reauthenticate", True, 1), ("revoke", False, 3)]


async def test_a_hanging_nac_times_out_and_one_failing_backend_does_not_stop_another() -> None:
    hung, fine = Nac("hung"), Nac("fine")
    hung.hang = True
    m = manager(hung, fine, attempts=1, call_timeout=0.05)
    assert not await m.grant_and_reauthenticate(MAC, "a")
    [e] = m.exceptions()
    assert e["backends"]["hung"]["state"] == "grant_failed"
    assert "no answer within 0.05 s" in e["backends"]["hung"]["error"]
    assert e["backends"]["fine"]["state"] == "granted" and fine.excepted
    assert ("reauthenticate", MAC) not in hung.calls  # no CoA without the exception in place


async def test_background_calls_never_block_and_are_bounded() -> None:
    nac = Nac()
    nac.hang = True
    m = manager(nac, attempts=1, call_timeout=0.2, max_concurrent=2)
    for i in range(5):
        m.schedule(m.grant_and_reauthenticate(f"52:54:00:00:00:0{i}", "a"))  # returns at once
    await asyncio.sleep(0.05)
    assert len(nac.calls) == 2  # the other three wait for a slot
    await m.drain()
    assert m.counts[("nac", "grant", False)] == 5


async def test_audit_records_and_metrics() -> None:
    records: list[tuple[Any, ...]] = []

    async def audit(actor: str, action: str, target: str, allowed: bool | None, detail: dict[str, Any]) -> None:
        records.append((actor, action, target, allowed, detail))

    nac = Nac()
    registry = CollectorRegistry()
    m = manager(nac, attempts=1)
    m.attach(audit=audit, registry=registry)
    await m.grant_and_reauthenticate(MAC, "alice")
    nac.down = 1
    await m.revoke(MAC)
    assert [r[:4] for r in records] == [("bootgate", "mab.grant", MAC, True), ("bootgate", "mab.reauthenticate", MAC, True),
                                        ("bootgate", "mab.revoke", MAC, False)]
    assert records[-1][4] == {"backend": "nac", "attempts": 1, "error": "ConnectionError: nac unreachable"}
    text = generate_latest(registry).decode()
    assert 'bootgate_mab_calls_total{backend="nac",operation="grant",result="ok"} 1.0' in text
    assert 'bootgate_mab_calls_total{backend="nac",operation="revoke",result="error"} 1.0' in text
    assert 'bootgate_mab_exceptions{state="revoke_failed"} 1.0' in text

    async def broken(*_: Any) -> None:
        raise RuntimeError("store down")

    m.audit = broken  # the audit log's trouble does not undo or fail the NAC call
    nac.down = 0
    assert await m.revoke(MAC)


async def test_rest_table_expiry_is_swept(tmp_path: Path) -> None:
    clock = Clock()
    table = ExceptionTable(tmp_path / "t.json", clock=clock)
    table.grant(MAC, 1010)  # e.g. left from before a restart, unknown to the manager
    m = manager(FreeRadiusRestBackend(table), clock=clock)
    clock.t = 1011
    assert await m.expire() == [MAC] and table.entries() == []


async def test_api_view_lists_state_and_last_errors() -> None:
    nac = Nac()
    m = manager(nac, attempts=1)
    await m.grant_and_reauthenticate(MAC, "alice")
    nac.down = 1
    await m.grant_and_reauthenticate("52:54:00:00:00:01", "bob")
    view = m.api_view()
    assert view["configured"] and view["backends"] == ["nac"]
    states = {e["mac"]: (e["backends"]["nac"]["state"], e["backends"]["nac"]["error"]) for e in view["exceptions"]}
    assert states == {MAC: ("granted", ""), "52:54:00:00:00:01": ("grant_failed", "ConnectionError: nac unreachable")}
    assert [(h["operation"], h["mac"], h["ok"]) for h in view["history"]][:2] == [
        ("grant", "52:54:00:00:00:01", False), ("reauthenticate", MAC, True)]


async def test_revoking_an_unknown_mac_lists_it_only_when_a_backend_failed() -> None:
    nac = Nac()
    m = manager(nac, attempts=1)
    assert await m.revoke("52:54:00:00:00:09") and m.exceptions() == []  # nothing held, nothing listed
    nac.down = 1
    assert not await m.revoke("52:54:00:00:00:09")
    [e] = m.exceptions()
    assert e["mac"] == "52:54:00:00:00:09" and e["state"] == "revoke_failed"
    assert await m.expire() == ["52:54:00:00:00:09"] and m.exceptions() == []


async def test_the_sweep_retries_a_failed_coa_a_bounded_number_of_times() -> None:
    class Switchless(Nac):
        switch_down = True

        async def reauthenticate(self, mac: str) -> None:
            await self._enter("reauthenticate", mac)
            if self.switch_down:
                raise ConnectionError("no answer from the switch")

    nac = Switchless()
    m = manager(nac, attempts=1, reauth_retries=2)
    assert not await m.grant_and_reauthenticate(MAC, "a")
    await m.expire()
    await m.expire()
    await m.expire()  # gave up after reauth_retries
    assert nac.calls.count(("reauthenticate", MAC)) == 3
    st = m.exceptions()[0]["backends"]["nac"]
    assert st["reauthenticated"] is False and st["reauth_retries"] == 2 and "switch" in st["error"]

    nac2 = Switchless()
    m2 = manager(nac2, attempts=1)
    await m2.grant_and_reauthenticate(MAC, "a")
    nac2.switch_down = False
    await m2.expire()
    assert m2.exceptions()[0]["backends"]["nac"]["reauthenticated"] is True
    await m2.expire()
    assert nac2.calls.count(("reauthenticate", MAC)) == 2  # not asked again once it worked
