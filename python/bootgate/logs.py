"""Structured logging: one `key=value` line per record, via the standard library.

Fields go in ``extra={"kv": {...}}``::

    log.info("boot", extra={"kv": {"mac": mac, "action": "exit"}})
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from typing import Any, TextIO

_SAFE = re.compile(r"[A-Za-z0-9_.:/+@,\[\]-]+")


def _quote(value: Any) -> str:
    s = value if type(value) is str else str(value)
    if _SAFE.fullmatch(s):
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") + '"'


class KeyValueFormatter(logging.Formatter):
    _second = -1
    _stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        sec = int(record.created)
        if sec != self._second:  # one strftime a second, not one a line
            self._second, self._stamp = sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        parts = [f"time={self._stamp}.{int(record.msecs):03d}Z", f"level={record.levelname.lower()}",
                 f"logger={record.name}", f"msg={_quote(record.getMessage())}"]
        kv = getattr(record, "kv", None)
        if isinstance(kv, dict):
            parts.extend([f"{k}={_quote(v)}" for k, v in kv.items()])
        if record.exc_info:
            parts.append(f"exc={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


FLUSH_INTERVAL = 0.25  # seconds an info line may wait in the buffer


class BufferedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that flushes at most every FLUSH_INTERVAL seconds (a background thread flushes
    what is left), at once for warnings and errors, and on close (logging.shutdown at exit): what
    nginx's `access_log ... buffer= flush=` does. A busy /boot wrote one line, and made one write(2),
    per boot; now the lines of a quarter second go in one write."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._dirty = False
        self._stop = threading.Event()
        threading.Thread(target=self._flush_every, name="bootgate-log-flush", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)
            if record.levelno >= logging.WARNING:
                self.flush()
            else:
                self._dirty = True
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def _flush_every(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL):
            if self._dirty:
                self.flush()

    def flush(self) -> None:
        self._dirty = False
        super().flush()

    def close(self) -> None:
        self._stop.set()
        self.flush()
        super().close()


def _stderr_buffered() -> TextIO:
    """Standard error without line buffering (Python line-buffers it: a write(2) per line); the same
    file descriptor, left open on close."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by something without a descriptor
        return sys.stderr
    return open(fd, "w", buffering=1 << 16, encoding="utf-8", errors="backslashreplace",  # noqa: SIM115
                closefd=False)


def configure(level: int = logging.INFO, stream: TextIO | None = None) -> None:
    handler = BufferedStreamHandler(stream or _stderr_buffered())
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        if isinstance(h, BufferedStreamHandler):
            h.close()
    root.addHandler(handler)
    root.setLevel(level)
    # the formatter uses none of these: skip collecting them for every record (the logging module's own
    # documented optimisations: no caller frame walk, no thread / process / multiprocessing names)
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
