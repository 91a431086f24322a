"""The pure boot decision over a table of machines, collections and deployments; identity matching; rules."""

from __future__ import annotations

import pytest

from bootgate.policy import BootKernel, Exit, MachineAction
from bootgate.policy.deploy import Collection, Deployment, Menu, Profile, RunProfile, decide_boot
from bootgate.policy.identity import Candidate, Identity, is_bogus_serial, is_bogus_uuid, match_identity
from bootgate.policy.rules import HostFacts, validate_rules

P = Profile("kernel", kernel="vmlinuz")
COLLS = {
    1: Collection(1, "unknown", ({"unknown": True},)),
    2: Collection(2, "dell", ({"manufacturer": "dell*", "subnet": "198.18.1.0/24"},)),
    3: Collection(3, "static"),
    4: Collection(4, "dongles", ({"mac_prefix": "00e04c"},)),
}
NEW = HostFacts(1, "52:54:00:00:00:01")
DELL = HostFacts(2, "52:54:00:00:00:02", manufacturer="Dell Inc.", client_ip="198.18.1.7", known=True)
INSTALLED = HostFacts(3, "52:54:00:00:00:03", installed=True)
STATIC = HostFacts(4, "00:e0:4c:00:00:04", known=True, static_collections=frozenset({3}))


def dep(i: int, coll: int, **kw: object) -> Deployment:
    return Deployment(id=i, name=f"d{i}", collection_id=coll, profile=P, **kw)  # type: ignore[arg-type]


CASES = [
    # (host, deployments, done, approved, now, expected)
    (NEW, [], frozenset(), frozenset(), 100.0, Exit),
    (NEW, [dep(1, 1, intent="required", countdown=0)], frozenset(), frozenset(), 100.0, RunProfile),
    (NEW, [dep(1, 1, intent="required", countdown=0)], frozenset({1}), frozenset(), 100.0, Exit),  # one-shot done
    (NEW, [dep(1, 1, intent="required", countdown=0, one_shot=False)], frozenset({1}), frozenset(), 100.0,
     RunProfile),
    (INSTALLED, [dep(1, 1, intent="required", countdown=0)], frozenset(), frozenset(), 100.0, Exit),  # guard
    (DELL, [dep(1, 1, intent="required", countdown=0)], frozenset(), frozenset(), 100.0, Exit),  # known: not unknown
    (DELL, [dep(2, 2)], frozenset(), frozenset(), 100.0, Menu),
    (DELL, [dep(2, 2, window_start=200.0)], frozenset(), frozenset(), 100.0, Exit),
    (DELL, [dep(2, 2, window_end=100.0)], frozenset(), frozenset(), 100.0, Exit),
    (DELL, [dep(2, 2, window_start=50.0, window_end=150.0)], frozenset(), frozenset(), 100.0, Menu),
    (DELL, [dep(2, 2, require_approval=True)], frozenset(), frozenset(), 100.0, Exit),
    (DELL, [dep(2, 2, require_approval=True)], frozenset(), frozenset({2}), 100.0, Menu),
    (DELL, [dep(2, 2, enabled=False)], frozenset(), frozenset(), 100.0, Exit),
    (STATIC, [dep(3, 3), dep(5, 2)], frozenset(), frozenset(), 100.0, Menu),
    (STATIC, [dep(4, 4, intent="required", countdown=0)], frozenset(), frozenset(), 100.0, RunProfile),
]


@pytest.mark.parametrize("host,deps,done,approved,now,expected", CASES)
def test_decision_table(host: HostFacts, deps: list[Deployment], done: frozenset[int], approved: frozenset[int],
                        now: float, expected: type) -> None:
    d = decide_boot(host, legacy_action=None, deployments=deps, collections=COLLS, done=done, approved=approved,
                    now=now)
    assert isinstance(d, expected), d


def test_menu_marks_and_preselects_required() -> None:
    deps = [dep(5, 2, priority=9), dep(6, 2, intent="required", countdown=15), dep(7, 2, priority=1)]
    d = decide_boot(DELL, legacy_action=None, deployments=deps, collections=COLLS, now=1.0)
    assert isinstance(d, Menu)
    assert [(i.deployment_id, i.required) for i in d.items] == [(6, True), (5, False), (7, False)]
    assert (d.default, d.timeout) == (6, 15)
    only_available = decide_boot(DELL, legacy_action=None, deployments=deps[::2], collections=COLLS, now=1.0)
    assert isinstance(only_available, Menu) and only_available.default is None


def test_legacy_action_wins_and_unidentified_exits() -> None:
    d = decide_boot(NEW, legacy_action=MachineAction("k", "i", "a"), deployments=[dep(1, 1)], collections=COLLS,
                    now=1.0)
    assert d == BootKernel("k", "i", "a")
    assert isinstance(decide_boot(None, legacy_action=None, deployments=[dep(1, 1)], collections=COLLS, now=1.0),
                      Exit)


def test_exit_reason_names_the_skip() -> None:
    d = decide_boot(INSTALLED, legacy_action=None, deployments=[dep(1, 1)], collections=COLLS, now=1.0)
    assert isinstance(d, Exit) and "re-image guard" in d.reason


@pytest.mark.parametrize("uuid,bogus", [
    ("00000000-0000-0000-0000-000000000000", True), ("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", True),
    ("03000200-0400-0500-0006-000700080009", True), ("not a uuid", True), ("", True),
    ("8D1F4A2E-1B3C-4D5E-9F60-0A1B2C3D4E5F", False), ("{8d1f4a2e1b3c4d5e9f600a1b2c3d4e5f}", False),
])
def test_bogus_uuids(uuid: str, bogus: bool) -> None:
    assert is_bogus_uuid(uuid) is bogus


@pytest.mark.parametrize("serial,bogus", [("To Be Filled By O.E.M.", True), ("Default string", True),
                                          ("0000000", True), ("", True), ("5CG1234XYZ", False)])
def test_bogus_serials(serial: str, bogus: bool) -> None:
    assert is_bogus_serial(serial) is bogus


def test_match_identity_replaced_nic_and_dongle() -> None:
    u = "8d1f4a2e-1b3c-4d5e-9f60-0a1b2c3d4e5f"
    known = Candidate(7, u, "SER12345", frozenset({"aa:aa:aa:aa:aa:01"}))
    m = match_identity(Identity("aa:aa:aa:aa:aa:02", u.upper(), "SER12345"), [known], False)
    assert (m.host_id, m.add_mac, m.mark_mac_shared) == (7, True, False)
    # another laptop behind the same MAC: a new machine, and the MAC becomes shared
    m = match_identity(Identity("aa:aa:aa:aa:aa:01", "", "OTHER9999"), [known], False)
    assert (m.host_id, m.mark_mac_shared, m.register) == (None, True, True)
    # a MAC alone matches only while it is not shared
    assert match_identity(Identity("aa:aa:aa:aa:aa:01"), [known], False).host_id == 7
    m = match_identity(Identity("aa:aa:aa:aa:aa:01"), [known], True)
    assert (m.host_id, m.register) == (None, False)


def test_rules_validation() -> None:
    assert validate_rules([{"mac_prefix": "00-E0-4C", "subnet": "10.1.2.3/16"}]) == [
        {"mac_prefix": "00e04c", "subnet": "10.1.0.0/16"}]
    for bad in ([{"colour": "red"}], [{}], [{"subnet": "nope"}], [{"unknown": False}], {"a": 1},
                [{"relay": "x"}], [{"mac_prefix": "zz"}]):
        with pytest.raises(ValueError):
            validate_rules(bad)
