"""/boot.ipxe and /boot: the iPXE face of the server."""

from __future__ import annotations

import functools
import logging
import os
import time
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response

from ..policy import BootKernel, Exit, normalize_mac
from ..policy.deploy import Menu, RunProfile, applicable, decide_boot
from ..policy.identity import Identity
from ..branchcache import ipxe_script_lines
from ..scripts import base_url, is_valid_host, render_action, render_bootstrap, render_menu, render_profile
from ..store import BootRecord, EventRecord
from .deps import AppState
from . import login
from .hooks import hooks_of
from .responses import ipxe_script

log = logging.getLogger("bootgate.web.boot")

# the client's fields are cut to: uuid, buildarch, platform, ip 64 characters; serial, manufacturer, product 256
# optional capabilities a bootstrap script may add (iPXE settings): version, NIC chip, feature list, asset tag
_CAPS = {"version": 64, "nic": 64, "features": 256, "asset": 128}


def state_of(request: Request) -> AppState:
    st = request.scope["app"].state.bootgate
    assert isinstance(st, AppState)
    return st


def client_ip(request: Request) -> str:
    client = request.scope.get("client")
    return client[0] if client else ""


def _split_host_header(value: str) -> tuple[str, int | None]:
    """('host', port) from a Host header; host '' when it does not parse."""
    value = value.strip()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return "", None
        host, rest = value[1:end], value[end + 1:]
        if rest and not rest.startswith(":"):
            return "", None
        port_s = rest[1:]
    elif value.count(":") == 1:
        host, port_s = value.split(":")
    elif ":" in value:
        return "", None
    else:
        host, port_s = value, ""
    if port_s:
        if not port_s.isdigit() or len(port_s) > 5:
            return "", None
        return host, int(port_s)
    return host, None


def request_host_port(request: Request) -> tuple[str, str, int]:
    """(scheme, host, port) the request came in on; an invalid Host header falls back to public_host."""
    st = state_of(request)
    scheme = "https" if request.scope.get("scheme") == "https" else "http"
    host, port = _split_host_header(request.headers.get("host", ""))
    if not host or not is_valid_host(host):
        host, port = st.settings.public_host, None
    if port is None or not 0 < port < 65536:
        server = request.scope.get("server")
        if server and isinstance(server[1], int) and server[1] > 0:
            port = server[1]
        else:
            port = 443 if scheme == "https" else 80
    return scheme, host, port


def request_base(request: Request) -> str:
    scheme, host, port = request_host_port(request)
    return base_url(scheme, host, port)


def callback_base(request: Request) -> str:
    """Base URL handed to the booted system for status callbacks: plain HTTP when enabled."""
    st = state_of(request)
    scheme, host, port = request_host_port(request)
    if st.settings.http.port:
        return base_url("http", host, st.settings.http.port)
    return base_url(scheme, host, port)


async def boot_ipxe(request: Request) -> Response:
    refused = login.plain_http_refused(request, mac_later=True)
    return refused or ipxe_script(render_bootstrap(request_base(request)))


def query_values(raw: bytes) -> dict[str, str]:
    """The query string as a dict, the last value of a repeated key winning: what Starlette's
    `request.query_params` gives (parse_qsl with blank values kept, on the latin-1 text, %XX as UTF-8
    with errors replaced), without its multi-dict. Values with neither '%' nor '+' (most of iPXE's) are
    taken as they are."""
    out: dict[str, str] = {}
    for part in raw.decode("latin-1").split("&"):
        if not part:
            continue
        k, _, v = part.partition("=")
        if "%" in k or "+" in k:
            k = _unquote_plus(k) if len(k) <= 64 else unquote(k.replace("+", " "))
        if "%" in v or "+" in v:
            v = _unquote_plus(v) if len(v) <= 64 else unquote(v.replace("+", " "))
        out[k] = v
    return out


@functools.lru_cache(maxsize=16384)
def _unquote_plus(value: str) -> str:
    """A short encoded query value decoded, remembered (a fleet sends the same MACs, products, serials
    boot after boot; at most 16 384 values of at most 64 characters are kept)."""
    return unquote(value.replace("+", " "))


def _clean(value: str, limit: int) -> str:
    if value.isprintable():  # the usual case: nothing to drop
        return value[:limit]
    return "".join(c for c in value if c.isprintable())[:limit]


class _BootIds:
    """Boot ids: 128 random bits each (they are capabilities: /boot/run and the status callbacks take
    them), drawn from os.urandom 256 at a time instead of one system call per boot."""

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0

    def next(self) -> str:
        if self._pos >= len(self._buf):
            self._buf, self._pos = os.urandom(16 * 256), 0
        self._pos += 16
        return self._buf[self._pos - 16:self._pos].hex()


_boot_ids = _BootIds()


