"""`bootgate serve` as a real subprocess on free loopback ports, spoken to over HTTP and HTTPS."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, write_config

MAC = "52:54:00:5e:00:01"


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    http: str
    https: str
    data: Path
    token: str
    log: Path

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.data / "tls" / "ca.pem"))


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, deadline_s: float = 30) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"bootgate exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"bootgate did not become ready:\n{log.read_text()}")


def _stop(proc: subprocess.Popen[bytes]) -> int | None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
            return None
    return proc.returncode


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    http_port, https_port = free_port(), free_port()
    while https_port == http_port:
        https_port = free_port()
    data = tmp_path / "data"
    cfg = write_config(tmp_path, f"""
        [server]
        data_dir = "{data}"
        [http]
        bind = "127.0.0.1"
        port = {http_port}
        https_port = {https_port}
        [tftp]
        enabled = false
    """)
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTGATE_")}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bootgate.cli", "serve", "--config", str(cfg)],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_ready(proc, f"http://127.0.0.1:{http_port}/healthz", log)
        token = (data / "admin.token").read_text().strip()
        yield Server(proc, f"http://127.0.0.1:{http_port}", f"https://127.0.0.1:{https_port}", data, token, log)
    finally:
        _stop(proc)


def test_http_and_https_with_generated_ca(server: Server) -> None:
    r = httpx.get(f"{server.https}/boot.ipxe", verify=server.ssl_context(), timeout=10)
    assert r.status_code == 200
    assert r.text.splitlines()[1].startswith(f"chain {server.https}/boot?mac=")
    # without our CA, verification fails
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.https}/boot.ipxe", timeout=10)

    auth = {"Authorization": f"Bearer {server.token}"}
    r = httpx.put(f"{server.http}/api/v1/machines/{MAC}/action", headers=auth,
                  json={"kernel": "vmlinuz", "initrd": "initrd.img", "args": "console=ttyS0"}, timeout=10)
    assert r.status_code == 200, r.text
    r = httpx.get(f"{server.https}/boot", params={"mac": MAC}, verify=server.ssl_context(), timeout=10)
    kernel = [line for line in r.text.splitlines() if line.startswith("kernel ")][0]
    assert kernel.startswith(f"kernel {server.https}/content/vmlinuz console=ttyS0 bootgate.boot=")
    assert kernel.endswith(f"bootgate.server={server.http}")
    boot_id = kernel.split("bootgate.boot=")[1].split()[0]

    r = httpx.post(f"{server.http}/api/v1/boots/{boot_id}/status", data={"state": "success", "message": "ok"},
                   timeout=10)
    assert r.status_code == 200
    boots = httpx.get(f"{server.http}/api/v1/boots", params={"mac": MAC}, headers=auth, timeout=10).json()
    assert boots[0]["id"] == boot_id and boots[0]["scheme"] == "https"
    assert boots[0]["statuses"][0]["state"] == "success"

    (server.data / "content" / "vmlinuz").write_bytes(b"K" * 100_000)
    r = httpx.get(f"{server.https}/content/vmlinuz", headers={"Range": "bytes=99990-"},
                  verify=server.ssl_context(), timeout=10)
    assert r.status_code == 206 and r.content == b"K" * 10
    assert r.headers["content-range"] == "bytes 99990-99999/100000"

    metrics = httpx.get(f"{server.http}/metrics", timeout=10).text
    assert 'bootgate_boots_total{action="boot"} 1.0' in metrics


def test_raw_path_escape_over_the_wire(server: Server) -> None:
    (server.data / "secret.txt").write_text("top secret")
    host, port = server.http.removeprefix("http://").split(":")
    for raw in ("/content/../secret.txt", "/content/%2e%2e/secret.txt", "/content/%2e%2e%2fsecret.txt"):
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", raw)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        assert resp.status == 404, raw
        assert b"secret" not in body


def test_sigterm_stops_cleanly(server: Server) -> None:
    assert _stop(server.proc) == 0
    assert "stopped" in server.log.read_text()


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
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTGATE_")}
    proc = subprocess.Popen([sys.executable, "-m", "bootgate.cli", "serve", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        out, _ = proc.communicate(timeout=30)
    finally:
        _stop(proc)
        busy.close()
    text = out.decode()
    assert proc.returncode == 1, text
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
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTGATE_")}
    proc = subprocess.Popen([sys.executable, "-m", "bootgate.cli", "serve", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        out, _ = proc.communicate(timeout=30)
    finally:
        _stop(proc)
        busy.close()
    text = out.decode()
    assert proc.returncode == 1, text
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
    http_port, tftp_port = free_port(), free_port(socket.SOCK_DGRAM)
    data = tmp_path / "data"
    cfg = write_config(tmp_path, f"""
        [server]
        data_dir = "{data}"
        [http]
        port = {http_port}
        https_port = 0
        [tftp]
        port = {tftp_port}
        root = "{root}"
    """)
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTGATE_")}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bootgate.cli", "serve", "--config", str(cfg)],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_ready(proc, f"http://127.0.0.1:{http_port}/healthz", log)
        assert _tftp_get(tftp_port, "undionly.kpxe") == payload
        token = (data / "admin.token").read_text().strip()
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
        _stop(proc)
