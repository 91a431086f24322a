"""Integration hooks: outgoing webhooks and Python plugins (entry point group ``bootgate.hooks``) on
boot, install result and approval events.

Delivery never blocks or fails a boot: events go into a bounded queue (full: counted as dropped) and a
background task delivers them, each webhook with a timeout and retries with backoff, each plugin call
with a timeout; failures are logged and counted. Webhooks are kept in the store (``webhooks`` setting,
``PUT /api/v1/settings/webhooks``): ``[{"url": "https://...", "events": ["boot", "install",
"approval"], "secret": "..."}]``; with a secret, the body's HMAC-SHA256 is sent in
``X-Bootgate-Signature: sha256=<hex>``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import inspect
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import orjson

from ..scripts import check_chain_url

__all__ = ["HOOK_EVENTS", "Hooks", "hooks_of", "validate_webhooks"]

log = logging.getLogger("bootgate.hooks")

HOOK_EVENTS = ("boot", "install", "approval")


def validate_webhooks(value: Any) -> list[dict[str, Any]]:
    """Checks the webhook list from the API; raises ValueError."""
    if not isinstance(value, list) or len(value) > 32:
        raise ValueError("webhooks must be a list of at most 32 objects")
    out = []
    for i, w in enumerate(value):
        if not isinstance(w, dict) or set(w) - {"url", "events", "secret"}:
            raise ValueError(f"webhook {i}: an object with url, events and optional secret")
        try:
            url = check_chain_url(str(w.get("url", "")))
        except ValueError as e:
            raise ValueError(f"webhook {i}: url {e}") from None
        events = w.get("events", list(HOOK_EVENTS))
        if not isinstance(events, list) or not events or any(e not in HOOK_EVENTS for e in events):
            raise ValueError(f"webhook {i}: events must be a non-empty list of {', '.join(HOOK_EVENTS)}")
        secret = w.get("secret", "")
        if not isinstance(secret, str) or len(secret) > 256:
            raise ValueError(f"webhook {i}: secret must be a string")
        out.append({"url": url, "events": list(dict.fromkeys(events)), "secret": secret})
    return out


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return int(resp.status)


Plugin = Callable[[str, dict[str, Any]], Any]


def load_plugins() -> list[tuple[str, Plugin]]:
    out: list[tuple[str, Plugin]] = []
    for ep in entry_points(group="bootgate.hooks"):
        try:
            fn = ep.load()
        except Exception:
            log.exception("cannot load hook plugin %s", ep.name)
            continue
        if callable(fn):
            out.append((ep.name, fn))
    return out


@dataclass
class Hooks:
    """The dispatcher. `webhooks` is a callable returning the current list (read from the store)."""

    webhooks: Callable[[], Any]
    plugins: list[tuple[str, Plugin]] = field(default_factory=list)
    timeout: float = 5.0
    retries: int = 3
    backoff: float = 0.5
    queue_size: int = 10000
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    cache_seconds: float = 5.0
    _queue: asyncio.Queue[tuple[str, dict[str, Any]]] | None = None
    _task: asyncio.Task[None] | None = None
    _cached: tuple[float, list[dict[str, Any]]] | None = None

    def invalidate(self) -> None:
        """The webhook list changed: read it again on the next event."""
        self._cached = None

    def wants(self, kind: str) -> bool:
        """False when an event of `kind` would not be queued (no plugin, and the webhook list, read less
        than `cache_seconds` ago, has no webhook for it): the caller need not build its payload."""
        return bool(self.plugins or self._cached is None or self._cached[0] <= time.monotonic() or any(
            kind in w.get("events", ()) for w in self._cached[1]))

    def emit(self, kind: str, payload: dict[str, Any]) -> None:
        """Queues an event; never blocks, never raises. Nothing is queued when no webhook wants it and
        there are no plugins (the webhook list is re-read every `cache_seconds`)."""
        if not self.wants(kind):
            return
        try:
            if self._queue is None:
                self._queue = asyncio.Queue(self.queue_size)
            if self._task is None or self._task.done():
                self._task = asyncio.get_running_loop().create_task(self._run())
            self._queue.put_nowait((kind, {"event": kind, "time": time.time(), **payload}))
        except asyncio.QueueFull:
            self.dropped += 1
        except Exception:  # pragma: no cover - defensive: a hook must never fail a boot
            self.dropped += 1
            log.exception("cannot queue a hook event")

    async def drain(self) -> None:
        """Waits until every queued event has been handled (tests, shutdown)."""
        if self._queue is not None:
            await self._queue.join()

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            kind, payload = await self._queue.get()
            try:
                await self._deliver(kind, payload)
            except Exception:
                log.exception("hook delivery failed")
            finally:
                self._queue.task_done()

    async def _deliver(self, kind: str, payload: dict[str, Any]) -> None:
        if self._cached is not None and self._cached[0] > time.monotonic():
            hooks = self._cached[1]
        else:
            got = self.webhooks()
            if inspect.isawaitable(got):
                got = await got
            hooks = list(got or [])
            self._cached = (time.monotonic() + self.cache_seconds, hooks)
        body = orjson.dumps(payload)
        jobs = [self._webhook(w, body) for w in hooks or [] if kind in w.get("events", ())]
        jobs += [self._plugin(name, fn, kind, payload) for name, fn in self.plugins]
        await asyncio.gather(*jobs)

    async def _webhook(self, w: dict[str, Any], body: bytes) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": "bootgate-webhook"}
        if w.get("secret"):
            sig = hmac.new(str(w["secret"]).encode(), body, hashlib.sha256).hexdigest()
            headers["X-Bootgate-Signature"] = f"sha256={sig}"
        for attempt in range(self.retries + 1):
            try:
                status = await asyncio.wait_for(asyncio.to_thread(_post, w["url"], body, headers, self.timeout),
                                                self.timeout + 1)
                if 200 <= status < 300:
                    self.delivered += 1
                    return
            except (OSError, TimeoutError, urllib.error.URLError) as e:
                log.warning("webhook %s failed (attempt %d): %s", w["url"], attempt + 1, e)
            if attempt < self.retries:
                await asyncio.sleep(self.backoff * (2 ** attempt))
        self.failed += 1

    async def _plugin(self, name: str, fn: Plugin, kind: str, payload: dict[str, Any]) -> None:
        try:
            if inspect.iscoroutinefunction(fn):
                await asyncio.wait_for(fn(kind, dict(payload)), self.timeout)
            else:  # a plain function runs in a thread: it cannot stall the event loop
                await asyncio.wait_for(asyncio.to_thread(fn, kind, dict(payload)), self.timeout)
            self.delivered += 1
        except Exception:
            self.failed += 1
            log.exception("hook plugin %s failed", name)


def hooks_of(app: Any) -> Hooks:
    """The app's dispatcher, made on first use: webhooks from the store, plugins from entry points."""
    hooks = getattr(app.state, "bootgate_hooks", None)
    if not isinstance(hooks, Hooks):
        store = app.state.bootgate.deps.store

        async def current() -> Any:
            return await store.get_setting("webhooks", [])

        hooks = Hooks(webhooks=current, plugins=load_plugins())
        app.state.bootgate_hooks = hooks
    return hooks
