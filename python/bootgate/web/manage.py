"""/api/v1 for inventory, collections, deployments, approvals, the re-image guard, audit, tokens, reports
and the OpenAPI document (generated from the route table below, so it cannot drift from the routes)."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import __version__
from ..policy import normalize_mac
from ..policy.deploy import INTENTS, Profile
from ..policy.identity import Identity
from ..policy.rules import validate_rules
from ..scripts import check_profile
from ..store import Conflict, NotFound
from ..store.inventory import REPORT_KEYS, ROLES, report_csv
from .api import BadRequest, Handler, _fields, _limit, bad_requests, require
from .boot import state_of
from .hooks import hooks_of, validate_webhooks
from .responses import OrjsonResponse, json_error

__all__ = ["API", "FOUNDATION", "openapi_document", "routes"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,127}$")


def _store_errors(handler: Handler) -> Handler:
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except NotFound as e:
            return json_error(404, str(e))
        except Conflict as e:
            return json_error(409, str(e))
        except ValueError as e:
            return json_error(400, str(e))

    wrapped.__name__ = handler.__name__
    return wrapped


def _page(items: list[dict[str, Any]], limit: int) -> OrjsonResponse:
    nxt = items[-1]["id"] if len(items) == limit and items else None
    return OrjsonResponse({"items": items, "next_after": nxt})


def _after(request: Request) -> int:
    raw = request.query_params.get("after", "0")
    if not raw.isdigit() or len(raw) > 12:
        raise BadRequest("after must be a number (the next_after of the previous page)")
    return int(raw)


def _name(value: object, what: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise BadRequest(f"{what} must be 1-128 letters, digits, space, '.', '_' or '-', starting with a letter "
                         "or digit")
    return value


def _bool(data: dict[str, Any], key: str) -> bool:
    v = data[key]
    if not isinstance(v, bool):
        raise BadRequest(f"{key} must be true or false")
    return v


def _actor(request: Request) -> str:
    return str(request.state.actor)


# ---- hosts

async def list_hosts(request: Request) -> Response:
    st = state_of(request)
    limit = _limit(request)
    coll = request.query_params.get("collection")
    cid = await st.deps.store.collection_id(coll) if coll else None
    return _page(await st.deps.store.list_hosts(limit=limit, after=_after(request), collection=cid), limit)


async def get_host(request: Request) -> Response:
    return OrjsonResponse(await state_of(request).deps.store.get_host(int(request.path_params["id"])))


async def patch_host(request: Request) -> Response:
    data = await _fields(request)
    values: dict[str, Any] = {}
    for k in data:
        if k == "name":
            n = data[k]
            if not isinstance(n, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}", n):
                raise BadRequest("name must be a host name: letters, digits, '-', at most 63")
            values["name"] = n
        elif k in ("known", "wipe_approved"):
            values[k] = _bool(data, k)
        elif k == "installed":
            if _bool(data, k) is not False:
                raise BadRequest("installed can only be set to false (a status callback records installs)")
            values["installed_at"] = None
        else:
            raise BadRequest(f"unknown field {k!r} (known: name, known, wipe_approved, installed)")
    if not values:
        raise BadRequest("nothing to change")
    host = await state_of(request).deps.store.update_host(int(request.path_params["id"]), _actor(request), **values)
    return OrjsonResponse(host)


async def host_runs(request: Request) -> Response:
    limit = _limit(request)
    rows = await state_of(request).deps.store.list_runs(host_id=int(request.path_params["id"]), limit=limit,
                                                        after=_after(request))
    return _page(rows, limit)


async def list_shared_macs(request: Request) -> Response:
    return OrjsonResponse(await state_of(request).deps.store.shared_mac_list())


def _mac(request: Request) -> str:
    try:
        return normalize_mac(str(request.path_params["mac"]))
    except ValueError as e:
        raise BadRequest(f"bad mac: {e}") from None


async def put_shared_mac(request: Request) -> Response:
    mac = _mac(request)
    await state_of(request).deps.store.set_mac_shared(mac, True, _actor(request))
    return OrjsonResponse({"mac": mac, "shared": True})


async def delete_shared_mac(request: Request) -> Response:
    mac = _mac(request)
    await state_of(request).deps.store.set_mac_shared(mac, False, _actor(request))
    return Response(status_code=204)


# ---- collections

async def list_collections(request: Request) -> Response:
    limit = _limit(request)
    return _page(await state_of(request).deps.store.list_collections(limit=limit, after=_after(request)), limit)


async def create_collection(request: Request) -> Response:
    data = await _fields(request)
    unknown = set(data) - {"name", "rules", "description", "require_login"}
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(sorted(unknown))} (known: name, rules, description, "
                         "require_login)")
    desc = data.get("description", "")
    if not isinstance(desc, str) or len(desc) > 1024:
        raise BadRequest("description must be a string of at most 1024 characters")
    c = await state_of(request).deps.store.create_collection(
        _name(data.get("name"), "name"), validate_rules(data.get("rules", [])), desc, _actor(request),
        require_login=_bool(data, "require_login") if "require_login" in data else False)
    return OrjsonResponse(c, status_code=201)


async def get_collection(request: Request) -> Response:
    return OrjsonResponse(await state_of(request).deps.store.get_collection(int(request.path_params["id"])))


async def patch_collection(request: Request) -> Response:
    data = await _fields(request)
    values: dict[str, Any] = {}
    for k, v in data.items():
        if k == "name":
            values[k] = _name(v, "name")
        elif k == "rules":
            values[k] = validate_rules(v)
        elif k == "description" and isinstance(v, str) and len(v) <= 1024:
            values[k] = v
        elif k == "require_login":
            values[k] = _bool(data, k)
        else:
            raise BadRequest(f"cannot set {k!r} (known: name, rules, description, require_login)")
    c = await state_of(request).deps.store.update_collection(int(request.path_params["id"]), _actor(request),
                                                             **values)
    return OrjsonResponse(c)


async def delete_collection(request: Request) -> Response:
    await state_of(request).deps.store.delete_collection(int(request.path_params["id"]), _actor(request))
    return Response(status_code=204)


async def put_member(request: Request) -> Response:
    cid, hid = int(request.path_params["id"]), int(request.path_params["host_id"])
    await state_of(request).deps.store.set_member(cid, hid, True, _actor(request))
    return OrjsonResponse({"collection_id": cid, "host_id": hid, "member": True})


async def delete_member(request: Request) -> Response:
    cid, hid = int(request.path_params["id"]), int(request.path_params["host_id"])
    await state_of(request).deps.store.set_member(cid, hid, False, _actor(request))
    return Response(status_code=204)


# ---- deployments

_DEPLOYMENT_KEYS = ("name", "collection", "profile", "intent", "countdown", "window_start", "window_end", "one_shot",
                    "require_approval", "enabled", "priority", "require_login")


async def _deployment_values(request: Request, data: dict[str, Any], creating: bool) -> dict[str, Any]:
    unknown = set(data) - set(_DEPLOYMENT_KEYS)
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(sorted(unknown))} (known: {', '.join(_DEPLOYMENT_KEYS)})")
    out: dict[str, Any] = {}
    if creating:
        for k in ("name", "collection", "profile"):
            if k not in data:
                raise BadRequest(f"{k} is required")
        data = {"intent": "available", "countdown": 10, "window_start": None, "window_end": None, "one_shot": True,
                "require_approval": False, "enabled": True, "priority": 0, "require_login": False, **data}
    for k, v in data.items():
        if k == "name":
            out[k] = _name(v, "name")
        elif k == "collection":
            if not isinstance(v, (str, int)) or isinstance(v, bool):
                raise BadRequest("collection must be a collection id or name")
            out["collection_id"] = await state_of(request).deps.store.collection_id(str(v))
        elif k == "profile":
            if not isinstance(v, dict) or "kind" not in v:
                raise BadRequest("profile must be an object with a kind (kernel, wimboot, chain, template)")
            try:
                out[k] = check_profile(Profile.from_json(v)).to_json()
            except (ValueError, TypeError) as e:
                raise BadRequest(f"profile: {e}") from None
        elif k == "intent":
            if v not in INTENTS:
                raise BadRequest(f"intent must be one of {', '.join(INTENTS)}")
            out[k] = v
        elif k in ("countdown", "priority"):
            if not isinstance(v, int) or isinstance(v, bool) or not (0 if k == "countdown" else -1000) <= v <= 3600:
                raise BadRequest(f"{k} must be a whole number ({'0-3600 seconds' if k == 'countdown' else '-1000..3600'})")
            out[k] = v
        elif k in ("window_start", "window_end"):
            if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v)):
                raise BadRequest(f"{k} must be seconds since the epoch (UTC) or null")
            out[k] = None if v is None else float(v)
        else:
            out[k] = _bool(data, k)
    ws, we = out.get("window_start"), out.get("window_end")
    if ws is not None and we is not None and ws >= we:
        raise BadRequest("window_start must be before window_end")
    return out


async def list_deployments(request: Request) -> Response:
    limit = _limit(request)
    return _page(await state_of(request).deps.store.list_deployments(limit=limit, after=_after(request)), limit)


async def create_deployment(request: Request) -> Response:
    values = await _deployment_values(request, await _fields(request), True)
    return OrjsonResponse(await state_of(request).deps.store.create_deployment(values, _actor(request)),
                          status_code=201)


async def get_deployment(request: Request) -> Response:
    return OrjsonResponse(await state_of(request).deps.store.get_deployment(int(request.path_params["id"])))


async def patch_deployment(request: Request) -> Response:
    values = await _deployment_values(request, await _fields(request), False)
    if not values:
        raise BadRequest("nothing to change")
    d = await state_of(request).deps.store.update_deployment(int(request.path_params["id"]), values, _actor(request))
    return OrjsonResponse(d)


async def delete_deployment(request: Request) -> Response:
    await state_of(request).deps.store.delete_deployment(int(request.path_params["id"]), _actor(request))
    return Response(status_code=204)


async def deployment_runs(request: Request) -> Response:
    limit = _limit(request)
    rows = await state_of(request).deps.store.list_runs(deployment_id=int(request.path_params["id"]), limit=limit,
                                                        after=_after(request))
    return _page(rows, limit)


# ---- approvals

async def list_approvals(request: Request) -> Response:
    limit = _limit(request)
    return _page(await state_of(request).deps.store.list_approvals(limit=limit, after=_after(request)), limit)


async def pending_approvals(request: Request) -> Response:
    return OrjsonResponse(await state_of(request).deps.store.pending_approvals())


async def create_approval(request: Request) -> Response:
    data = await _fields(request)
    did, hid, note = data.get("deployment_id"), data.get("host_id"), data.get("note", "")
    if not isinstance(did, int) or not isinstance(hid, int) or isinstance(did, bool) or isinstance(hid, bool):
        raise BadRequest("deployment_id and host_id are required numbers")
    if not isinstance(note, str) or len(note) > 1024:
        raise BadRequest("note must be a string of at most 1024 characters")
    approval = await state_of(request).deps.store.approve(did, hid, _actor(request), note)
    hooks_of(request.app).emit("approval", dict(approval))
    return OrjsonResponse(approval, status_code=201)


async def delete_approval(request: Request) -> Response:
    await state_of(request).deps.store.revoke(int(request.path_params["id"]), _actor(request))
    return Response(status_code=204)


# ---- re-image guard (called by the installer, like the status callback: no token, the boot id is the key)

async def wipe_guard(request: Request) -> Response:
    data = await _fields(request)
    boot_id, disks = data.get("boot_id"), data.get("disks", [])
    if not isinstance(boot_id, str) or not re.fullmatch(r"[0-9a-f]{8,64}", boot_id):
        raise BadRequest("boot_id is required (the bootgate.boot= kernel argument)")
    if not isinstance(disks, list) or len(disks) > 64 or not all(isinstance(d, dict) for d in disks):
        raise BadRequest('disks must be a list of objects, e.g. [{"name": "sda", "size": 256060514304, '
                         '"has_os": true, "partitions": 3}]')
    try:
        mac = normalize_mac(str(data.get("mac", "")))
    except ValueError as e:
        raise BadRequest(f"bad mac: {e}") from None
    uuid, serial = data.get("uuid", ""), data.get("serial", "")
    if not isinstance(uuid, str) or not isinstance(serial, str) or len(uuid) > 64 or len(serial) > 256:
        raise BadRequest("uuid and serial must be strings")
    allowed, reason, host_id = await state_of(request).deps.store.wipe_decision(
        boot_id, Identity(mac, uuid, serial), disks, time.time())
    return OrjsonResponse({"allowed": allowed, "reason": reason, "host_id": host_id})


# ---- audit, tokens, settings, reports

async def list_audit(request: Request) -> Response:
    before = request.query_params.get("before_id")
    if before is not None and not before.isdigit():
        raise BadRequest("before_id must be a number")
    rows = await state_of(request).deps.store.list_audit(action=request.query_params.get("action") or None,
                                                         limit=_limit(request),
                                                         before=int(before) if before else None)
    return OrjsonResponse(rows)


async def list_tokens(request: Request) -> Response:
    return OrjsonResponse(await state_of(request).deps.store.list_tokens())


async def create_token(request: Request) -> Response:
    data = await _fields(request)
    role = data.get("role")
    if role not in ROLES:
        raise BadRequest(f"role must be one of {', '.join(ROLES)}")
    name = _name(data.get("name"), "name")
    token = await state_of(request).deps.store.create_token(name, str(role), _actor(request))
    return OrjsonResponse({"name": name, "role": role, "token": token}, status_code=201)


async def delete_token(request: Request) -> Response:
    await state_of(request).deps.store.delete_token(str(request.path_params["name"]), _actor(request))
    return Response(status_code=204)


async def get_name_pattern(request: Request) -> Response:
    return OrjsonResponse({"name_pattern": await state_of(request).deps.store.get_setting("name_pattern", "")})


async def put_name_pattern(request: Request) -> Response:
    data = await _fields(request)
    pattern = data.get("name_pattern")
    if not isinstance(pattern, str) or not pattern or len(pattern) > 128 or not re.fullmatch(
            r"([A-Za-z0-9-]|\{(serial|uuid|uuid8|mac|id)(\|(serial|uuid|uuid8|mac|id))*\})+", pattern):
        raise BadRequest("name_pattern: letters, digits, '-' and {serial} {uuid} {uuid8} {mac} {id} "
                         "(alternatives with |, e.g. PC-{serial|uuid8})")
    await state_of(request).deps.store.set_setting("name_pattern", pattern)
    await state_of(request).deps.store.audit(_actor(request), "settings.name_pattern", pattern, None, {})
    return OrjsonResponse({"name_pattern": pattern})


async def get_webhooks(request: Request) -> Response:
    hooks = await state_of(request).deps.store.get_setting("webhooks", [])
    return OrjsonResponse({"webhooks": [dict(w, secret="***" if w.get("secret") else "") for w in hooks]})


async def put_webhooks(request: Request) -> Response:
    data = await _fields(request)
    hooks = validate_webhooks(data.get("webhooks"))
    await state_of(request).deps.store.set_setting("webhooks", hooks)
    hooks_of(request.app).invalidate()
    await state_of(request).deps.store.audit(_actor(request), "settings.webhooks", "", None,
                                             {"urls": [w["url"] for w in hooks]})
    return OrjsonResponse({"webhooks": len(hooks)})


def _time_param(request: Request, key: str) -> float | None:
    raw = request.query_params.get(key)
    if raw is None:
        return None
    try:
        v = float(raw)
    except ValueError:
        raise BadRequest(f"{key} must be seconds since the epoch") from None
    if not math.isfinite(v):
        raise BadRequest(f"{key} must be finite")
    return v


async def report(request: Request) -> Response:
    by = request.query_params.get("by", "day")
    fmt = request.query_params.get("format", "json")
    if by not in REPORT_KEYS:
        raise BadRequest(f"by must be one of {', '.join(REPORT_KEYS)}")
    if fmt not in ("json", "csv"):
        raise BadRequest("format must be json or csv")
    rows = await state_of(request).deps.store.report(by, since=_time_param(request, "since"),
                                                     until=_time_param(request, "until"))
    if fmt == "csv":
        return Response(report_csv(rows, by), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="bootgate-boots-by-{by}.csv"'})
    return OrjsonResponse({"by": by, "rows": rows})


async def openapi(request: Request) -> Response:
    return OrjsonResponse(openapi_document(request.app.routes))


# ---- the route table: path, method, handler, role (None: no token), summary

@dataclass(frozen=True)
class Api:
    path: str
    method: str
    handler: Handler
    role: str | None
    summary: str


_I = "{id:int}"
API: tuple[Api, ...] = (
    Api("/api/v1/hosts", "GET", list_hosts, "read-only", "Machines by identity (?limit, ?after, ?collection)"),
    Api(f"/api/v1/hosts/{_I}", "GET", get_host, "read-only", "One machine with its MACs and static collections"),
    Api(f"/api/v1/hosts/{_I}", "PATCH", patch_host, "operator", "Rename, mark known, approve a wipe"),
    Api(f"/api/v1/hosts/{_I}/runs", "GET", host_runs, "read-only", "Deployment runs of a machine"),
    Api("/api/v1/shared-macs", "GET", list_shared_macs, "read-only", "MACs that identify no machine (dongles)"),
    Api("/api/v1/shared-macs/{mac}", "PUT", put_shared_mac, "operator", "Mark a MAC shared"),
    Api("/api/v1/shared-macs/{mac}", "DELETE", delete_shared_mac, "operator", "Trust a MAC again"),
    Api("/api/v1/collections", "GET", list_collections, "read-only", "Collections"),
    Api("/api/v1/collections", "POST", create_collection, "operator",
        "Create a collection {name, rules, description, require_login}"),
    Api(f"/api/v1/collections/{_I}", "GET", get_collection, "read-only", "One collection and its static members"),
    Api(f"/api/v1/collections/{_I}", "PATCH", patch_collection, "operator",
        "Change name, rules, description, require_login"),
    Api(f"/api/v1/collections/{_I}", "DELETE", delete_collection, "operator", "Delete (no deployments left)"),
    Api(f"/api/v1/collections/{_I}/members/{{host_id:int}}", "PUT", put_member, "operator", "Add a static member"),
    Api(f"/api/v1/collections/{_I}/members/{{host_id:int}}", "DELETE", delete_member, "operator",
        "Remove a static member"),
    Api("/api/v1/deployments", "GET", list_deployments, "read-only", "Deployments"),
    Api("/api/v1/deployments", "POST", create_deployment, "operator",
        "Deploy a profile to a collection {name, collection, profile, intent, countdown, window_start, "
        "window_end, one_shot, require_approval, enabled, priority, require_login}"),
    Api(f"/api/v1/deployments/{_I}", "GET", get_deployment, "read-only", "One deployment"),
    Api(f"/api/v1/deployments/{_I}", "PATCH", patch_deployment, "operator", "Change a deployment"),
    Api(f"/api/v1/deployments/{_I}", "DELETE", delete_deployment, "operator", "Delete a deployment"),
    Api(f"/api/v1/deployments/{_I}/runs", "GET", deployment_runs, "read-only", "Runs of a deployment"),
    Api("/api/v1/approvals", "GET", list_approvals, "read-only", "Approvals given"),
    Api("/api/v1/approvals/pending", "GET", pending_approvals, "read-only",
        "Machines that booted while a deployment waited for approval"),
    Api("/api/v1/approvals", "POST", create_approval, "operator", "Approve {deployment_id, host_id, note}"),
    Api(f"/api/v1/approvals/{_I}", "DELETE", delete_approval, "operator", "Revoke an approval"),
    Api("/api/v1/guard/wipe", "POST", wipe_guard, None,
        "Installer asks: may I wipe this disk? {boot_id, mac, uuid, serial, disks} -> {allowed, reason} (audited)"),
    Api("/api/v1/audit", "GET", list_audit, "read-only", "Audit log, newest first (?action, ?before_id, ?limit)"),
    Api("/api/v1/tokens", "GET", list_tokens, "admin", "API tokens (no secrets)"),
    Api("/api/v1/tokens", "POST", create_token, "admin", "Create a token {name, role}; the secret is shown once"),
    Api("/api/v1/tokens/{name}", "DELETE", delete_token, "admin", "Delete a token"),
    Api("/api/v1/settings/name-pattern", "GET", get_name_pattern, "read-only", "Zero-touch name pattern"),
    Api("/api/v1/settings/name-pattern", "PUT", put_name_pattern, "admin", "Set the zero-touch name pattern"),
    Api("/api/v1/settings/webhooks", "GET", get_webhooks, "admin", "Outgoing webhooks (secrets hidden)"),
    Api("/api/v1/settings/webhooks", "PUT", put_webhooks, "admin",
        'Set webhooks {"webhooks": [{"url", "events": [boot, install, approval], "secret"}]}'),
    Api("/api/v1/reports/boots", "GET", report, "read-only",
        "Boots and installs by day|collection|model|result (?by, ?since, ?until, ?format=json|csv)"),
    Api("/api/v1/openapi.json", "GET", openapi, None, "This document"),
)

# the foundation's routes (web/api.py), listed for the document
FOUNDATION: tuple[tuple[str, str, str | None, str], ...] = (
    ("/api/v1/boots/{boot_id}/status", "POST", None,
     "Installer status {state: started|step|success|failure, message, name (rename on success)}"),
    ("/api/v1/machines/{mac}/action", "PUT", "operator", "Per-MAC action {kernel, initrd, args} (wins over deployments)"),
    ("/api/v1/machines/{mac}/action", "DELETE", "operator", "Remove the per-MAC action"),
    ("/api/v1/machines", "GET", "read-only", "MACs seen, with action and last boot"),
    ("/api/v1/boots", "GET", "read-only", "Boots, newest first, with statuses and capabilities (?mac, ?limit)"),
    ("/api/v1/events", "GET", "read-only", "Recorded events (?kind, ?mac, ?client_ip, ?before_id, ?limit)"),
)


def _wrap(a: Api) -> Callable[[Request], Any]:
    h = _store_errors(a.handler)
    if a.role is not None:
        h = require(a.role)(h)
    return bad_requests(h)


def routes() -> list[Route]:
    return [Route(a.path, _wrap(a), methods=[a.method]) for a in API]


def openapi_document(app_routes: Any = ()) -> dict[str, Any]:
    """The document for this module's routes and the foundation's, plus any other /api/v1 route the app
    has (other modules' routes, summarised from their handler's docstring)."""
    paths: dict[str, dict[str, Any]] = {}
    entries: list[tuple[str, str, str | None, str]] = [(a.path, a.method, a.role, a.summary) for a in API]
    entries += list(FOUNDATION)
    known = {(re.sub(r"\{(\w+):\w+\}", r"{\1}", p), m) for p, m, _, _ in entries}
    for route in app_routes:
        path = getattr(route, "path", "")
        if not path.startswith("/api/v1"):
            continue
        doc = (getattr(getattr(route, "endpoint", None), "__doc__", None) or "").strip().split("\n")[0]
        for method in sorted(getattr(route, "methods", None) or ()):
            clean = re.sub(r"\{(\w+):\w+\}", r"{\1}", path)
            if method != "HEAD" and (clean, method) not in known:
                entries.append((path, method, "see the route", doc or getattr(route, "name", "") or path))
                known.add((clean, method))
    for path, method, role, summary in entries:
        clean = re.sub(r"\{(\w+):\w+\}", r"{\1}", path)
        params = [{"name": p, "in": "path", "required": True,
                   "schema": {"type": "integer" if f"{{{p}:int}}" in path else "string"}}
                  for p in re.findall(r"\{(\w+)(?::\w+)?\}", path)]
        op: dict[str, Any] = {"summary": summary, "parameters": params,
                              "responses": {"200": {"description": "OK (JSON)"},
                                            "400": {"description": '{"error": "..."}'}}}
        if role is None:
            op["security"] = []
        elif role == "see the route":
            pass
        else:
            op["x-bootgate-role"] = role
            op["responses"].update({"401": {"description": "no or wrong token"},
                                    "403": {"description": f"needs the {role} role"}})
        if method in ("POST", "PUT", "PATCH"):
            op["requestBody"] = {"content": {"application/json": {"schema": {"type": "object"}}}}
        paths.setdefault(clean, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "bootgate API", "version": __version__,
                 "description": "Roles: read-only < operator < admin. The admin.token file is an admin token."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": paths,
    }

