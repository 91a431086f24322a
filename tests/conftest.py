"""Shared fixtures: settings in a temporary data dir, and the web app wired to a real SQLite store."""

from __future__ import annotations

import socket
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

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

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def app_env(tmp_path: Path) -> AsyncIterator[AppEnv]:
    settings = settings_for(tmp_path, "[tftp]\nenabled = false\n")
    settings.content.root.mkdir(parents=True)
    store = await Store.open(settings.store.url)
    recorder = EventRecorder(store)
    metrics = Metrics()
    app = create_app(settings, Deps(store=store, recorder=recorder, metrics=metrics, admin_token=ADMIN_TOKEN))
    transport = httpx.ASGITransport(app=app, client=("198.18.0.10", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://boot.example:8050") as client:
        yield AppEnv(settings, store, recorder, metrics, client, settings.content.root)
    await recorder.flush()
    await store.close()
