"""The TFTP engine (bootgate._native.TftpEngine) against real TFTP clients over loopback.

Clients: tftp-hpa's `tftp`, `curl` (tftp://), and `atftp` (blksize, windowsize, tsize). Each test
downloads a multi-MB random file and compares every byte, checks that a missing file is an
error, and that `../etc/passwd` (and a file beside the root) is refused. A test is skipped, with
the reason, only when its client binary is not installed (Debian packages: tftp-hpa, curl,
atftp).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bootgate._native import TftpEngine

HOST = "127.0.0.1"
TIMEOUT = 120  # seconds a client may take; generous for slow CI machines, not a speed claim


@dataclass
class Served:
    engine: TftpEngine
    port: int
    root: Path
    big: bytes
    secret: Path


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[Served]:
    root = tmp_path / "root"
    (root / "boot").mkdir(parents=True)
    big = os.urandom(5 * 1024 * 1024 + 321)
    (root / "big.bin").write_bytes(big)
    (root / "boot" / "ipxe.efi").write_bytes(big[:1468 * 7])  # an exact multiple of 1468
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"outside the root\n")
    engine = TftpEngine(bind=f"{HOST}:0", root=root, max_blksize=1468, timeout_ms=500, retries=5)
    try:
        yield Served(engine, engine.local_addr()[1], root, big, secret)
    finally:
        engine.stop()


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (Debian package: {PACKAGES[binary]})")
    return path


PACKAGES = {"tftp": "tftp-hpa", "curl": "curl", "atftp": "atftp"}


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)


def events(engine: TftpEngine, n: int) -> list[dict[str, Any]]:
    """Drains events until `n` arrived (bounded wait: the engine pushes them as transfers end)."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while len(out) < n and time.monotonic() < deadline:
        out += engine.drain_events()
        time.sleep(0.01)
    return out


def counters(engine: TftpEngine) -> dict[str, int]:
    return dict(engine.counters())


def check_events(s: Served, ok_bytes: list[int], refused: dict[str, str]) -> None:
    """The engine reported each download with its size, and each refusal with its reason."""
    evs = events(s.engine, len(ok_bytes) + len(refused))
    assert sorted(e["bytes"] for e in evs if e["ok"]) == sorted(ok_bytes), evs
    failed = {e["file"]: e["error"] for e in evs if not e["ok"]}
    assert failed == refused, evs
    c = counters(s.engine)
    assert c["transfers_ok"] == len(ok_bytes)
    assert c["active_transfers"] == 0


def test_tftp_hpa(served: Served, tmp_path: Path) -> None:
    tftp = need("tftp")
    s = served
    got = run([tftp, HOST, str(s.port), "-m", "binary", "-c", "get", "big.bin", "got.bin"], tmp_path)
    assert got.returncode == 0, got
    assert (tmp_path / "got.bin").read_bytes() == s.big

    got = run([tftp, "-v", HOST, str(s.port), "-m", "binary", "-c", "get", "/boot/ipxe.efi", "ipxe.efi"], tmp_path)
    assert (tmp_path / "ipxe.efi").read_bytes() == s.big[:1468 * 7], got

    # tftp-hpa exits 0 even on a server error: the message tells.
    missing = run([tftp, HOST, str(s.port), "-m", "binary", "-c", "get", "missing.bin", "m.bin"], tmp_path)
    assert "Error code 1" in missing.stdout + missing.stderr, missing
    escape = run([tftp, HOST, str(s.port), "-m", "binary", "-c", "get", "../etc/passwd", "p.bin"], tmp_path)
    assert "Error code 2" in escape.stdout + escape.stderr, escape
    beside = run([tftp, HOST, str(s.port), "-m", "binary", "-c", "get", f"../{s.secret.name}", "s.bin"], tmp_path)
    assert "Error code 2" in beside.stdout + beside.stderr, beside
    for name in ("m.bin", "p.bin", "s.bin"):
        f = tmp_path / name
        assert not f.exists() or f.read_bytes() == b""

    check_events(
        s,
        [len(s.big), 1468 * 7],
        {"missing.bin": "not found", "../etc/passwd": "path escapes root", f"../{s.secret.name}": "path escapes root"},
    )


def test_curl(served: Served, tmp_path: Path) -> None:
    curl = need("curl")
    s = served
    url = f"tftp://{HOST}:{s.port}"
    for blksize in ("1468", "512"):
        out = tmp_path / f"got-{blksize}.bin"
        got = run([curl, "-sS", "--tftp-blksize", blksize, "-o", str(out), f"{url}/big.bin"], tmp_path)
        assert got.returncode == 0, got
        assert out.read_bytes() == s.big

    # curl's exit codes: 68 TFTP file not found, 69 TFTP permission problem.
    missing = run([curl, "-sS", "-o", str(tmp_path / "m.bin"), f"{url}/missing.bin"], tmp_path)
    assert missing.returncode == 68, missing
    escape = run([curl, "-sS", "--path-as-is", "-o", str(tmp_path / "p.bin"), f"{url}/../etc/passwd"], tmp_path)
    assert escape.returncode == 69, escape
    assert not (tmp_path / "p.bin").exists() or b"root:" not in (tmp_path / "p.bin").read_bytes()

    check_events(s, [len(s.big), len(s.big)], {"missing.bin": "not found", "../etc/passwd": "path escapes root"})
    assert counters(s.engine)["bytes_sent"] >= 2 * len(s.big)


