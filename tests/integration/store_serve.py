"""`bootgate serve` subprocesses on free loopback ports with a chosen store URL (HTTP only, no TFTP/DHCP),
for the store tests that need real processes: two servers on one database, stopping mid-burst."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import free_port, write_config


@dataclass
class Serve:
    proc: subprocess.Popen[bytes]
    base: str
    data: Path
    log: Path

    @property
    def token(self) -> str:
        return (self.data / "admin.token").read_text().strip()

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def start(work: Path, name: str, store_url: str, port: int | None = None) -> Serve:
    """Starts one server (its own data dir under work/name) and waits for /healthz."""
    port = port or free_port()
    data = work / name
    data.mkdir(parents=True, exist_ok=True)
    cfg = write_config(work, f"""
        [server]
        data_dir = "{data}"
        [http]
        bind = "127.0.0.1"
        port = {port}
        https_port = 0
        [tftp]
        enabled = false
        [store]
        url = "{store_url}"
        [auth]
        http_script_clients = "127.0.0.1"
    """, name=f"{name}.toml")
    log = work / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTGATE_")}
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bootgate.cli", "serve", "--config", str(cfg)],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    s = Serve(proc, f"http://127.0.0.1:{port}", data, log)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"bootgate exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{s.base}/healthz", timeout=1).status_code == 200:
                return s
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    stop(s)
    raise AssertionError(f"bootgate did not become ready:\n{log.read_text()}")


def stop(s: Serve, sig: int = signal.SIGTERM) -> int | None:
    """Signals the server (by its PID) and waits for it to exit; SIGKILL after 20 s."""
    if s.proc.poll() is None:
        os.kill(s.proc.pid, sig)
        try:
            return s.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(s.proc.pid, signal.SIGKILL)
            s.proc.wait(timeout=5)
            return None
    return s.proc.returncode
