"""Login at the iPXE prompt wired into the boot flow, through the real app, against a private slapd (and,
for the MAB part, a private FreeRADIUS 3.2 with rlm_rest + a second one playing the switch).

Every refusal here is a real one: wrong password, unknown user, outside the group, directory down, switch
down, expired token, another machine's token, a replayed token, tampered parameters, plain HTTP."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from starlette.applications import Starlette

from bootgate.auth.service import SecurityService
from bootgate.events import EventRecorder
from bootgate.metrics import Metrics
from bootgate.store import Store
from bootgate.web import Deps, create_app
from bootgate.web.hooks import hooks_of
from tests.conftest import ADMIN_TOKEN, free_port, settings_for
from tests.integration import freeradius_lab as fr
from tests.integration import slapd_lab as lab
from tests.integration.slapd_lab import slapd  # noqa: F401 - the fixture

pytestmark = pytest.mark.skipif(not lab.AVAILABLE, reason=lab.SKIP_REASON)

MAC = "52:54:00:0a:0b:0c"
OTHER_MAC = "52:54:00:0d:0e:0f"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BASE = "https://boot.example:8051"
KERNEL = b"KERNEL" * 1000
INITRD = b"INITRD" * 2000


def ident(mac: str, serial: str) -> dict[str, str]:
    return {"mac": mac, "uuid": "4c4c4544-0000-1000-8000-00000000000" + serial[-1], "serial": serial,
            "manufacturer": "QEMU", "product": "Standard PC", "buildarch": "x86_64", "platform": "pcbios"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@dataclass
class Env:
    app: Starlette
    client: httpx.AsyncClient
    store: Store
    sec: SecurityService
    metrics: Metrics

    async def settle(self) -> None:
        """Background work done: hook deliveries (install results), NAC calls."""
        await hooks_of(self.app).drain()
        if self.sec.mab is not None:
            await self.sec.mab.drain()


def ldap_section(slapd: lab.Slapd, url: str | None = None) -> str:
    return f"""
        [ldap]
        url = "{url or slapd.ldaps_url}"
        ca_cert = "{slapd.ca_pem}"
        base_dn = "ou=people,{lab.BASE}"
        user_filter = "(uid={{username}})"
        group_base_dn = "ou=groups,{lab.BASE}"
        required_groups = "{lab.TECHS}"
        timeout = 2
        """


@contextlib.asynccontextmanager
async def make_env(tmp_path: Path, body: str, client: str = "198.18.0.10",
                   base_url: str = BASE) -> AsyncIterator[Env]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    settings = settings_for(tmp_path, "[tftp]\nenabled = false\n" + body)
    settings.content.root.mkdir(parents=True)
    (settings.content.root / "vmlinuz").write_bytes(KERNEL)
    (settings.content.root / "initrd.img").write_bytes(INITRD)
    (settings.content.root / "tools").mkdir()
    (settings.content.root / "tools" / "memtest").write_bytes(b"MEMTEST")
    store = await Store.open(settings.store.url)
    recorder = EventRecorder(store)
    metrics = Metrics()
    app = create_app(settings, Deps(store=store, recorder=recorder, metrics=metrics, admin_token=ADMIN_TOKEN))
    transport = httpx.ASGITransport(app=app, client=(client, 40000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as c:
            sec = app.state.security
            assert isinstance(sec, SecurityService)
            yield Env(app, c, store, sec, metrics)
            await Env(app, c, store, sec, metrics).settle()
    finally:
        await recorder.flush()
        await store.close()


async def deploy(env: Env, name: str, *, login: bool, intent: str = "required", countdown: int = 0,
                 collection: str = "unknown", kernel: str = "vmlinuz") -> int:
    r = await env.client.post("/api/v1/deployments", headers=AUTH, json={
        "name": name, "collection": collection, "intent": intent, "countdown": countdown,
        "require_login": login,
        "profile": {"kind": "kernel", "kernel": kernel, "initrds": ["initrd.img"], "args": "console=ttyS0"}})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def login_url(script: str) -> str:
    """The URL the login script fetches, without iPXE's ${username}/${password} userinfo."""
    m = re.search(r"^imgfetch --name bgnext (\S+) \|\| goto bg_fail$", script, re.M)
    assert m, script
    url = m.group(1)
    assert url.startswith("https://${username:uristring}:${password:uristring}@"), url
    return "https://" + url.split("@", 1)[1]


