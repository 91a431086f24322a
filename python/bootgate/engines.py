"""What dhcp.py and tftp.py share: draining an engine's event queue into the recorder."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from .events import EventRecorder
from .store import EventRecord

log = logging.getLogger("bootgate.engines")

DRAIN_BATCH = 1024


class EngineHandle(Protocol):
    """The methods both native engine handles have (and that test doubles implement)."""

    def counters(self) -> list[tuple[str, int]]: ...
    def drain_events(self, max: int = 1024) -> list[dict[str, Any]]: ...
    def event_fd(self) -> int: ...
    def stop(self) -> None: ...


class EventPump:
    """Registers an engine's event fd with the loop; on readiness drains a batch into the recorder."""

    def __init__(self, name: str, engine: EngineHandle, recorder: EventRecorder,
                 convert: Callable[[dict[str, Any]], EventRecord],
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.name = name
        self.engine = engine
        self.recorder = recorder
        self.convert = convert
        self.on_batch = on_batch
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd = -1
        self.drained = 0
        self.bad = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        fd = self.engine.event_fd()
        if fd < 0:
            raise OSError(f"the {self.name} engine has no event descriptor")
        self._loop, self._fd = loop, fd
        loop.add_reader(fd, self.drain_once)

    def drain_once(self) -> int:
        """Drains one batch (the engine re-signals its fd while events remain); returns how many."""
        try:
            raw = self.engine.drain_events(DRAIN_BATCH)
        except Exception:
            log.exception("draining engine events failed", extra={"kv": {"engine": self.name}})
            return 0
        records = []
        for e in raw:
            try:
                records.append(self.convert(e))
            except Exception:
                self.bad += 1
                log.warning("engine event not understood", extra={"kv": {"engine": self.name, "event": repr(e)}})
        if records:
            self.recorder.add_many(records)
        self.drained += len(raw)
        if self.on_batch is not None and raw:
            self.on_batch(len(raw))
        return len(raw)

    def stop(self) -> None:
        if self._loop is not None and self._fd >= 0:
            self._loop.remove_reader(self._fd)
            self._fd = -1
        # whatever is still queued is recorded before the engine goes
        for _ in range(16):
            if self.drain_once() < DRAIN_BATCH:
                break
        self.engine.stop()