def _urls(request: Request, st: AppState, ip: str) -> tuple[str, str, list[str]]:
    """(content base URL, callback base URL, branch-cache preamble) of a request: the same for every
    request with the same scheme, Host header and client address, so remembered per app (bounded)."""
    key = (request.scope.get("scheme"), request.headers.get("host", ""), request.scope.get("server"), ip)
    cache: dict[Any, tuple[str, str, list[str]]] = st.__dict__.setdefault("_boot_urls", {})
    hit = cache.get(key)
    if hit is None:
        if len(cache) >= 4096:
            cache.clear()
        hit = cache[key] = (request_base(request), callback_base(request),
                            ipxe_script_lines(st.settings.branchcache, ip))
    return hit


async def boot(request: Request) -> Response:
    st = state_of(request)
    store = st.deps.store
    q = query_values(request.scope.get("query_string", b""))
    try:
        mac = normalize_mac(q.get("mac", ""))
    except ValueError as e:
        msg = f"bad mac parameter: {e}" if q.get("mac") else "missing mac parameter (expected ?mac=${netX/mac})"
        return Response(msg + "\n", status_code=400, media_type="text/plain; charset=utf-8")
    scheme = request.scope.get("scheme", "http")
    refused = None if scheme == "https" else login.plain_http_refused(request, mac)
    if refused is not None:
        return refused
    g = q.get
    uuid, serial = _clean(g("uuid", ""), 64), _clean(g("serial", ""), 256)
    manufacturer, product = _clean(g("manufacturer", ""), 256), _clean(g("product", ""), 256)
    buildarch, platform = _clean(g("buildarch", ""), 64), _clean(g("platform", ""), 64)
    reported_ip = _clean(g("ip", ""), 64)
    now = time.time()
    ip = client_ip(request)
    host_id, match = await store.identify(Identity(mac, uuid, serial), manufacturer=manufacturer, product=product,
                                          now=now)
    assigned = await store.get_action(mac)
    host = None
    title = mac
    decision: BootKernel | Exit | Menu | RunProfile
    if host_id is not None and (assigned is None or not assigned.kernel):
        host, deps, colls, done, approved = await store.boot_inputs(
            host_id, mac, client_ip=ip, reported_ip=reported_ip, buildarch=buildarch, platform=platform)
        title = host.name or mac
        app_now = applicable(host, deps, colls, done, approved, now)
        decision = decide_boot(host, legacy_action=None, deployments=deps, collections=colls, done=done,
                               approved=approved, now=now, applicable_now=app_now)
        for sk in app_now.skipped:
            if sk.reason == "awaiting approval":
                await store.audit("bootgate", "approval.needed", f"{sk.deployment_id}/{host_id}", None,
                                  {"deployment_id": sk.deployment_id, "host_id": host_id})
    else:
        decision = decide_boot(None, legacy_action=assigned, deployments=(), collections={}, now=now)
    boot_id = _boot_ids.next()
    base, cb, pre = _urls(request, st, ip)
    deployment_id = None
    login_first = False  # a required deployment that needs a login: /boot/run records its run after it
    try:
        if isinstance(decision, Menu):
            script = render_menu(decision, title=title, boot_id=boot_id, server_base=base,
                                 login_items={d.id for d in deps if login.deployment_needs_login(d, colls)})
        elif isinstance(decision, RunProfile):
            assert host is not None
            deployment_id = decision.deployment_id
            login_first = login.deployment_needs_login(next(d for d in deps if d.id == deployment_id), colls)
            if login_first:
                script = login.run_login_script(request, boot_id, deployment_id, mac, decision.name)
            else:
                script = render_profile(decision.profile, mac=mac, name=host.name, boot_id=boot_id,
                                        deployment_id=deployment_id, content_base=base, callback_base=cb,
                                        preamble=pre)
        else:
            script = render_action(decision, mac=mac, boot_id=boot_id, content_base=base, callback_base=cb,
                                   preamble=pre)
    except ValueError as e:
        log.warning("stored action cannot be rendered", extra={"kv": {"mac": mac, "error": str(e)}})
        decision = Exit(reason=f"the action for {mac} is invalid")
        script = render_action(decision, mac=mac, boot_id=boot_id, content_base=base, callback_base=cb)
    action_name = "login" if login_first else {BootKernel: "boot", Exit: "exit", Menu: "menu",
                                               RunProfile: "deploy"}[type(decision)]
    caps: dict[str, object] = {"buildarch": buildarch, "platform": platform, "manufacturer": manufacturer,
                               "product": product, "serial": serial, "uuid": uuid, "mac": mac, "ip": reported_ip,
                               "client_ip": ip, "scheme": scheme, "identity": match.reason}
    if host is not None and host.relay:
        caps["relay"] = host.relay
    for k, n in _CAPS.items():
        v = g(k)
        if v:
            caps[k] = _clean(v, n)
    record = BootRecord(
        id=boot_id, time=now, mac=mac, uuid=uuid, serial=serial, manufacturer=manufacturer, product=product,
        buildarch=buildarch, platform=platform, reported_ip=reported_ip, client_ip=ip, scheme=scheme,
        action=action_name,
        kernel=decision.kernel if isinstance(decision, BootKernel) else "",
        initrd=decision.initrd if isinstance(decision, BootKernel) else "",
        args=decision.args if isinstance(decision, BootKernel) else "",
        host_id=host_id, capabilities=caps, deployment_id=None if login_first else deployment_id,
    )
    detail: dict[str, object] = {"boot_id": boot_id, "action": action_name, "scheme": scheme,
                                 "buildarch": buildarch, "platform": platform, "host_id": host_id}
    if isinstance(decision, BootKernel):
        detail.update(kernel=decision.kernel, initrd=decision.initrd)
    if deployment_id is not None:
        detail["deployment_id"] = deployment_id
    # the boot, its event and (a deployment sent) its run in one group-committed transaction: an answered
    # boot has all three
    await store.record_boot(record, EventRecord(kind="boot", time=now, mac=mac, client_ip=ip, detail=detail))
    st.deps.metrics.count_boot(action_name)
    hooks = hooks_of(request.scope["app"])
    if hooks.wants("boot"):
        hooks.emit("boot", {"boot_id": boot_id, "mac": mac, "host_id": host_id, "action": action_name,
                            "deployment_id": deployment_id, "client_ip": ip,
                            "manufacturer": manufacturer, "product": product})
    log.info("boot", extra={"kv": {"mac": mac, "boot_id": boot_id, "action": action_name, "client_ip": ip}})
    return ipxe_script(script)


