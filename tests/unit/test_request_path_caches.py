"""The per-request shortcuts of the /boot path give the answers of the slow paths they replace:
cached metric children count per label set, the precomputed iPXE script response carries Starlette's
own headers, and Hooks.wants agrees with what emit queues."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import generate_latest
from starlette.responses import Response

from bootgate.metrics import Metrics
from bootgate.web.hooks import Hooks
from bootgate.web.responses import ipxe_script


def _samples(m: Metrics, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for metric in m.registry.collect():
        for s in metric.samples:
            if s.name == family:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_http_children_count_per_label_set() -> None:
    m = Metrics()
    for _ in range(3):
        m.count_http("GET", "/boot", 200)
    m.count_http("GET", "/boot", 400)
    m.count_http("POST", "/boot", 200)
    m.count_http("GET", "/healthz", 200)
    got = _samples(m, "bootgate_http_requests_total")
    assert got == {
        (("method", "GET"), ("route", "/boot"), ("status", "200")): 3.0,
        (("method", "GET"), ("route", "/boot"), ("status", "400")): 1.0,
        (("method", "POST"), ("route", "/boot"), ("status", "200")): 1.0,
        (("method", "GET"), ("route", "/healthz"), ("status", "200")): 1.0,
    }
    text = generate_latest(m.registry).decode()
    assert 'bootgate_http_requests_total{method="GET",route="/boot",status="200"} 3.0' in text


def test_http_children_survive_the_cache_being_emptied() -> None:
    m = Metrics()
    m.count_http("GET", "/boot", 200)
    for i in range(5000):  # more label sets than the cache holds: it is emptied on the way
        m.count_http(f"M{i}", "/x", 200)
    m.count_http("GET", "/boot", 200)
    got = _samples(m, "bootgate_http_requests_total")
    assert got[(("method", "GET"), ("route", "/boot"), ("status", "200"))] == 2.0
    assert got[(("method", "M4999"), ("route", "/x"), ("status", "200"))] == 1.0
    assert len(m._http_children) <= 4096


def test_boot_children_count_per_action() -> None:
    m = Metrics()
    for a in ("boot", "exit", "boot", "menu", "boot"):
        m.count_boot(a)
    got = _samples(m, "bootgate_boots_total")
    assert got == {(("action", "boot"),): 3.0, (("action", "exit"),): 1.0, (("action", "menu"),): 1.0}


def test_ipxe_script_matches_starlette_response() -> None:
    for text, status in [("#!ipxe\necho é\nexit\n", 200), ("#!ipxe\n", 404), ("", 400), ("x", 204)]:
        got = ipxe_script(text, status)
        want = Response(text, status_code=status, media_type="text/plain; charset=utf-8",
                        headers={"Cache-Control": "no-store"})
        assert isinstance(got, Response)
        assert (got.status_code, got.body, got.raw_headers) == (want.status_code, want.body, want.raw_headers)
        assert got.background is None


def test_hooks_wants_agrees_with_emit() -> None:
    async def run() -> None:
        async def none() -> list[dict[str, object]]:
            return []

        h = Hooks(webhooks=none)
        assert h.wants("boot")  # the webhook list not read yet: the event goes to the queue to find out
        h._cached = (time.monotonic() + 60, [{"url": "https://x/", "events": ["install"], "secret": ""}])
        assert not h.wants("boot")
        h.emit("boot", {"a": 1})
        assert h._queue is None or h._queue.qsize() == 0
        assert h.wants("install")
        h._cached = (time.monotonic() - 1, h._cached[1])  # expired: read again
        assert h.wants("boot")
        h._cached = (time.monotonic() + 60, [])
        assert not h.wants("boot")
        h.plugins.append(("p", lambda kind, payload: None))
        assert h.wants("boot")
        h.emit("boot", {"a": 1})
        assert h._queue is not None and h._queue.qsize() == 1
        assert h._task is not None
        h._task.cancel()

    asyncio.run(run())
