"""bootgate._native.SqliteWriter: one transaction per write, through Python's own libsqlite3."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bootgate import _native


def _db(tmp_path: Path) -> tuple[str, sqlite3.Connection]:
    path = str(tmp_path / "w.sqlite")
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE t (a TEXT, b INTEGER, c REAL, d)")
    c.execute("CREATE TABLE u (k INTEGER PRIMARY KEY, v TEXT)")
    return path, c


def test_rows_of_every_type_in_one_transaction(tmp_path: Path) -> None:
    path, c = _db(tmp_path)
    w = _native.SqliteWriter(path, 1000)
    w.write([("INSERT INTO t VALUES (?, ?, ?, ?)", [("x", 1, 2.5, None), ("\u00e9t\u00e9", True, -1.0, "z"),
                                                       ("", 2**62, 0.0, 7)]),
             ("INSERT INTO u VALUES (?, ?)", [(1, "one"), (2, "two")]),
             ("UPDATE u SET v = ? WHERE k = ?", [("uno", 1)])])
    assert c.execute("SELECT * FROM t").fetchall() == [("x", 1, 2.5, None), ("\u00e9t\u00e9", 1, -1.0, "z"),
                                                      ("", 2**62, 0.0, 7)]
    assert c.execute("SELECT * FROM u ORDER BY k").fetchall() == [(1, "uno"), (2, "two")]
    w.close()


def test_an_error_rolls_the_whole_write_back(tmp_path: Path) -> None:
    path, c = _db(tmp_path)
    w = _native.SqliteWriter(path, 1000)
    w.write([("INSERT INTO u VALUES (?, ?)", [(1, "kept")])])
    with pytest.raises(RuntimeError, match="UNIQUE"):
        w.write([("INSERT INTO t VALUES (?, ?, ?, ?)", [("gone", 1, 1.0, None)]),
                 ("INSERT INTO u VALUES (?, ?)", [(2, "gone"), (1, "duplicate")])])
    with pytest.raises(RuntimeError, match="no such table"):
        w.write([("INSERT INTO t VALUES (?, ?, ?, ?)", [("gone", 1, 1.0, None)]), ("INSERT INTO nope VALUES (?)", [(1,)])])
    with pytest.raises(RuntimeError, match="3 values for 4 parameters"):
        w.write([("INSERT INTO t VALUES (?, ?, ?, ?)", [("gone", 1, 1.0)])])
    with pytest.raises(TypeError, match="must be None, str, bool, int or float"):
        w.write([("INSERT INTO t VALUES (?, ?, ?, ?)", [("gone", 1, 1.0, [1])])])  # type: ignore[list-item]
    assert c.execute("SELECT count(*) FROM t").fetchone() == (0,)
    assert c.execute("SELECT * FROM u").fetchall() == [(1, "kept")]
    w.write([("INSERT INTO u VALUES (?, ?)", [(3, "after")])])  # the writer goes on after errors
    assert c.execute("SELECT count(*) FROM u").fetchone() == (2,)
    w.close()
    with pytest.raises(RuntimeError, match="closed"):
        w.write([])


def test_waits_for_another_writer_then_gives_up_after_its_busy_timeout(tmp_path: Path) -> None:
    path, c = _db(tmp_path)
    w = _native.SqliteWriter(path, 200)
    c.execute("BEGIN IMMEDIATE")
    c.execute("INSERT INTO u VALUES (1, 'theirs')")
    with pytest.raises(RuntimeError, match="locked"):
        w.write([("INSERT INTO u VALUES (?, ?)", [(2, "mine")])])
    c.execute("COMMIT")
    w.write([("INSERT INTO u VALUES (?, ?)", [(2, "mine")])])
    assert c.execute("SELECT v FROM u ORDER BY k").fetchall() == [("theirs",), ("mine",)]


def test_a_file_that_cannot_be_opened_is_an_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        _native.SqliteWriter(str(tmp_path / "missing-dir" / "db.sqlite"), 1000)
