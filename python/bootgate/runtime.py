"""The composition root: settings -> store -> engines -> web, served by hypercorn on uvloop."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import signal
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import uvloop
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig

from .config import ConfigError, Settings
from .dhcp import DhcpService
from .engines import EngineHandle
from .events import EventRecorder
from .metrics import Metrics
from .store import Store
from .tftp import TftpService, bind_address
from .tls import TlsFiles, ensure_admin_token, ensure_tls
from .web import Deps, create_app

log = logging.getLogger("bootgate.runtime")

# TLS 1.2 suites old and new iPXE builds can use, best first: ECDHE (iPXE >= 2024), then plain RSA key
# exchange (older iPXE, e.g. Debian's 1.21.1 builds, offers only TLS_RSA_WITH_AES_*).
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:ECDHE+AES:DHE+AESGCM:RSA+AESGCM:RSA+AES:!aNULL:!eNULL:!MD5:!DSS:!RC4:!3DES"


class StartupError(Exception):
    """The server cannot start; the message says why and which key to change."""


@dataclass
class Engines:
    tftp: TftpService | None = None
    dhcp: DhcpService | None = None
    handles: list[tuple[str, EngineHandle]] = field(default_factory=list)

    def stop(self) -> None:
        for svc in (self.dhcp, self.tftp):
            if svc is not None:
                try:
                    svc.stop()
                except Exception:
                    log.exception("stopping an engine failed")
        self.dhcp = self.tftp = None
        self.handles.clear()


def prepare_data_dir(settings: Settings) -> None:
    try:
        settings.server.data_dir.mkdir(parents=True, exist_ok=True)
        settings.content.root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StartupError(f"cannot create the data directory: {e}: set [server] data_dir (or BOOTGATE_DATA_DIR) "
                           "to a directory this user may write") from None


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Config(HypercornConfig):
    """hypercorn's Config with extra certificate chains in the TLS context (an RSA certificate beside
    the ECDSA one: OpenSSL serves each client the one its signature algorithms allow)."""

    extra_chains: list[tuple[str, str]] = []

    def create_ssl_context(self) -> ssl.SSLContext | None:
        ctx = super().create_ssl_context()
        if ctx is not None:
            for cert, key in self.extra_chains:
                ctx.load_cert_chain(certfile=cert, keyfile=key)
        return ctx


def hypercorn_config(settings: Settings, tls: TlsFiles | None) -> HypercornConfig:
    cfg = _Config()
    cfg.accesslog = None
    cfg.errorlog = logging.getLogger("hypercorn.error")
    cfg.include_server_header = False
    cfg.graceful_timeout = 3.0
    # a boot storm (a lab powered on at once) opens hundreds of TLS connections within seconds: with
    # hypercorn's default accept backlog (100) the kernel's queue overflows while the loop is busy with
    # handshakes, and clients are reset (benches/boot storm); the kernel caps it at net.core.somaxconn
    cfg.backlog = 2048
    bind = settings.http.bind
    if settings.http.https_port and tls is not None:
        cfg.certfile = str(tls.cert)
        cfg.keyfile = str(tls.key)
        cfg.extra_chains = [(str(c), str(k)) for c, k in tls.chains()[1:]]
        cfg.ciphers = CIPHERS
        cfg.bind = [_hostport(bind, settings.http.https_port)]
        cfg.insecure_bind = [_hostport(bind, settings.http.port)] if settings.http.port else []
    else:
        cfg.bind = [_hostport(bind, settings.http.port)]
    return cfg


def check_listeners(settings: Settings, cfg: HypercornConfig) -> None:
    """Binds (and releases) the HTTP/HTTPS sockets, so a busy port fails before anything starts."""
    try:
        sockets = cfg.create_sockets()
    except OSError as e:
        raise StartupError(
            f"cannot listen on {settings.http.bind} (HTTP {settings.http.port}, HTTPS "
            f"{settings.http.https_port}): {e.strerror or e}: set [http] bind / port / https_port to free ports"
        ) from None
    for sock in (*sockets.secure_sockets, *sockets.insecure_sockets, *sockets.quic_sockets):
        sock.close()


def start_engines(settings: Settings, recorder: EventRecorder, metrics: Metrics,
                  loop: asyncio.AbstractEventLoop) -> Engines:
    engines = Engines()
    try:
        if settings.tftp.enabled:
            if not settings.tftp.root.is_dir():
                log.warning("the TFTP root does not exist; every request will fail",
                            extra={"kv": {"root": str(settings.tftp.root)}})
            try:
                engines.tftp = TftpService.start(settings, recorder, loop, metrics)
            except OSError as e:
                hint = ""
                if e.errno in (errno.EACCES, errno.EPERM):
                    hint = " (ports below 1024 need root)"
                raise StartupError(
                    f"cannot start TFTP on {bind_address(settings)}: {e.strerror or e}{hint}: "
                    "set [tftp] port / bind to a free address, or [tftp] enabled = false"
                ) from None
            engines.handles.append(("tftp", engines.tftp.engine))
        if settings.dhcp.enabled:
            try:
                engines.dhcp = DhcpService.start(settings, recorder, loop, metrics)
            except (OSError, ValueError) as e:
                raise StartupError(
                    f"cannot start proxyDHCP on interface {settings.dhcp.interface} "
                    f"(ports {settings.dhcp.port}/{settings.dhcp.pxe_port}): {getattr(e, 'strerror', None) or e}: "
                    "check [dhcp] interface and server_ip (DHCP needs root), or set [dhcp] interface = \"\" "
                    "to turn DHCP off"
                ) from None
            engines.handles.extend(engines.dhcp.handles())
    except BaseException:
        engines.stop()
        raise
    return engines


GC_GEN0 = 10_000  # net allocations between generation-0 collections (CPython's default is 700)


def settle_heap() -> None:
    """Takes startup's long-lived objects (modules, the app, the identity index) out of the cyclic
    collector's way. They are collected once, then frozen (`gc.freeze`), so that a full collection no
    longer walks them. Measured with a 10 000-machine index (benches/boot/profile_boot.py): a full
    collection took 143 ms, and collections took 24 % of a busy /boot's time. Generation 0 runs every
    GC_GEN0 net allocations instead of 700: a request's objects are freed by reference counting, and
    the few thousand that 200 requests in flight hold no longer trigger collections that promote them."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0, *gc.get_threshold()[1:])


