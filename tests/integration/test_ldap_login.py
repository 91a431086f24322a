"""The iPXE login route end to end against a real slapd (StartTLS): 401 challenge, directory check, token."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from bootgate.auth.ldap import LdapAuthenticator, LdapSettings
from bootgate.auth.ratelimit import LimitSettings, LoginLimiter
from bootgate.auth.service import SecurityService
from bootgate.auth.tokens import TokenSigner
from bootgate.web import login
from tests.integration import slapd_lab as lab
from tests.integration.slapd_lab import slapd  # noqa: F401 - the fixture

pytestmark = pytest.mark.skipif(not lab.AVAILABLE, reason=lab.SKIP_REASON)
MAC = "52:54:00:01:02:03"


def app_for(s: lab.Slapd, tmp: Path, url: str | None = None) -> tuple[Starlette, SecurityService]:
    ldap = LdapAuthenticator(LdapSettings(
        url=url or s.ldap_url, start_tls=True, ca_cert=str(s.ca_pem), base_dn=f"ou=people,{lab.BASE}",
        user_filter="(uid={username})", group_base_dn=f"ou=groups,{lab.BASE}", required_groups=(lab.TECHS,),
        timeout=2.0))
    sec = SecurityService(authenticator=ldap, signer=TokenSigner.from_data_dir(tmp),
                          limiter=LoginLimiter(LimitSettings(max_failures=3)))
    app = Starlette(routes=login.routes())
    app.state.security = sec
    return app, sec


def auth(user: str, pw: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}


async def get(app: Starlette, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://127.0.0.1:8051") as c:
        return await c.get("/login/auth", params={"next": "/boot", "mac": MAC}, headers=headers or {})


async def test_login_flow_against_slapd(slapd: lab.Slapd, tmp_path: Path) -> None:
    app, sec = app_for(slapd, tmp_path)
    assert (await get(app)).status_code == 401
    r = await get(app, auth("bob", lab.PASSWORDS["bob"]))  # nested member of techs
    assert r.status_code == 200 and "chain https://127.0.0.1:8051/boot?" in r.text
    token = r.text.splitlines()[1].split()[-1]
    assert sec.check_token(token, MAC).user == "bob"
    assert (await get(app, auth("carol", lab.PASSWORDS["carol"]))).status_code == 403  # outside the group
    assert (await get(app, auth("mallory", "x"))).status_code == 403  # unknown user
    assert (await get(app, auth("alice", ""))).status_code == 403  # empty password


async def test_lockout_per_user_and_directory_down(slapd: lab.Slapd, tmp_path: Path) -> None:
    app, sec = app_for(slapd, tmp_path)
    for _ in range(3):
        assert (await get(app, auth("alice", "wrong"))).status_code == 403
    assert (await get(app, auth("alice", lab.PASSWORDS["alice"]))).status_code == 429
    down, _ = app_for(slapd, tmp_path, url=f"ldap://127.0.0.1:{lab.free_port()}")
    assert (await get(down, auth("bob", lab.PASSWORDS["bob"]))).status_code == 503
