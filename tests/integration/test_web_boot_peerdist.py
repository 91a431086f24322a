"""/boot scripts carry BranchCache's iPXE settings (peerdist, peerhost) before any image loads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from bootgate.events import EventRecorder
from bootgate.metrics import Metrics
from bootgate.scripts import render_action
from bootgate.policy import BootKernel
from bootgate.store import Store
from bootgate.web import create_app
from bootgate.web.deps import Deps
from tests.conftest import ADMIN_TOKEN, settings_for

MAC = "52:54:00:aa:bb:cc"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@asynccontextmanager
async def client_for(tmp_path: Path, body: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_for(tmp_path, '[tftp]\nenabled = false\n[auth]\nhttp_script_clients = "198.18.0.0/15"\n' + body)
    settings.content.root.mkdir(parents=True)
    store = await Store.open(settings.store.url)
    recorder = EventRecorder(store)
    app = create_app(settings, Deps(store=store, recorder=recorder, metrics=Metrics(), admin_token=ADMIN_TOKEN))
    transport = httpx.ASGITransport(app=app, client=("198.18.4.20", 40000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://boot.example:8050") as client:
            r = await client.put(f"/api/v1/machines/{MAC}/action", headers=AUTH,
                                 json={"kernel": "vmlinuz", "initrd": "initrd.img", "args": "quiet"})
            assert r.status_code == 200
            yield client
    finally:
        await recorder.flush()
        await store.close()


def before_kernel(script: str) -> list[str]:
    lines = script.splitlines()
    k = next(i for i, line in enumerate(lines) if line.startswith("kernel "))
    return lines[:k]


async def test_peerdist_on_with_site_peerhost(tmp_path: Path) -> None:
    async with client_for(tmp_path, '[branchcache]\npeerhosts = "198.18.4.0/24=198.18.4.5:8050"\n') as c:
        head = before_kernel((await c.get("/boot", params={"mac": MAC})).text)
    assert "set peerdist 1" in head and "set peerhost 198.18.4.5:8050" in head


async def test_peerdist_off_for_an_excluded_subnet(tmp_path: Path) -> None:
    async with client_for(tmp_path, '[branchcache]\nexclude_subnets = "198.18.4.0/24"\n') as c:
        script = (await c.get("/boot", params={"mac": MAC})).text
    assert "set peerdist 0" in before_kernel(script)
    assert "peerhost" not in script


def test_preamble_lines_cannot_carry_commands() -> None:
    action = BootKernel(kernel="vmlinuz", initrd="", args="")
    for bad in ("set peerhost x || shell", "chain http://evil/", "set peerdist 1\nshell"):
        with pytest.raises(ValueError, match="preamble"):
            render_action(action, mac=MAC, boot_id="ab" * 16, content_base="http://h:1", callback_base="http://h:1",
                          preamble=[bad])
