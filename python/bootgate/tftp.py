"""The Python face of the TFTP engine: settings -> engine, start/stop, transfer events into the store."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable
from typing import Any

from .config import Settings
from .engines import EngineHandle, EventPump
from .events import EventRecorder
from .metrics import Metrics
from .store import EventRecord

log = logging.getLogger("bootgate.tftp")


def bind_address(settings: Settings) -> str:
    """`ip:port` (IPv6 in brackets) for the engine's listening socket."""
    host = settings.tftp.bind
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{settings.tftp.port}"


def engine_args(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `_native.TftpEngine`."""
    t = settings.tftp
    return {"bind": bind_address(settings), "root": str(t.root), "max_blksize": t.max_blksize,
            "timeout_ms": t.timeout_ms, "retries": t.retries, "max_transfers": t.max_transfers,
            "max_queued": t.max_queued, "max_per_client": t.max_per_client, "single_port": t.single_port}


def split_socket_addr(value: str) -> tuple[str, int | None]:
    """('1.2.3.4', 1234) from '1.2.3.4:1234' or '[::1]:1234'; the port is None if absent."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or (host.count(":") and not host.startswith("[")):
        return value.strip("[]"), None
    host = host.strip("[]")
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        pass
    return host, int(port)


def event_record(e: dict[str, Any]) -> EventRecord:
    """A TFTP engine event -> an `events` row keyed by client IP."""
    ip, port = split_socket_addr(str(e["client"]))
    detail = {"file": e.get("file"), "ok": e.get("ok"), "bytes": e.get("bytes"), "duration": e.get("duration"),
              "error": e.get("error"), "client_port": port}
    return EventRecord(kind="tftp", time=float(e["time"]), mac=None, client_ip=ip, detail=detail)


class TftpService:
    """A running TFTP engine and the pump that records its events."""

    def __init__(self, engine: EngineHandle, pump: EventPump) -> None:
        self.engine = engine
        self.pump = pump

    @classmethod
    def start(cls, settings: Settings, recorder: EventRecorder, loop: asyncio.AbstractEventLoop,
              metrics: Metrics | None = None,
              factory: Callable[..., EngineHandle] | None = None) -> TftpService:
        if factory is None:
            from . import _native
            factory = _native.TftpEngine
        engine = factory(**engine_args(settings))
        on_batch = (lambda n: metrics.engine_events.labels("tftp").inc(n)) if metrics else None
        pump = EventPump("tftp", engine, recorder, event_record, on_batch)
        try:
            pump.start(loop)
        except Exception:
            engine.stop()
            raise
        log.info("TFTP engine started", extra={"kv": {"bind": bind_address(settings), "root": str(settings.tftp.root)}})
        return cls(engine, pump)

    def stop(self) -> None:
        self.pump.stop()
