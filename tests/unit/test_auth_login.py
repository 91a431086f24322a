"""The 401-challenge login flow, boot-token checks and the rlm_rest route, with a stand-in directory.
(The same flow against a real slapd is in tests/integration/test_ldap_login.py.)"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette

from bootgate.auth.ldap import AuthResult
from bootgate.auth.ratelimit import LimitSettings, LoginLimiter
from bootgate.auth.service import SecurityService
from bootgate.auth.tokens import TokenSigner
from bootgate.integrations.mab import ExceptionTable, FreeRadiusRestBackend, MabManager
from bootgate.web import login

MAC = "52:54:00:aa:bb:cc"
PASSWORD = "s3cret:with@odd%chars"


class FakeDirectory:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def authenticate(self, username: str, password: str) -> AuthResult:
        self.calls.append(username)
        if not password:
            return AuthResult(False, username, "empty_password")
        if username == "alice" and password == PASSWORD:
            return AuthResult(True, username, "ok", user_dn="uid=alice")
        return AuthResult(False, username, "invalid_credentials")


def basic(user: str, pw: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, SecurityService, FakeDirectory]]:
    d = FakeDirectory()
    table = ExceptionTable(tmp_path / "mab.json")
    mab = MabManager([FreeRadiusRestBackend(table)], ttl=600, backoff=0.01)
    sec = SecurityService(authenticator=d, signer=TokenSigner(b"k" * 32), mab=mab, mab_table=table,
                          limiter=LoginLimiter(LimitSettings(max_failures=3, lockout_seconds=60)))
    app = Starlette(routes=login.routes())
    app.state.security = sec
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://boot.test:8051") as c:
        yield c, sec, d


QUERY = {"next": "/boot", "mac": MAC, "uuid": "1234", "serial": "SN 1"}


async def test_challenge_then_login_then_token_chain(env: tuple[httpx.AsyncClient, SecurityService,
                                                                 FakeDirectory], caplog: pytest.LogCaptureFixture) -> None:
    c, sec, d = env
    caplog.set_level(logging.DEBUG)
    r = await c.get("/login/auth", params=QUERY)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic realm=")
    assert d.calls == []
    r = await c.get("/login/auth", params=QUERY, headers=basic("alice", PASSWORD))
    assert r.status_code == 200, r.text
    lines = r.text.splitlines()
    assert lines[0] == "#!ipxe" and lines[1].startswith("set bgt ")
    chain = lines[2].removeprefix("chain ")
    u = urlsplit(chain)
    assert (u.scheme, u.netloc, u.path) == ("https", "boot.test:8051", "/boot") and "@" not in u.netloc
    q = {k: v[0] for k, v in parse_qs(u.query).items()}
    assert q["mac"] == MAC and q["serial"] == "SN 1" and "next" not in q
    tok = sec.check_token(q["bgt"], MAC)
    assert tok.user == "alice" and tok.claims["next"] == "/boot"
    # the MAB exception is granted in the background
    assert sec.mab is not None
    await sec.mab.drain()
    assert sec.mab_table is not None and sec.mab_table.lookup(MAC) is not None
    # the password never reaches the logs
    assert PASSWORD not in caplog.text and "alice" in caplog.text


async def test_boot_token_check_on_the_next_request(env: tuple[httpx.AsyncClient, SecurityService,
                                                                FakeDirectory]) -> None:
    c, sec, _ = env
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    async def boot(request: Request) -> Response:
        tok = login.check_boot_token(request)
        return tok if isinstance(tok, Response) else PlainTextResponse("ok " + tok.user)

    c._transport.app.router.routes.append(Route("/boot", boot))  # type: ignore[attr-defined]
    r = await c.get("/login/auth", params=QUERY, headers=basic("alice", PASSWORD))
    chain = r.text.splitlines()[2].removeprefix("chain ")
    ok = await c.get(chain)
    assert ok.status_code == 200 and ok.text == "ok alice"
    tampered = chain.replace("serial=SN+1", "serial=SN+2")
    assert tampered != chain
    r = await c.get(tampered)
    assert r.status_code == 403 and "parameters changed" in r.text
    other = chain.replace("mac=52%3A54%3A00%3Aaa%3Abb%3Acc", "mac=52%3A54%3A00%3Aaa%3Abb%3Acd")
    assert other != chain
    r = await c.get(other)
    assert r.status_code == 403 and "wrong_machine" in r.text
    r = await c.get("/boot", params={"mac": MAC})
    assert r.status_code == 403 and "malformed" in r.text
    sec.install_finished(MAC, success=True)
    r = await c.get(chain)
    assert r.status_code == 403 and "revoked" in r.text
    assert sec.mab is not None
    await sec.mab.drain()
    assert sec.mab_table is not None and sec.mab_table.lookup(MAC) is None


async def test_wrong_password_empty_password_and_lockout(env: tuple[httpx.AsyncClient, SecurityService,
                                                                     FakeDirectory]) -> None:
    c, sec, d = env
    r = await c.get("/login/auth", params=QUERY, headers=basic("alice", ""))
    assert r.status_code == 403
    r = await c.get("/login/auth", params=QUERY, headers=basic("alice", "wrong"))
    assert r.status_code == 403
    r = await c.get("/login/auth", params=QUERY, headers=basic("alice", "wrong"))
    assert r.status_code == 403
    calls = len(d.calls)
    r = await c.get("/login/auth", params=QUERY, headers=basic("alice", PASSWORD))
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert len(d.calls) == calls  # a locked user never reaches the directory
    assert sec.counts["locked"] == 1 and sec.counts["invalid_credentials"] == 2


async def test_plain_http_bad_mac_and_open_redirect_refused(env: tuple[httpx.AsyncClient, SecurityService,
                                                                        FakeDirectory]) -> None:
    c, _, _ = env
    r = await c.get("http://boot.test:8050/login/auth", params=QUERY, headers=basic("alice", PASSWORD))
    assert r.status_code == 403 and "HTTPS" in r.text
    r = await c.get("/login/auth", params={**QUERY, "mac": "nope"}, headers=basic("alice", PASSWORD))
    assert r.status_code == 400
    for nxt in ("//evil.example/x", "https://evil.example/", "/boot?x=1", "/../x\n"):
        r = await c.get("/login/auth", params={**QUERY, "next": nxt}, headers=basic("alice", PASSWORD))
        assert r.status_code == 400, nxt
    r = await c.get("/login/auth", params=QUERY, headers={"Authorization": "Basic !!!"})
    assert r.status_code == 401


async def test_login_script_shape(env: tuple[httpx.AsyncClient, SecurityService, FakeDirectory]) -> None:
    c, _, _ = env
    r = await c.get("/login.ipxe")
    text = r.text
    assert text.startswith("#!ipxe\n") and "\nlogin || goto bg_cancel\n" in text
    fetch = re.search(r"^imgfetch --name bgnext (\S+) \|\| goto bg_fail$", text, re.M)
    assert fetch is not None
    assert fetch.group(1).startswith("https://${username:uristring}:${password:uristring}@boot.test:8051/login/auth?"
                                     "next=/boot&mac=${netX/mac}")
    # credentials are cleared on every path out of the fetch
    after = text[fetch.end():]
    assert after.count("clear password") == 3 and after.index("clear password") < after.index("imgexec bgnext")
    with pytest.raises(ValueError):
        login.login_script("https://h", "//evil/")


async def test_mab_authorize_route_vendor_formats(env: tuple[httpx.AsyncClient, SecurityService,
                                                              FakeDirectory]) -> None:
    c, sec, _ = env
    assert sec.mab_table is not None
    r = await c.get("/api/v1/mab/authorize", params={"mac": "52-54-00-AA-BB-CC"})
    assert r.status_code == 404
    sec.mab_table.grant(MAC, expires=10**10)
    for spelling in ("52-54-00-AA-BB-CC", "5254.00aa.bbcc", "525400AABBCC", MAC):
        r = await c.get("/api/v1/mab/authorize", params={"mac": spelling})
        assert r.status_code == 200 and r.json()["reply:Session-Timeout"] > 0, spelling
    r = await c.get("/api/v1/mab/authorize", params={"mac": "zz"})
    assert r.status_code == 400
    sec.mab_rest_secret = "radius-rest-pw"
    r = await c.get("/api/v1/mab/authorize", params={"mac": MAC})
    assert r.status_code == 401
    r = await c.get("/api/v1/mab/authorize", params={"mac": MAC}, headers=basic("freeradius", "radius-rest-pw"))
    assert r.status_code == 200
