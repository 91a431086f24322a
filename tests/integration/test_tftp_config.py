"""The [tftp] config keys reach the engine `bootgate serve` starts (config file -> Settings ->
tftp.engine_args -> _native.TftpEngine), each observed on the wire with a real or raw client."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from bootgate._native import TftpEngine
from bootgate.config import ConfigError
from bootgate.tftp import engine_args
from tests.conftest import free_port, settings_for

HOST = "127.0.0.1"
RRQ = b"\0\x01big.bin\0octet\0"


def _engine(tmp_path: Path, extra: str) -> tuple[TftpEngine, int, bytes]:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    big = os.urandom(512 * 1024 + 5)
    (root / "big.bin").write_bytes(big)
    port = free_port(socket.SOCK_DGRAM)
    s = settings_for(tmp_path, f'[tftp]\nbind = "{HOST}"\nport = {port}\nroot = "{root}"\n{extra}')
    engine = TftpEngine(**engine_args(s))
    return engine, port, big


def _client(timeout: float = 5) -> socket.socket:
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.settimeout(timeout)
    return c


def _ask(c: socket.socket, port: int) -> tuple[bytes, tuple[str, int]]:
    """Sends the RRQ for big.bin and returns the first answer and where it came from."""
    c.sendto(RRQ, (HOST, port))
    data, src = c.recvfrom(2048)
    return data, src


def test_defaults_map_to_the_engine(tmp_path: Path) -> None:
    s = settings_for(tmp_path)
    args = engine_args(s)
    assert {k: args[k] for k in ("timeout_ms", "retries", "max_transfers", "max_queued", "max_per_client",
                                 "single_port")} == {"timeout_ms": 1000, "retries": 5, "max_transfers": 4096,
                                                      "max_queued": 4096, "max_per_client": 0, "single_port": False}


def test_single_port_from_config_serves_real_clients_from_port_69s_socket(tmp_path: Path) -> None:
    engine, port, big = _engine(tmp_path, "single_port = true\n")
    try:
        with _client() as c:
            data, src = _ask(c, port)
            assert data[:4] == b"\0\x03\0\x01" and src == (HOST, port)  # DATA 1 from the listening port
            c.sendto(b"\0\x05\0\x00stop\0", src)  # ERROR: end this transfer
        if tftp := shutil.which("tftp"):
            got = subprocess.run([tftp, HOST, str(port), "-m", "binary", "-c", "get", "big.bin", "hpa.bin"],
                                 cwd=tmp_path, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
            assert (tmp_path / "hpa.bin").read_bytes() == big, got
    finally:
        engine.stop()


def test_default_mode_uses_a_new_port_per_transfer(tmp_path: Path) -> None:
    engine, port, _ = _engine(tmp_path, "")
    try:
        with _client() as c:
            data, src = _ask(c, port)
            assert data[:4] == b"\0\x03\0\x01" and src[1] != port
            c.sendto(b"\0\x05\0\x00stop\0", src)
    finally:
        engine.stop()


def test_max_per_client_from_config(tmp_path: Path) -> None:
    engine, port, _ = _engine(tmp_path, "max_per_client = 1\n")
    try:
        with _client() as a, _client() as b:
            assert _ask(a, port)[0][:4] == b"\0\x03\0\x01"
            data, _ = _ask(b, port)
            assert data[:4] == b"\0\x05\0\x00" and b"too many transfers" in data, data
    finally:
        engine.stop()


def test_timeout_and_retries_from_config_give_up_after_the_configured_count(tmp_path: Path) -> None:
    # timeout 100 ms doubling, 2 retries: DATA 1 goes out at about 0, 0.1 and 0.3 s, and the transfer is
    # abandoned at about 0.7 s. With the defaults (1000 ms, 5 retries) the same 2.5 s window would hold only
    # the sends at 0 and 1 s and no abandoned transfer (that takes a minute): so both counts below tell.
    engine, port, _ = _engine(tmp_path, "timeout_ms = 100\nretries = 2\n")
    try:
        with _client(0.2) as c:
            c.sendto(RRQ, (HOST, port))
            got: list[bytes] = []
            deadline = time.monotonic() + 2.5
            while time.monotonic() < deadline:
                try:
                    got.append(c.recvfrom(2048)[0])
                except TimeoutError:
                    continue
        data = [g for g in got if g[:2] == b"\0\x03"]
        assert [g[:4] for g in data] == [b"\0\x03\0\x01"] * 3, [g[:4] for g in got]
        evs = engine.drain_events()  # already ended: no waiting beyond the window above
        assert len(evs) == 1 and evs[0]["ok"] is False, evs
    finally:
        engine.stop()


@pytest.mark.parametrize("line, key", [("timeout_ms = 5", "timeout_ms"), ("retries = 0", "retries"),
                                        ("max_transfers = 0", "max_transfers"), ("max_queued = -1", "max_queued"),
                                        ("max_per_client = -3", "max_per_client"),
                                        ('single_port = "yes"', "single_port")])
def test_bad_values_name_file_line_key_and_fix(tmp_path: Path, line: str, key: str) -> None:
    with pytest.raises(ConfigError) as e:
        settings_for(tmp_path, f"[tftp]\n{line}\n")
    cfg = tmp_path / "bootgate.toml"
    n = cfg.read_text().splitlines().index(line) + 1
    assert str(e.value).startswith(f"{cfg}:{n}: [tftp] {key} "), str(e.value)