async def login(env: Env, script: str, user: str = "bob", password: str | None = None) -> httpx.Response:
    url = login_url(script)
    r = await env.client.get(url)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic ")
    return await env.client.get(url, headers=basic(user, lab.PASSWORDS[user] if password is None else password))


def chained(script: str) -> str:
    m = re.search(r"^chain (\S+)$", script, re.M)
    assert m, script
    return m.group(1)


def script_urls(script: str, verb: str) -> list[str]:
    return [line.split()[1 if verb == "kernel" else -1] for line in script.splitlines()
            if line.startswith(verb + " ")]


async def boot_to_login(env: Env, mac: str = MAC, serial: str = "SN1") -> str:
    r = await env.client.get("/boot", params=ident(mac, serial))
    assert r.status_code == 200, r.text
    assert "login || goto bg_cancel" in r.text, r.text
    return r.text


async def test_required_deployment_logs_in_then_boots_with_tokens(slapd: lab.Slapd, tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with make_env(tmp_path, ldap_section(slapd) + '\n[mab]\nbackend = "freeradius"\n') as env:
        did = await deploy(env, "install", login=True)
        script = await boot_to_login(env)
        boots = (await env.client.get("/api/v1/boots", headers=AUTH, params={"mac": MAC})).json()
        assert boots[0]["action"] == "login"
        assert (await env.client.get(f"/api/v1/deployments/{did}/runs", headers=AUTH)).json()["items"] == []
        url = login_url(script)
        q = parse_qs(urlsplit(url).query)
        assert q["next"] == ["/boot/run"] and q["mac"] == [MAC] and q["deployment"] == [str(did)]

        r = await login(env, script)
        assert r.status_code == 200, r.text
        run_url = chained(r.text)
        assert run_url.startswith(BASE + "/boot/run?") and "bgt=" in run_url and "@" not in run_url
        r = await env.client.get(run_url)
        assert r.status_code == 200, r.text
        kernel_url, = script_urls(r.text, "kernel")
        initrd_url, = script_urls(r.text, "initrd")
        assert f"bootgate.deployment={did}" in r.text
        for u in (kernel_url, initrd_url):
            assert u.startswith(BASE + "/content/") and "bgt=" in u and "mac=52%3A54%3A00%3A0a%3A0b%3A0c" in u
        assert (await env.client.get(kernel_url)).content == KERNEL
        r = await env.client.get(initrd_url, headers={"Range": "bytes=0-5"})
        assert r.status_code == 206 and r.content == INITRD[:6]
        runs = (await env.client.get(f"/api/v1/deployments/{did}/runs", headers=AUTH)).json()["items"]
        assert len(runs) == 1

        # the files of a login-only deployment need the token; the token opens only its own files
        assert (await env.client.get("/content/vmlinuz")).status_code == 401
        assert (await env.client.get("/content/tools/memtest")).status_code == 200
        token_q = urlsplit(kernel_url).query
        assert (await env.client.get("/content/tools/memtest?" + token_q)).status_code == 403
        # replayed: the login token was for one /boot/run
        r = await env.client.get(run_url)
        assert r.status_code == 403 and "replayed" in r.text

        # the MAB exception was granted in the background
        await env.settle()
        r = await env.client.get("/api/v1/mab/authorize", params={"mac": "52-54-00-0A-0B-0C"})
        assert r.status_code == 200 and r.json()["reply:Session-Timeout"] > 0
        audit = (await env.client.get("/api/v1/audit", headers=AUTH, params={"action": "login"})).json()
        assert audit[0]["actor"] == "bob" and audit[0]["allowed"] is True and audit[0]["target"] == MAC

        # install success: the machine's tokens die and its exception is revoked
        boot_id = parse_qs(urlsplit(run_url).query)["boot"][0]
        r = await env.client.post(f"/api/v1/boots/{boot_id}/status", json={"state": "success"})
        assert r.status_code == 200
        await env.settle()
        r = await env.client.get(kernel_url)
        assert r.status_code == 403 and "revoked" in r.text
        assert (await env.client.get("/api/v1/mab/authorize", params={"mac": MAC})).status_code == 404
        metrics = (await env.client.get("/metrics")).text
        assert 'bootgate_logins_total{result="ok"} 1.0' in metrics
        assert 'bootgate_boot_tokens_refused_total{reason="replayed"} 1.0' in metrics
    text = caplog.text + str(audit)
    assert lab.PASSWORDS["bob"] not in text and "Basic " not in text


async def test_wrong_credentials_outside_group_empty_and_lockout(slapd: lab.Slapd, tmp_path: Path) -> None:
    async with make_env(tmp_path, ldap_section(slapd) + "\n[auth]\nmax_failures = 3\n") as env:
        await deploy(env, "install", login=True)
        script = await boot_to_login(env)
        assert (await login(env, script, "bob", "not-bobs-password")).status_code == 403
        assert (await login(env, script, "alice", "")).status_code == 403  # empty: refused before the directory
        r = await login(env, script, "carol")  # right password, outside the group
        assert r.status_code == 403
        # this machine has 3 failures: locked, even for a right password
        r = await login(env, script, "alice")
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        async with make_env(tmp_path / "b", ldap_section(slapd)) as env2:
            await deploy(env2, "install", login=True)
            s2 = await boot_to_login(env2, OTHER_MAC, "SN2")
            url = login_url(s2)
            r = await env2.client.get(url, headers=basic("nobody", "whatever"))  # unknown user
            assert r.status_code == 403
            assert (await login(env2, s2, "alice")).status_code == 200  # nested group: alice direct, bob nested
        audit = (await env.client.get("/api/v1/audit", headers=AUTH, params={"action": "login"})).json()
        assert [a["allowed"] for a in audit] == [False] * 4
        assert {a["detail"]["reason"] for a in audit} == {"invalid_credentials", "empty_password", "not_in_group",
                                                          "locked"}
        metrics = (await env.client.get("/metrics")).text
        assert 'bootgate_logins_total{result="not_in_group"} 1.0' in metrics


async def test_directory_down_is_503_and_not_a_failure(slapd: lab.Slapd, tmp_path: Path) -> None:
    dead = f"ldaps://127.0.0.1:{free_port()}"
    async with make_env(tmp_path, ldap_section(slapd, dead) + "\n[auth]\nmax_failures = 1\n") as env:
        await deploy(env, "install", login=True)
        script = await boot_to_login(env)
        for _ in range(2):  # outages do not count towards the lockout
            r = await login(env, script)
            assert r.status_code == 503
        metrics = (await env.client.get("/metrics")).text
        assert 'bootgate_logins_total{result="directory_unavailable"} 2.0' in metrics


async def test_expired_token(slapd: lab.Slapd, tmp_path: Path) -> None:
    async with make_env(tmp_path, ldap_section(slapd) + "\n[auth]\ntoken_ttl = 1\n") as env:
        await deploy(env, "install", login=True)
        r = await login(env, await boot_to_login(env))
        assert r.status_code == 200
        await asyncio.sleep(1.2)
        r = await env.client.get(chained(r.text))
        assert r.status_code == 403 and "expired" in r.text


async def test_other_machine_and_tampered_parameters(slapd: lab.Slapd, tmp_path: Path) -> None:
    async with make_env(tmp_path, ldap_section(slapd)) as env:
        did = await deploy(env, "install", login=True)
        other = await deploy(env, "other", login=True, intent="available", countdown=5)
        r = await login(env, await boot_to_login(env, MAC, "SN1"))
        run_a = chained(r.text)
        script_b = await boot_to_login(env, OTHER_MAC, "SN2")
        boot_b = parse_qs(urlsplit(login_url(script_b)).query)["boot"][0]
        qa = {k: v[0] for k, v in parse_qs(urlsplit(run_a).query).items()}
        assert qa["deployment"] == str(did)
        # A's token on B's boot: another machine
        r = await env.client.get("/boot/run?" + urlencode({**qa, "boot": boot_b, "mac": OTHER_MAC}))
        assert r.status_code == 403 and "wrong_machine" in r.text
        # A's token, another deployment: the parameters it was issued for changed
        r = await env.client.get("/boot/run?" + urlencode({**qa, "deployment": str(other)}))
        assert r.status_code == 403 and "parameters_changed" in r.text
        # a forged token
        r = await env.client.get("/boot/run?" + urlencode({**qa, "bgt": qa["bgt"][:-4] + "AAAA"}))
        assert r.status_code == 403 and "bad_signature" in r.text
        # the untouched request still works once (the refusals above did not use it up)
        assert (await env.client.get(run_a)).status_code == 200
        refused = (await env.client.get("/api/v1/audit", headers=AUTH, params={"action": "token.refused"})).json()
        assert {a["detail"]["reason"] for a in refused} == {"wrong_machine", "parameters_changed", "bad_signature"}


async def test_menu_item_of_a_login_collection_and_the_technician_menu(slapd: lab.Slapd, tmp_path: Path) -> None:
    async with make_env(tmp_path, ldap_section(slapd)) as env:
        r = await env.client.post("/api/v1/collections", headers=AUTH,
                                  json={"name": "desks", "rules": [{"mac_prefix": "52:54:00"}], "require_login": True})
        await deploy(env, "desk-image", login=False, intent="available", countdown=5, collection="desks")
        elsewhere = await env.client.post("/api/v1/collections", headers=AUTH,
                                          json={"name": "lab", "rules": [{"mac_prefix": "aa:bb:cc"}]})
        hidden = await deploy(env, "lab-image", login=False, intent="available", collection="lab",
                              kernel="tools/memtest")
        menu = (await env.client.get("/boot", params=ident(MAC, "SN1"))).text
        assert "item technician" in menu and "lab-image" not in menu
        assert re.search(r"^item d\d+ desk-image \(login\)$", menu, re.M), menu
        item = re.search(r"^chain (\S+/boot/run\?\S+) \|\| goto failed$", menu, re.M)
        assert item
        r = await env.client.get(item.group(1))  # the collection requires a login
        assert r.status_code == 200 and "login || goto bg_cancel" in r.text
        assert "echo bootgate: desk-image needs a login\n" in r.text
        tech = re.search(r"^chain (\S+/boot/technician\?\S+) \|\| goto local$", menu, re.M)
        assert tech
        r = await env.client.get(tech.group(1))
        assert "login || goto bg_cancel" in r.text and "next=/boot/technician" in r.text
        r = await login(env, r.text, "alice")
        r = await env.client.get(chained(r.text))
        assert r.status_code == 200 and "menu bootgate: technician menu (alice)" in r.text
        assert f"item d{hidden} lab-image" in r.text  # a technician may run any enabled deployment
        pick = re.search(rf"^chain (\S+deployment={hidden}&\S+) \|\| goto failed$", r.text, re.M)
        assert pick
        r = await env.client.get(pick.group(1))
        assert r.status_code == 200 and "/content/tools/memtest?" in r.text
        # the technician token belongs to that boot
        other_boot = re.search(r"boot=([0-9a-f]{32})", (await env.client.get("/boot", params=ident(MAC, "SN1"))).text)
        assert other_boot
        r = await env.client.get(re.sub(r"boot=[0-9a-f]{32}", f"boot={other_boot.group(1)}", pick.group(1)))
        assert r.status_code == 403 and "wrong_boot" in r.text
        assert elsewhere.status_code == 201


async def test_plain_http_scripts_only_for_named_clients(slapd: lab.Slapd, tmp_path: Path) -> None:
    http = "http://boot.example:8050"
    async with make_env(tmp_path, "", base_url=http) as env:
        await env.client.put(f"/api/v1/machines/{MAC}/action", headers=AUTH, json={"kernel": "vmlinuz"})
        for path, params in (("/boot.ipxe", {}), ("/boot", ident(MAC, "SN1"))):
            r = await env.client.get(path, params=params)
            assert r.status_code == 403 and "need HTTPS" in r.text, path
        r = await env.client.get(BASE + "/boot", params=ident(MAC, "SN1"))
        assert r.status_code == 200 and "kernel https://boot.example:8051/content/vmlinuz" in r.text
        assert 'bootgate_http_scripts_refused_total 2.0' in (await env.client.get("/metrics")).text
    async with make_env(tmp_path / "mac", '[auth]\nhttp_script_clients = "52:54:00"\n', base_url=http) as env:
        await env.client.put(f"/api/v1/machines/{MAC}/action", headers=AUTH, json={"kernel": "vmlinuz"})
        assert (await env.client.get("/boot.ipxe")).status_code == 200  # the MAC is checked on /boot
        assert (await env.client.get("/boot", params=ident(MAC, "SN1"))).status_code == 200
        assert (await env.client.get("/boot", params=ident("aa:bb:cc:00:00:01", "SN3"))).status_code == 403
    async with make_env(tmp_path / "net", '[auth]\nhttp_script_clients = "198.18.4.0/24"\n', base_url=http,
                        client="198.18.4.9") as env:
        assert (await env.client.get("/boot", params=ident(MAC, "SN1"))).status_code == 200
    async with make_env(tmp_path / "login", ldap_section(slapd) + '[auth]\nhttp_script_clients = "*"\n',
                        base_url=http) as env:
        await deploy(env, "install", login=True)
        script = await boot_to_login(env)  # the script may come over HTTP, the credentials never do
        assert login_url(script).startswith("https://boot.example:8051/login/auth?")
        r = await env.client.get(login_url(script).replace("https://boot.example:8051", http, 1),
                                 headers=basic("bob", "bob-pw"))
        assert r.status_code == 403 and "HTTPS" in r.text


async def test_template_profile_gets_the_token_as_auth(slapd: lab.Slapd, tmp_path: Path) -> None:
    async with make_env(tmp_path, ldap_section(slapd)) as env:
        r = await env.client.post("/api/v1/deployments", headers=AUTH, json={
            "name": "tpl", "collection": "unknown", "intent": "required", "countdown": 0, "require_login": True,
            "profile": {"kind": "template", "template": "#!ipxe\nkernel {{content}}/tools/memtest?{{auth}}\nboot\n"}})
        assert r.status_code == 201, r.text
        r = await login(env, await boot_to_login(env))
        script = (await env.client.get(chained(r.text))).text
        url, = script_urls(script, "kernel")
        assert "bgt=" in url and (await env.client.get(url)).content == b"MEMTEST"
    async with make_env(tmp_path / "http", "", base_url="http://boot.example:8050") as env:
        assert (await env.client.get("/login.ipxe")).status_code == 403


@pytest.mark.skipif(not fr.AVAILABLE, reason=fr.SKIP_REASON)
async def test_switch_down_boot_proceeds_failure_visible(slapd: lab.Slapd, tmp_path: Path) -> None:
    switch = fr.start_switch(tmp_path / "switch")  # a real FreeRADIUS "switch", stopped: RADIUS down
    switch.stop()
    dead = switch.port
    body = ldap_section(slapd) + f"""
        [mab]
        backend = "freeradius"
        coa_targets = "127.0.0.1:{dead}"
        coa_secret = "switch-secret"
        attempts = 2
        timeout = 1
        """
    async with make_env(tmp_path, body) as env:
        await deploy(env, "install", login=True)
        r = await login(env, await boot_to_login(env))
        assert r.status_code == 200
        assert env.sec.mab is not None and env.sec.mab._tasks  # the NAC calls run after the answer
        r = await env.client.get(chained(r.text))
        assert r.status_code == 200 and "kernel https://" in r.text  # the boot goes on
        await env.settle()
        listed = (await env.client.get("/api/v1/mab/exceptions", headers=AUTH)).json()
        ops = {(h["operation"], h["ok"]) for h in listed["history"]}
        assert ("grant", True) in ops and ("reauthenticate", False) in ops
        audit = (await env.client.get("/api/v1/audit", headers=AUTH, params={"action": "mab.reauthenticate"})).json()
        assert audit and audit[0]["allowed"] is False and audit[0]["target"] == MAC
        metrics = (await env.client.get("/metrics")).text
        assert re.search(r'bootgate_mab_calls_total\{backend="freeradius",operation="reauthenticate",'
                         r'result="error"\} 1\.0', metrics), metrics
