"""The web app: ``create_app(settings, deps)`` -> a starlette application."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Settings
from . import api, boot, content, login, manage, peer
from .deps import AppState, Deps

__all__ = ["AppState", "Deps", "create_app"]

log = logging.getLogger("bootgate.web")


class RequestMetrics:
    """Counts every HTTP request by method, matched route and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            app = scope.get("app")
            st = getattr(app.state, "bootgate", None) if app is not None else None
            if isinstance(st, AppState):
                st.deps.metrics.count_http(scope.get("method", ""), label, status)


async def metrics(request: Request) -> Response:
    st = boot.state_of(request)
    st.deps.metrics.events_dropped.set(st.deps.recorder.dropped)
    return Response(generate_latest(st.deps.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n")


def create_app(settings: Settings, deps: Deps) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if settings.branchcache.enabled:
            content.branchcache_service_start(app, settings, deps)  # PeerDist: passphrase, background hashing
        login.security_start(app, settings)  # certificate expiry warning, MAB expiry sweep
        try:
            yield
        finally:
            await login.security_stop(app)
            await content.branchcache_service_stop(app)
            await deps.recorder.flush()

    routes = [
        Route("/boot.ipxe", boot.boot_ipxe, methods=["GET"]),
        Route("/boot", boot.boot, methods=["GET"]),
        Route("/boot/run", boot.boot_run, methods=["GET"]),
        Route("/boot/technician", boot.boot_technician, methods=["GET"]),
        Route("/content/{path:path}", content.content, methods=["GET", "HEAD"]),
        *peer.routes(),  # MS-PCCRR hosted-cache peer (iPXE peerhost)
        Route("/api/v1/boots/{boot_id}/status", api.boot_status, methods=["POST"]),
        Route("/api/v1/machines/{mac}/action", api.put_action, methods=["PUT"]),
        Route("/api/v1/machines/{mac}/action", api.delete_action, methods=["DELETE"]),
        Route("/api/v1/machines", api.list_machines, methods=["GET"]),
        Route("/api/v1/boots", api.list_boots, methods=["GET"]),
        Route("/api/v1/events", api.list_events, methods=["GET"]),
        *manage.routes(),
        *login.routes(),  # iPXE login (401 challenge), FreeRADIUS rlm_rest MAB route, MAB exceptions API
        Route("/metrics", metrics, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.bootgate = AppState(settings=settings, deps=deps)
    login.security_install(app, settings)  # app.state.security: login, boot tokens, MAB ([auth]/[ldap]/[mab])
    app.add_middleware(RequestMetrics)
    return app
