"""/boot reads its query string with its own parser: the same values as Starlette's QueryParams."""

from __future__ import annotations

import random

from starlette.datastructures import QueryParams

from bootgate.web.boot import query_values

CASES = [
    b"",
    b"mac=52:54:00:12:34:56",
    b"mac=52%3A54%3A00%3A12%3A34%3A56&uuid=8d1f4a2e-1b3c-4d5e-9f60-0a1b2c3d4e5f&serial=ABC+123",
    b"product=Standard%20PC%20(i440FX%20%2B%20PIIX%2C%201996)&manufacturer=QEMU",
    b"a=1&a=2&b&c=&&d==x&=e",
    b"serial=%FF%FE%zz%4&name=%E2%82%AC+euro",
    "x=\u00e9t\u00e9".encode("latin-1"),
    b"k%20ey=v%2Bal+ue&%3D=%26",
]


def _starlette(raw: bytes) -> dict[str, str]:
    return dict(QueryParams(raw.decode("latin-1")).items())


def test_same_values_as_starlette() -> None:
    for raw in CASES:
        assert query_values(raw) == _starlette(raw), raw


def test_same_values_as_starlette_on_random_strings() -> None:
    rng = random.Random(7)
    alphabet = b"ab=&+%2F0zZ\x00\xff %e2%82%ac"
    for _ in range(3000):
        raw = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 24)))
        assert query_values(raw) == _starlette(raw), raw
