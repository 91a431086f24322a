"""/content: ranges, HEAD, streaming of large (sparse) files, path escapes."""

from __future__ import annotations

import os

import pytest

from tests.conftest import AppEnv, raw_get

DATA = bytes(range(256)) * 4  # 1024 bytes


@pytest.fixture
def content(app_env: AppEnv) -> AppEnv:
    (app_env.content / "img").mkdir()
    (app_env.content / "img" / "vmlinuz").write_bytes(DATA)
    (app_env.content / "empty").write_bytes(b"")
    (app_env.settings.server.data_dir / "secret.txt").write_text("top secret")
    return app_env


async def test_whole_file(content: AppEnv) -> None:
    r = await content.client.get("/content/img/vmlinuz")
    assert r.status_code == 200 and r.content == DATA
    assert r.headers["accept-ranges"] == "bytes" and r.headers["content-length"] == "1024"


async def test_first_bytes(content: AppEnv) -> None:
    r = await content.client.get("/content/img/vmlinuz", headers={"Range": "bytes=0-9"})
    assert r.status_code == 206 and r.content == DATA[:10]
    assert r.headers["content-range"] == "bytes 0-9/1024" and r.headers["content-length"] == "10"


async def test_suffix(content: AppEnv) -> None:
    r = await content.client.get("/content/img/vmlinuz", headers={"Range": "bytes=-100"})
    assert r.status_code == 206 and r.content == DATA[-100:]
    assert r.headers["content-range"] == "bytes 924-1023/1024"


async def test_open_ended(content: AppEnv) -> None:
    r = await content.client.get("/content/img/vmlinuz", headers={"Range": "bytes=1000-"})
    assert r.status_code == 206 and r.content == DATA[1000:]
    assert r.headers["content-range"] == "bytes 1000-1023/1024"


@pytest.mark.parametrize("rng", ["bytes=1024-", "bytes=5-1", "bytes=abc", "bytes=-0"])
async def test_invalid_range_is_416(content: AppEnv, rng: str) -> None:
    r = await content.client.get("/content/img/vmlinuz", headers={"Range": rng})
    assert r.status_code == 416 and r.headers["content-range"] == "bytes */1024"
    assert r.content == b""


async def test_head(content: AppEnv) -> None:
    r = await content.client.head("/content/img/vmlinuz")
    assert r.status_code == 200 and r.content == b"" and r.headers["content-length"] == "1024"
    r = await content.client.head("/content/img/vmlinuz", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.headers["content-range"] == "bytes 10-19/1024"
    assert r.headers["content-length"] == "10" and r.content == b""


async def test_large_sparse_file_offsets(content: AppEnv) -> None:
    size = 5 * 2**30
    offset = 4 * 2**30 + 12345
    path = content.content / "big.img"
    with open(path, "wb") as f:
        f.truncate(size)
        f.seek(offset)
        f.write(b"BOOTGATE")
    r = await content.client.get("/content/big.img", headers={"Range": f"bytes={offset}-{offset + 7}"})
    assert r.status_code == 206 and r.content == b"BOOTGATE"
    assert r.headers["content-range"] == f"bytes {offset}-{offset + 7}/{size}"
    r = await content.client.get("/content/big.img", headers={"Range": "bytes=-4"})
    assert r.content == b"\0\0\0\0" and r.headers["content-range"] == f"bytes {size - 4}-{size - 1}/{size}"
    r = await content.client.head("/content/big.img")
    assert r.headers["content-length"] == str(size)
    os.unlink(path)


@pytest.mark.parametrize("raw", [
    b"/content/../secret.txt",
    b"/content/%2e%2e/secret.txt",
    b"/content/%2E%2E/%2e%2e/etc/passwd",
    b"/content/img/..%2f..%2fsecret.txt",
    b"/content//etc/passwd",
    b"/content/%2fetc%2fpasswd",
    b"/content/img/%00",
    b"/content/img/../../secret.txt",
])
async def test_path_escapes_are_404(content: AppEnv, raw: bytes) -> None:
    status, _headers, body = await raw_get(content.app, raw)
    assert status == 404
    assert b"secret" not in body and b"root:" not in body


async def test_missing_and_directory_are_404(content: AppEnv) -> None:
    assert (await content.client.get("/content/nope")).status_code == 404
    assert (await content.client.get("/content/img")).status_code == 404


async def test_empty_file(content: AppEnv) -> None:
    r = await content.client.get("/content/empty")
    assert r.status_code == 200 and r.content == b""
    r = await content.client.get("/content/empty", headers={"Range": "bytes=0-"})
    assert r.status_code == 416 and r.headers["content-range"] == "bytes */0"


async def test_content_events_and_metrics(content: AppEnv) -> None:
    await content.client.get("/content/img/vmlinuz", headers={"Range": "bytes=0-9"})
    await content.client.get("/content/nope")
    r = await content.client.get("/api/v1/events", params={"kind": "content"}, headers=content.auth)
    events = r.json()
    assert [e["detail"]["status"] for e in events] == [404, 206]
    assert events[1]["detail"] == {"path": "img/vmlinuz", "method": "GET", "range": "bytes=0-9", "status": 206,
                                   "bytes": 10}
    assert events[1]["client_ip"] == "198.18.0.10"
    assert content.metrics.registry.get_sample_value("bootgate_content_bytes_total") == 10
