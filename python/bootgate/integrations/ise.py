"""Cisco ISE backend: ERS endpoint API for the exception group, MnT API for the re-authentication CoA.

ERS (port 9060, HTTP Basic, JSON with ``Accept``/``Content-Type: application/json``):
  GET  /ers/config/endpointgroup/name/{name}        -> {"EndPointGroup": {"id": ..., "name": ...}}
  GET  /ers/config/endpoint?filter=mac.EQ.{MAC}     -> {"SearchResult": {"total": n, "resources": [{"id": ...}]}}
  GET  /ers/config/endpoint/{id}                    -> {"ERSEndPoint": {...}}
  POST /ers/config/endpoint                         -> 201 (new endpoint, statically in the group)
  PUT  /ers/config/endpoint/{id}                    -> 200 (moved into / out of the group)
MnT (the CoA is ISE's, it owns the session):
  GET  /admin/API/mnt/CoA/Reauth/{psn}/{MAC}/{type} -> XML <remoteCoA requestType="reauth"><results>true</results>

grant looks the endpoint up, then creates it or moves it into the exception group (nothing when it is
already there); revoke moves it back to the fallback group only if it is still in the exception group.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx

from .mab import mac_formats

__all__ = ["IseBackend"]


class IseError(RuntimeError):
    pass


class IseBackend:
    name = "ise"

    def __init__(self, base_url: str, username: str, password: str, *, exception_group: str,
                 fallback_group: str = "Unknown", psn: str = "", reauth_type: int = 1, verify: str | bool = True,
                 timeout: float = 10.0, transport: httpx.AsyncBaseTransport | None = None,
                 mnt_url: str = "") -> None:
        self.base_url = base_url.rstrip("/")
        self.mnt_url = (mnt_url or base_url).rstrip("/")
        self.exception_group = exception_group
        self.fallback_group = fallback_group
        self.psn = psn
        self.reauth_type = reauth_type
        self._client_args: dict[str, Any] = {
            "auth": (username, password), "verify": verify, "timeout": timeout,
            "headers": {"Accept": "application/json", "Content-Type": "application/json"},
        }
        if transport is not None:
            self._client_args["transport"] = transport
        self._group_ids: dict[str, str] = {}

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(**self._client_args)

    @staticmethod
    def _check(r: httpx.Response, *ok: int) -> None:
        if r.status_code not in ok:
            raise IseError(f"ISE {r.request.method} {r.request.url.path}: HTTP {r.status_code}")

    async def _group_id(self, c: httpx.AsyncClient, name: str) -> str:
        if name not in self._group_ids:
            r = await c.get(f"{self.base_url}/ers/config/endpointgroup/name/{name}")
            self._check(r, 200)
            self._group_ids[name] = str(r.json()["EndPointGroup"]["id"])
        return self._group_ids[name]

    async def _endpoint(self, c: httpx.AsyncClient, mac: str) -> dict[str, Any] | None:
        r = await c.get(f"{self.base_url}/ers/config/endpoint", params={"filter": f"mac.EQ.{mac}"})
        self._check(r, 200)
        resources = r.json().get("SearchResult", {}).get("resources", [])
        if not resources:
            return None
        r = await c.get(f"{self.base_url}/ers/config/endpoint/{resources[0]['id']}")
        self._check(r, 200)
        ep: dict[str, Any] = r.json()["ERSEndPoint"]
        return ep

    async def grant(self, mac: str, expires: float, user: str) -> None:
        m = mac_formats(mac)["COLON"]
        until = dt.datetime.fromtimestamp(expires, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        desc = f"bootgate imaging exception until {until} (login {user})"
        async with self._client() as c:
            gid = await self._group_id(c, self.exception_group)
            ep = await self._endpoint(c, m)
            if ep is None:
                r = await c.post(f"{self.base_url}/ers/config/endpoint", json={"ERSEndPoint": {
                    "name": m, "mac": m, "groupId": gid, "staticGroupAssignment": True, "description": desc}})
                self._check(r, 201)
            elif ep.get("groupId") != gid:
                r = await c.put(f"{self.base_url}/ers/config/endpoint/{ep['id']}", json={"ERSEndPoint": {
                    "id": ep["id"], "name": ep.get("name", m), "mac": m, "groupId": gid,
                    "staticGroupAssignment": True, "description": desc}})
                self._check(r, 200)

    async def revoke(self, mac: str) -> None:
        m = mac_formats(mac)["COLON"]
        async with self._client() as c:
            gid = await self._group_id(c, self.exception_group)
            ep = await self._endpoint(c, m)
            if ep is None or ep.get("groupId") != gid:
                return
            fallback = await self._group_id(c, self.fallback_group)
            r = await c.put(f"{self.base_url}/ers/config/endpoint/{ep['id']}", json={"ERSEndPoint": {
                "id": ep["id"], "name": ep.get("name", m), "mac": m, "groupId": fallback,
                "staticGroupAssignment": False, "description": ""}})
            self._check(r, 200)

    async def reauthenticate(self, mac: str) -> None:
        if not self.psn:
            raise IseError("ISE reauthenticate: no policy service node (psn) configured")
        m = mac_formats(mac)["COLON"]
        async with self._client() as c:
            r = await c.get(f"{self.mnt_url}/admin/API/mnt/CoA/Reauth/{self.psn}/{m}/{self.reauth_type}",
                            headers={"Accept": "application/xml"})
        self._check(r, 200)
        if "<results>true</results>" not in r.text.replace(" ", ""):
            raise IseError("ISE reauthenticate: CoA not confirmed")