def _fail(text: str, status: int) -> Response:
    return ipxe_script(f"#!ipxe\necho bootgate: {text}\nexit\n", status)


async def boot_run(request: Request) -> Response:
    """A deployment chosen from the menu: checked again against the machine of that boot, recorded as a
    run, answered with the profile's script."""
    st = state_of(request)
    store = st.deps.store
    boot_id = request.query_params.get("boot", "")
    dep_raw = request.query_params.get("deployment", "")
    if not dep_raw.isdigit() or len(dep_raw) > 9 or len(boot_id) > 64:
        return _fail("bad deployment request", 400)
    b = await store.get_boot(boot_id)
    if b is None or b["host_id"] is None:
        return _fail("unknown boot", 404)
    refused = login.plain_http_refused(request, b["mac"])
    if refused is not None:
        return refused
    now = time.time()
    host, deps, colls, done, approved = await store.boot_inputs(
        int(b["host_id"]), b["mac"], client_ip=b["client_ip"], reported_ip=b["ip"],
        buildarch=b["buildarch"], platform=b["platform"])
    tok = await login.technician_token(request, boot_id, b["mac"])  # the technician menu: any enabled one
    if isinstance(tok, Response):
        return tok
    d = await store.deployment(int(dep_raw)) if tok is not None else None
    if tok is None:
        d = {x.id: x for x in applicable(host, deps, colls, done, approved, now).deployments}.get(int(dep_raw))
        if d is not None and login.deployment_needs_login(d, colls):
            gate = await login.require_login(request, mac=b["mac"], next_path="/boot/run",
                                             query={"boot": boot_id, "deployment": dep_raw, "mac": b["mac"]},
                                             prompt=f"bootgate: {d.name} needs a login")
            if isinstance(gate, Response):
                return gate
            tok = gate
    if d is None or not d.enabled:
        return _fail("that deployment is not available to this machine", 403)
    script = render_profile(d.profile, mac=b["mac"], name=host.name, boot_id=boot_id, deployment_id=d.id,
                            content_base=request_base(request), callback_base=callback_base(request),
                            preamble=ipxe_script_lines(st.settings.branchcache, b["client_ip"]),
                            content_query=login.content_query(request, tok, b["mac"], boot_id, d.profile))
    await store.record_run(d.id, host.host_id, boot_id, now)
    st.deps.recorder.add(EventRecord(kind="boot", time=now, mac=b["mac"], client_ip=client_ip(request),
                                     detail={"boot_id": boot_id, "action": "deploy", "deployment_id": d.id,
                                             "host_id": host.host_id, "scheme": request.url.scheme}))
    return ipxe_script(script)


async def boot_technician(request: Request) -> Response:
    """The technician menu entry: always behind a login (web/login.py), then every enabled deployment."""
    boot_id = request.query_params.get("boot", "")
    b = await state_of(request).deps.store.get_boot(boot_id) if boot_id and len(boot_id) <= 64 else None
    if b is None:
        return _fail("unknown boot", 404)
    return login.plain_http_refused(request, b["mac"]) or await login.technician_menu(request, boot_id, b["mac"])
