"""The Python face of the proxyDHCP engine: policy from settings, start/stop, events into the store."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from .config import Settings
from .engines import EngineHandle, EventPump
from .events import EventRecorder
from .metrics import Metrics
from .scripts import base_url
from .store import EventRecord
from .tls import ca_der

log = logging.getLogger("bootgate.dhcp")

TRUST_SUBOPTION = 90  # iPXE encapsulated option 175.90: SHA-256 fingerprints of trusted roots


@dataclass(frozen=True)
class DhcpPolicy:
    """What the engine answers (mirrors the native `set_policy` keywords)."""

    tftp_server: str
    boot_bios: str
    boot_efi_x64: str
    script_url: str
    script_url_http: str | None
    ipxe_encap: bytes


def script_url(settings: Settings) -> str:
    """The script URL handed to iPXE clients: `<script_scheme>://<public_host>:<port>/boot.ipxe`."""
    scheme = settings.dhcp.script_scheme
    port = settings.http.https_port if scheme == "https" else settings.http.port
    return base_url(scheme, settings.public_host, port) + "/boot.ipxe"


def script_url_http(settings: Settings) -> str | None:
    """The plain-HTTP script URL for iPXE builds without HTTPS, when allowed."""
    if not settings.dhcp.allow_http_scripts or settings.http.port == 0:
        return None
    return base_url("http", settings.public_host, settings.http.port) + "/boot.ipxe"


def trust_encap(ca_ders: list[bytes]) -> bytes:
    """Raw sub-option 90 (code, length, SHA-256 of each DER certificate) for option 175."""
    digests = b"".join(hashlib.sha256(d).digest() for d in ca_ders)
    if not digests:
        return b""
    if len(digests) > 255:
        raise ValueError("too many trusted certificates for one 175.90 sub-option (at most 7)")
    return bytes([TRUST_SUBOPTION, len(digests)]) + digests


def compile_policy(settings: Settings, ca: bytes | None = None) -> DhcpPolicy:
    """Settings (and the DER of our CA certificate, if any) -> the engine's policy."""
    encap = b""
    if settings.dhcp.trust_ca and settings.tls.managed and ca is not None:
        encap = trust_encap([ca])
    return DhcpPolicy(
        tftp_server=settings.dhcp.server_ip,
        boot_bios=settings.boot.bios,
        boot_efi_x64=settings.boot.efi_x64,
        script_url=script_url(settings),
        script_url_http=script_url_http(settings),
        ipxe_encap=encap,
    )


def engine_args(settings: Settings, policy: DhcpPolicy) -> dict[str, Any]:
    """Keyword arguments for `_native.DhcpEngine`."""
    return {
        "interface": settings.dhcp.interface,
        "bind_ip": "0.0.0.0",
        "server_ip": settings.dhcp.server_ip,
        "port": settings.dhcp.port,
        "pxe_port": settings.dhcp.pxe_port,
        "client_port": 68,
        "broadcast_ip": "255.255.255.255",
        **asdict(policy),
    }


def event_record(e: dict[str, Any]) -> EventRecord:
    """A DHCP engine event -> an `events` row keyed by MAC."""
    detail = {k: e.get(k) for k in ("arch", "answer", "port", "is_ipxe", "uuid", "message_type", "vendor_class",
                                    "user_class", "relay")}
    return EventRecord(kind="dhcp", time=float(e["time"]), mac=str(e["mac"]).lower(), client_ip=None,
                       detail=detail)


class DhcpService:
    """A running DHCP engine and the pump that records its events."""

    def __init__(self, engine: EngineHandle, pump: EventPump, policy: DhcpPolicy) -> None:
        self.engine = engine
        self.pump = pump
        self.policy = policy

    @classmethod
    def start(cls, settings: Settings, recorder: EventRecorder, loop: asyncio.AbstractEventLoop,
              metrics: Metrics | None = None,
              factory: Callable[..., EngineHandle] | None = None) -> DhcpService:
        policy = compile_policy(settings, ca_der(settings.tls.ca_cert))
        if settings.dhcp.trust_ca and not policy.ipxe_encap:
            log.warning("not sending 175.90: no bootgate CA certificate to pin",
                        extra={"kv": {"ca_cert": str(settings.tls.ca_cert), "managed": settings.tls.managed}})
        if factory is None:
            from . import _native
            factory = _native.DhcpEngine
        engine = factory(**engine_args(settings, policy))
        on_batch = (lambda n: metrics.engine_events.labels("dhcp").inc(n)) if metrics else None
        pump = EventPump("dhcp", engine, recorder, event_record, on_batch)
        try:
            pump.start(loop)
        except Exception:
            engine.stop()
            raise
        log.info("DHCP engine started", extra={"kv": {
            "interface": settings.dhcp.interface, "server_ip": settings.dhcp.server_ip,
            "script_url": policy.script_url, "trust_ca": bool(policy.ipxe_encap)}})
        return cls(engine, pump, policy)

    def stop(self) -> None:
        self.pump.stop()
