"""`bootgate serve` as a real subprocess on free loopback ports, from a small TOML: one helper for every
test (and benches/boot/run.py) that needs a real server process: two servers on one database, stopping
mid-burst, the CLI on the API, HTTPS with the generated CA, the background PeerDist scanner.

    s = store_serve.start(tmp_path, "a", store_url, https=True, extra={"branchcache": {"scan_interval": 1}})
    ... s.base (HTTP), s.https, s.auth(), s.ssl_context() ...
    store_serve.stop(s)

The config: [server] data_dir (work/name unless `data`), [http] on 127.0.0.1 (HTTP port, HTTPS port or
0), [tftp] off, [store] url when given, [auth] http_script_clients = 127.0.0.1 (plain-HTTP boot scripts
for the test client; `script_clients=None` leaves it out). `extra` adds sections or replaces keys of
these ({section: {key: value}}; a section set to None is left out).
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from tests.conftest import free_port, write_config


@dataclass
class Serve:
    proc: subprocess.Popen[bytes]
    base: str  # http://127.0.0.1:port
    data: Path
    log: Path
    cfg: Path
    https: str = ""  # https://127.0.0.1:port when started with https=True

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    @property
    def token(self) -> str:
        return (self.data / "admin.token").read_text().strip()

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.data / "tls" / "ca.pem"))


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_text(sections: dict[str, dict[str, Any] | None]) -> str:
    return "".join(f"[{name}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in keys.items())
                   for name, keys in sections.items() if keys is not None)


def spawn(cfg: Path, out: IO[bytes] | int, **popen: Any) -> subprocess.Popen[bytes]:
    """`bootgate serve --config cfg` with no BOOTGATE_* variables from the caller's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTGATE_")}
    return subprocess.Popen([sys.executable, "-m", "bootgate.cli", "serve", "--config", str(cfg)],
                            stdout=out, stderr=subprocess.STDOUT, env=env, **popen)


def start(work: Path, name: str = "srv", store_url: str | None = None, *, port: int | None = None,
          https: bool | int = False, data: Path | None = None, script_clients: str | None = "127.0.0.1",
          extra: dict[str, dict[str, Any] | None] | None = None, ready_s: float = 60,
          **popen: Any) -> Serve:
    """Starts one server and waits (bounded) for its /healthz over HTTP."""
    port = port or free_port()
    https_port = (https if https is not True else free_port()) if https else 0
    while https_port == port:
        https_port = free_port()
    data = data or work / name
    data.mkdir(parents=True, exist_ok=True)
    sections: dict[str, dict[str, Any] | None] = {
        "server": {"data_dir": str(data)},
        "http": {"bind": "127.0.0.1", "port": port, "https_port": https_port},
        "tftp": {"enabled": False},
        "store": {"url": store_url} if store_url else None,
        "auth": {"http_script_clients": script_clients} if script_clients else None,
    }
    for section, keys in (extra or {}).items():
        sections[section] = None if keys is None else {**(sections.get(section) or {}), **keys}
    cfg = write_config(work, config_text(sections), name=f"{name}.toml")
    log = work / f"{name}.log"
    with open(log, "ab") as out:
        proc = spawn(cfg, out, **popen)
    s = Serve(proc, f"http://127.0.0.1:{port}", data, log, cfg, f"https://127.0.0.1:{https_port}" if https_port else "")
    try:
        wait_ready(proc, f"{s.base}/healthz", log, ready_s)
    except BaseException:
        stop(s)
        raise
    return s


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, deadline_s: float = 60) -> None:
    """Until `url` answers 200 (bounded); fails with the log's tail when the process exits first."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"bootgate exited with {proc.returncode}:\n{log.read_text()[-5000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"bootgate did not become ready:\n{log.read_text()[-5000:]}")


def stop(s: Serve | subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
    """Signals the server (by its PID) and waits for it to exit; SIGKILL after `timeout` s."""
    proc = s.proc if isinstance(s, Serve) else s
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
            return None
    return proc.returncode
