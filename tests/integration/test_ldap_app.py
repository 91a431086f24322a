"""The security features through the real app (create_app + config file): [ldap]/[auth]/[mab] sections,
login routes against a private slapd, MAB route, TLS expiry metric."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest

from bootgate.config import ConfigError
from bootgate.events import EventRecorder
from bootgate.metrics import Metrics
from bootgate.store import Store
from bootgate.tls import ensure_tls
from bootgate.web import Deps, create_app
from tests.conftest import ADMIN_TOKEN, settings_for
from tests.integration import slapd_lab as lab
from tests.integration.slapd_lab import slapd  # noqa: F401 - the fixture

pytestmark = pytest.mark.skipif(not lab.AVAILABLE, reason=lab.SKIP_REASON)
MAC = "52:54:00:0a:0b:0c"


async def test_login_and_mab_through_the_app(slapd: lab.Slapd, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, f"""
        [tftp]
        enabled = false
        [ldap]
        url = "{slapd.ldaps_url}"
        ca_cert = "{slapd.ca_pem}"
        base_dn = "ou=people,{lab.BASE}"
        user_filter = "(uid={{username}})"
        group_base_dn = "ou=groups,{lab.BASE}"
        required_groups = "{lab.TECHS}"
        [auth]
        max_failures = 2
        [mab]
        backend = "freeradius"
        exception_ttl = 600
        """)
    assert settings.security.ldap is not None and settings.security.mab.backend == "freeradius"
    ensure_tls(settings)
    store = await Store.open(settings.store.url)
    try:
        metrics = Metrics()
        app = create_app(settings, Deps(store=store, recorder=EventRecorder(store), metrics=metrics,
                                        admin_token=ADMIN_TOKEN))
        transport = httpx.ASGITransport(app=app, client=("198.18.0.10", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="https://boot.example:8051") as c:
            q = {"next": "/boot", "mac": MAC}
            assert (await c.get("/login/auth", params=q)).status_code == 401
            cred = base64.b64encode(f"bob:{lab.PASSWORDS['bob']}".encode()).decode()
            r = await c.get("/login/auth", params=q, headers={"Authorization": "Basic " + cred})
            assert r.status_code == 200 and "chain https://boot.example:8051/boot?" in r.text
            sec = app.state.security
            await sec.mab.drain()
            r = await c.get("/api/v1/mab/authorize", params={"mac": "52-54-00-0A-0B-0C"})
            assert r.status_code == 200 and 0 < r.json()["reply:Session-Timeout"] <= 600
            r = await c.get("/api/v1/mab/exceptions", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            body = r.json()
            assert [e["mac"] for e in body["exceptions"]] == [MAC] and body["history"][0]["operation"] == "reauthenticate"
            assert (await c.get("/api/v1/mab/exceptions")).status_code == 401
            r = await c.delete(f"/api/v1/mab/exceptions/{MAC}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            assert r.status_code == 200
            assert (await c.get("/api/v1/mab/authorize", params={"mac": MAC})).status_code == 404
            text = (await c.get("/metrics")).text
            assert "bootgate_tls_cert_expiry_seconds{" in text
    finally:
        await store.close()


def test_config_errors_name_the_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[ldap\] url .*start_tls"):
        settings_for(tmp_path, '[ldap]\nurl = "ldap://dc.example"\nstart_tls = false\nbase_dn = "dc=x"\n')
    with pytest.raises(ConfigError, match=r"bootgate.toml:\d+: \[mab\] backend"):
        settings_for(tmp_path, '[mab]\nbackend = "radiator"\n')
    with pytest.raises(ConfigError, match="unknown key"):
        settings_for(tmp_path, '[auth]\ntoken_tll = 5\n')
    s = settings_for(tmp_path, "", env={"BOOTGATE_MAB_BACKEND": "freeradius", "BOOTGATE_AUTH_TOKEN_TTL": "900"})
    assert s.security.mab.backend == "freeradius" and s.security.auth.token_ttl == 900
