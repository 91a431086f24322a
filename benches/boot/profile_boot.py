"""Profiles /boot in-process (no TLS, no sockets): the app on a seeded SQLite store, N requests at
CONCURRENCY through httpx's ASGI transport, under cProfile. Prints req/s and the top functions.

    .venv/bin/python benches/boot/profile_boot.py [N] [CONCURRENCY] [--no-profile]
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402

from bootgate.config import load_settings  # noqa: E402
from bootgate.events import EventRecorder  # noqa: E402
from bootgate.metrics import Metrics  # noqa: E402
from bootgate.store import Store  # noqa: E402
from bootgate.web import create_app  # noqa: E402
from bootgate.web.deps import Deps  # noqa: E402


PATH = "/healthz" if "--healthz" in sys.argv else "/boot"


async def main(n: int, conc: int, profile: bool) -> None:
    work = Path(tempfile.mkdtemp(prefix="bootgate-prof-"))
    cfg = bench.write_config(work, 8050, 0)
    settings = load_settings(cfg, env={})
    machines = 10_000
    await bench.seed(settings.store.url, machines)
    store = await Store.open(settings.store.url)
    recorder = EventRecorder(store)
    app = create_app(settings, Deps(store=store, recorder=recorder, metrics=Metrics(), admin_token="x"))
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    sem = asyncio.Semaphore(conc)
    async with httpx.AsyncClient(transport=transport, base_url="https://localhost:8051") as client:
        async def one() -> None:
            i = random.randrange(machines)
            async with sem:
                r = await client.get(PATH, params={"mac": f"02:b0:00:00:{i >> 8:02x}:{i & 0xff:02x}",
                                                      "uuid": bench.uuid_of(i), "serial": f"BENCH{i:05d}",
                                                      "platform": "efi", "buildarch": "x86_64"})
            assert r.status_code == 200, r.text
        await asyncio.gather(*(one() for _ in range(50)))
        prof = cProfile.Profile() if profile else None
        t = time.perf_counter()
        if prof:
            prof.enable()
        await asyncio.gather(*(one() for _ in range(n)))
        if prof:
            prof.disable()
        dt = time.perf_counter() - t
    await recorder.flush()
    await store.close()
    print(f"{n} requests in {dt:.2f} s: {n / dt:.0f} req/s (concurrency {conc})")
    if prof:
        pstats.Stats(prof).sort_stats(sys.argv[-1] if sys.argv[-1] in ("tottime", "cumulative") else "cumulative").print_stats(45)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    uvloop.run(main(int(args[0]) if args else 2000, int(args[1]) if len(args) > 1 else 200,
                    "--no-profile" not in sys.argv))
