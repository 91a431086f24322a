"""The framework ceiling for benches/boot: bootgate's own server stack (hypercorn config from
bootgate.runtime.hypercorn_config: same TLS files and ciphers, same single uvloop worker, Starlette)
answering /boot with a constant iPXE script, no store, no logging.

    python benches/boot/ceiling.py CONFIG.toml [WORKERS]     (serves until SIGTERM/SIGINT)

WORKERS > 1: that many processes on the same port (SO_REUSEPORT, as hypercorn binds for workers > 1),
to see whether a second worker raises the ceiling on this machine.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import uvloop
from hypercorn.asyncio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bootgate.config import load_settings
from bootgate.runtime import hypercorn_config
from bootgate.tls import ensure_tls

SCRIPT = "#!ipxe\necho bootgate: nothing to do for this machine, next boot device\nexit\n"


async def boot(_request: Request) -> Response:
    return Response(SCRIPT, media_type="text/plain; charset=utf-8")


async def main(config: Path, workers: int = 1) -> None:
    settings = load_settings(config)
    cfg = hypercorn_config(settings, ensure_tls(settings))
    cfg.workers = workers  # > 1: the listening sockets get SO_REUSEPORT
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    app = Starlette(routes=[Route("/boot", boot), Route("/healthz", lambda r: Response("ok\n"))])
    await serve(app, cfg, shutdown_trigger=stop.wait)  # type: ignore[arg-type]


if __name__ == "__main__":
    path, n = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1
    children = []
    for _ in range(n - 1):
        pid = os.fork()
        if pid == 0:  # a worker: serves until signalled
            uvloop.run(main(path, n))
            os._exit(0)
        children.append(pid)
    try:
        uvloop.run(main(path, n))
    finally:
        for pid in children:
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
