"""Login at the iPXE prompt, boot-token checks, and the FreeRADIUS rlm_rest MAB route.

The flow (stock iPXE has ``login`` but no ``params``, so credentials travel as HTTP authentication):

1. The boot flow answers a machine that must log in with :func:`login_script` (or a chain to
   ``/login.ipxe``). That script runs iPXE's ``login`` and fetches
   ``https://${username:uristring}:${password:uristring}@host/login/auth?next=/boot&mac=...`` with
   ``imgfetch``, then clears ``username``/``password`` before running what it fetched.
2. ``/login/auth`` without credentials answers 401 with ``WWW-Authenticate: Basic``; iPXE repeats the
   request with an ``Authorization`` header over TLS. (The userinfo never appears in the request line, so
   access logs never hold it; this module never logs the header or the password.)
3. On success the answer is a script that sets ``bgt`` and chains ``<next>?<same query>&bgt=<token>``.
   Failure answers 403 (wrong credentials, not in group), 429 (locked) or 503 (directory down) so iPXE
   does not ask again by itself; the login script loops back to the prompt.

The boot flow's hooks (web/boot.py calls them): :func:`plain_http_refused` (HTTPS, or plain HTTP for the
clients [auth] http_script_clients names), :func:`deployment_needs_login` (policy), :func:`require_login`
(the login script, or the single-use login token checked for this machine, path and query),
:func:`technician_menu` / :func:`technician_token`, :func:`content_query` (the content token on kernel and
initrd URLs) and :func:`content_gate` (for /content). :func:`security_install` wires the service into the
app: metrics, MAB audit records, and install results (success revokes the machine's tokens and its MAB
exception).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..auth.service import SecurityService
from ..auth.tokens import BootToken, TokenError, normalize_mac
from ..config import Settings
from ..policy.deploy import Collection, Deployment, Profile
from ..scripts import echo_text, render_technician

__all__ = ["check_boot_token", "content_gate", "content_query", "deployment_needs_login", "login_script",
           "plain_http_refused", "query_hash", "require_login", "routes", "run_login_script", "security_install",
           "security_of", "security_start", "security_stop", "technician_menu", "technician_token"]

log = logging.getLogger("bootgate.web.login")

_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253})(:[0-9]{1,5})?$")
_NEXT_RE = re.compile(r"^/[A-Za-z0-9_-][A-Za-z0-9/_.-]{0,200}$")


class _Next:
    """A plain path on this server: never another host (//), never a parent (..)."""

    @staticmethod
    def match(path: str) -> bool:
        return bool(_NEXT_RE.match(path)) and "//" not in path and ".." not in path


_NEXT = _Next()
TOKEN_PARAM = "bgt"
DEFAULT_QUERY = ("mac=${netX/mac}&uuid=${uuid}&serial=${serial:uristring}&manufacturer=${manufacturer:uristring}"
                 "&product=${product:uristring}&buildarch=${buildarch}&platform=${platform}&ip=${netX/ip}")


def security_of(request: Request) -> SecurityService | None:
    sec = getattr(request.app.state, "security", None)
    return sec if isinstance(sec, SecurityService) else None


def _base(request: Request) -> str:
    scheme = "https" if request.url.scheme == "https" else "http"
    host = request.headers.get("host", "")
    if not _HOST.match(host):
        server = request.scope.get("server") or ("127.0.0.1", 443 if scheme == "https" else 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scheme}://{host}"


def query_hash(params: Mapping[str, str]) -> str:
    """Hash of the query (without the token) a token was issued for: later tampering shows."""
    items = sorted((k, v) for k, v in params.items() if k != TOKEN_PARAM)
    return hashlib.sha256(urlencode(items).encode()).hexdigest()[:32]


def login_script(base: str, next_path: str = "/boot", query: str = DEFAULT_QUERY, prompt: str = "") -> str:
    """The iPXE login script. `base` is https://host:port of this server, `query` raw iPXE query text
    (variables expanded by iPXE) that must carry mac=; it is sent to /login/auth and passed on to
    `next_path` with the token added."""
    if not _NEXT.match(next_path):
        raise ValueError(f"next path {next_path!r} is not a plain path on this server")
    scheme, _, hostport = base.partition("://")
    auth_url = (f"{scheme}://${{username:uristring}}:${{password:uristring}}@{hostport}/login/auth?"
                f"next={next_path}&{query}")
    echo = f"echo {echo_text(prompt)}\n" if prompt else ""
    return ("#!ipxe\n"
            ":bg_login\n"
            f"{echo}"
            "login || goto bg_cancel\n"
            f"imgfetch --name bgnext {auth_url} || goto bg_fail\n"
            "clear username\nclear password\n"
            "imgexec bgnext\n"
            "goto bg_cancel\n"
            ":bg_fail\n"
            "clear username\nclear password\n"
            "echo Login refused: wrong name or password, not allowed, or too many attempts.\n"
            "sleep 3\n"
            "goto bg_login\n"
            ":bg_cancel\n"
            "clear username\nclear password\n"
            "exit\n")


def _script(text: str, status: int = 200) -> Response:
    return PlainTextResponse(text, status_code=status, headers={"Cache-Control": "no-store"})


async def login_ipxe(request: Request) -> Response:
    next_path = request.query_params.get("next", "/boot")
    if not _NEXT.match(next_path):
        return PlainTextResponse("next must be a path on this server\n", status_code=400)
    return plain_http_refused(request, mac_later=True) or _script(login_script(_login_base(request), next_path))


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        raw = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = raw.partition(":")
    return (user, password) if sep else None


async def login_auth(request: Request) -> Response:
    sec = security_of(request)
    if sec is None:
        return PlainTextResponse("login is not configured on this server ([ldap] url)\n", status_code=404)
    if request.url.scheme != "https" and not sec.allow_http_login:
        return PlainTextResponse("login needs HTTPS\n", status_code=403)
    q = dict(request.query_params)
    next_path = q.pop("next", "/boot")
    if not _NEXT.match(next_path):
        return PlainTextResponse("next must be a path on this server\n", status_code=400)
    q.pop(TOKEN_PARAM, None)
    creds = _basic_credentials(request)
    if creds is None:
        return PlainTextResponse("login required\n", status_code=401,
                                 headers={"WWW-Authenticate": f'Basic realm="{sec.realm}", charset="UTF-8"',
                                          "Cache-Control": "no-store"})
    username, password = creds
    mac = q.get("mac", "")
    client = request.client.host if request.client else ""
    outcome = await sec.login(username, password, mac, client,
                              claims={"next": next_path, "qh": query_hash(q)})
    del password, creds
    await _audit(request, username[:128] or "-", "login", mac[:64], outcome.ok,
                 {"reason": outcome.reason, "client_ip": client, "next": next_path})
    if not outcome.ok:
        if outcome.reason == "bad_mac":
            return PlainTextResponse("mac is missing or not a MAC address\n", status_code=400)
        headers = {"Cache-Control": "no-store"}
        if outcome.reason == "locked":
            headers["Retry-After"] = str(int(outcome.retry_after) + 1)
            return PlainTextResponse("too many failed logins; try later\n", status_code=429, headers=headers)
        if outcome.reason in ("directory_unavailable", "directory_error", "no_directory"):
            return PlainTextResponse("the directory is not reachable; try later\n", status_code=503,
                                     headers=headers)
        return PlainTextResponse("login refused\n", status_code=403, headers=headers)
    q[TOKEN_PARAM] = outcome.token
    url = _base(request) + next_path + "?" + urlencode(q)
    return _script(f"#!ipxe\nset {TOKEN_PARAM} {outcome.token}\nchain {url}\n")


def check_boot_token(request: Request, *, bind_query: bool = True) -> BootToken | Response:
    """For the boot flow: the verified token of this request (``bgt=`` query parameter), or the error
    response to send. `bind_query`: the query (minus the token) must be the one the token was issued for."""
    sec = security_of(request)
    if sec is None:
        return PlainTextResponse("login is not configured on this server\n", status_code=503)
    token = request.query_params.get(TOKEN_PARAM, "")
    mac = request.query_params.get("mac", "")
    try:
        tok = sec.check_token(token, mac)
    except TokenError as e:
        return PlainTextResponse(f"boot token refused: {e.reason}\n", status_code=403)
    if bind_query and tok.claims.get("qh") != query_hash(dict(request.query_params)):
        return PlainTextResponse("boot token refused: parameters changed\n", status_code=403)
    return tok


async def mab_authorize(request: Request) -> Response:
    """FreeRADIUS rlm_rest `authorize`: 200 + reply attributes while the MAC has an exception, 404 otherwise
    (rlm_rest: notfound), 400 for a MAC that does not parse."""
    sec = security_of(request)
    table = sec.mab_table if sec is not None else None
    if sec is None or table is None:
        return JSONResponse({"error": "MAB exceptions are not configured ([mab] backend)"}, status_code=404)
    if sec.mab_rest_secret:
        creds = _basic_credentials(request)
        if creds is None or not hmac.compare_digest(creds[1].encode(), sec.mab_rest_secret.encode()):
            return JSONResponse({"error": "authentication required"}, status_code=401,
                                headers={"WWW-Authenticate": 'Basic realm="bootgate-mab"'})
    raw = request.query_params.get("mac", "")
    try:
        mac = normalize_mac(raw)
    except ValueError:
        return JSONResponse({"error": "mac is not a MAC address"}, status_code=400)
    left = table.lookup(mac)
    if left is None:
        return JSONResponse({"error": "no exception", "mac": mac}, status_code=404)
    return JSONResponse({"reply:Session-Timeout": max(1, int(left)),
                         "reply:Reply-Message": "bootgate imaging exception"})


def _tls_files(settings: Settings) -> list[Path]:
    """Certificates whose expiry is exported and warned about: the server's (ECDSA and its RSA fallback) and the CA."""
    fallback = settings.tls.cert.with_name("server-rsa.pem")
    return [settings.tls.cert, *([fallback] if fallback.is_file() else []), settings.tls.ca_cert]


async def mab_list(request: Request) -> Response:
    """MAB exceptions in place and the last NAC calls, newest first (read-only role)."""
    sec = security_of(request)
    if sec is None or sec.mab is None:
        return JSONResponse({"exceptions": [], "history": [], "configured": False})
    # every backend's exceptions with their per-backend state and last error (rlm_rest, SQL, NPS, ISE, ...)
    return JSONResponse(sec.mab.api_view())


async def mab_revoke(request: Request) -> Response:
    """Revoke a MAB exception and ask the switch to re-authenticate the port (operator role)."""
    sec = security_of(request)
    if sec is None or sec.mab is None:
        return JSONResponse({"error": "MAB exceptions are not configured"}, status_code=404)
    try:
        mac = normalize_mac(request.path_params["mac"])
    except ValueError:
        return JSONResponse({"error": "not a MAC address"}, status_code=400)
    ok = await sec.mab.revoke(mac, reauthenticate=True)
    return JSONResponse({"mac": mac, "ok": ok})


def routes() -> list[Route]:
    from .api import require  # noqa: PLC0415 - the foundation's bearer-token roles

    listed = require("read-only")(mab_list)
    listed.__doc__ = mab_list.__doc__
    revoke = require("operator")(mab_revoke)
    revoke.__doc__ = mab_revoke.__doc__
    return [
        Route("/login.ipxe", login_ipxe, methods=["GET"]),
        Route("/login/auth", login_auth, methods=["GET"]),
        Route("/api/v1/mab/authorize", mab_authorize, methods=["GET", "POST"]),
        Route("/api/v1/mab/exceptions", listed, methods=["GET"]),
        Route("/api/v1/mab/exceptions/{mac}", revoke, methods=["DELETE"]),
    ]


# -- composition (called from create_app's lifespan) ---------------------------------------------------------
def security_install(app: Any, settings: Settings) -> None:
    """Called by create_app: builds the SecurityService from settings.security onto app.state.security,
    registers its metrics (TLS expiry, logins, tokens, MAB calls) on the app's registry, sends MAB outcomes
    to the audit log, and listens for install results (success revokes the machine's tokens and its MAB
    exception)."""
    from ..auth.metrics import SecurityCollector  # noqa: PLC0415
    from ..auth.service import build_security  # noqa: PLC0415
    from ..auth.tlsmon import TlsExpiryCollector  # noqa: PLC0415
    from .hooks import hooks_of  # noqa: PLC0415

    if getattr(app.state, "security", None) is None:
        app.state.security = build_security(settings.security, settings.server.data_dir)
    sec = security_of_app(app)
    deps = getattr(getattr(app.state, "bootgate", None), "deps", None)
    registry = getattr(getattr(deps, "metrics", None), "registry", None)
    if registry is not None and not getattr(registry, "_bootgate_security", False):
        registry.register(TlsExpiryCollector(_tls_files(settings)))
        if sec is not None:
            registry.register(SecurityCollector(sec))
        registry._bootgate_security = True
    if sec is None or (sec.authenticator is None and sec.mab is None):
        return
    attach = getattr(sec.mab, "attach", None)  # MabManager: audit records and bootgate_mab_* metrics
    if attach is not None and deps is not None:
        attach(audit=deps.store.audit, registry=registry)

    async def on_event(kind: str, payload: dict[str, Any]) -> None:
        if kind == "install" and payload.get("result") == "success" and payload.get("mac"):
            sec.install_finished(str(payload["mac"]), True)

    hooks_of(app).plugins.append(("bootgate.security", on_event))


def security_start(app: Any, settings: Settings) -> None:
    """Called from the lifespan: warns about expiring certificates, starts the MAB expiry sweep."""
    from ..auth.tlsmon import warn_expiring  # noqa: PLC0415

    warn_expiring(_tls_files(settings))
    sec = security_of_app(app)
    if sec is not None and sec.mab is not None:
        app.state.security_tasks = [asyncio.get_running_loop().create_task(sec.mab.expiry_loop())]


async def security_stop(app: Any) -> None:
    for task in getattr(app.state, "security_tasks", []):
        task.cancel()
    sec = security_of_app(app)
    if sec is not None and sec.mab is not None:
        try:
            await asyncio.wait_for(sec.mab.drain(), 5)
        except TimeoutError:
            log.warning("mab: background NAC calls still running at shutdown")


def security_of_app(app: Any) -> SecurityService | None:
    sec = getattr(app.state, "security", None)
    return sec if isinstance(sec, SecurityService) else None


def _settings_of(request: Request) -> Any:
    return getattr(getattr(request.app.state, "bootgate", None), "settings", None)


def plain_http_refused(request: Request, mac: str = "", *, mac_later: bool = False) -> Response | None:
    """For the boot flow: None when this request may get a boot script, else the refusal to send.
    HTTPS always may; plain HTTP only for clients named in [auth] http_script_clients (IP, subnet, MAC,
    MAC prefix), or for everyone when the operator chose `[dhcp] script_scheme = "http"`.
    `mac_later`: the request has no MAC yet (the /boot.ipxe bootstrap; /boot checks it)."""
    if request.url.scheme == "https":
        return None
    settings = _settings_of(request)
    if settings is not None and settings.dhcp.script_scheme == "http":
        return None
    sec = security_of(request)
    client = request.client.host if request.client else ""
    if sec is not None and sec.http_script_allowed(client, mac, mac_later=mac_later):
        return None
    if sec is not None:
        sec.counts["http_script_refused"] = sec.counts.get("http_script_refused", 0) + 1
    log.warning("plain-HTTP script refused for %s (%s): not in [auth] http_script_clients", client, mac or "-")
    return PlainTextResponse("#!ipxe\necho bootgate: boot scripts need HTTPS for this client "
                             "([auth] http_script_clients); see docs/security.md\nexit 1\n", status_code=403,
                             headers={"Cache-Control": "no-store"})


# -- the boot flow's login hook (web/boot.py) -------------------------------------------------------------------
TECH_PARAM = "tech"
_NO_DIRECTORY = ("#!ipxe\necho bootgate: this needs a login, but no directory is configured ([ldap] url)\n"
                 "prompt --timeout 10000 Press a key to continue with the local disk ||\nexit\n")


def deployment_needs_login(d: Deployment, collections: Mapping[int, Collection]) -> bool:
    """Policy: the deployment or its collection requires a login at the iPXE prompt."""
    c = collections.get(d.collection_id)
    return d.require_login or (c is not None and c.require_login)


def _login_base(request: Request) -> str:
    """Where credentials go: this server over HTTPS, also when the script itself came over plain HTTP
    (then the host of the request with [http] https_port; an iPXE without HTTPS cannot log in)."""
    sec = security_of(request)
    if request.url.scheme == "https" or (sec is not None and sec.allow_http_login):
        return _base(request)
    settings = _settings_of(request)
    port = settings.http.https_port if settings is not None else 0
    host = _base(request).split("://", 1)[1]
    host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return f"https://{host}:{port}" if port else _base(request).replace("http://", "https://", 1)


def run_login_script(request: Request, boot_id: str, deployment_id: int, mac: str, name: str = "") -> str:
    """The /boot answer for a required deployment that needs a login: log in, then /boot/run."""
    return login_script(_login_base(request), "/boot/run",
                        urlencode({"boot": boot_id, "deployment": str(deployment_id), "mac": mac}),
                        prompt=f"bootgate: {name or 'this deployment'} needs a login")


async def _audit(request: Request, actor: str, action: str, target: str, allowed: bool,
                 detail: dict[str, Any]) -> None:
    store = getattr(getattr(getattr(request.app.state, "bootgate", None), "deps", None), "store", None)
    if store is None:
        return
    try:
        await store.audit(actor, action, target, allowed, detail)
    except Exception:  # noqa: BLE001 - an audit failure must not fail a boot
        log.exception("audit record %s for %s failed", action, target)


async def _token_refused(request: Request, mac: str, reason: str, what: str) -> Response:
    sec = security_of(request)
    if sec is not None:
        sec.counts[f"token_{reason}"] = sec.counts.get(f"token_{reason}", 0) + 1
    log.warning("%s token refused for %s: %s", what, mac, reason)
    await _audit(request, "bootgate", "token.refused", mac, False, {"reason": reason, "path": request.url.path,
                                                                    "client_ip": request.client.host
                                                                    if request.client else ""})
    return PlainTextResponse(f"#!ipxe\necho bootgate: boot token refused ({reason})\n"
                             "prompt --timeout 10000 Press a key to continue with the local disk ||\nexit\n",
                             status_code=403, headers={"Cache-Control": "no-store"})


async def require_login(request: Request, *, mac: str, next_path: str, query: Mapping[str, str],
                        prompt: str = "") -> BootToken | Response:
    """The login gate of a boot step: without ``bgt=`` the login script (which comes back to `next_path`
    with `query` and a token); with one, the verified token - single use, for this machine, issued for
    exactly this path and query - or the refusal to send."""
    sec = security_of(request)
    if sec is None or sec.authenticator is None:
        return _script(_NO_DIRECTORY)
    token = request.query_params.get(TOKEN_PARAM, "")
    if not token:
        return _script(login_script(_login_base(request), next_path, urlencode(dict(query)), prompt=prompt))
    try:
        tok = sec.signer.verify(token, mac=mac)
        if tok.claims.get("next") != next_path or tok.claims.get("qh") != query_hash(dict(request.query_params)):
            raise TokenError("parameters_changed")
        sec.signer.verify(token, mac=mac, once=True)  # only now: a tampered request must not use it up
    except TokenError as e:
        return await _token_refused(request, mac, e.reason, "login")
    return tok


async def technician_token(request: Request, boot_id: str, mac: str) -> BootToken | Response | None:
    """The technician token (``tech=``) of a /boot/run request: None without one; else the verified
    token (this machine, this boot) or the refusal."""
    token = request.query_params.get(TECH_PARAM, "")
    if not token:
        return None
    sec = security_of(request)
    try:
        if sec is None:
            raise TokenError("malformed")
        tok = sec.signer.verify(token, mac=mac, purpose="technician")
        if tok.claims.get("boot") != boot_id:
            raise TokenError("wrong_boot")
    except TokenError as e:
        return await _token_refused(request, mac, e.reason, "technician")
    return tok


async def technician_menu(request: Request, boot_id: str, mac: str) -> Response:
    """/boot/technician: always behind a login; then every enabled deployment, with a technician token."""
    gate = await require_login(request, mac=mac, next_path="/boot/technician", query={"boot": boot_id, "mac": mac},
                               prompt="bootgate: the technician menu needs a login")
    if isinstance(gate, Response):
        return gate
    sec = security_of(request)
    assert sec is not None
    store = request.app.state.bootgate.deps.store
    items = [(int(d["id"]), str(d["name"])) async for d in _pages(store.list_deployments) if d["enabled"]]
    tech = sec.signer.issue(mac, gate.user, purpose="technician", claims={"boot": boot_id})
    await _audit(request, gate.user, "technician.menu", mac, True, {"boot_id": boot_id})
    return _script(render_technician(boot_id, items, user=gate.user, server_base=_base(request),
                                     query=urlencode({"mac": mac, TECH_PARAM: tech})))


def profile_files(profile: Profile) -> list[str] | None:
    """The content files a profile loads; None for a template (its files are not known: its {{auth}} token
    opens any file) and [] for a chain."""
    if profile.kind == "template":
        return None
    return [profile.kernel, *profile.initrds] if profile.kind in ("kernel", "wimboot") else []


def content_query(request: Request, tok: BootToken | None, mac: str, boot_id: str, profile: Profile) -> str:
    """After a login: "mac=..&bgt=<content token>" for the profile's kernel/initrd URLs (the token opens
    exactly these files, for this machine, until it expires). "" without a login."""
    sec = security_of(request)
    if tok is None or sec is None:
        return ""
    t = sec.signer.issue(mac, tok.user, purpose="content", claims={"boot": boot_id, "paths": profile_files(profile)})
    return urlencode({"mac": mac, TOKEN_PARAM: t})


async def _pages(call: Any) -> Any:
    after = 0
    while True:
        rows = await call(limit=1000, after=after)
        for r in rows:
            yield r
        if len(rows) < 1000:
            return
        after = rows[-1]["id"]


_PROTECTED_TTL = 2.0


async def protected_paths(request: Request) -> frozenset[str]:
    """Content files only a boot token opens: those of enabled deployments that require a login (by
    themselves or by their collection), minus any that a deployment without login also uses."""
    cached = getattr(request.app.state, "login_protected", None)
    now = time.monotonic()
    if cached is not None and cached[0] > now:
        return frozenset(cached[1])
    store = request.app.state.bootgate.deps.store
    colls = {c["id"]: bool(c.get("require_login")) async for c in _pages(store.list_collections)}
    need: set[str] = set()
    free: set[str] = set()
    async for d in _pages(store.list_deployments):
        if not d["enabled"]:
            continue
        files = profile_files(Profile.from_json(d["profile"])) or []
        (need if d.get("require_login") or colls.get(d["collection_id"]) else free).update(files)
    out = frozenset(need - free)
    request.app.state.login_protected = (now + _PROTECTED_TTL, out)
    return out


async def content_gate(request: Request, rel: str) -> Response | None:
    """For /content: None when the file may be sent. A request with ``bgt=`` must carry a valid content
    token for this file and machine (``mac=``); without one, files of login-only deployments are refused."""
    token = request.query_params.get(TOKEN_PARAM, "")
    sec = security_of(request)
    if token:
        mac = request.query_params.get("mac", "")
        try:
            if sec is None:
                raise TokenError("malformed")
            tok = sec.signer.verify(token, mac=mac, purpose="content")
            paths = tok.claims.get("paths", ())
            if paths is not None and rel not in paths:
                raise TokenError("wrong_file")
        except TokenError as e:
            return await _token_refused(request, mac, e.reason, "content")
        return None
    if rel in await protected_paths(request):
        if sec is not None:
            sec.counts["content_token_missing"] = sec.counts.get("content_token_missing", 0) + 1
        return PlainTextResponse("this file needs a boot token (log in at the iPXE prompt)\n", status_code=401,
                                 headers={"Cache-Control": "no-store"})
    return None
