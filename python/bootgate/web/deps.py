"""What the web app needs from the rest of the server, built by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Settings
from ..events import EventRecorder
from ..metrics import Metrics
from ..store import Store


@dataclass
class Deps:
    store: Store
    recorder: EventRecorder
    metrics: Metrics
    admin_token: str


@dataclass(frozen=True)
class AppState:
    settings: Settings
    deps: Deps
