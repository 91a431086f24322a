"""Webhooks and plugins: delivered off the request path, retried, signed; failures never fail a boot."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from bootgate.web.hooks import Hooks, hooks_of, validate_webhooks
from tests.conftest import AppEnv, free_port

MAC = "52:54:00:44:00:01"


class Receiver:
    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = 1
        received = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if received.fail_first > 0:
                    received.fail_first -= 1
                    self.send_response(500)
                else:
                    received.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


async def test_webhooks_signed_and_retried(app_env: AppEnv, receiver: Receiver) -> None:
    c = app_env.client
    url = f"http://127.0.0.1:{receiver.port}/hook"
    r = await c.put("/api/v1/settings/webhooks", headers=app_env.auth,
                    json={"webhooks": [{"url": url, "events": ["boot", "install"], "secret": "s3cret"}]})
    assert r.status_code == 200
    assert (await c.get("/api/v1/settings/webhooks", headers=app_env.auth)).json()["webhooks"][0]["secret"] == "***"
    hooks = hooks_of(app_env.app)
    hooks.backoff = 0.01
    await c.put(f"/api/v1/machines/{MAC}/action", headers=app_env.auth, json={"kernel": "k"})
    script = (await c.get("/boot", params={"mac": MAC})).text
    boot_id = script.split("bootgate.boot=")[1].split()[0]
    await c.post(f"/api/v1/boots/{boot_id}/status", json={"state": "success", "message": "ok"})
    await hooks.drain()
    events = [json.loads(body) for _, body in receiver.got]
    assert [(e["event"], e["boot_id"]) for e in events] == [("boot", boot_id), ("install", boot_id)]
    assert events[1]["result"] == "success"
    for headers, body in receiver.got:
        want = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        assert headers["x-bootgate-signature"] == f"sha256={want}"
    assert (hooks.delivered, hooks.failed) == (2, 0)


async def test_failing_hooks_never_fail_a_boot(app_env: AppEnv) -> None:
    dead = f"http://127.0.0.1:{free_port()}/nobody"
    calls: list[str] = []

    def broken(kind: str, payload: dict[str, Any]) -> None:
        calls.append(kind)
        raise RuntimeError("plugin bug")

    async def slow(kind: str, payload: dict[str, Any]) -> None:
        await asyncio.sleep(60)

    async def current() -> list[dict[str, Any]]:
        return [{"url": dead, "events": ["boot"], "secret": ""}]

    hooks = Hooks(webhooks=current, plugins=[("broken", broken), ("slow", slow)], timeout=0.2, retries=1,
                  backoff=0.01)
    app_env.app.state.bootgate_hooks = hooks
    r = await app_env.client.get("/boot", params={"mac": MAC})
    assert r.status_code == 200 and r.text.endswith("exit\n")
    await hooks.drain()
    assert calls == ["boot"] and hooks.failed == 3 and hooks.delivered == 0


def test_queue_full_is_counted() -> None:
    async def run() -> Hooks:
        async def current() -> list[dict[str, Any]]:
            return []

        h = Hooks(webhooks=current, queue_size=2)
        for _ in range(5):
            h.emit("boot", {})
        await h.drain()
        return h

    assert asyncio.run(run()).dropped == 3


@pytest.mark.parametrize("bad", [{"url": "x"}, [{"url": "ftp://a/b"}], [{"url": "http://a/b", "events": ["nope"]}],
                                 [{"url": "http://a/b", "extra": 1}], [{"url": "http://a/${x}"}]])
def test_bad_webhooks(bad: Any) -> None:
    with pytest.raises(ValueError):
        validate_webhooks(bad)


def test_webhook_list_is_cached_and_idle_events_are_not_queued() -> None:
    reads: list[int] = []

    async def run() -> Hooks:
        async def current() -> list[dict[str, Any]]:
            reads.append(1)
            return [{"url": "http://127.0.0.1:9/x", "events": ["approval"], "secret": ""}]

        h = Hooks(webhooks=current, retries=0, timeout=0.2)
        h.emit("boot", {})  # unknown yet: queued, list read
        await h.drain()
        for _ in range(10):
            h.emit("boot", {})  # nobody wants boot events: not queued
        assert h._queue is not None and h._queue.qsize() == 0
        h.invalidate()
        h.emit("boot", {})
        await h.drain()
        return h

    h = asyncio.run(run())
    assert len(reads) == 2 and h.failed == 0 and h.dropped == 0
