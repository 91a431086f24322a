"""/content/<path>: files under the content root, streamed, with single byte ranges (RFC 9110)."""

from __future__ import annotations

import mimetypes
import os
import re
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..store import EventRecord
from .boot import client_ip, state_of

CHUNK = 256 * 1024

_RANGE = re.compile(r"\s*(\d*)\s*-\s*(\d*)\s*")


class RangeNotSatisfiable(Exception):
    pass


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte range asked for by `header`, or None for the whole file.

    Only a single range is honoured; a multi-range request or another unit is served whole (RFC 9110
    lets a server ignore Range). Malformed or unsatisfiable ranges raise RangeNotSatisfiable.
    """
    if header is None:
        return None
    unit, sep, spec = header.strip().partition("=")
    if not sep:
        raise RangeNotSatisfiable(header)
    if unit.strip().lower() != "bytes":
        return None
    if "," in spec:
        return None
    m = _RANGE.fullmatch(spec)
    if m is None:
        raise RangeNotSatisfiable(header)
    first, last = m.group(1), m.group(2)
    if not first and not last:
        raise RangeNotSatisfiable(header)
    if not first:
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - n), size - 1
    start = int(first)
    if start >= size:
        raise RangeNotSatisfiable(header)
    end = int(last) if last else size - 1
    if end < start:
        raise RangeNotSatisfiable(header)
    return start, min(end, size - 1)


def resolve_content_path(root: Path, rel: str) -> Path | None:
    """The file `rel` names under `root`, or None if it would leave the root (or is malformed)."""
    if not rel or "\x00" in rel or "\\" in rel or rel.startswith("/"):
        return None
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    root_real = os.path.realpath(root)
    full = os.path.realpath(os.path.join(root_real, *parts))
    if full == root_real or os.path.commonpath([root_real, full]) != root_real:
        return None
    return Path(full)


async def _stream(path: Path, start: int, length: int, on_done: "_Done") -> AsyncIterator[bytes]:
    sent = 0
    try:
        fd = await anyio.to_thread.run_sync(os.open, path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            pos, remaining = start, length
            while remaining > 0:
                chunk = await anyio.to_thread.run_sync(os.pread, fd, min(CHUNK, remaining), pos)
                if not chunk:
                    break  # the file shrank under us; the server ends the response early
                pos += len(chunk)
                remaining -= len(chunk)
                sent += len(chunk)
                yield chunk
        finally:
            os.close(fd)
    finally:
        on_done(sent)


class _Done:
    def __init__(self, request: Request, rel: str, range_header: str | None, status: int) -> None:
        self.request, self.rel, self.range_header, self.status = request, rel, range_header, status

    def __call__(self, sent: int) -> None:
        record(self.request, self.rel, self.range_header, self.status, sent)


def record(request: Request, rel: str, range_header: str | None, status: int, sent: int) -> None:
    st = state_of(request)
    m = st.deps.metrics
    m.content_requests.labels(str(status)).inc()
    if sent:
        m.content_bytes.inc(sent)
    st.deps.recorder.add(EventRecord(
        kind="content", time=time.time(), client_ip=client_ip(request),
        detail={"path": rel, "method": request.method, "range": range_header, "status": status, "bytes": sent},
    ))


async def content(request: Request) -> Response:
    st = state_of(request)
    rel = str(request.path_params.get("path", ""))
    range_header = request.headers.get("range")
    path = resolve_content_path(st.settings.content.root, rel)
    info = None
    if path is not None:
        try:
            info = await anyio.to_thread.run_sync(os.stat, path)
        except OSError:
            info = None
    if info is None or not stat.S_ISREG(info.st_mode) or path is None:
        record(request, rel, range_header, 404, 0)
        return Response("not found\n", status_code=404, media_type="text/plain")
    size = info.st_size
    ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    headers = {
        "Accept-Ranges": "bytes",
        "Last-Modified": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(info.st_mtime)),
        "ETag": f'"{info.st_ino:x}-{size:x}-{int(info.st_mtime_ns):x}"',
    }
    try:
        rng = parse_range(range_header, size)
    except RangeNotSatisfiable:
        record(request, rel, range_header, 416, 0)
        headers["Content-Range"] = f"bytes */{size}"
        return Response(b"", status_code=416, headers=headers)
    if rng is None:
        status, start, length = 200, 0, size
    else:
        status, start, length = 206, rng[0], rng[1] - rng[0] + 1
        headers["Content-Range"] = f"bytes {rng[0]}-{rng[1]}/{size}"
    headers["Content-Length"] = str(length)
    if request.method == "HEAD":
        record(request, rel, range_header, status, 0)
        return Response(b"", status_code=status, headers=headers, media_type=ctype)
    return StreamingResponse(_stream(path, start, length, _Done(request, rel, range_header, status)),
                             status_code=status, headers=headers, media_type=ctype)
