from __future__ import annotations

from bootgate.auth.ratelimit import LimitSettings, LoginLimiter


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_user_locked_after_failures_from_any_machine_and_unlocks_later() -> None:
    c = Clock()
    lim = LoginLimiter(LimitSettings(max_failures=3, window_seconds=60, lockout_seconds=30), clock=c)
    for i in range(3):
        assert lim.check("alice", f"m{i}").allowed
        lim.failure("alice", f"m{i}")
    d = lim.check("alice", "other-machine")
    assert not d.allowed and d.key == "user:alice" and d.retry_after == 30
    assert lim.check("bob", "m0").allowed  # each machine failed once only
    c.t += 31
    assert lim.check("alice", "m0").allowed
    # second lockout doubles
    for _ in range(3):
        lim.failure("alice", "x")
    assert lim.check("alice", "y").retry_after == 60


def test_machine_locked_when_guessing_many_users() -> None:
    c = Clock()
    lim = LoginLimiter(LimitSettings(max_failures=4, window_seconds=60, lockout_seconds=30), clock=c)
    for u in ("a", "b", "c", "d"):
        lim.failure(u, "52:54:00:00:00:01")
    d = lim.check("e", "52:54:00:00:00:01")
    assert not d.allowed and d.key == "mac:52:54:00:00:00:01"
    assert lim.check("e", "52:54:00:00:00:02").allowed


def test_failures_outside_window_do_not_count_and_success_resets() -> None:
    c = Clock()
    lim = LoginLimiter(LimitSettings(max_failures=3, window_seconds=10, lockout_seconds=30), clock=c)
    lim.failure("alice", "m")
    lim.failure("alice", "m")
    c.t += 11
    lim.failure("alice", "m")
    assert lim.check("alice", "m").allowed
    lim.failure("alice", "m")
    lim.success("alice", "m")
    lim.failure("alice", "m")
    assert lim.check("alice", "m").allowed
    assert lim.locked_keys() == []
