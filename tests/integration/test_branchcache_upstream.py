"""A bootgate at a branch as hosted-cache peer that fills its cache from the main server ([branchcache]
upstream_url / upstream_ca): two real `bootgate serve` processes on loopback (main over HTTPS with its own
CA, branch over HTTP) and iPXE-like clients that take the Content Information from the main server and ask
the branch (their `peerhost`) for every block first, falling back to the main server as iPXE does.

Also, without processes: the branch's segment store (LRU bound, reload from disk) and a lying upstream (bad
block bytes, another passphrase) whose segments are refused.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import http.server
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bootgate import branchcache
from bootgate.metrics import Metrics
from bootgate.web import peer
from tests.conftest import free_port, write_config
from tests.integration.test_cli_serve import _stop, _wait_ready
from tests.integration.test_peerdist import IPXE_HEADERS, MISSING
from tests.integration.test_peerdist_peer import getblks, parse_blk

native = pytest.importorskip("bootgate._native")
pytestmark = pytest.mark.skipif(not hasattr(native, "content_information"),
                                reason="bootgate._native built without content_information")

PASS_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


def _hash(version: int, algo: str, block: bytes) -> bytes:
    return hashlib.sha512(block).digest()[:32] if version == 2 else hashlib.new(algo, block).digest()


class PeerClient:
    """Downloads as iPXE does with `peerhost` set: Content Information from the origin, then per block a
    MSG_GETBLKS to the peer; a block the peer does not supply comes from the origin (MissingDataRequest)."""

    def __init__(self, origin: str, peer_base: str, max_ci: str) -> None:
        self.origin, self.peer = origin, peer_base
        self.headers = {**IPXE_HEADERS, "X-P2P-PeerDistEx": f"MinContentInformation=1.0, MaxContentInformation={max_ci}"}
        self.from_peer = 0
        self.from_origin = 0

    def content_information(self, path: str) -> dict[str, Any]:
        r = httpx.get(self.origin + path, headers=self.headers, timeout=30, verify=False)
        assert r.status_code == 200 and r.headers.get("content-encoding") == "peerdist"
        return native.parse_content_information(r.content)  # type: ignore[no-any-return]

    def block_from_peer(self, seg: dict[str, Any], index: int, version: int, algo: str) -> bytes | None:
        r = httpx.post(self.peer + peer.MAGIC_PATH, content=getblks(seg["id"], index), timeout=120)
        assert r.status_code == 200
        _alg, seg_id, got_index, ct, iv = parse_blk(r.content, len(seg["id"]))
        assert seg_id == seg["id"] and got_index == index
        if not ct:
            return None
        want = min(seg["block_size"], seg["length"] - index * seg["block_size"])
        dec = Cipher(algorithms.AES(seg["secret"][:16]), modes.CBC(iv)).decryptor()
        block = (dec.update(ct) + dec.finalize())[:want]
        assert _hash(version, algo, block) == seg["block_hashes"][index], "a peer block does not match its hash"
        return block

    def fetch(self, path: str) -> bytes:
        info = self.content_information(path)
        version, algo = info["version"], info["hash_algo"]
        out = bytearray()
        for seg in info["segments"]:
            for i, expected in enumerate(seg["block_hashes"]):
                block = self.block_from_peer(seg, i, version, algo)
                if block is None:
                    b0 = seg["offset"] + i * seg["block_size"]
                    b1 = min(b0 + seg["block_size"], seg["offset"] + seg["length"])
                    rr = httpx.get(self.origin + path, headers={**MISSING, "Range": f"bytes={b0}-{b1 - 1}"},
                                   timeout=30, verify=False)
                    assert rr.status_code == 206
                    block = rr.content
                    assert _hash(version, algo, block) == expected
                    self.from_origin += 1
                else:
                    self.from_peer += 1
                out += block
        return bytes(out)


def _metric(text: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def _wait_metric(base: str, name: str, labels: str, want: float, deadline_s: float = 30) -> None:
    """Waits (bounded) until the metric reaches `want` (a fill is counted when its last block is verified,
    which may be after its first blocks were served); fails if it ends elsewhere."""
    end = time.monotonic() + deadline_s
    got = -1.0
    while time.monotonic() < end:
        got = _metric(httpx.get(base + "/metrics", timeout=10).text, name, labels)
        if got >= want:
            break
        time.sleep(0.1)
    assert got == want, f"{name}{labels} is {got}, expected {want}"


def _serve(tmp_path: Path, name: str, body: str) -> tuple[subprocess.Popen[bytes], Path]:
    cfg = write_config(tmp_path, body, name=f"{name}.toml")
    log = tmp_path / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTGATE_")}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bootgate.cli", "serve", "--config", str(cfg)], stdout=out,
                                stderr=subprocess.STDOUT, env=env)
    return proc, log


@pytest.fixture
def main_and_branch(tmp_path: Path) -> Iterator[tuple[str, str, str, Path]]:
    """(main https base, main http base, branch http base, main content dir) of two running servers."""
    main_data, branch_data = tmp_path / "main", tmp_path / "branch"
    content = main_data / "content"
    content.mkdir(parents=True)
    (branch_data / "content").mkdir(parents=True)
    m_http, m_https, b_http = free_port(), free_port(), free_port()
    procs = []
    try:
        main, log = _serve(tmp_path, "main", f"""
            [server]
            data_dir = "{main_data}"
            [http]
            bind = "127.0.0.1"
            port = {m_http}
            https_port = {m_https}
            [tftp]
            enabled = false
            [branchcache]
            passphrase_hex = "{PASS_HEX}"
            scan_interval = 1
        """)
        procs.append(main)
        _wait_ready(main, f"http://127.0.0.1:{m_http}/healthz", log)
        branch, log = _serve(tmp_path, "branch", f"""
            [server]
            data_dir = "{branch_data}"
            [http]
            bind = "127.0.0.1"
            port = {b_http}
            https_port = 0
            [tftp]
            enabled = false
            [branchcache]
            passphrase_hex = "{PASS_HEX}"
            upstream_url = "https://127.0.0.1:{m_https}"
            upstream_ca = "{main_data / 'tls' / 'ca.pem'}"
            peer_cache_mb = 64
        """)
        procs.append(branch)
        _wait_ready(branch, f"http://127.0.0.1:{b_http}/healthz", log)
        yield f"https://127.0.0.1:{m_https}", f"http://127.0.0.1:{m_http}", f"http://127.0.0.1:{b_http}", content
    finally:
        for p in procs:
            _stop(p)


def _wait_hashed(origin: str, path: str, max_ci: str, deadline_s: float = 60) -> None:
    headers = {**IPXE_HEADERS, "X-P2P-PeerDistEx": f"MinContentInformation=1.0, MaxContentInformation={max_ci}"}
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        r = httpx.get(origin + path, headers=headers, timeout=10)
        if r.headers.get("content-encoding") == "peerdist":
            return
        time.sleep(0.2)
    raise AssertionError(f"{path} was never hashed")


def test_branch_fills_from_main_then_serves_from_its_cache(main_and_branch: tuple[str, str, str, Path]) -> None:
    main_https, main_http, branch, content = main_and_branch
    data = os.urandom(3 * 2**20 + 12345)  # V1: one segment of 49 blocks; V2: 49 segments
    (content / "boot.wim").write_bytes(data)
    for max_ci in ("1.0", "2.0"):
        _wait_hashed(main_http, "/content/boot.wim", max_ci)

    # concurrent requests for blocks of one segment the branch lacks: one upstream fetch
    v1 = PeerClient(main_http, branch, "1.0")
    seg = v1.content_information("/content/boot.wim")["segments"][0]
    with ThreadPoolExecutor(8) as pool:
        blocks = list(pool.map(lambda i: v1.block_from_peer(seg, i, 1, "sha256"), range(8)))
    assert all(b is not None for b in blocks)
    assert b"".join(b for b in blocks if b is not None) == data[:8 * 65536]
    _wait_metric(branch, "bootgate_peerdist_upstream_fills_total", '{result="ok"}', 1)  # blocks may come before

    for max_ci, segments in (("1.0", 1), ("2.0", len(data) // 65536 + 1)):
        before = _metric(httpx.get(branch + "/metrics", timeout=10).text, "bootgate_peerdist_upstream_fills_total",
                         '{result="ok"}')
        first = PeerClient(main_https, branch, max_ci)
        assert first.fetch("/content/boot.wim") == data
        assert first.from_origin == 0 and first.from_peer > 0  # the branch filled what it lacked on demand
        fills = before + (0 if max_ci == "1.0" else segments)  # V1's one segment came in above
        _wait_metric(branch, "bootgate_peerdist_upstream_fills_total", '{result="ok"}', fills)
        # the second client: entirely from the branch's cache, no upstream fetch
        second = PeerClient(main_https, branch, max_ci)
        assert second.fetch("/content/boot.wim") == data
        assert second.from_origin == 0 and second.from_peer == first.from_peer
        metrics = httpx.get(branch + "/metrics", timeout=10).text
        assert _metric(metrics, "bootgate_peerdist_upstream_fills_total", '{result="ok"}') == fills
    assert _metric(metrics, "bootgate_peerdist_upstream_bytes_total") == 2 * len(data)
    # 8 concurrent blocks + V1 twice + V2 twice
    assert _metric(metrics, "bootgate_peerdist_peer_bytes_total") == 8 * 65536 + 4 * len(data)
    main_metrics = httpx.get(main_http + "/metrics", timeout=10).text
    assert _metric(main_metrics, "bootgate_peerdist_segment_lookups_total", '{result="ok"}') == 1 + segments

    # a segment the main server does not know: "not found" for iPXE (which then asks the origin), counted
    r = httpx.post(branch + peer.MAGIC_PATH, content=getblks(b"\x42" * 32, 0), timeout=30)
    assert parse_blk(r.content, 32)[3] == b""
    metrics = httpx.get(branch + "/metrics", timeout=10).text
    assert _metric(metrics, "bootgate_peerdist_upstream_fills_total", '{result="not_found"}') == 1
    # the main server's lookup route: bad IDs are 400, unknown ones 404
    assert httpx.get(main_http + branchcache.SEGMENT_LOOKUP_PATH + "zz", timeout=10).status_code == 400
    assert httpx.get(main_http + branchcache.SEGMENT_LOOKUP_PATH + "42" * 32, timeout=10).status_code == 404


# ------------------------------------------------------------------------------ without processes


def _seg(length: int, secret: bytes = b"s" * 32) -> dict[str, Any]:
    return {"length": length, "block_size": length, "block_hashes": [b"h" * 32], "secret": secret}


def test_peer_store_is_bounded_lru_and_reloads(tmp_path: Path) -> None:
    store = branchcache.PeerStore(tmp_path / "peer", max_bytes=250)
    for n in range(3):
        tmp = store.temp_path(bytes([n]) * 32)
        tmp.write_bytes(bytes([n]) * 100)
        store.add(bytes([n]) * 32, tmp, _seg(100), 2)
        time.sleep(0.01)  # distinct mtimes: the reload keeps the order
    # 300 bytes > 250: the oldest (0) went, with its files
    assert store.get(b"\0" * 32) is None and not (tmp_path / "peer" / ("00" * 32 + ".seg")).exists()
    assert store.bytes == 200
    ref = store.get(b"\1" * 32)  # now the most recently used
    assert ref is not None and Path(ref.path).read_bytes() == b"\1" * 100 and ref.version == 2
    tmp = store.temp_path(b"\3" * 32)
    tmp.write_bytes(b"\3" * 100)
    store.add(b"\3" * 32, tmp, _seg(100), 2)
    assert store.get(b"\2" * 32) is None and store.get(b"\1" * 32) is not None
    # a new store on the same directory finds the segments; a damaged entry is dropped, not fatal
    (tmp_path / "peer" / ("03" * 32 + ".seg")).write_bytes(b"short")
    again = branchcache.PeerStore(tmp_path / "peer", max_bytes=250)
    assert again.get(b"\1" * 32) is not None and again.get(b"\3" * 32) is None and again.bytes == 100
    assert not (tmp_path / "peer" / ("03" * 32 + ".json")).exists()


class _FakeMain(http.server.BaseHTTPRequestHandler):
    """An upstream answering the lookup with real Content Information and the range with `body`."""

    ci = b""
    body = b""
    version = 2
    gate: threading.Event | None = None  # set: the range answer stalls after its first 64 KiB until set

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.startswith(branchcache.SEGMENT_LOOKUP_PATH):
            out = orjson.dumps({"path": "f", "version": self.version, "size": len(self.body),
                                "content_information": base64.b64encode(self.ci).decode()})
            self.send_response(200)
        else:
            m = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
            assert m
            a, b = int(m.group(1)), int(m.group(2))
            out = self.body[a:b + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {a}-{b}/{len(self.body)}")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.gate is not None and not self.path.startswith(branchcache.SEGMENT_LOOKUP_PATH):
            self.wfile.write(out[:65536])
            self.wfile.flush()
            self.gate.wait(30)
            out = out[65536:]
        self.wfile.write(out)


@pytest.mark.parametrize("case", ["ok", "bad_hash", "bad_secret"])
async def test_upstream_answers_are_verified(tmp_path: Path, case: str) -> None:
    data = os.urandom(100_000)
    passphrase = bytes.fromhex(PASS_HEX)
    ci = native.content_information_bytes(data, 2, passphrase)
    info = native.parse_content_information(ci)
    seg = info["segments"][1]
    handler = type("H", (_FakeMain,), {"ci": ci, "body": data if case != "bad_hash" else data[:-1] + bytes([data[-1] ^ 0xFF])})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        metrics = Metrics()
        store = branchcache.PeerStore(tmp_path / "peer", 2**20)
        ours = passphrase if case != "bad_secret" else b"another deployment"
        up = branchcache.Upstream(f"http://127.0.0.1:{srv.server_address[1]}", "", store, ours, metrics)
        ref = await up.segment(seg["id"], 10**6)  # past the last block: returns when the fetch has ended
        c = metrics.peerdist_upstream_fills.labels(case)._value.get()
        assert c == 1
        if case == "ok":
            assert ref is not None and Path(ref.path).read_bytes() == data[seg["offset"]:seg["offset"] + seg["length"]]
            assert hmac.compare_digest(ref.secret, seg["secret"])
        else:
            assert ref is None and store.bytes == 0 and not list((tmp_path / "peer").glob("*.seg"))
            assert await up.segment(seg["id"]) is None  # not asked again right away
            assert metrics.peerdist_upstream_fills.labels(case)._value.get() == 1
    finally:
        srv.shutdown()
        srv.server_close()


async def test_blocks_are_answered_while_their_segment_is_still_being_fetched(tmp_path: Path) -> None:
    """iPXE gives a peer 3 s to start answering: a block is served from the partial segment as soon as it is
    verified, not after the whole (up to 32 MiB) V1 segment arrived."""
    data = os.urandom(200_000)  # V1: one segment of 4 blocks
    passphrase = bytes.fromhex(PASS_HEX)
    ci = native.content_information_bytes(data, 1, passphrase)
    seg = native.parse_content_information(ci)["segments"][0]
    gate = threading.Event()
    handler = type("H", (_FakeMain,), {"ci": ci, "body": data, "version": 1, "gate": gate})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        metrics = Metrics()
        store = branchcache.PeerStore(tmp_path / "peer", 2**20)
        up = branchcache.Upstream(f"http://127.0.0.1:{srv.server_address[1]}", "", store, passphrase, metrics)
        ref = await asyncio.wait_for(up.segment(seg["id"], 0), 20)
        assert ref is not None and ref.growing and store.get(seg["id"]) is None  # the fetch is still stalled
        assert Path(ref.path).read_bytes()[:65536] == data[:65536]
        later = asyncio.ensure_future(up.segment(seg["id"], 2))  # block 2 is not there yet: it waits
        await asyncio.sleep(0.2)
        assert not later.done()
        gate.set()
        ref2 = await asyncio.wait_for(later, 20)
        assert ref2 is not None
        done = await asyncio.wait_for(up.segment(seg["id"], 10**6), 20)  # past the end: when it is stored
        assert done is not None and not done.growing and Path(done.path).read_bytes() == data
        assert metrics.peerdist_upstream_fills.labels("ok")._value.get() == 1
    finally:
        gate.set()
        srv.shutdown()
        srv.server_close()
