"""`bootgate serve` as a real process: Content Information is built in the background at start and for
files that appear later, then served to an iPXE-like client over a real loopback socket."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import httpx
import pytest

from tests.integration import store_serve
from tests.integration.test_peerdist import IPXE_HEADERS

native = pytest.importorskip("bootgate._native")
pytestmark = pytest.mark.skipif(not hasattr(native, "content_information"),
                                reason="bootgate._native built without content_information")


def _peerdist_body(url: str, deadline_s: float = 60) -> bytes:
    """GETs `url` as iPXE does until the answer is Content-Encoding: peerdist (bounded wait)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        r = httpx.get(url, headers=IPXE_HEADERS, timeout=10)
        assert r.status_code == 200
        if r.headers.get("content-encoding") == "peerdist":
            return r.content
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered with peerdist")


def test_serve_builds_in_background_and_answers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    content = data / "content"
    content.mkdir(parents=True)
    first = os.urandom(300_000)
    (content / "vmlinuz").write_bytes(first)
    srv = store_serve.start(tmp_path, "data", script_clients=None, extra={"branchcache": {"scan_interval": 1}})
    try:
        base = srv.base
        # built at start by the scanner (no request needed first)
        blob = _peerdist_body(base + "/content/vmlinuz")
        info = native.parse_content_information(blob)
        assert info["version"] == 2 and info["content_range"] == (0, len(first))
        seg = info["segments"][0]
        assert hashlib.sha512(first[:seg["length"]]).digest()[:32] == seg["block_hashes"][0]
        # a file that appears later is picked up by the next scan
        later = os.urandom(70_000)
        (content / "initrd.img").write_bytes(later)
        info = native.parse_content_information(_peerdist_body(base + "/content/initrd.img"))
        assert info["content_range"] == (0, len(later))
        # the passphrase was generated at first start, 0600
        pp = data / "branchcache" / "passphrase"
        assert pp.stat().st_mode & 0o777 == 0o600
        metrics = httpx.get(base + "/metrics", timeout=10).text
        assert 'bootgate_peerdist_builds_total{result="ok",version="2"}' in metrics
        assert 'bootgate_peerdist_responses_total{version="2"}' in metrics
    finally:
        store_serve.stop(srv)
