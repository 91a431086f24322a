"""`bootgate serve` as a real subprocess on free loopback ports, spoken to over HTTP and HTTPS."""

from __future__ import annotations

import http.client
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, write_config
from tests.integration import store_serve

MAC = "52:54:00:5e:00:01"

# the shared helpers under the names other test modules import from here (test_branchcache_upstream.py)
_wait_ready = store_serve.wait_ready
_stop = store_serve.stop


@pytest.fixture
def server(tmp_path: Path) -> Iterator[store_serve.Serve]:
    s = store_serve.start(tmp_path, "data", https=True, script_clients=None)
    try:
        yield s
    finally:
        store_serve.stop(s)


def test_http_and_https_with_generated_ca(server: store_serve.Serve) -> None:
    r = httpx.get(f"{server.https}/boot.ipxe", verify=server.ssl_context(), timeout=10)
    assert r.status_code == 200
    assert r.text.splitlines()[1].startswith(f"chain {server.https}/boot?mac=")
    # without our CA, verification fails
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.https}/boot.ipxe", timeout=10)

    auth = {"Authorization": f"Bearer {server.token}"}
    r = httpx.put(f"{server.base}/api/v1/machines/{MAC}/action", headers=auth,
                  json={"kernel": "vmlinuz", "initrd": "initrd.img", "args": "console=ttyS0"}, timeout=10)
    assert r.status_code == 200, r.text
    r = httpx.get(f"{server.https}/boot", params={"mac": MAC}, verify=server.ssl_context(), timeout=10)
    kernel = [line for line in r.text.splitlines() if line.startswith("kernel ")][0]
    assert kernel.startswith(f"kernel {server.https}/content/vmlinuz console=ttyS0 bootgate.boot=")
    assert kernel.endswith(f"bootgate.server={server.base}")
    boot_id = kernel.split("bootgate.boot=")[1].split()[0]

    r = httpx.post(f"{server.base}/api/v1/boots/{boot_id}/status", data={"state": "success", "message": "ok"},
                   timeout=10)
    assert r.status_code == 200
    boots = httpx.get(f"{server.base}/api/v1/boots", params={"mac": MAC}, headers=auth, timeout=10).json()
    assert boots[0]["id"] == boot_id and boots[0]["scheme"] == "https"
    assert boots[0]["statuses"][0]["state"] == "success"

    (server.data / "content" / "vmlinuz").write_bytes(b"K" * 100_000)
    r = httpx.get(f"{server.https}/content/vmlinuz", headers={"Range": "bytes=99990-"},
                  verify=server.ssl_context(), timeout=10)
    assert r.status_code == 206 and r.content == b"K" * 10
    assert r.headers["content-range"] == "bytes 99990-99999/100000"

    metrics = httpx.get(f"{server.base}/metrics", timeout=10).text
    assert 'bootgate_boots_total{action="boot"} 1.0' in metrics


def test_raw_path_escape_over_the_wire(server: store_serve.Serve) -> None:
    (server.data / "secret.txt").write_text("top secret")
    host, port = server.base.removeprefix("http://").split(":")
    for raw in ("/content/../secret.txt", "/content/%2e%2e/secret.txt", "/content/%2e%2e%2fsecret.txt"):
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", raw)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        assert resp.status == 404, raw
        assert b"secret" not in body


def test_sigterm_stops_cleanly(server: store_serve.Serve) -> None:
    assert store_serve.stop(server) == 0
    assert "stopped" in server.log.read_text()


def _fails_to_start(cfg: Path, busy: socket.socket) -> str:
    """Runs `bootgate serve` on a config whose port `busy` holds; asserts exit code 1; its output."""
    proc = store_serve.spawn(cfg, subprocess.PIPE)
    try:
        out, _ = proc.communicate(timeout=30)
    finally:
        store_serve.stop(proc)
        busy.close()
    text = out.decode()
    assert proc.returncode == 1, text
    return text


