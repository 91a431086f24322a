"""Fakes of the documented NAC REST APIs the MAB backends talk to (Cisco ISE ERS + MnT, Aruba ClearPass),
as Starlette apps: they check what the real APIs check (auth, content types, status codes) and keep state."""

from __future__ import annotations

import base64
import re
import secrets
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


class FakeIse:
    MAC_RE = re.compile(r"^([0-9A-F]{2}:){5}[0-9A-F]{2}$")

    def __init__(self, user: str = "ers-admin", password: str = "ers-pw", psn: str = "ise-psn-1") -> None:
        self.user, self.password, self.psn = user, password, psn
        self.groups = {name: str(uuid.uuid4()) for name in ("Unknown", "Blocked List", "bootgate-imaging")}
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.coa: list[str] = []
        self.fail_next = 0  # answer 500 to this many requests

        self.app = Starlette(routes=[
            Route("/ers/config/endpointgroup/name/{name}", self.group_by_name, methods=["GET"]),
            Route("/ers/config/endpoint", self.search, methods=["GET"]),
            Route("/ers/config/endpoint", self.create, methods=["POST"]),
            Route("/ers/config/endpoint/{id}", self.get, methods=["GET"]),
            Route("/ers/config/endpoint/{id}", self.update, methods=["PUT"]),
            Route("/admin/API/mnt/CoA/Reauth/{psn}/{mac}/{type}", self.reauth, methods=["GET"]),
        ])
        self.app.add_middleware(_Gate, fake=self)

    def authorized(self, request: Request) -> bool:
        want = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return request.headers.get("authorization") == want

    async def group_by_name(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.groups:
            return JSONResponse({"ERSResponse": {"messages": [{"title": "not found"}]}}, status_code=404)
        return JSONResponse({"EndPointGroup": {"id": self.groups[name], "name": name}})

    async def search(self, request: Request) -> Response:
        flt = request.query_params.get("filter", "")
        m = re.fullmatch(r"mac\.EQ\.(.+)", flt)
        if not m:
            return JSONResponse({"ERSResponse": {"messages": [{"title": "bad filter"}]}}, status_code=400)
        hits = [e for e in self.endpoints.values() if e["mac"] == m.group(1).upper()]
        return JSONResponse({"SearchResult": {"total": len(hits), "resources": [
            {"id": e["id"], "name": e["name"], "link": {"href": f"/ers/config/endpoint/{e['id']}"}} for e in hits]}})

    async def create(self, request: Request) -> Response:
        body = (await request.json()).get("ERSEndPoint", {})
        mac = str(body.get("mac", ""))
        if not self.MAC_RE.match(mac) or body.get("groupId") not in self.groups.values():
            return JSONResponse({"ERSResponse": {"messages": [{"title": "validation"}]}}, status_code=400)
        if any(e["mac"] == mac for e in self.endpoints.values()):
            return JSONResponse({"ERSResponse": {"messages": [{"title": "exists"}]}}, status_code=500)
        ep = {"id": str(uuid.uuid4()), "name": body.get("name", mac), "mac": mac, "groupId": body["groupId"],
              "staticGroupAssignment": bool(body.get("staticGroupAssignment")), "description": body.get("description", "")}
        self.endpoints[ep["id"]] = ep
        return Response(status_code=201, headers={"Location": f"/ers/config/endpoint/{ep['id']}"})

    async def get(self, request: Request) -> Response:
        ep = self.endpoints.get(request.path_params["id"])
        if ep is None:
            return JSONResponse({}, status_code=404)
        return JSONResponse({"ERSEndPoint": ep})

    async def update(self, request: Request) -> Response:
        ep = self.endpoints.get(request.path_params["id"])
        if ep is None:
            return JSONResponse({}, status_code=404)
        body = (await request.json()).get("ERSEndPoint", {})
        if body.get("groupId") not in self.groups.values():
            return JSONResponse({}, status_code=400)
        ep.update({k: body[k] for k in ("groupId", "staticGroupAssignment", "description") if k in body})
        return JSONResponse({"UpdatedFieldsList": {"updatedField": []}})

    async def reauth(self, request: Request) -> Response:
        ok = request.path_params["psn"] == self.psn and self.MAC_RE.match(request.path_params["mac"]) is not None
        if ok:
            self.coa.append(request.path_params["mac"])
        return Response(f'<?xml version="1.0" encoding="UTF-8"?><remoteCoA requestType="reauth">'
                        f'<results>{"true" if ok else "false"}</results></remoteCoA>', media_type="application/xml")

    def group_of(self, mac: str) -> str | None:
        for e in self.endpoints.values():
            if e["mac"] == mac:
                return next(n for n, i in self.groups.items() if i == e["groupId"])
        return None


class _Gate:
    """Auth, content-type and failure injection in front of a fake."""

    def __init__(self, app: Any, fake: Any) -> None:
        self.app, self.fake = app, fake

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            request = Request(scope)
            self.fake.requests.append((request.method, request.url.path))
            resp: Response | None = None
            if self.fake.fail_next > 0:
                self.fake.fail_next -= 1
                resp = Response("internal error", status_code=500)
            elif not self.fake.authorized(request):
                resp = Response("unauthorized", status_code=401)
            elif isinstance(self.fake, FakeIse) and "/ers/" in request.url.path:
                if request.headers.get("accept") != "application/json" or (
                        request.method in ("POST", "PUT") and request.headers.get("content-type") != "application/json"):
                    resp = Response("unsupported media type", status_code=415)
            if resp is not None:
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)


