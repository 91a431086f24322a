"""No boot is lost when `bootgate serve` is stopped cleanly: a burst of /boot requests, SIGTERM in the
middle of it, and after a restart on the same store every answered request has its boot record, its
deployment run and its boot event."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path

import httpx

from tests.integration import store_serve

REQUESTS = 600
CONCURRENCY = 64
STOP_AFTER = 150  # answered requests before SIGTERM


async def _burst(s: store_serve.Serve) -> tuple[dict[str, str], int]:
    """Sends REQUESTS /boot requests (distinct new machines); SIGTERM once STOP_AFTER are answered.
    Returns {boot id: mac} of the answered ones and the number that failed (refused, reset)."""
    answered: dict[str, str] = {}
    failed = 0
    sem = asyncio.Semaphore(CONCURRENCY)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        async def one(i: int) -> None:
            nonlocal failed
            mac = f"52:54:00:5d:{i >> 8:02x}:{i & 0xff:02x}"
            async with sem:
                try:
                    r = await client.get(f"{s.base}/boot", params={"mac": mac, "serial": f"SD{i:05d}",
                                                                  "platform": "efi", "buildarch": "x86_64"})
                except httpx.TransportError:
                    failed += 1
                    return
            assert r.status_code == 200, r.text  # an answer is always a whole, correct one
            m = re.search(r"bootgate\.boot=([0-9a-f]{32})", r.text)
            assert m, r.text
            answered[m.group(1)] = mac
            if len(answered) == STOP_AFTER:
                os.kill(s.proc.pid, signal.SIGTERM)

        await asyncio.gather(*(one(i) for i in range(REQUESTS)))
    return answered, failed


def test_sigterm_mid_burst_loses_no_answered_boot(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'boots.db'}"
    s = store_serve.start(tmp_path, "srv", url)
    try:
        r = httpx.post(f"{s.base}/api/v1/deployments", headers=s.auth(), json={
            "name": "burst", "collection": "unknown", "intent": "required", "countdown": 0,
            "profile": {"kind": "kernel", "kernel": "vmlinuz", "args": "quiet"}})
        assert r.status_code == 201, r.text
        dep = r.json()["id"]
        answered, failed = asyncio.run(_burst(s))
        rc = s.proc.wait(timeout=30)
    finally:
        store_serve.stop(s)
    assert rc == 0, f"bootgate did not exit cleanly after SIGTERM (rc {rc}):\n{s.log.read_text()[-3000:]}"
    assert len(answered) >= STOP_AFTER
    print(f"answered {len(answered)}, not answered {failed} of {REQUESTS}")

    s = store_serve.start(tmp_path, "srv", url, port=int(s.base.rsplit(":", 1)[1]))
    try:
        auth = s.auth()
        boots = {b["id"]: b for b in httpx.get(f"{s.base}/api/v1/boots?limit=1000", headers=auth).json()}
        events = httpx.get(f"{s.base}/api/v1/events?kind=boot&limit=1000", headers=auth).json()
        runs = httpx.get(f"{s.base}/api/v1/deployments/{dep}/runs?limit=1000", headers=auth).json()["items"]
    finally:
        store_serve.stop(s)
    missing = sorted(set(answered) - set(boots))
    assert not missing, f"{len(missing)} answered boots have no record: {missing[:5]}"
    assert all(boots[i]["mac"] == mac and boots[i]["action"] == "deploy" for i, mac in answered.items())
    evented = {e["detail"]["boot_id"] for e in events}
    assert not set(answered) - evented, f"{len(set(answered) - evented)} answered boots have no boot event"
    assert set(answered) <= {r["boot_id"] for r in runs}
