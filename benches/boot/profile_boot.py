"""Profiles /boot in-process (no TLS, no sockets): the app on a seeded SQLite store, N requests at
CONCURRENCY called straight through ASGI (a minimal driver: no HTTP client in the way), optionally
under cProfile. Prints req/s, wall and CPU µs per request (CPU time is the steadier figure on a shared
machine), then the top functions.

    .venv/bin/python benches/boot/profile_boot.py [N] [CONCURRENCY] [--no-profile] [--new] [--healthz]
                                                  [--deploy] [tottime|cumulative]

--new: every request is a machine never seen before (zero-touch registration: the storm's path).
--deploy: a required deployment to the "unknown" collection (each new machine gets a run).
--healthz: /healthz instead of /boot (the harness's own floor).
--log: bootgate's log lines (one per boot, as `bootgate serve` writes them) to a file in the work dir.
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import random
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402

from bootgate.config import load_settings  # noqa: E402
from bootgate.events import EventRecorder  # noqa: E402
from bootgate.metrics import Metrics  # noqa: E402
from bootgate.runtime import settle_heap  # noqa: E402
from bootgate.store import Store  # noqa: E402
from bootgate.web import create_app  # noqa: E402
from bootgate.web.deps import Deps  # noqa: E402

PATH = "/healthz" if "--healthz" in sys.argv else "/boot"
NEW = "--new" in sys.argv


async def call(app: Any, path: str, query: str) -> tuple[int, bytes]:
    """One GET through the ASGI app, as hypercorn would call it for an HTTPS request."""
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
             "method": "GET", "scheme": "https", "path": path, "raw_path": path.encode(),
             "query_string": query.encode(), "root_path": "", "headers": [(b"host", b"localhost:8443")],
             "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8443), "extensions": {}}
    status = 0
    body: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(body)


async def main(n: int, conc: int, profile: bool) -> None:
    work = Path(tempfile.mkdtemp(prefix="bootgate-prof-"))
    cfg = bench.write_config(work, 8050, 0)
    settings = load_settings(cfg, env={})
    if "--log" in sys.argv:
        from bootgate.logs import configure
        configure(stream=open(work / "bootgate.log", "w"))  # noqa: SIM115 (open for the whole run)
    machines = 10_000
    await bench.seed(settings.store.url, machines)
    store = await Store.open(settings.store.url)
    recorder = EventRecorder(store)
    app = create_app(settings, Deps(store=store, recorder=recorder, metrics=Metrics(), admin_token="x"))
    if "--deploy" in sys.argv:
        cid = await store.collection_id("unknown")
        await store.create_deployment({"name": "first", "collection_id": cid, "intent": "required",
                                       "countdown": 0, "profile": {"kind": "kernel", "kernel": "vmlinuz"}}, "bench")
    # lifespan (starts what create_app starts on startup)
    lifespan_q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await lifespan_q.put({"type": "lifespan.startup"})
    started = asyncio.Event()

    async def lrecv() -> dict[str, Any]:
        return await lifespan_q.get()

    async def lsend(m: dict[str, Any]) -> None:
        if m["type"].startswith("lifespan.startup"):
            started.set()
    life = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, lrecv, lsend))
    await started.wait()
    sem = asyncio.Semaphore(conc)
    counter = iter(range(10**9))

    def query() -> str:
        if NEW:
            i = next(counter)
            q = {"mac": f"02:b1:00:{i >> 16:02x}:{(i >> 8) & 0xff:02x}:{i & 0xff:02x}", "serial": f"STORM{i:06d}",
                 "platform": "pcbios", "buildarch": "i386"}
        else:
            i = random.randrange(machines)
            q = {"mac": f"02:b0:00:00:{i >> 8:02x}:{i & 0xff:02x}", "uuid": bench.uuid_of(i),
                 "serial": f"BENCH{i:05d}", "manufacturer": "QEMU", "product": "Standard PC",
                 "platform": "efi", "buildarch": "x86_64", "ip": f"10.0.{i >> 8}.{i & 0xff}"}
        return urllib.parse.urlencode(q)

    async def one(query: str) -> None:
        async with sem:
            status, body = await call(app, PATH, query)
        assert status == 200, body
    await asyncio.gather(*(one(query()) for _ in range(50)))
    await store.identity_index()
    settle_heap()  # as `bootgate serve` does before it serves
    queries = [query() for _ in range(n)]  # built before the clock starts: the harness's own cost left out
    prof = cProfile.Profile() if profile else None
    t, cpu, main_cpu = time.perf_counter(), time.process_time(), time.thread_time()
    if prof:
        prof.enable()
    await asyncio.gather(*(one(q) for q in queries))
    if prof:
        prof.disable()
    dt, cpu, main_cpu = time.perf_counter() - t, time.process_time() - cpu, time.thread_time() - main_cpu
    await lifespan_q.put({"type": "lifespan.shutdown"})
    await life
    await recorder.flush()
    await store.close()
    what = "new machines" if NEW else "known machines"
    print(f"{PATH} ({what}): {n} requests in {dt:.2f} s: {n / dt:.0f} req/s, {dt / n * 1e6:.0f} µs each "
          f"(concurrency {conc}); CPU {cpu / n * 1e6:.0f} µs each (all threads), {main_cpu / n * 1e6:.0f} µs on the "
          "event loop's thread")
    if prof:
        pstats.Stats(prof).sort_stats(sys.argv[-1] if sys.argv[-1] in ("tottime", "cumulative") else "cumulative").print_stats(45)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--") and a not in ("tottime", "cumulative")]
    uvloop.run(main(int(args[0]) if args else 2000, int(args[1]) if len(args) > 1 else 200,
                    "--no-profile" not in sys.argv))
