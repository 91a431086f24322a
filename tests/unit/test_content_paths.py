from __future__ import annotations

import os
from pathlib import Path

import pytest

from bootgate.web.content import RangeNotSatisfiable, parse_range, resolve_content_path


@pytest.mark.parametrize("header,size,expected", [
    (None, 100, None),
    ("bytes=0-9", 100, (0, 9)),
    ("bytes=90-", 100, (90, 99)),
    ("bytes=-10", 100, (90, 99)),
    ("bytes=-1000", 100, (0, 99)),
    ("bytes=50-5000", 100, (50, 99)),
    ("bytes=99-99", 100, (99, 99)),
    ("BYTES = 1 - 2", 100, (1, 2)),
    ("bytes=0-1,5-6", 100, None),  # multi-range: served whole
    ("items=0-1", 100, None),  # other unit: ignored
    ("bytes=4831838208-4831838215", 5 * 2**30, (4831838208, 4831838215)),
])
def test_parse_range(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize("header,size", [
    ("bytes=100-", 100), ("bytes=200-300", 100), ("bytes=5-4", 100), ("bytes=-0", 100), ("bytes=-", 100),
    ("bytes=a-b", 100), ("bytes=1-2-3", 100), ("bytes", 100), ("bytes=0-", 0), ("bytes=-5", 0),
])
def test_parse_range_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, size)


def test_resolve_inside_root(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_text("x")
    assert resolve_content_path(tmp_path, "a/f") == Path(os.path.realpath(tmp_path / "a" / "f"))


@pytest.mark.parametrize("rel", ["../etc/passwd", "a/../../x", "/etc/passwd", "a//f", "./a/f", "", "a/f\x00",
                                 "..\\x"])
def test_resolve_refuses_escapes(tmp_path: Path, rel: str) -> None:
    assert resolve_content_path(tmp_path / "root", rel) is None


def test_resolve_refuses_symlink_out_of_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret").write_text("s")
    (root / "link").symlink_to(tmp_path / "secret")
    (root / "inner").write_text("i")
    (root / "ok").symlink_to(root / "inner")
    assert resolve_content_path(root, "link") is None
    assert resolve_content_path(root, "ok") == Path(os.path.realpath(root / "inner"))