def test_atftp_with_blksize_windowsize_and_tsize(served: Served, tmp_path: Path) -> None:
    atftp = need("atftp")
    s = served
    opts = ["--option", "blksize 1468", "--option", "windowsize 8", "--option", "tsize 0"]
    got = run([atftp, *opts, "--trace", "-g", "-r", "big.bin", "-l", "got.bin", HOST, str(s.port)], tmp_path)
    assert got.returncode == 0, got
    assert (tmp_path / "got.bin").read_bytes() == s.big
    # The server granted what was asked and told the real size.
    trace = got.stdout + got.stderr
    assert f"tsize: {len(s.big)}" in trace and "windowsize: 8" in trace and "blksize: 1468" in trace, trace[:2000]

    got = run([atftp, "-g", "-r", "big.bin", "-l", "plain.bin", HOST, str(s.port)], tmp_path)
    assert got.returncode == 0, got
    assert (tmp_path / "plain.bin").read_bytes() == s.big

    missing = run([atftp, "-g", "-r", "missing.bin", "-l", "m.bin", HOST, str(s.port)], tmp_path)
    assert missing.returncode != 0 and "file not found" in missing.stderr + missing.stdout, missing
    escape = run([atftp, "-g", "-r", "../etc/passwd", "-l", "p.bin", HOST, str(s.port)], tmp_path)
    assert escape.returncode != 0 and "access violation" in escape.stderr + escape.stdout, escape

    check_events(s, [len(s.big), len(s.big)], {"missing.bin": "not found", "../etc/passwd": "path escapes root"})


def test_clients_at_once(served: Served, tmp_path: Path) -> None:
    """Every installed client downloading together: the engine serves them side by side."""
    s = served
    url = f"tftp://{HOST}:{s.port}/big.bin"
    cmds: list[tuple[list[str], Path]] = []
    if tftp := shutil.which("tftp"):
        cmds.append(([tftp, HOST, str(s.port), "-m", "binary", "-c", "get", "big.bin", "a.bin"], tmp_path / "a.bin"))
    if curl := shutil.which("curl"):
        for i in range(3):
            out = tmp_path / f"c{i}.bin"
            cmds.append(([curl, "-sS", "--tftp-blksize", "1468", "-o", str(out), url], out))
    if atftp := shutil.which("atftp"):
        opts = ["--option", "blksize 1468", "--option", "windowsize 16"]
        for i in range(2):
            cmd = [atftp, *opts, "-g", "-r", "big.bin", "-l", f"t{i}.bin", HOST, str(s.port)]
            cmds.append((cmd, tmp_path / f"t{i}.bin"))
    if len(cmds) < 2:
        pytest.skip("fewer than two TFTP clients installed (Debian packages tftp-hpa, curl, atftp)")
    procs = [
        subprocess.Popen(c, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for c, _ in cmds
    ]
    for p in procs:
        _, err = p.communicate(timeout=TIMEOUT)
        assert p.returncode == 0, (p.args, err)
    for _, out in cmds:
        assert out.read_bytes() == s.big, out
    check_events(s, [len(s.big)] * len(cmds), {})


def test_single_port_mode_and_per_client_limit(tmp_path: Path) -> None:
    """single_port=True: real clients fetch every byte from the listening port itself (windowed
    with atftp); max_per_client=1 refuses a second transfer from the same address meanwhile."""
    root = tmp_path / "root"
    root.mkdir()
    big = os.urandom(2 * 1024 * 1024 + 77)
    (root / "big.bin").write_bytes(big)
    engine = TftpEngine(bind=f"{HOST}:0", root=root, max_blksize=1468, timeout_ms=500, retries=5,
                        single_port=True, max_per_client=1)
    try:
        port = engine.local_addr()[1]
        clients = 0
        if tftp := shutil.which("tftp"):
            got = run([tftp, HOST, str(port), "-m", "binary", "-c", "get", "big.bin", "hpa.bin"], tmp_path)
            assert (tmp_path / "hpa.bin").read_bytes() == big, got
            clients += 1
        if atftp := shutil.which("atftp"):
            opts = ["--option", "blksize 1468", "--option", "windowsize 8"]
            got = run([atftp, *opts, "-g", "-r", "big.bin", "-l", "a.bin", HOST, str(port)], tmp_path)
            assert got.returncode == 0 and (tmp_path / "a.bin").read_bytes() == big, got
            clients += 1
        if clients == 0:
            pytest.skip("neither tftp (tftp-hpa) nor atftp is installed")
        evs = events(engine, clients)
        assert [e["ok"] for e in evs] == [True] * clients, evs

        # A transfer in progress from 127.0.0.1 (an RRQ never acknowledged), then another one from
        # the same address: over the limit of one, refused with ERROR 0.
        import socket
        rrq = b"\0\x01big.bin\0octet\0"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
            a.settimeout(5)
            b.settimeout(5)
            a.sendto(rrq, (HOST, port))
            data, src = a.recvfrom(2048)
            assert data[:4] == b"\0\x03\0\x01" and src == (HOST, port)  # DATA 1, from port 69's socket
            b.sendto(rrq, (HOST, port))
            data, src = b.recvfrom(2048)
            assert data[:4] == b"\0\x05\0\x00" and b"too many transfers" in data, data
        assert counters(engine)["errors_client_limit"] == 1
    finally:
        engine.stop()
