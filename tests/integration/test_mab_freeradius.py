"""MAB exceptions end to end with real FreeRADIUS 3.2: rlm_rest asks bootgate's /api/v1/mab/authorize,
radclient plays the switch's MAB Access-Requests (vendor MAC formats), and a second FreeRADIUS plays the
switch that must receive the CoA after a login."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette

from bootgate.auth.ldap import AuthResult
from bootgate.auth.ratelimit import LoginLimiter
from bootgate.auth.service import SecurityService
from bootgate.auth.tokens import TokenSigner
from bootgate.integrations.mab import CoaTarget, ExceptionTable, FreeRadiusRestBackend, MabManager
from bootgate.web import login
from tests.integration import freeradius_lab as fr

pytestmark = pytest.mark.skipif(not fr.AVAILABLE, reason=fr.SKIP_REASON)

MAC = "52:54:00:12:ab:cd"
REST_SECRET = "rest-pw-for-freeradius"
SPELLINGS = ["52-54-00-12-AB-CD", "5254.0012.abcd", "52540012ABCD", "52:54:00:12:ab:cd"]


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


class OneUser:
    def authenticate(self, username: str, password: str) -> AuthResult:
        ok = username == "tech" and password == "pw"
        return AuthResult(ok, username, "ok" if ok else "invalid_credentials")


@dataclass
class Lab:
    sec: SecurityService
    mab: MabManager
    table: ExceptionTable
    clock: Clock
    radius: fr.Radius
    switch: fr.Radius
    base: str


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    clock = Clock()
    switch = fr.start_switch(tmp_path / "switch")
    radius = None
    stop = asyncio.Event()
    server = None
    try:
        table = ExceptionTable(tmp_path / "mab.json", clock=clock)
        backend = FreeRadiusRestBackend(table, [CoaTarget("127.0.0.1", switch.port, fr.SECRET.encode())],
                                        coa_timeout=2.0)
        mab = MabManager([backend], ttl=900, backoff=0.05, clock=clock)
        sec = SecurityService(authenticator=OneUser(), signer=TokenSigner(b"t" * 32, clock=clock),
                              limiter=LoginLimiter(), mab=mab, mab_table=table, mab_rest_secret=REST_SECRET,
                              allow_http_login=True)
        app = Starlette(routes=login.routes())
        app.state.security = sec
        port = _port()
        cfg = Config()
        cfg.bind = [f"127.0.0.1:{port}"]
        cfg.accesslog = None
        server = asyncio.create_task(serve(app, cfg, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as c:
            for _ in range(200):
                with contextlib.suppress(httpx.HTTPError):
                    await c.get(base + "/api/v1/mab/authorize?mac=00:00:00:00:00:00")
                    break
                await asyncio.sleep(0.05)
        radius = fr.start_auth_server(tmp_path / "radius", base, REST_SECRET)
        yield Lab(sec, mab, table, clock, radius, switch, base)
    finally:
        if radius is not None:
            radius.stop()
        switch.stop()
        stop.set()
        if server is not None:
            await asyncio.wait_for(server, 10)


async def do_login(lab: Lab) -> int:
    cred = base64.b64encode(b"tech:pw").decode()
    async with httpx.AsyncClient() as c:
        r = await c.get(lab.base + "/login/auth", params={"next": "/boot", "mac": MAC},
                        headers={"Authorization": "Basic " + cred})
    return r.status_code


async def test_rejected_before_login_accepted_during_exception_coa_sent_rejected_after_revoke(lab: Lab) -> None:
    for spelling in SPELLINGS:
        assert (await fr.mab_request(lab.radius.port, spelling)).startswith("Access-Reject"), spelling
    assert lab.switch.coa_lines() == []

    assert await do_login(lab) == 200
    await lab.mab.drain()
    for spelling in SPELLINGS:
        answer = await fr.mab_request(lab.radius.port, spelling)
        assert answer.startswith("Access-Accept"), (spelling, answer, lab.radius.log()[-1500:])
        assert 0 < int(answer.split()[1]) <= 900
    # the "switch" received the re-authentication CoA for this MAC
    assert lab.switch.coa_lines() == ["CoA-Request 52-54-00-12-AB-CD subscriber:command=reauthenticate"]
    assert [(h.operation, h.ok) for h in lab.mab.history] == [("grant", True), ("reauthenticate", True)]
    # not MAB: another service type is refused even for an excepted MAC
    assert (await fr.mab_request(lab.radius.port, SPELLINGS[0], "Framed-User")).startswith("Access-Reject")

    # the install reports success: exception revoked
    lab.sec.install_finished(MAC, success=True)
    await lab.mab.drain()
    for spelling in SPELLINGS:
        assert (await fr.mab_request(lab.radius.port, spelling)).startswith("Access-Reject"), spelling


async def test_exception_expires(lab: Lab) -> None:
    assert await do_login(lab) == 200
    await lab.mab.drain()
    assert (await fr.mab_request(lab.radius.port, SPELLINGS[1])).startswith("Access-Accept")
    lab.clock.t += 901
    # expired in the table already refuses, before the sweep removes it
    assert (await fr.mab_request(lab.radius.port, SPELLINGS[1])).startswith("Access-Reject")
    assert await lab.mab.expire() == [MAC]
    assert lab.table.entries() == []


async def test_switch_down_is_recorded_and_does_not_block_login(lab: Lab) -> None:
    lab.switch.stop()
    assert await do_login(lab) == 200  # answered at once: the NAC work runs in the background
    await lab.mab.drain()
    ops = [(h.operation, h.ok) for h in lab.mab.history]
    assert ops == [("grant", True), ("reauthenticate", False)]
    assert "no answer" in lab.mab.history[-1].error and lab.mab.history[-1].attempts == 3
    assert lab.mab.counts[("freeradius", "reauthenticate", False)] == 1
    # the exception itself is in place: a later MAB attempt of the port passes
    assert (await fr.mab_request(lab.radius.port, SPELLINGS[2])).startswith("Access-Accept")


async def test_rest_secret_required(lab: Lab) -> None:
    async with httpx.AsyncClient() as c:
        r = await c.get(lab.base + "/api/v1/mab/authorize", params={"mac": MAC})
    assert r.status_code == 401