async def serve(settings: Settings) -> None:
    """Runs the server until SIGINT/SIGTERM."""
    prepare_data_dir(settings)
    tls = None
    if settings.http.https_port:
        try:
            tls = ensure_tls(settings)
        except OSError as e:
            raise StartupError(f"cannot create TLS files: {e}: set [server] data_dir to a writable directory "
                               "or point [tls] cert/key at existing files") from None
    token = ensure_admin_token(settings.admin_token_path)
    try:
        store = await Store.open(settings.store.url)
    except Exception as e:
        raise StartupError(f"cannot open the store {settings.store.url}: {e}: check [store] url") from None
    recorder = EventRecorder(store)
    loop = asyncio.get_running_loop()
    engines = Engines()
    metrics = Metrics(lambda: list(engines.handles))
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        cfg = hypercorn_config(settings, tls)
        check_listeners(settings, cfg)
        started = start_engines(settings, recorder, metrics, loop)
        engines.tftp, engines.dhcp, engines.handles = started.tftp, started.dhcp, started.handles
        app = create_app(settings, Deps(store=store, recorder=recorder, metrics=metrics, admin_token=token))
        await store.identity_index()  # loaded now (else by the first boot), so that settle_heap freezes it
        settle_heap()
        log.info("serving", extra={"kv": {
            "http": _hostport(settings.http.bind, settings.http.port) if settings.http.port else "off",
            "https": _hostport(settings.http.bind, settings.http.https_port) if tls else "off",
            "tftp": bind_address(settings) if engines.tftp else "off",
            "dhcp": settings.dhcp.interface or "off",
            "data_dir": str(settings.server.data_dir),
            "public_host": settings.public_host,
            "pid": os.getpid(),
        }})
        try:
            await hypercorn_serve(app, cfg, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
        except OSError as e:
            raise StartupError(
                f"cannot listen on {settings.http.bind} (HTTP {settings.http.port}, HTTPS "
                f"{settings.http.https_port}): {e.strerror or e}: set [http] bind / port / https_port "
                "to free ports"
            ) from None
    finally:
        engines.stop()
        await recorder.flush()
        await store.close()
        log.info("stopped")


def run(settings: Settings) -> int:
    """Serves until a signal; returns the process exit code."""
    try:
        uvloop.run(serve(settings))
    except StartupError as e:
        log.error(str(e))
        return 1
    except ConfigError as e:
        log.error(str(e))
        return 2
    return 0


def ensure_layout(settings: Settings) -> tuple[TlsFiles | None, Path]:
    """Creates the data dir, content dir, TLS material and admin token (used by `bootgate init`)."""
    prepare_data_dir(settings)
    tls = ensure_tls(settings)
    ensure_admin_token(settings.admin_token_path)
    return tls, settings.admin_token_path
