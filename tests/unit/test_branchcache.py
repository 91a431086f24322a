"""bootgate.branchcache: passphrase file, MS-PCCRTP header parsing, peering policy, the cache."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import os
import stat
from pathlib import Path

import pytest

from bootgate import branchcache as bc
from bootgate.metrics import Metrics

native = pytest.importorskip("bootgate._native")
needs_hashing = pytest.mark.skipif(not hasattr(native, "content_information"),
                                   reason="bootgate._native built without content_information")

IPXE = {
    "Accept-Encoding": "peerdist",
    "X-P2P-PeerDist": "Version=1.1",
    "X-P2P-PeerDistEx": "MinContentInformation=1.0, MaxContentInformation=2.0",
}


# ------------------------------------------------------------------------------------ passphrase


def test_passphrase_generated_once_0600(tmp_path: Path) -> None:
    p1 = bc.load_or_create_passphrase(tmp_path)
    path = bc.passphrase_path(tmp_path)
    assert len(p1) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == p1.hex()
    assert bc.load_or_create_passphrase(tmp_path) == p1  # kept, not regenerated
    other = tmp_path / "other"
    assert bc.load_or_create_passphrase(other) != p1  # random per deployment


def test_configured_passphrase_wins_and_hex_forms(tmp_path: Path) -> None:
    assert bc.load_or_create_passphrase(tmp_path, "2a:3d 73EB") == bytes.fromhex("2a3d73eb")
    assert not bc.passphrase_path(tmp_path).exists()  # nothing generated when one is configured
    assert bc.parse_passphrase_hex("0x00ff") == b"\x00\xff"
    for bad in ("", "abc", "zz", "0x"):
        with pytest.raises(bc.PassphraseError):
            bc.parse_passphrase_hex(bad)


def test_corrupt_passphrase_file_is_a_clear_error(tmp_path: Path) -> None:
    bc.write_passphrase(tmp_path, b"\x01\x02")
    bc.passphrase_path(tmp_path).write_text("not hex\n")
    with pytest.raises(bc.PassphraseError, match="delete it to generate"):
        bc.load_or_create_passphrase(tmp_path)


def test_fingerprint_is_not_the_secret() -> None:
    p = bytes(range(32))
    fp = bc.passphrase_fingerprint(p)
    assert len(fp) == 16 and p.hex()[:16] != fp
    assert fp != bc.passphrase_fingerprint(p[:-1])


@needs_hashing
def test_server_secrets_formula() -> None:
    p = b"\x2a\x3d\x73\xeb" * 8
    s = native.server_secrets(p)
    assert s["v1"] == hashlib.sha256(p).digest()
    assert s["v1_sha384"] == hashlib.sha384(p).digest()
    assert s["v1_sha512"] == hashlib.sha512(p).digest()
    assert s["v2"] == hashlib.sha512(p).digest()[:32]


# ----------------------------------------------------------------------------------- negotiation


def test_ipxe_request() -> None:
    r = bc.parse_request(IPXE)
    assert r.accepts and r.version == (1, 1) and not r.missing_data
    assert r.allowed_versions([2, 1]) == [2, 1]
    assert r.allowed_versions([1, 2]) == [1, 2]


def test_missing_data_request_as_ipxe_sends_it() -> None:
    r = bc.parse_request({"X-P2P-PeerDist": "Version=1.1, MissingDataRequest=true", "Range": "bytes=0-65535"})
    assert r.missing_data and not r.accepts


@pytest.mark.parametrize("headers,accepts,allowed", [
    ({"Accept-Encoding": "gzip, peerdist", "X-P2P-PeerDist": "Version=1.0"}, True, [1]),
    ({"Accept-Encoding": "peerdist", "X-P2P-PeerDist": "Version=1.1"}, True, [1]),  # Ex absent: 1.0 only
    ({"Accept-Encoding": "peerdist", "X-P2P-PeerDist": "Version=1.1",
      "X-P2P-PeerDistEx": "MinContentInformation=2.0, MaxContentInformation=2.0"}, True, [2]),
    ({"accept-encoding": "PeerDist;q=0.5", "x-p2p-peerdist": "version=1.1",
      "x-p2p-peerdistex": "mincontentinformation=1.0,maxcontentinformation=2.0"}, True, [2, 1]),
    ({"Accept-Encoding": "peerdist;q=0", "X-P2P-PeerDist": "Version=1.1"}, False, [1]),
    ({"Accept-Encoding": "peerdist"}, False, [1]),  # no X-P2P-PeerDist
    ({"X-P2P-PeerDist": "Version=1.1"}, False, [1]),  # no Accept-Encoding
    ({"Accept-Encoding": "peerdist", "X-P2P-PeerDist": "Version=banana"}, False, [1]),
    ({"Accept-Encoding": "peerdist", "X-P2P-PeerDist": "Version=1.1",
      "X-P2P-PeerDistEx": "MinContentInformation=3.0, MaxContentInformation=4.0"}, True, []),
])
def test_header_variants(headers: dict[str, str], accepts: bool, allowed: list[int]) -> None:
    r = bc.parse_request(headers)
    assert r.accepts is accepts
    assert r.allowed_versions([2, 1]) == allowed


def test_policy() -> None:
    net = ipaddress.ip_network
    assert bc.PeerPolicy().allows("10.0.0.1")
    assert not bc.PeerPolicy(enabled=False).allows("10.0.0.1")
    p = bc.PeerPolicy(subnets=(net("198.18.0.0/15"),), exclude=(net("198.18.5.0/24"),))
    assert p.allows("198.19.0.1")
    assert not p.allows("198.18.5.7")
    assert not p.allows("10.0.0.1")
    assert not p.allows("not an ip")
    only_ex = bc.PeerPolicy(exclude=(net("10.0.0.0/8"),))
    assert not only_ex.allows("10.1.2.3") and only_ex.allows("192.0.2.1")


# ----------------------------------------------------------------------------------------- cache


def _blocks_ok(blob: bytes, data: bytes, passphrase: bytes) -> None:
    info = native.parse_content_information(blob)
    secrets_ = native.server_secrets(passphrase)
    for seg in info["segments"]:
        off, bs = seg["offset"], seg["block_size"]
        for i, bh in enumerate(seg["block_hashes"]):
            block = data[off + i * bs: min(off + (i + 1) * bs, off + seg["length"])]
            if info["version"] == 1:
                assert hashlib.sha256(block).digest() == bh
            else:
                assert hashlib.sha512(block).digest()[:32] == bh
        if info["version"] == 1:
            assert hashlib.sha256(b"".join(seg["block_hashes"])).digest() == seg["hod"]
            assert hmac.new(secrets_["v1"], seg["hod"], "sha256").digest() == seg["secret"]
        else:
            assert hmac.new(hashlib.sha512(passphrase).digest()[:32], seg["hod"], "sha512").digest()[:32] \
                == seg["secret"]


@needs_hashing
async def test_cache_builds_keys_and_invalidates(tmp_path: Path) -> None:
    m = Metrics()
    pp = b"p" * 32
    specs = [bc.BuildSpec(1, segment_size=64 * 1024 * 4), bc.BuildSpec(2, segment_size=4096)]
    cache = bc.ContentInfoCache(tmp_path / "ci", pp, specs, metrics=m, threads=2)
    f = tmp_path / "img"
    data = os.urandom(300_000)
    f.write_bytes(data)
    st = f.stat()
    assert cache.lookup(f, st, 1) is None
    assert cache.schedule(f, st, 1) is not None and cache.schedule(f, st, 2) is not None
    assert cache.building(f, st, 1)
    await cache.wait_idle()
    b1, b2 = cache.lookup(f, st, 1), cache.lookup(f, st, 2)
    assert b1 is not None and b2 is not None
    _blocks_ok(b1, data, pp)
    _blocks_ok(b2, data, pp)
    assert native.parse_content_information(b2)["content_range"] == (0, len(data))
    assert cache.schedule(f, st, 1) is None  # cached: nothing to do
    assert m.peerdist_builds.labels("1", "ok")._value.get() == 1
    assert m.peerdist_bytes_hashed._value.get() == 2 * len(data)
    assert len(list((tmp_path / "ci").glob("*.ci"))) == 2

    # survives a restart (disk), and another passphrase is another key
    again = bc.ContentInfoCache(tmp_path / "ci", pp, specs)
    assert again.lookup(f, st, 1) == b1
    other = bc.ContentInfoCache(tmp_path / "ci", b"q" * 32, specs)
    assert other.lookup(f, st, 1) is None
    assert cache.lookup(f, st, 3) is None  # version not configured

    # content changes: the old blob no longer answers; the rebuild replaces it on disk
    data2 = os.urandom(300_001)
    f.write_bytes(data2)
    st2 = f.stat()
    assert cache.lookup(f, st2, 1) is None
    cache.schedule(f, st2, 1)
    await cache.wait_idle()
    nb = cache.lookup(f, st2, 1)
    assert nb is not None and nb != b1
    _blocks_ok(nb, data2, pp)
    assert len(list((tmp_path / "ci").glob("*v1-*.ci"))) == 1


@needs_hashing
async def test_failed_build_is_counted_not_raised(tmp_path: Path) -> None:
    m = Metrics()
    cache = bc.ContentInfoCache(tmp_path / "ci", b"k", [bc.BuildSpec(1)], metrics=m)
    f = tmp_path / "gone"
    f.write_bytes(b"abc")
    st = f.stat()
    f.unlink()
    task = cache.schedule(f, st, 1)
    assert task is not None
    assert await task is None
    assert m.peerdist_builds.labels("1", "error")._value.get() == 1
    assert cache.schedule(f, st, 1) is None  # not retried until the file changes


@needs_hashing
async def test_scan_schedules_new_files_once(tmp_path: Path) -> None:
    root = tmp_path / "content"
    (root / "sub").mkdir(parents=True)
    (root / "a").write_bytes(b"a" * 1000)
    (root / "sub" / "b").write_bytes(b"")
    (root / ".hidden").write_bytes(b"x")
    cache = bc.ContentInfoCache(tmp_path / "ci", b"k", [bc.BuildSpec(2)])
    assert await cache.scan(root) == 2
    await cache.wait_idle()
    assert await cache.scan(root) == 0
    st = (root / "sub" / "b").stat()
    empty = cache.lookup((root / "sub" / "b").resolve(), st, 2)
    assert empty is not None and native.parse_content_information(empty)["segments"] == []


@needs_hashing
async def test_build_runs_off_the_event_loop(tmp_path: Path) -> None:
    f = tmp_path / "big"
    with open(f, "wb") as fh:
        fh.truncate(64 * 1024 * 1024)
    cache = bc.ContentInfoCache(tmp_path / "ci", b"k", [bc.BuildSpec(2)], threads=1)
    progress = native.HashProgress()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    t = asyncio.create_task(ticker())
    await cache.build(f, 2, progress=progress)
    t.cancel()
    assert progress.bytes_done == 64 * 1024 * 1024
    assert ticks > 10  # the loop kept running while Rust hashed with the GIL released


@needs_hashing
def test_native_cancel_and_bad_settings(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x" * 100_000)
    p = native.HashProgress()
    p.cancel()
    with pytest.raises(native.BootgateError, match="cancelled"):
        native.content_information(f, 2, b"k", progress=p)
    with pytest.raises(ValueError):
        native.content_information(f, 3, b"k")
    with pytest.raises(ValueError):
        native.content_information(f, 2, b"k", segment_size=200_000)
    with pytest.raises(ValueError):
        native.content_information(f, 1, b"k", hash_algo="md5")
    with pytest.raises(ValueError):
        native.content_information(f, 2, b"k", v2_segments=[1, 2])  # does not add up to the file
    with pytest.raises(FileNotFoundError):
        native.content_information(tmp_path / "nope", 1, b"k")
    with pytest.raises(native.WireError):
        native.parse_content_information(b"\x00\x01garbage")


def test_ipxe_script_lines_per_site(tmp_path: Path) -> None:
    from tests.conftest import settings_for

    s = settings_for(tmp_path, '[branchcache]\nexclude_subnets = "10.9.0.0/16"\n'
                               'peerhosts = "10.1.0.0/16=10.1.0.5:8050, 10.2.0.0/16=branch2.example"\n').branchcache
    assert bc.ipxe_script_lines(s, "10.1.2.3") == ["set peerdist 1", "set peerhost 10.1.0.5:8050"]
    assert bc.ipxe_script_lines(s, "10.2.0.9") == ["set peerdist 1", "set peerhost branch2.example"]
    assert bc.ipxe_script_lines(s, "10.3.0.1") == ["set peerdist 1"]
    assert bc.ipxe_script_lines(s, "10.9.1.1") == ["set peerdist 0"]
    (tmp_path / "off").mkdir()
    off = settings_for(tmp_path / "off", "[branchcache]\nenabled = false\n").branchcache
    assert bc.ipxe_script_lines(off, "10.1.2.3") == ["set peerdist 0"]


@pytest.mark.parametrize("value", ["10.1.0.0/16", "x=1.2.3.4", "10.1.0.0/16=bad host", "10.0.0.0/8=h:99999"])
def test_peerhosts_config_errors(tmp_path: Path, value: str) -> None:
    from bootgate.config import ConfigError
    from tests.conftest import settings_for

    with pytest.raises(ConfigError, match="peerhosts"):
        settings_for(tmp_path, f'[branchcache]\npeerhosts = "{value}"\n')


@pytest.mark.parametrize(("key", "value"), [("upstream_url", '"main.example:8051"'), ("upstream_url", '"ftp://x/"'),
                                            ("upstream_ca", '"/nonexistent/ca.pem"'), ("peer_cache_mb", "0")])
def test_upstream_config_errors(tmp_path: Path, key: str, value: str) -> None:
    from bootgate.config import ConfigError
    from tests.conftest import settings_for

    with pytest.raises(ConfigError, match=key):
        settings_for(tmp_path, f"[branchcache]\n{key} = {value}\n")


def test_upstream_config_builds_a_branch_peer(tmp_path: Path) -> None:
    from tests.conftest import settings_for

    ca = tmp_path / "ca.pem"
    ca.write_text("not checked until used\n")
    s = settings_for(tmp_path, f'[branchcache]\nupstream_url = "https://main.example:8051/"\nupstream_ca = "{ca}"\n'
                               "peer_cache_mb = 5\n")
    assert (s.branchcache.upstream_url, s.branchcache.upstream_ca) == ("https://main.example:8051", str(ca))
    svc = bc.BranchCacheService.from_settings(s)
    assert svc.upstream is not None and svc.upstream.store.max_bytes == 5 * 2**20
    assert (svc.upstream.host, svc.upstream.port, svc.upstream.scheme) == ("main.example", 8051, "https")
    (tmp_path / "p").mkdir()
    plain = bc.BranchCacheService.from_settings(settings_for(tmp_path / "p", ""))
    assert plain.upstream is None


def test_hash_backend_is_named_and_builds_match_the_in_memory_builder(tmp_path: Path) -> None:
    if not hasattr(native, "hash_backend"):
        pytest.skip("bootgate._native built without hash_backend")
    assert "libcrypto" in native.hash_backend() or "sha2" in native.hash_backend()
    data = os.urandom(5 * 65536 + 7)
    f = tmp_path / "img"
    f.write_bytes(data)
    for version in (1, 2):
        blob, info = native.content_information(str(f), version, b"pass", threads=2)
        assert blob == native.content_information_bytes(data, version, b"pass")
        assert info["size"] == len(data)
