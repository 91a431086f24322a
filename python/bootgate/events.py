"""The event recorder: collects events from the web app and the engines and writes them in batches."""

from __future__ import annotations

import asyncio
import logging

from .store import EventRecord, Store

log = logging.getLogger("bootgate.events")

MAX_PENDING = 100_000


class EventRecorder:
    """Buffers events and writes them to the store in batches, off the request path.

    ``add`` never blocks and never raises; a write is scheduled on the running loop. ``flush`` waits
    until everything added so far is written (the events API calls it, so reads see earlier writes).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: list[EventRecord] = []
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.dropped = 0
        self.written = 0

    def add(self, record: EventRecord) -> None:
        self.add_many([record])

    def add_many(self, records: list[EventRecord]) -> None:
        room = MAX_PENDING - len(self._pending)
        if room < len(records):
            self.dropped += len(records) - max(room, 0)
            records = records[:max(room, 0)]
        self._pending.extend(records)
        if self._pending and (self._task is None or self._task.done()):
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # written by the next flush()
            self._task = loop.create_task(self._write_pending())

    async def _write_pending(self) -> None:
        async with self._lock:
            while self._pending:
                batch, self._pending = self._pending[:1000], self._pending[1000:]
                try:
                    await self.store.add_events(batch)
                    self.written += len(batch)
                except Exception:  # the recorder must not take the server down
                    self.dropped += len(batch)
                    log.exception("could not write events", extra={"kv": {"count": len(batch)}})

    async def flush(self) -> None:
        task = self._task
        if task is not None and not task.done():
            await asyncio.shield(task)
        await self._write_pending()