class FakeClearPass:
    def __init__(self, client_id: str = "bootgate", client_secret: str = "cp-secret") -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.tokens: set[str] = set()
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.coa: list[tuple[str, list[str]]] = []
        self.fail_next = 0
        self.next_id = 3000
        self.app = Starlette(routes=[
            Route("/api/oauth", self.oauth, methods=["POST"]),
            Route("/api/endpoint", self.create, methods=["POST"]),
            Route("/api/endpoint/mac-address/{mac}", self.get, methods=["GET"]),
            Route("/api/endpoint/mac-address/{mac}", self.patch, methods=["PATCH"]),
            Route("/api/session-action/coa/mac/{mac}", self.coa_action, methods=["POST"]),
        ])
        self.app.add_middleware(_Gate, fake=self)

    def authorized(self, request: Request) -> bool:
        if request.url.path == "/api/oauth":
            return True
        scheme, _, tok = request.headers.get("authorization", "").partition(" ")
        return scheme == "Bearer" and tok in self.tokens

    async def oauth(self, request: Request) -> Response:
        b = await request.json()
        if (b.get("grant_type"), b.get("client_id"), b.get("client_secret")) != (
                "client_credentials", self.client_id, self.client_secret):
            return JSONResponse({"error": "invalid_client"}, status_code=400)
        tok = secrets.token_hex(20)
        self.tokens.add(tok)
        return JSONResponse({"access_token": tok, "expires_in": 28800, "token_type": "Bearer", "scope": None})

    @staticmethod
    def _norm(mac: str) -> str:
        return re.sub(r"[^0-9a-f]", "", mac.lower())

    async def create(self, request: Request) -> Response:
        b = await request.json()
        mac = self._norm(str(b.get("mac_address", "")))
        if len(mac) != 12 or mac in self.endpoints or b.get("status") not in ("Known", "Unknown", "Disabled"):
            return JSONResponse({"title": "Unprocessable"}, status_code=422)
        self.next_id += 1
        ep = {"id": self.next_id, "mac_address": mac, "status": b["status"], "description": b.get("description", ""),
              "attributes": {k: v for k, v in (b.get("attributes") or {}).items() if v is not None}}
        self.endpoints[mac] = ep
        return JSONResponse(ep, status_code=201)

    async def get(self, request: Request) -> Response:
        ep = self.endpoints.get(self._norm(request.path_params["mac"]))
        return JSONResponse(ep) if ep else JSONResponse({"title": "Not Found"}, status_code=404)

    async def patch(self, request: Request) -> Response:
        ep = self.endpoints.get(self._norm(request.path_params["mac"]))
        if ep is None:
            return JSONResponse({"title": "Not Found"}, status_code=404)
        b = await request.json()
        if "status" in b:
            if b["status"] not in ("Known", "Unknown", "Disabled"):
                return JSONResponse({"title": "Unprocessable"}, status_code=422)
            ep["status"] = b["status"]
        for k, v in (b.get("attributes") or {}).items():
            if v is None:
                ep["attributes"].pop(k, None)
            else:
                ep["attributes"][k] = v
        return JSONResponse(ep)

    async def coa_action(self, request: Request) -> Response:
        b = await request.json()
        mac = self._norm(request.path_params["mac"])
        self.coa.append((mac, list(b.get("enforcement_profile", []))))
        return JSONResponse({"count": 1, "status": True, "message": "CoA initiated"})
