"""/content/<path>: files under the content root, streamed, with single byte ranges (RFC 9110).

PeerDist (MS-PCCRTP, see bootgate.branchcache): a whole-file GET/HEAD with `Accept-Encoding: peerdist`
and `X-P2P-PeerDist` from a client the [branchcache] policy allows gets `Content-Encoding: peerdist` and
the file's Content Information (of the best version the client's X-P2P-PeerDistEx range allows) when it
is cached; otherwise the plain file, and a background build starts. Range requests always get exact
206 answers; those marked `MissingDataRequest=true` are counted as bytes peers did not supply.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import re
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .. import branchcache
from ..config import Settings
from ..store import EventRecord
from . import login
from .boot import client_ip, state_of
from .deps import Deps

log = logging.getLogger("bootgate.web.content")

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


def branchcache_service(request: Request) -> branchcache.BranchCacheService | None:
    """The app's BranchCache service (created on first use if the lifespan did not), None if unusable."""
    app_state = request.app.state
    svc = getattr(app_state, "branchcache", None)
    if svc is None and not getattr(app_state, "branchcache_failed", False):
        st = state_of(request)
        try:
            svc = branchcache.BranchCacheService.from_settings(st.settings, st.deps.metrics)
            svc.start()
        except (OSError, ValueError) as e:
            log.warning("PeerDist disabled: %s", e)
            app_state.branchcache_failed = True
            return None
        app_state.branchcache = svc
    return svc


def branchcache_service_start(app: Starlette, settings: Settings, deps: Deps) -> None:
    """Creates the app's BranchCache service and starts its background scanner (from the lifespan)."""
    try:
        svc = branchcache.BranchCacheService.from_settings(settings, deps.metrics)
    except (OSError, ValueError) as e:
        log.warning("PeerDist disabled: %s", e)
        app.state.branchcache_failed = True
        return
    app.state.branchcache = svc
    svc.start()


async def branchcache_service_stop(app: Starlette) -> None:
    svc = getattr(app.state, "branchcache", None)
    if svc is not None:
        await svc.stop()


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
    def __init__(self, request: Request, rel: str, range_header: str | None, status: int,
                 peerdist: str | None = None) -> None:
        self.request, self.rel, self.range_header, self.status = request, rel, range_header, status
        self.peerdist = peerdist

    def __call__(self, sent: int) -> None:
        record(self.request, self.rel, self.range_header, self.status, sent, self.peerdist)


def record(request: Request, rel: str, range_header: str | None, status: int, sent: int,
           peerdist: str | None = None) -> None:
    """Counts and records one /content answer; `peerdist` (if any) says how PeerDist went:
    "v1"/"v2" (Content Information sent), "missing" (MissingDataRequest), or why the plain file was sent."""
    st = state_of(request)
    m = st.deps.metrics
    m.content_requests.labels(str(status)).inc()
    if sent:
        m.content_bytes.inc(sent)
    if peerdist == "missing":
        m.peerdist_fallback_requests.inc()
        if sent:
            m.peerdist_fallback_bytes.inc(sent)
    detail: dict[str, object] = {"path": rel, "method": request.method, "range": range_header, "status": status,
                                 "bytes": sent}
    if peerdist is not None:
        detail["peerdist"] = peerdist
    st.deps.recorder.add(EventRecord(kind="content", time=time.time(), client_ip=client_ip(request), detail=detail))


async def content(request: Request) -> Response:
    st = state_of(request)
    rel = str(request.path_params.get("path", ""))
    range_header = request.headers.get("range")
    denied = await login.content_gate(request, rel)  # boot tokens after a login at the iPXE prompt (issue 6)
    if denied is not None:
        record(request, rel, range_header, denied.status_code, 0)
        return denied
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
    etag = f"{info.st_ino:x}-{size:x}-{int(info.st_mtime_ns):x}"
    headers = {
        "Accept-Ranges": "bytes",
        "Last-Modified": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(info.st_mtime)),
        "ETag": f'"{etag}"',
        "Vary": "Accept-Encoding",
    }
    pd = branchcache.parse_request(request.headers)
    peerdist: str | None = "missing" if pd.missing_data else None
    if pd.accepts:
        svc = branchcache_service(request)
        m = st.deps.metrics
        choice: tuple[int, bytes] | str
        if range_header is not None:
            choice = "range"
        elif svc is None:
            choice = "disabled"
        else:
            choice = svc.choose(pd, client_ip(request), path, info)
        if isinstance(choice, tuple):
            version, blob = choice
            m.peerdist_cache.labels("hit").inc()
            m.peerdist_responses.labels(str(version)).inc()
            headers.update({
                "Content-Encoding": "peerdist",
                "X-P2P-PeerDist": f"Version=1.1, ContentLength={size}",
                "ETag": f'"{etag}-pd{version}"',
                "Content-Length": str(len(blob)),
            })
            sent = 0 if request.method == "HEAD" else len(blob)
            record(request, rel, range_header, 200, sent, f"v{version}")
            return Response(b"" if request.method == "HEAD" else blob, status_code=200, headers=headers,
                            media_type=ctype)
        if choice == "not_cached":
            m.peerdist_cache.labels("miss").inc()
        m.peerdist_identity.labels(choice).inc()
        peerdist = choice
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
        record(request, rel, range_header, status, 0, peerdist)
        return Response(b"", status_code=status, headers=headers, media_type=ctype)
    return StreamingResponse(_stream(path, start, length, _Done(request, rel, range_header, status, peerdist)),
                             status_code=status, headers=headers, media_type=ctype)
