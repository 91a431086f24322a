"""Shared fixtures: settings in a temporary data dir, and the web app wired to a real SQLite store."""

from __future__ import annotations

import socket
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from bootgate.config import Settings, load_settings
from bootgate.events import EventRecorder
from bootgate.metrics import Metrics
from bootgate.store import Store
from bootgate.web import Deps, create_app

ADMIN_TOKEN = "test-admin-token"


def write_config(tmp_path: Path, body: str, name: str = "bootgate.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def settings_for(tmp_path: Path, body: str = "", env: dict[str, str] | None = None) -> Settings:
    text = f'[server]\ndata_dir = "{tmp_path / "data"}"\n' + textwrap.dedent(body)
    return load_settings(write_config(tmp_path, text), env=env or {})


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class AppEnv:
    settings: Settings
    store: Store
    recorder: EventRecorder
    metrics: Metrics
    client: httpx.AsyncClient
    content: Path
    app: Starlette

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def app_env(tmp_path: Path) -> AsyncIterator[AppEnv]:
    # the client below fetches scripts over plain HTTP: named in [auth] http_script_clients (docs/security.md)
    settings = settings_for(tmp_path, '[tftp]\nenabled = false\n[auth]\nhttp_script_clients = "198.18.0.10"\n')
    settings.content.root.mkdir(parents=True)
    store = await Store.open(settings.store.url)
    recorder = EventRecorder(store)
    metrics = Metrics()
    app = create_app(settings, Deps(store=store, recorder=recorder, metrics=metrics, admin_token=ADMIN_TOKEN))
    transport = httpx.ASGITransport(app=app, client=("198.18.0.10", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://boot.example:8050") as client:
        yield AppEnv(settings, store, recorder, metrics, client, settings.content.root, app)
    await recorder.flush()
    await store.close()


async def raw_get(app: Starlette, raw_path: bytes, method: str = "GET",
                  headers: list[tuple[bytes, bytes]] | None = None) -> tuple[int, dict[str, str], bytes]:
    """Calls the ASGI app with an unnormalised path (as a hostile client could send it)."""
    from urllib.parse import unquote_to_bytes

    path = unquote_to_bytes(raw_path.split(b"?")[0]).decode("utf-8", "surrogateescape")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": raw_path, "query_string": b"", "root_path": "",
             "headers": [(b"host", b"testserver")] + (headers or []), "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80)}
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    await app(scope, receive, send)  # type: ignore[arg-type]
    start = sent[0]
    hdrs = {k.decode().lower(): v.decode() for k, v in start["headers"]}  # type: ignore[attr-defined]
    body = b"".join(m.get("body", b"") for m in sent[1:])  # type: ignore[misc]
    return int(start["status"]), hdrs, body  # type: ignore[call-overload]