def test_busy_tftp_port_fails_fast_naming_the_key(tmp_path: Path) -> None:
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    tftp_port = busy.getsockname()[1]
    cfg = write_config(tmp_path, f"""
        [server]
        data_dir = "{tmp_path / "d"}"
        [http]
        port = {free_port()}
        https_port = 0
        [tftp]
        port = {tftp_port}
        root = "{tmp_path}"
    """)
    text = _fails_to_start(cfg, busy)
    assert f"cannot start TFTP on 127.0.0.1:{tftp_port}" in text and "[tftp] port" in text
    assert "Traceback" not in text


def test_busy_http_port_fails_fast_naming_the_key(tmp_path: Path) -> None:
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    cfg = write_config(tmp_path, f"""
        [server]
        data_dir = "{tmp_path / "d"}"
        [http]
        port = {port}
        https_port = 0
        [tftp]
        enabled = false
    """)
    text = _fails_to_start(cfg, busy)
    assert "cannot listen on 127.0.0.1" in text and "[http]" in text and "Traceback" not in text


def _native_tftp_available(tmp_path: Path) -> bool:
    from bootgate import _native

    try:
        engine = _native.TftpEngine(bind="127.0.0.1:0", root=str(tmp_path))
    except OSError as e:
        if "not built yet" in str(e):
            return False
        raise
    engine.stop()
    return True


def _tftp_get(port: int, name: str) -> bytes:
    """A minimal RFC 1350 client: RRQ, then ACK every DATA block until a short one."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    try:
        s.sendto(b"\x00\x01" + name.encode() + b"\x00octet\x00", ("127.0.0.1", port))
        out, expected = b"", 1
        for _ in range(10_000):
            pkt, peer = s.recvfrom(70000)
            opcode = int.from_bytes(pkt[:2], "big")
            assert opcode == 3, pkt[:64]
            block = int.from_bytes(pkt[2:4], "big")
            if block == expected:
                out += pkt[4:]
                expected = (expected + 1) & 0xFFFF
            s.sendto(b"\x00\x04" + pkt[2:4], peer)
            if block == (expected - 1) & 0xFFFF and len(pkt) - 4 < 512:
                return out
        raise AssertionError("transfer did not end")
    finally:
        s.close()


def test_tftp_transfer_is_recorded_as_event(tmp_path: Path) -> None:
    if not _native_tftp_available(tmp_path):
        pytest.skip("the native TFTP engine is not built into this environment yet")
    root = tmp_path / "tftp"
    root.mkdir()
    payload = bytes(range(256)) * 7  # 1792 bytes: 3 full blocks + 1 short
    (root / "undionly.kpxe").write_bytes(payload)
    tftp_port = free_port(socket.SOCK_DGRAM)
    srv = store_serve.start(tmp_path, "data", script_clients=None,
                            extra={"tftp": {"enabled": True, "bind": "127.0.0.1", "port": tftp_port, "root": str(root)}})
    http_port, token, log = srv.port, srv.token, srv.log
    try:
        assert _tftp_get(tftp_port, "undionly.kpxe") == payload
        events: list[dict[str, object]] = []
        for _ in range(100):  # the engine reports a transfer when it ends; poll, bounded
            events = httpx.get(f"http://127.0.0.1:{http_port}/api/v1/events", params={"kind": "tftp"},
                               headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
            if events:
                break
            time.sleep(0.1)
        assert events, log.read_text()
        ev = events[0]
        assert ev["client_ip"] == "127.0.0.1"
        detail = ev["detail"]
        assert isinstance(detail, dict)
        assert detail["file"] == "undionly.kpxe" and detail["ok"] is True and detail["bytes"] == len(payload)
        metrics = httpx.get(f"http://127.0.0.1:{http_port}/metrics", timeout=10).text
        assert "bootgate_tftp_" in metrics
    finally:
        store_serve.stop(srv)
