"""Structured logging: one `key=value` line per record, via the standard library.

Fields go in ``extra={"kv": {...}}``::

    log.info("boot", extra={"kv": {"mac": mac, "action": "exit"}})
"""

from __future__ import annotations

import logging
import re
import sys
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


def configure(level: int = logging.INFO, stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    # the formatter uses none of these: skip collecting them for every record (the logging module's own
    # documented optimisations: no caller frame walk, no thread / process / multiprocessing names)
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
