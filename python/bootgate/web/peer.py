"""MS-PCCRR retrieval (HTTP transport) for iPXE's `peerhost`: a bootgate as a hosted-cache peer.

iPXE with `set peerhost <bootgate host:port>` asks that host, before the origin server, for each block of
a PeerDist download: `POST http://<peerhost>/116B50EB-ECE2-41ac-8429-9F9E963361B7/` with a MSG_GETBLKS
(segment ID = HoHoDk, one block range). bootgate answers from the files whose Content Information it holds
(its content root, hashed by bootgate.branchcache with the deployment's shared passphrase, so the segment
IDs match those of the main server): a MSG_BLK carrying the block encrypted with AES-128-CBC under the
segment secret Kp (first 16 bytes), the IV after the data. A segment or block it does not hold gets a
MSG_BLK with an empty block ("not found"), and iPXE falls back to the origin server.

A bootgate at a branch ([branchcache] upstream_url = the main server, upstream_ca = its CA) also answers
for segments it does not hold yet: it asks the main server where the segment lies (GET
/branchcache/v1/segments/<id hex>, answered here by `segment_lookup` from the main server's own index:
the file's path under /content and its Content Information), fetches that byte range, verifies every
block hash, the HoD and the segment secret, stores the segment in a bounded LRU cache and answers
(bootgate.branchcache.Upstream / PeerStore; concurrent requests for one segment share one fetch).

Message layout (all big-endian; iPXE include/ipxe/pccrr.h, MS-PCCRR 2.2): response = u32 transport length
(excluding itself) + header {version 1.0, type, length, algorithm} + segment {u32 digest size, ID, pad to
4} + u32 index + u32 next + block {u32 length, data} + VRF {u32 length 0} + IV {u32 16, 16 bytes}.
"""

from __future__ import annotations

import base64
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import branchcache
from .boot import client_ip, state_of

log = logging.getLogger("bootgate.web.peer")

MAGIC_PATH = "/116B50EB-ECE2-41ac-8429-9F9E963361B7/"
VERSION_1_0 = 0x00000001
GETBLKS = 0x00000003
BLK = 0x00000005
AES_128_CBC = 0x00000001
MAX_REQUEST = 64 * 1024


class BadMessage(ValueError):
    pass


@dataclass(frozen=True)
class GetBlks:
    algorithm: int
    segment_id: bytes
    ranges: list[tuple[int, int]]  # (first, count)


def _pad4(n: int) -> int:
    return (-n) & 3


def parse_getblks(body: bytes) -> GetBlks:
    """A MSG_GETBLKS request (raises BadMessage)."""
    if len(body) < 20:
        raise BadMessage("shorter than a message header")
    version, mtype, length, algorithm = struct.unpack_from(">IIII", body, 0)
    if mtype != GETBLKS:
        raise BadMessage(f"message type {mtype:#x} is not MSG_GETBLKS")
    if version != VERSION_1_0:
        raise BadMessage(f"version {version:#x}")
    if length > len(body):
        raise BadMessage("message length beyond the body")
    pos = 16
    (digestsize,) = struct.unpack_from(">I", body, pos)
    pos += 4
    if not 1 <= digestsize <= 64 or pos + digestsize + _pad4(digestsize) + 4 > length:
        raise BadMessage("bad segment ID size")
    seg_id = body[pos:pos + digestsize]
    pos += digestsize + _pad4(digestsize)
    (count,) = struct.unpack_from(">I", body, pos)
    pos += 4
    if count > 1024 or pos + 8 * count > length:
        raise BadMessage("bad block range count")
    ranges = [struct.unpack_from(">II", body, pos + 8 * i) for i in range(count)]
    return GetBlks(algorithm, seg_id, [(int(a), int(b)) for a, b in ranges])


def build_blk(segment_id: bytes, index: int, next_index: int, data: bytes, iv: bytes,
              algorithm: int = AES_128_CBC) -> bytes:
    """A MSG_BLK response with its transport header (`data` already encrypted, or empty = not found)."""
    seg = struct.pack(">I", len(segment_id)) + segment_id + b"\0" * _pad4(len(segment_id))
    body = (seg + struct.pack(">II", index, next_index) + struct.pack(">I", len(data)) + data
            + struct.pack(">I", 0) + struct.pack(">I", len(iv)) + iv)
    length = 16 + len(body)
    msg = struct.pack(">IIII", VERSION_1_0, BLK, length, algorithm) + body
    return struct.pack(">I", len(msg)) + msg


