"""PeerDist (MS-PCCRTP) on /content, driven by a client that behaves as iPXE does.

The client sends iPXE's exact headers (src/net/peerdist.c: `X-P2P-PeerDist: Version=1.1`,
`X-P2P-PeerDistEx: MinContentInformation=1.0, MaxContentInformation=2.0`, `Accept-Encoding: peerdist`),
parses the Content Information it gets, and, with no peers on the network, fetches every block as a
plain range request marked `MissingDataRequest=true` (as iPXE's raw block download does), checking each
block against its hash before assembling the file.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bootgate import branchcache
from bootgate.events import EventRecorder
from bootgate.metrics import Metrics
from bootgate.store import Store
from bootgate.web import Deps, create_app
from tests.conftest import ADMIN_TOKEN, AppEnv, settings_for

native = pytest.importorskip("bootgate._native")
pytestmark = pytest.mark.skipif(not hasattr(native, "content_information"),
                                reason="bootgate._native built without content_information")

IPXE_HEADERS = {
    "Accept-Encoding": "peerdist",
    "X-P2P-PeerDist": "Version=1.1",
    "X-P2P-PeerDistEx": "MinContentInformation=1.0, MaxContentInformation=2.0",
}
MISSING = {"X-P2P-PeerDist": "Version=1.1, MissingDataRequest=true"}

# iPXE src/tests/pccrc_test.c: IIS 8.5's Content Information of its welcome image and the exported server
# passphrase (the same vectors as crates/bootgate-wire/tests/pccrc.rs).
IIS_PASSPHRASE = bytes.fromhex("2a3d73eb435e9f2b8a344267e7467a3c7385c6e055e2b4d30dfec7c38b0ed72c")
IIS_V1 = bytes.fromhex(
    "00010c80000000000000000000000100000000000000000000007e85010000000100d8d976354a4872e925761803f458d9da"
    "aa67f8e31c630fb74e6a312ef8a25aba11afc0d7949243f94f9c1fab35d9fd1e331fcf7811a2e01d3587b38d770a29e202"
    "00000073c18ab8549110f8e90e71bbc3ab2aa8c44d13f4929499255b660f24ec77800b974bdd65567fdeeccdafe457a950"
    "3b4548f66ed3b188dcfda0ac382b09711acc")
IIS_V2 = bytes.fromhex(
    "00020400000000000000000000000000000000000000000000000000000000000000008800009"
    "9dee0d0c358e2684b62330d32b5f1978724a0d0a52bdc5e781fae71ff57a8be3dd458037ed404116bb616d9b14116088520"
    "c47cdc50abcea3fae188a98ea22df3c00000eba03381d0d0cb74f4b613d8210f37f002a06f3910586096a130d34398c08e"
    "66d7bcb8b6eb7783e4f807647b63f146b52f4ac89ccc7abf5fa11acafc2acf5028586c")
IIS_V2_SPLIT = [39390, 60320]
PNG_SHA256 = "5cd971d318349c4644488d55edb1e7357dad8aa3743bef74b84c302580e37d82"


def _png() -> Path:
    for d in (os.environ.get("BOOTGATE_SHARED_DIR"), "/work/shared", str(Path(__file__).parents[3] / "shared")):
        if d and (Path(d) / "fixtures/pccrc/iis-85.png").is_file():
            p = Path(d) / "fixtures/pccrc/iis-85.png"
            assert hashlib.sha256(p.read_bytes()).hexdigest() == PNG_SHA256
            return p
    pytest.skip("shared/fixtures/pccrc/iis-85.png not found (set BOOTGATE_SHARED_DIR)")


class IpxeLikeClient:
    """Downloads as iPXE does against a server with no peers around; verifies every block."""

    def __init__(self, client: httpx.AsyncClient, max_ci: str = "2.0", min_ci: str = "1.0") -> None:
        self.client = client
        self.headers = dict(IPXE_HEADERS)
        self.headers["X-P2P-PeerDistEx"] = f"MinContentInformation={min_ci}, MaxContentInformation={max_ci}"
        self.block_requests = 0
        self.block_bytes = 0

    async def fetch(self, url: str, passphrase: bytes | None = None) -> tuple[bytes, int | None]:
        """(content, Content Information version used or None for a plain answer)."""
        r = await self.client.get(url, headers=self.headers)
        assert r.status_code == 200, r.text
        if r.headers.get("content-encoding") != "peerdist":
            assert "x-p2p-peerdist" not in r.headers
            return r.content, None
        pd = branchcache._params(r.headers["x-p2p-peerdist"])
        assert pd["version"] == "1.1"
        total = int(pd["contentlength"])
        assert int(r.headers["content-length"]) == len(r.content)
        info = native.parse_content_information(r.content)
        start, end = info["content_range"]
        assert (start, end) == (0, total)
        out = bytearray()
        for seg in info["segments"]:
            assert seg["offset"] == len(out)
            if info["version"] == 1:
                assert hashlib.sha256(b"".join(seg["block_hashes"])).digest() == seg["hod"]
            for i, expected in enumerate(seg["block_hashes"]):
                b0 = seg["offset"] + i * seg["block_size"]
                b1 = min(b0 + seg["block_size"], seg["offset"] + seg["length"])
                rr = await self.client.get(url, headers={**MISSING, "Range": f"bytes={b0}-{b1 - 1}"})
                assert rr.status_code == 206
                assert rr.headers["content-range"] == f"bytes {b0}-{b1 - 1}/{total}"
                assert "content-encoding" not in rr.headers
                block = rr.content
                assert len(block) == b1 - b0
                got = hashlib.sha256(block).digest() if info["version"] == 1 else hashlib.sha512(block).digest()[:32]
                assert got == expected, f"block {i} of segment at {seg['offset']} does not match its hash"
                self.block_requests += 1
                self.block_bytes += len(block)
                out += block
            if passphrase is not None:  # the segment secret is HMAC(Ks, HoD) with the server's passphrase
                if info["version"] == 1:
                    ks = hashlib.sha256(passphrase).digest()
                    assert hmac.new(ks, seg["hod"], "sha256").digest() == seg["secret"]
                else:
                    ks = hashlib.sha512(passphrase).digest()[:32]
                    assert hmac.new(ks, seg["hod"], "sha512").digest()[:32] == seg["secret"]
        assert len(out) == total
        return bytes(out), info["version"]


def _service(env: AppEnv) -> branchcache.BranchCacheService:
    svc = env.app.state.branchcache
    assert isinstance(svc, branchcache.BranchCacheService)
    return svc


def _count(counter: object, *labels: str) -> float:
    c = counter.labels(*labels) if labels else counter  # type: ignore[attr-defined]
    return float(c._value.get())


SIZES = [1, 65535, 65536, 3 * 65536 + 17, 33 * 1024 * 1024 + 5]  # last: two V1 segments


@pytest.mark.parametrize("size", SIZES)
async def test_ipxe_download_all_versions(app_env: AppEnv, size: int) -> None:
    data = os.urandom(size)
    (app_env.content / "img.bin").write_bytes(data)
    client = IpxeLikeClient(app_env.client)
    m = app_env.metrics

    # 1. nothing cached yet: the plain file, and a build starts in the background
    body, version = await client.fetch("/content/img.bin")
    assert version is None and body == data
    assert _count(m.peerdist_identity, "not_cached") == 1
    await _service(app_env).cache.wait_idle()
    assert _count(m.peerdist_builds, "2", "ok") == 1 and _count(m.peerdist_builds, "1", "ok") == 1

    passphrase = branchcache.load_or_create_passphrase(app_env.settings.server.data_dir)
    # 2. iPXE's range 1.0..2.0: version 2 (preferred by default), every block verified
    body, version = await client.fetch("/content/img.bin", passphrase)
    assert version == 2 and body == data
    # 3. a client that only takes 1.0 gets version 1
    v1_client = IpxeLikeClient(app_env.client, max_ci="1.0")
    body, version = await v1_client.fetch("/content/img.bin", passphrase)
    assert version == 1 and body == data

    assert _count(m.peerdist_responses, "2") == 1 and _count(m.peerdist_responses, "1") == 1
    assert _count(m.peerdist_cache, "hit") == 2
    assert _count(m.peerdist_fallback_requests) == client.block_requests + v1_client.block_requests
    assert _count(m.peerdist_fallback_bytes) == 2 * size
    assert _count(m.peerdist_bytes_hashed) == 2 * size


async def test_changed_file_is_not_answered_with_stale_information(app_env: AppEnv) -> None:
    f = app_env.content / "vmlinuz"
    f.write_bytes(b"a" * 100_000)
    client = IpxeLikeClient(app_env.client)
    await client.fetch("/content/vmlinuz")
    await _service(app_env).cache.wait_idle()
    assert (await client.fetch("/content/vmlinuz"))[1] == 2
    f.write_bytes(b"b" * 100_001)
    body, version = await client.fetch("/content/vmlinuz")
    assert version is None and body == b"b" * 100_001  # the old blob does not describe this content
    await _service(app_env).cache.wait_idle()
    body, version = await client.fetch("/content/vmlinuz")
    assert version == 2 and body == b"b" * 100_001


async def test_range_and_head_with_peerdist_headers(app_env: AppEnv) -> None:
    data = os.urandom(200_000)
    (app_env.content / "initrd").write_bytes(data)
    await IpxeLikeClient(app_env.client).fetch("/content/initrd")
    await _service(app_env).cache.wait_idle()
    # a range request is answered exactly, even when it asks for peerdist
    r = await app_env.client.get("/content/initrd", headers={**IPXE_HEADERS, "Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == data[100:200] and "content-encoding" not in r.headers
    assert _count(app_env.metrics.peerdist_identity, "range") == 1
    # HEAD: the headers of the peerdist answer, no body
    r = await app_env.client.head("/content/initrd", headers=IPXE_HEADERS)
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-encoding"] == "peerdist"
    assert r.headers["x-p2p-peerdist"] == "Version=1.1, ContentLength=200000"
    assert r.headers["etag"].endswith('-pd2"') and "accept-encoding" in r.headers["vary"].lower()
    # a client that does not ask gets the plain file
    r = await app_env.client.get("/content/initrd")
    assert r.status_code == 200 and r.content == data and "content-encoding" not in r.headers
    # the request was recorded with how PeerDist went
    await app_env.recorder.flush()
    events = await app_env.client.get("/api/v1/events?kind=content", headers=app_env.auth)
    kinds = [e["detail"].get("peerdist") for e in events.json()]
    assert "v2" in kinds and "range" in kinds and "not_cached" in kinds


async def _app(tmp_path: Path, body: str, client_ip: str) -> AsyncIterator[tuple[httpx.AsyncClient, Metrics, Path]]:
    settings = settings_for(tmp_path, "[tftp]\nenabled = false\n" + body)
    settings.content.root.mkdir(parents=True)
    store = await Store.open(settings.store.url)
    recorder = EventRecorder(store)
    metrics = Metrics()
    app = create_app(settings, Deps(store=store, recorder=recorder, metrics=metrics, admin_token=ADMIN_TOKEN))
    transport = httpx.ASGITransport(app=app, client=(client_ip, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://boot.example:8050") as client:
        yield client, metrics, settings.content.root
        svc = getattr(app.state, "branchcache", None)
        if svc is not None:
            await svc.cache.wait_idle()
            await svc.stop()
    await recorder.flush()
    await store.close()


@pytest.mark.parametrize("body,client_ip,offered", [
    ('[branchcache]\nsubnets = "10.1.0.0/16"\n', "10.1.2.3", True),
    ('[branchcache]\nsubnets = "10.1.0.0/16"\n', "10.2.0.1", False),
    ('[branchcache]\nexclude_subnets = "10.1.2.0/24"\n', "10.1.2.3", False),
    ('[branchcache]\nenabled = false\n', "10.1.2.3", False),
    ('[branchcache]\nversions = "1"\n', "10.1.2.3", True),
])
async def test_per_subnet_switches(tmp_path: Path, body: str, client_ip: str, offered: bool) -> None:
    gen = _app(tmp_path, body + "prebuild = false\n" if "enabled" not in body else body, client_ip)
    client, metrics, root = await gen.__anext__()
    try:
        data = os.urandom(70_000)
        (root / "f").write_bytes(data)
        ipxe = IpxeLikeClient(client)
        assert (await ipxe.fetch("/content/f")) == (data, None)
        if offered:
            # wait for the background build the first request started, then PeerDist is answered
            for task in list(branchcache_tasks(client)):
                await task
        body2, version = await ipxe.fetch("/content/f")
        assert body2 == data
        if offered:
            assert version == (1 if 'versions = "1"' in body else 2)
        else:
            assert version is None
            assert _count(metrics.peerdist_identity, "disabled") == 2
            assert _count(metrics.peerdist_builds, "1", "ok") == 0 and _count(metrics.peerdist_builds, "2", "ok") == 0
    finally:
        await gen.aclose()


def branchcache_tasks(client: httpx.AsyncClient) -> list[object]:
    app = client._transport.app  # type: ignore[attr-defined]
    svc = app.state.branchcache
    return list(svc.cache._pending.values())


async def test_golden_iis_blobs_through_python_api(tmp_path: Path) -> None:
    png = tmp_path / "iis-85.png"
    shutil.copyfile(_png(), png)
    for threads in (1, 2, 0):
        blob, info = native.content_information(png, 1, IIS_PASSPHRASE, threads=threads)
        assert blob == IIS_V1 and info["size"] == 99710 and info["segments"] == 1
        blob, info = native.content_information(png, 2, IIS_PASSPHRASE, v2_segments=IIS_V2_SPLIT, threads=threads)
        assert blob == IIS_V2 and info["segments"] == 2
    data = png.read_bytes()
    assert native.content_information_bytes(data, 1, IIS_PASSPHRASE) == IIS_V1
    assert native.content_information_bytes(data, 2, IIS_PASSPHRASE, v2_segments=IIS_V2_SPLIT) == IIS_V2
    # and the same blob comes out of the server's cache and /content when the passphrase is imported
    cache = branchcache.ContentInfoCache(tmp_path / "ci", IIS_PASSPHRASE, [branchcache.BuildSpec(1)])
    assert await cache.build(png, 1) == IIS_V1
    # iPXE's expected segment identifiers (HoHoDk) come out of the parser
    v1 = native.parse_content_information(IIS_V1)
    assert v1["segments"][0]["id"].hex() == "491b217dbee2b5f12ca79b015e06f4bbe64f9745bad7867aef17de59927edce9"


async def test_imported_passphrase_serves_iis_identical_blob(tmp_path: Path) -> None:
    body = f'[branchcache]\npassphrase_hex = "{IIS_PASSPHRASE.hex()}"\nversions = "1"\nprebuild = false\n'
    gen = _app(tmp_path, body, "198.18.0.10")
    client, _metrics, root = await gen.__anext__()
    try:
        shutil.copyfile(_png(), root / "iis-85.png")
        await IpxeLikeClient(client).fetch("/content/iis-85.png")
        for task in branchcache_tasks(client):
            await task  # type: ignore[misc]
        r = await client.get("/content/iis-85.png", headers=IPXE_HEADERS)
        assert r.headers["content-encoding"] == "peerdist" and r.content == IIS_V1
    finally:
        await gen.aclose()
