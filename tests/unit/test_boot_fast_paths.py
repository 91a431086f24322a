"""The /boot request path's shortcuts for MACs and query values answer as the long way does."""

from __future__ import annotations

import random

import pytest
from starlette.datastructures import QueryParams

from bootgate.policy import normalize_mac
from bootgate.web.boot import query_values


def _long_way(value: str) -> str:
    raw = value.strip().lower()
    compact = raw.replace(":", "").replace("-", "").replace(".", "")
    if len(compact) != 12 or not set(compact) <= set("0123456789abcdef") or len(raw) > 17:
        raise ValueError(value)
    return ":".join(compact[i:i + 2] for i in range(0, 12, 2))


@pytest.mark.parametrize("raw", ["52:54:00:12:34:56", "52:54:00:12:34:5G", "52:54:00:12:34:5", " 52:54:00:12:34:5",
                                 "52-54-00-12-34-56", "52:54:00:12:34:56\n", "525400123456", "5254.0012.3456",
                                 "52:54:00:12:34:5A", "AA:BB:CC:DD:EE:FF", "52:54:00:12:34::6", "52:54:00:12:3456",
                                 "", "52:54:00:12:34:56:78"])
def test_normalize_mac_as_the_long_way(raw: str) -> None:
    _same_as_long_way(raw)


def _same_as_long_way(raw: str) -> None:
    try:
        want = _long_way(raw)
    except ValueError:
        with pytest.raises(ValueError):
            normalize_mac(raw)
        return
    assert normalize_mac(raw) == want


def test_normalize_mac_random() -> None:
    rng = random.Random(3)
    for _ in range(5000):
        _same_as_long_way("".join(rng.choice("0123456789abcdefABG:-. ")
                                  for _ in range(rng.choice((12, 14, 16, 17, 18)))))


def test_query_values_remembered_values_stay_right() -> None:
    rng = random.Random(11)
    alphabet = "ab+%2F3A0zZ%e2%82%ac"
    values = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 90))) for _ in range(300)]
    for _ in range(3):  # the second and third rounds are answered from what the first remembered
        for v in values:
            raw = f"mac={v}&serial={v[::-1]}".encode("latin-1")
            assert query_values(raw) == dict(QueryParams(raw.decode("latin-1")).items()), raw
