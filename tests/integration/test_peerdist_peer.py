"""The hosted-cache peer (MS-PCCRR over HTTP): blocks fetched as iPXE's peerblk.c fetches them from `peerhost`.

The client builds iPXE's MSG_GETBLKS (one segment ID, one block range, AES-128-CBC, empty VRF), posts it to
the magic path, parses the MSG_BLK as iPXE does (transport header, type, algorithm, digest size, segment ID,
block index, block length, VRF, IV after the data), decrypts with the segment secret from the Content
Information, and checks the block against its hash.
"""

from __future__ import annotations

import hashlib
import os
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bootgate.web import peer
from tests.conftest import AppEnv
from tests.integration.test_peerdist import IPXE_HEADERS, IpxeLikeClient, _count, _service

native = pytest.importorskip("bootgate._native")
pytestmark = pytest.mark.skipif(not hasattr(native, "content_information"),
                                reason="bootgate._native built without content_information")


def getblks(segment_id: bytes, first: int, count: int = 1) -> bytes:
    seg = struct.pack(">I", len(segment_id)) + segment_id + b"\0" * ((-len(segment_id)) & 3)
    body = seg + struct.pack(">III", 1, first, count) + struct.pack(">I", 0)
    return struct.pack(">IIII", 1, 3, 16 + len(body), 1) + body


def parse_blk(raw: bytes, digestsize: int) -> tuple[int, bytes, int, bytes, bytes]:
    """(algorithm, segment id, index, data, iv) of a MSG_BLK with its transport header."""
    (tlen,) = struct.unpack_from(">I", raw, 0)
    assert tlen == len(raw) - 4
    version, mtype, length, algorithm = struct.unpack_from(">IIII", raw, 4)
    assert (version, mtype, length) == (1, 5, len(raw) - 4)
    pos = 20
    (ds,) = struct.unpack_from(">I", raw, pos)
    assert ds == digestsize
    seg_id = raw[pos + 4: pos + 4 + ds]
    pos += 4 + ds + ((-ds) & 3)
    index, _next, dlen = struct.unpack_from(">III", raw, pos)
    pos += 12
    data = raw[pos: pos + dlen]
    pos += dlen
    (vrf,) = struct.unpack_from(">I", raw, pos)
    pos += 4 + vrf + ((-vrf) & 3)
    (blksize,) = struct.unpack_from(">I", raw, pos)
    iv = raw[pos + 4: pos + 4 + blksize]
    assert pos + 4 + blksize == len(raw)
    return algorithm, seg_id, index, data, iv


@pytest.mark.parametrize("size", [70_000, 5 * 65536 + 3])
async def test_peer_serves_every_block_encrypted(app_env: AppEnv, size: int) -> None:
    data = os.urandom(size)
    (app_env.content / "boot.wim").write_bytes(data)
    await IpxeLikeClient(app_env.client).fetch("/content/boot.wim")  # starts the builds
    await _service(app_env).cache.wait_idle()
    for max_ci in ("1.0", "2.0"):
        r = await app_env.client.get("/content/boot.wim", headers={**IPXE_HEADERS,
                                     "X-P2P-PeerDistEx": f"MinContentInformation=1.0, MaxContentInformation={max_ci}"})
        info = native.parse_content_information(r.content)
        assert info["version"] == int(max_ci[0])
        out = bytearray()
        for seg in info["segments"]:
            for i, expected in enumerate(seg["block_hashes"]):
                rr = await app_env.client.post(peer.MAGIC_PATH, content=getblks(seg["id"], i))
                assert rr.status_code == 200
                algorithm, seg_id, index, ct, iv = parse_blk(rr.content, len(seg["id"]))
                assert algorithm == 1 and seg_id == seg["id"] and index == i
                want = min(seg["block_size"], seg["length"] - i * seg["block_size"])
                assert len(ct) >= want and len(ct) % 16 == 0 and len(iv) == 16
                dec = Cipher(algorithms.AES(seg["secret"][:16]), modes.CBC(iv)).decryptor()
                block = (dec.update(ct) + dec.finalize())[:want]
                digest = hashlib.sha256(block).digest() if info["version"] == 1 else hashlib.sha512(block).digest()[:32]
                assert digest == expected
                out += block
        assert bytes(out) == data
    m = app_env.metrics
    assert _count(m.peerdist_peer_bytes) == 2 * size
    assert _count(m.peerdist_peer_requests, "ok") > 0


async def test_peer_unknown_segment_bad_block_and_bad_messages(app_env: AppEnv) -> None:
    (app_env.content / "f").write_bytes(b"z" * 1000)
    await IpxeLikeClient(app_env.client).fetch("/content/f")
    await _service(app_env).cache.wait_idle()
    # unknown segment: a MSG_BLK with an empty block, which iPXE reads as "not found"
    rr = await app_env.client.post(peer.MAGIC_PATH, content=getblks(b"\x11" * 32, 0))
    assert rr.status_code == 200
    _alg, _id, _index, ct, _iv = parse_blk(rr.content, 32)
    assert ct == b""
    # a block index past the segment's end
    r = await app_env.client.get("/content/f", headers=IPXE_HEADERS)
    seg = native.parse_content_information(r.content)["segments"][0]
    rr = await app_env.client.post(peer.MAGIC_PATH, content=getblks(seg["id"], 7))
    assert parse_blk(rr.content, 32)[3] == b""
    # the file changed since it was hashed: not served from stale information
    (app_env.content / "f").write_bytes(b"y" * 1000)
    rr = await app_env.client.post(peer.MAGIC_PATH, content=getblks(seg["id"], 0))
    assert parse_blk(rr.content, 32)[3] == b""
    assert _count(app_env.metrics.peerdist_peer_requests, "stale") == 1
    # malformed requests: 400, counted, never a crash
    for bad in (b"", b"\0" * 19, getblks(b"\x11" * 32, 0)[:30], struct.pack(">IIII", 1, 9, 16, 1),
                struct.pack(">IIII", 1, 3, 10**6, 1) + b"\0" * 8, os.urandom(100)):
        rr = await app_env.client.post(peer.MAGIC_PATH, content=bad)
        assert rr.status_code == 400
    assert _count(app_env.metrics.peerdist_peer_requests, "bad_request") == 6


async def test_segment_lookup_for_branch_peers(app_env: AppEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    from bootgate import branchcache
    from bootgate.web import login

    data = os.urandom(150_000)
    (app_env.content / "sub").mkdir()
    (app_env.content / "sub" / "img").write_bytes(data)
    await IpxeLikeClient(app_env.client).fetch("/content/sub/img")
    await _service(app_env).cache.wait_idle()
    r = await app_env.client.get("/content/sub/img", headers=IPXE_HEADERS)
    info = native.parse_content_information(r.content)
    seg = info["segments"][1]
    rr = await app_env.client.get(branchcache.SEGMENT_LOOKUP_PATH + seg["id"].hex())
    assert rr.status_code == 200
    body = rr.json()
    assert body["path"] == "sub/img" and body["version"] == info["version"] and body["size"] == len(data)
    assert base64.b64decode(body["content_information"]) == r.content
    # files only a boot token opens are not handed to branches
    async def protected(_request: object) -> frozenset[str]:
        return frozenset({"sub/img"})

    monkeypatch.setattr(login, "protected_paths", protected)
    rr = await app_env.client.get(branchcache.SEGMENT_LOOKUP_PATH + seg["id"].hex())
    assert rr.status_code == 403
    assert _count(app_env.metrics.peerdist_segment_lookups, "protected") == 1
    assert _count(app_env.metrics.peerdist_segment_lookups, "ok") == 1
