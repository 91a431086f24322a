"""/boot.ipxe and /boot: the iPXE face of the server."""

from __future__ import annotations

import logging
import secrets
import time

from starlette.requests import Request
from starlette.responses import Response

from ..policy import BootKernel, Exit, Machine, decide, normalize_mac
from ..scripts import base_url, is_valid_host, render_action, render_bootstrap
from ..store import BootRecord, EventRecord
from .deps import AppState
from .responses import ipxe_script

log = logging.getLogger("bootgate.web.boot")

_LIMITS = {"uuid": 64, "serial": 256, "manufacturer": 256, "product": 256, "buildarch": 64, "platform": 64,
           "ip": 64}


def state_of(request: Request) -> AppState:
    st = request.app.state.bootgate
    assert isinstance(st, AppState)
    return st


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


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
    scheme = "https" if request.url.scheme == "https" else "http"
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
    return ipxe_script(render_bootstrap(request_base(request)))


def _clean(value: str, limit: int) -> str:
    return "".join(c for c in value if c.isprintable())[:limit]


async def boot(request: Request) -> Response:
    st = state_of(request)
    q = request.query_params
    try:
        mac = normalize_mac(q.get("mac", ""))
    except ValueError as e:
        msg = f"bad mac parameter: {e}" if q.get("mac") else "missing mac parameter (expected ?mac=${netX/mac})"
        return Response(msg + "\n", status_code=400, media_type="text/plain; charset=utf-8")
    fields = {k: _clean(q.get(k, ""), n) for k, n in _LIMITS.items()}
    machine = Machine(mac=mac, uuid=fields["uuid"], serial=fields["serial"], manufacturer=fields["manufacturer"],
                      product=fields["product"], buildarch=fields["buildarch"], platform=fields["platform"])
    assigned = await st.deps.store.get_action(mac)
    decision = decide(machine, assigned)
    boot_id = secrets.token_hex(16)
    base = request_base(request)
    try:
        script = render_action(decision, mac=mac, boot_id=boot_id, content_base=base,
                               callback_base=callback_base(request))
    except ValueError as e:
        log.warning("stored action cannot be rendered", extra={"kv": {"mac": mac, "error": str(e)}})
        decision = Exit(reason=f"the action for {mac} is invalid")
        script = render_action(decision, mac=mac, boot_id=boot_id, content_base=base,
                               callback_base=callback_base(request))
    now = time.time()
    action_name = "boot" if isinstance(decision, BootKernel) else "exit"
    ip = client_ip(request)
    record = BootRecord(
        id=boot_id, time=now, mac=mac, uuid=machine.uuid, serial=machine.serial,
        manufacturer=machine.manufacturer, product=machine.product, buildarch=machine.buildarch,
        platform=machine.platform, reported_ip=fields["ip"], client_ip=ip, scheme=request.url.scheme,
        action=action_name,
        kernel=decision.kernel if isinstance(decision, BootKernel) else "",
        initrd=decision.initrd if isinstance(decision, BootKernel) else "",
        args=decision.args if isinstance(decision, BootKernel) else "",
    )
    await st.deps.store.record_boot(record)
    st.deps.metrics.boots.labels(action_name).inc()
    detail: dict[str, object] = {"boot_id": boot_id, "action": action_name, "scheme": request.url.scheme,
                                 "buildarch": machine.buildarch, "platform": machine.platform}
    if isinstance(decision, BootKernel):
        detail.update(kernel=decision.kernel, initrd=decision.initrd)
    st.deps.recorder.add(EventRecord(kind="boot", time=now, mac=mac, client_ip=ip, detail=detail))
    log.info("boot", extra={"kv": {"mac": mac, "boot_id": boot_id, "action": action_name, "client_ip": ip}})
    return ipxe_script(script)
