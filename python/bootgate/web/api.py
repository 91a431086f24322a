"""/api/v1: the status callback (no token) and the admin API (bearer token)."""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ..policy import MachineAction, normalize_mac
from ..scripts import check_content_path, check_kernel_args
from ..store import BOOT_STATES, EventRecord
from .boot import client_ip, state_of
from .hooks import hooks_of
from .responses import OrjsonResponse, json_error

MAX_BODY = 64 * 1024
EVENT_KINDS = ("dhcp", "tftp", "boot", "content", "status")

Handler = Callable[[Request], Awaitable[Response]]


class BadRequest(Exception):
    pass


ROLE_RANK = {"read-only": 0, "operator": 1, "admin": 2}


async def caller(request: Request) -> tuple[str, str] | None:
    """(actor name, role) of the bearer token: the admin.token file is an admin; API tokens from the store."""
    auth = request.headers.get("authorization", "")
    scheme, _, given = auth.partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given or len(given) > 512:
        return None
    if hmac.compare_digest(given.encode(), state_of(request).deps.admin_token.encode()):
        return ("admin-token", "admin")
    return await state_of(request).deps.store.token_role(given)


def require(role: str) -> Callable[[Handler], Handler]:
    """Requires `Authorization: Bearer <token>` of at least `role` (read-only < operator < admin);
    401 without a valid token, 403 with a weaker one. The actor is in request.state.actor."""

    def wrap(handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            who = await caller(request)
            if who is None:
                return json_error(401, "missing or wrong API token: send Authorization: Bearer <token> (the admin "
                                       "token is in <data_dir>/admin.token)", headers={"WWW-Authenticate": "Bearer"})
            if ROLE_RANK[who[1]] < ROLE_RANK[role]:
                return json_error(403, f"this needs the {role} role; token {who[0]!r} is {who[1]}")
            request.state.actor = who[0]
            return await handler(request)

        guarded.__name__ = handler.__name__
        return guarded

    return wrap


admin = require("admin")
operator = require("operator")
reader = require("read-only")


async def _body(request: Request) -> bytes:
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise BadRequest(f"body larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _fields(request: Request) -> dict[str, Any]:
    """JSON object or url-encoded form, as a dict."""
    raw = await _body(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json" or (not ctype and raw.lstrip().startswith(b"{")):
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise BadRequest(f"body is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise BadRequest("body must be a JSON object")
        return data
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("form body is not UTF-8") from None
    return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}


def _mac_param(request: Request) -> str:
    try:
        return normalize_mac(str(request.path_params["mac"]))
    except ValueError as e:
        raise BadRequest(f"bad mac: {e}") from None


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise BadRequest("limit must be a number from 1 to 1000")
    return int(raw)


def bad_requests(handler: Handler) -> Handler:
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except BadRequest as e:
            return json_error(400, str(e))

    wrapped.__name__ = handler.__name__
    return wrapped


@bad_requests
async def boot_status(request: Request) -> Response:
    st = state_of(request)
    boot_id = str(request.path_params["boot_id"])
    data = await _fields(request)
    state = data.get("state")
    message = data.get("message", "")
    if state not in BOOT_STATES:
        raise BadRequest(f"state must be one of {', '.join(BOOT_STATES)}")
    if not isinstance(message, str):
        raise BadRequest("message must be a string")
    message = message[:4096]
    rename = data.get("name")
    if rename is not None and (not isinstance(rename, str) or state != "success"):
        raise BadRequest("name (rename after install) must be a string and comes with state success")
    boot = await st.deps.store.get_boot(boot_id) if len(boot_id) <= 64 else None
    if boot is None:
        return json_error(404, f"unknown boot id {boot_id[:64]!r}")
    now = time.time()
    await st.deps.store.add_status(boot_id, state, message, at=now, rename=rename)
    st.deps.metrics.boot_statuses.labels(state).inc()
    if state in ("success", "failure"):
        hooks_of(request.app).emit("install", {"boot_id": boot_id, "mac": boot["mac"], "host_id": boot["host_id"],
                                               "deployment_id": boot["deployment_id"], "result": state,
                                               "message": message})
    st.deps.recorder.add(EventRecord(kind="status", time=now, mac=boot["mac"], client_ip=client_ip(request),
                                     detail={"boot_id": boot_id, "state": state, "message": message}))
    return OrjsonResponse({"boot_id": boot_id, "state": state, "time": now})


@bad_requests
@operator
async def put_action(request: Request) -> Response:
    st = state_of(request)
    mac = _mac_param(request)
    raw = await _body(request)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise BadRequest('body must be a JSON object: {"kernel": "...", "initrd": "...", "args": "..."}')
    unknown = set(data) - {"kernel", "initrd", "args"}
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))} (known: kernel, initrd, args)")
    action = action_from_fields(data.get("kernel"), data.get("initrd", ""), data.get("args", ""))
    await st.deps.store.set_action(mac, action)
    return OrjsonResponse({"mac": mac, "kernel": action.kernel, "initrd": action.initrd, "args": action.args})


def action_from_fields(kernel: object, initrd: object, args: object) -> MachineAction:
    """Validates an action's fields (shared with the CLI); raises BadRequest naming the field."""
    if not isinstance(kernel, str) or not kernel:
        raise BadRequest("kernel is required: a path relative to the content root")
    if not isinstance(initrd, str):
        raise BadRequest("initrd must be a string")
    if not isinstance(args, str):
        raise BadRequest("args must be a string")
    try:
        check_content_path(kernel)
    except ValueError as e:
        raise BadRequest(f"kernel {e}") from None
    if initrd:
        try:
            check_content_path(initrd)
        except ValueError as e:
            raise BadRequest(f"initrd {e}") from None
    try:
        args = check_kernel_args(args)
    except ValueError as e:
        raise BadRequest(f"args {e}") from None
    return MachineAction(kernel=kernel, initrd=initrd, args=args)


@bad_requests
@operator
async def delete_action(request: Request) -> Response:
    st = state_of(request)
    mac = _mac_param(request)
    if not await st.deps.store.delete_action(mac):
        return json_error(404, f"{mac} has no action")
    return Response(status_code=204)


@bad_requests
@reader
async def list_machines(request: Request) -> Response:
    return OrjsonResponse(await state_of(request).deps.store.list_machines())


@bad_requests
@reader
async def list_boots(request: Request) -> Response:
    mac_raw = request.query_params.get("mac")
    mac = None
    if mac_raw:
        try:
            mac = normalize_mac(mac_raw)
        except ValueError as e:
            raise BadRequest(f"bad mac: {e}") from None
    return OrjsonResponse(await state_of(request).deps.store.list_boots(mac=mac, limit=_limit(request)))


@bad_requests
@reader
async def list_events(request: Request) -> Response:
    st = state_of(request)
    q = request.query_params
    kind = q.get("kind") or None
    if kind is not None and kind not in EVENT_KINDS:
        raise BadRequest(f"kind must be one of {', '.join(EVENT_KINDS)}")
    mac = None
    if q.get("mac"):
        try:
            mac = normalize_mac(q["mac"])
        except ValueError as e:
            raise BadRequest(f"bad mac: {e}") from None
    ip = q.get("client_ip") or None
    if ip is not None:
        try:
            ip = str(ipaddress.ip_address(ip))
        except ValueError:
            raise BadRequest(f"client_ip {ip[:64]!r} is not an IP address") from None
    before = q.get("before_id")
    if before is not None and not before.isdigit():
        raise BadRequest("before_id must be a number")
    await st.deps.recorder.flush()
    rows = await st.deps.store.list_events(kind=kind, mac=mac, client_ip=ip, limit=_limit(request),
                                           before_id=int(before) if before else None)
    return OrjsonResponse(rows)