def encrypt_block(secret: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
    """(ciphertext, iv): AES-128-CBC under secret[:16], plaintext zero-padded to 16 bytes."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    iv = os.urandom(16)
    padded = plaintext + b"\0" * ((-len(plaintext)) % 16)
    enc = Cipher(algorithms.AES(secret[:16]), modes.CBC(iv)).encryptor()
    return enc.update(padded) + enc.finalize(), iv


def _read(path: str, offset: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        out = bytearray()
        while len(out) < length:
            chunk = os.pread(fd, length - len(out), offset + len(out))
            if not chunk:
                break
            out += chunk
        return bytes(out)
    finally:
        os.close(fd)


async def _read_block(ref: branchcache.SegmentRef, start: int, end: int) -> bytes | None:
    """Bytes [start, end) of the segment's file, None if unreadable, short, or the file changed since it was
    hashed (a growing upstream fill has only verified blocks below its progress, and no key yet)."""
    try:
        data = await anyio.to_thread.run_sync(_read, ref.path, start, end - start)
        current = await anyio.to_thread.run_sync(os.stat, ref.path)
    except OSError:
        return None
    if len(data) != end - start or (not ref.growing and branchcache.FileKey.of(Path(ref.path), current) != ref.file_key):
        return None
    return data


async def retrieve(request: Request) -> Response:
    st = state_of(request)
    m = st.deps.metrics
    body = await request.body()
    try:
        if len(body) > MAX_REQUEST:
            raise BadMessage("request too large")
        req = parse_getblks(body)
    except (BadMessage, struct.error) as e:
        m.peerdist_peer_requests.labels("bad_request").inc()
        return Response(f"bad MS-PCCRR request: {e}\n", status_code=400, media_type="text/plain")
    from .content import branchcache_service

    svc = branchcache_service(request)
    ref = None
    upstream = None
    first = req.ranges[0][0] if req.ranges else 0
    if svc is not None and svc.policy.allows(client_ip(request)):
        ref = svc.cache.segment(req.segment_id)
        upstream = svc.upstream
        if ref is None and upstream is not None and req.ranges:
            ref = await upstream.segment(req.segment_id, first)  # a branch peer: fill from the main server
    empty = Response(build_blk(req.segment_id, first, 0, b"", b"\0" * 16), media_type="application/octet-stream")
    if ref is None or not req.ranges or req.ranges[0][1] < 1:
        m.peerdist_peer_requests.labels("not_found").inc()
        return empty
    rng = ref.block_range(first)
    if rng is None:
        m.peerdist_peer_requests.labels("not_found").inc()
        return empty
    start, end = rng
    data = await _read_block(ref, start, end)
    if data is None and ref.growing and upstream is not None:
        ref = await upstream.segment(req.segment_id, first)  # the fetch completed and moved its file
        data = await _read_block(ref, start, end) if ref is not None else None
    if ref is None or data is None:
        m.peerdist_peer_requests.labels("stale").inc()
        return empty
    ciphertext, iv = encrypt_block(ref.secret, data)
    nxt = first + 1 if first + 1 < ref.blocks else 0
    m.peerdist_peer_requests.labels("ok").inc()
    m.peerdist_peer_bytes.inc(len(data))
    return Response(build_blk(req.segment_id, first, nxt, ciphertext, iv), media_type="application/octet-stream")


async def segment_lookup(request: Request) -> Response:
    """For branch peers ([branchcache] upstream_url pointing here): where the segment with this ID (HoHoDk,
    hex) lies: {path (under /content), version, size, content_information (base64 of the file's whole
    Content Information of that version)}; 404 if no hashed file holds it (or the file changed since).
    Offered to the clients the [branchcache] policy allows (as the Content Information on /content is)."""
    m = state_of(request).deps.metrics
    from .content import branchcache_service

    svc = branchcache_service(request)
    if svc is None or not svc.policy.allows(client_ip(request)):
        m.peerdist_segment_lookups.labels("denied").inc()
        return JSONResponse({"error": "PeerDist is not offered to this client"}, status_code=403)
    try:
        seg_id = bytes.fromhex(request.path_params["segment"])
        if not 1 <= len(seg_id) <= 64:
            raise ValueError("length")
    except ValueError:
        m.peerdist_segment_lookups.labels("bad_request").inc()
        return JSONResponse({"error": "the segment ID must be 1..64 bytes in hex"}, status_code=400)
    ref = svc.cache.segment(seg_id)
    blob, rel, size = None, None, 0
    if ref is not None:
        try:
            st = await anyio.to_thread.run_sync(os.stat, ref.path)
        except OSError:
            st = None
        if st is not None and branchcache.FileKey.of(Path(ref.path), st) == ref.file_key:
            blob = svc.cache.lookup(Path(ref.path), st, ref.version)
            rel, size = svc.relative(ref.path), st.st_size
    if blob is None or rel is None:
        m.peerdist_segment_lookups.labels("not_found").inc()
        return JSONResponse({"error": "no current file holds this segment"}, status_code=404)
    from . import login

    if rel in await login.protected_paths(request):  # login-only files: not handed to branches (no token here)
        m.peerdist_segment_lookups.labels("protected").inc()
        return JSONResponse({"error": "this file needs a boot token"}, status_code=403)
    m.peerdist_segment_lookups.labels("ok").inc()
    return JSONResponse({"path": rel, "version": ref.version if ref else 0, "size": size,
                         "content_information": base64.b64encode(blob).decode("ascii")})


def routes() -> list[Route]:
    return [Route(MAGIC_PATH, retrieve, methods=["POST"]),
            Route(branchcache.SEGMENT_LOOKUP_PATH + "{segment}", segment_lookup, methods=["GET"])]
