"""The key=value log line: quoting and the timestamp."""

from __future__ import annotations

import logging

from bootgate.logs import KeyValueFormatter


def _line(created: float, kv: dict[str, object], msg: str = "boot") -> str:
    rec = logging.LogRecord("bootgate.web.boot", logging.INFO, __file__, 1, msg, None, None)
    rec.created, rec.msecs = created, (created - int(created)) * 1000
    rec.kv = kv
    return KeyValueFormatter().format(rec)


def test_values_are_quoted_only_when_needed() -> None:
    line = _line(0.25, {"mac": "52:54:00:12:34:56", "n": 7, "empty": "", "ip": "[::1]:80",
                        "model": 'Standard PC "q35"\nx\\y', "ok": True, "plus": "a+b@c,d-e_f.g/h"})
    assert line == ('time=1970-01-01T00:00:00.250Z level=info logger=bootgate.web.boot msg=boot '
                    'mac=52:54:00:12:34:56 n=7 empty="" ip=[::1]:80 model="Standard PC \\"q35\\"\\nx\\\\y" ok=True '
                    'plus=a+b@c,d-e_f.g/h')


def test_timestamp_follows_the_record_across_seconds() -> None:
    fmt = KeyValueFormatter()
    stamps = []
    for created in (86399.9995, 86400.0, 86400.5, 86399.0):
        rec = logging.LogRecord("x", logging.WARNING, __file__, 1, "m e", None, None)
        rec.created, rec.msecs = created, int((created - int(created)) * 1000)
        stamps.append(fmt.format(rec).split(" ")[0])
    assert stamps == ["time=1970-01-01T23:59:59.999Z", "time=1970-01-02T00:00:00.000Z",
                      "time=1970-01-02T00:00:00.500Z", "time=1970-01-01T23:59:59.000Z"]


def test_info_lines_are_buffered_warnings_and_close_flush(tmp_path: object) -> None:
    import os
    import select
    import time

    from bootgate.logs import BufferedStreamHandler, KeyValueFormatter

    r, w = os.pipe()
    os.set_blocking(r, False)
    stream = open(w, "w", buffering=1 << 16, encoding="utf-8")  # noqa: SIM115
    h = BufferedStreamHandler(stream)
    h.setFormatter(KeyValueFormatter())
    log = logging.getLogger("bootgate.test.buffered")
    log.propagate = False
    log.addHandler(h)
    log.setLevel(logging.INFO)

    def read_all(wait_s: float, until: bytes = b"\0") -> bytes:
        out, end = b"", time.monotonic() + wait_s
        while time.monotonic() < end and until not in out:
            if select.select([r], [], [], 0.05)[0]:
                out += os.read(r, 65536)
        return out

    try:
        log.info("one")
        log.info("two")
        assert read_all(0.0) == b""  # still in the buffer
        log.warning("three")  # a warning flushes at once, with what came before it
        got = read_all(2.0, b"msg=three").decode()
        assert ["msg=one" in got, "msg=two" in got, "msg=three" in got] == [True, True, True]
        log.info("four")
        got = read_all(5.0, b"msg=four").decode()  # the background flush (every 0.25 s) writes it
        assert "msg=four" in got
        log.info("five")
        h.close()
        assert "msg=five" in read_all(2.0, b"msg=five").decode()
    finally:
        log.removeHandler(h)
        stream.close()
        os.close(r)
