"""The Python face of the proxyDHCP engine: policy from settings, start/stop, events into the store."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
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
PRIORITY_SUBOPTION = 1  # iPXE 175.1: offer priority (signed byte; iPXE keeps the highest)
KNOWN_REFRESH_S = 30.0  # known_only: how often the set of known MACs is re-read from the store


@dataclass(frozen=True)
class DhcpPolicy:
    """What the engine answers (mirrors the native `set_policy` keywords)."""

    tftp_server: str
    boot_bios: str
    boot_efi_x64: str
    script_url: str
    script_url_http: str | None
    ipxe_encap: bytes
    boot_table: dict[str, str] = field(default_factory=dict)
    mac_allow: list[str] = field(default_factory=list)
    mac_deny: list[str] = field(default_factory=list)
    known_only: bool = False
    known_macs: list[str] = field(default_factory=list)
    subnets: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    response_delay_ms: int = 0
    standby: bool = False


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


def http_boot_url(settings: Settings, value: str) -> str:
    """A [boot] http_* entry as the URL handed out: full URLs as is; a relative path is served from
    [content] root: `http://<public_host>:<[http] port>/content/<path>` (UEFI HTTP Boot firmware
    trusts no certificate of ours, so plain HTTP)."""
    if "://" in value:
        return value
    return base_url("http", settings.public_host, settings.http.port) + "/content/" + value.lstrip("/")


def resolve_table(settings: Settings, table: dict[str, str]) -> dict[str, str]:
    """Boot table with http_* entries made absolute URLs."""
    return {k: http_boot_url(settings, v) if k.startswith("http_") else v for k, v in table.items()}


def priority_encap(priority: int) -> bytes:
    """Raw sub-option 175.1 (signed byte), or nothing for 0."""
    if priority == 0:
        return b""
    return bytes([PRIORITY_SUBOPTION, 1, priority & 0xFF])


def compile_policy(settings: Settings, ca: bytes | None = None, known_macs: list[str] | None = None) -> DhcpPolicy:
    """Settings (and the DER of our CA certificate, if any, and the inventory's MACs) -> the engine's policy."""
    encap = b""
    if settings.dhcp.trust_ca and settings.tls.managed and ca is not None:
        encap = trust_encap([ca])
    encap += priority_encap(settings.dhcp.ipxe_priority)
    table = settings.boot.table()
    table.pop("bios", None)
    table.pop("efi_x64", None)
    return DhcpPolicy(
        tftp_server=settings.dhcp.server_ip,
        boot_bios=settings.boot.bios,
        boot_efi_x64=settings.boot.efi_x64,
        script_url=script_url(settings),
        script_url_http=script_url_http(settings),
        ipxe_encap=encap,
        boot_table=resolve_table(settings, table),
        mac_allow=settings.dhcp.allow_list,
        mac_deny=settings.dhcp.deny_list,
        known_only=settings.dhcp.known_only,
        known_macs=sorted(known_macs or []),
        subnets=[(net, resolve_table(settings, t)) for net, t in settings.boot.subnet_tables()],
        response_delay_ms=settings.dhcp.response_delay_ms,
        standby=settings.dhcp.standby,
    )


def policy_args(policy: DhcpPolicy) -> dict[str, Any]:
    """Keyword arguments of the native `set_policy`."""
    return asdict(policy)


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
                                    "user_class", "relay", "relay_agent_info", "reason", "delayed")}
    return EventRecord(kind="dhcp", time=float(e["time"]), mac=str(e["mac"]).lower(), client_ip=None,
                       detail=detail)


def start_ra(settings: Settings, factory: Callable[..., Any] | None = None) -> Any:
    """The IPv6 "no router" RA responder on the [dhcp] interface when [dhcp] ipv6_ra is on, else None.
    OSError names the key when it cannot start (it needs CAP_NET_RAW)."""
    if not settings.dhcp.ipv6_ra:
        return None
    if factory is None:
        from . import _native
        factory = _native.RaResponder
    try:
        return factory(interface=settings.dhcp.interface, unsolicited=True)
    except OSError as e:
        raise OSError(e.errno, f"[dhcp] ipv6_ra: {e.strerror or e} (needs CAP_NET_RAW; or set ipv6_ra = false)") \
            from None


class DhcpService:
    """A running DHCP engine, the pump that records its events, and the optional RA responder."""

    def __init__(self, engine: EngineHandle, pump: EventPump, policy: DhcpPolicy, ra: Any = None) -> None:
        self.engine = engine
        self.pump = pump
        self.policy = policy
        self.ra = ra
        self._refresh: asyncio.Task[None] | None = None

    def handles(self) -> list[tuple[str, Any]]:
        """(name, handle with counters()) for the metrics: `dhcp`, and `ra` when the responder runs."""
        return [("dhcp", self.engine)] + ([("ra", self.ra)] if self.ra is not None else [])

    def set_known_machines(self, macs: list[str]) -> bool:
        """Swaps in a policy with this set of known MACs; returns False when nothing changed."""
        known = sorted({m.lower() for m in macs})
        if known == self.policy.known_macs:
            return False
        policy = replace(self.policy, known_macs=known)
        self.engine.set_policy(**policy_args(policy))  # type: ignore[attr-defined]
        self.policy = policy
        return True

    async def refresh_known(self, store: Any) -> bool:
        """Reads the inventory's MACs from `store` and swaps them in (known_only mode)."""
        machines = await store.list_machines()
        return self.set_known_machines([str(m["mac"]) for m in machines])

    def start_known_refresh(self, store: Any, loop: asyncio.AbstractEventLoop,
                            interval: float = KNOWN_REFRESH_S) -> None:
        """known_only: refresh the known set now and then every `interval` seconds, until stop()."""
        async def run() -> None:
            while True:
                try:
                    if await self.refresh_known(store):
                        log.info("known machines updated", extra={"kv": {"count": len(self.policy.known_macs)}})
                except Exception as e:  # a store hiccup must not end the refresh loop
                    log.warning("cannot read known machines", extra={"kv": {"error": str(e)}})
                await asyncio.sleep(interval)
        self._refresh = loop.create_task(run())

    @classmethod
    def start(cls, settings: Settings, recorder: EventRecorder, loop: asyncio.AbstractEventLoop,
              metrics: Metrics | None = None,
              factory: Callable[..., EngineHandle] | None = None,
              ra_factory: Callable[..., Any] | None = None) -> DhcpService:
        policy = compile_policy(settings, ca_der(settings.tls.ca_cert))
        if settings.dhcp.trust_ca and not policy.ipxe_encap.startswith(bytes([TRUST_SUBOPTION])):
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
        try:
            ra = start_ra(settings, ra_factory)
        except Exception:
            pump.stop()
            raise
        service = cls(engine, pump, policy, ra)
        if settings.dhcp.known_only:
            service.start_known_refresh(recorder.store, loop)
        log.info("DHCP engine started", extra={"kv": {
            "interface": settings.dhcp.interface, "server_ip": settings.dhcp.server_ip,
            "script_url": policy.script_url, "trust_ca": bool(policy.ipxe_encap), "known_only": policy.known_only,
            "response_delay_ms": policy.response_delay_ms, "standby": policy.standby, "boot_table": policy.boot_table,
            "ipv6_ra": ra is not None}})
        return service

    def stop(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            self._refresh = None
        if self.ra is not None:
            self.ra.stop()
            self.ra = None
        self.pump.stop()
