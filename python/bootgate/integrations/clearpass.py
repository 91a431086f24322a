"""Aruba ClearPass backend: endpoint status and an expiry attribute through the ClearPass API, and the
re-authentication CoA through its session-action API (ClearPass owns the RADIUS session).

  POST  /api/oauth                          {"grant_type": "client_credentials", ...} -> {"access_token": ...}
  GET   /api/endpoint/mac-address/{mac}     -> 200 endpoint | 404
  POST  /api/endpoint                       -> 201 {"mac_address", "status": "Known", "attributes": {...}}
  PATCH /api/endpoint/mac-address/{mac}     -> 200
  POST  /api/session-action/coa/mac/{mac}   {"enforcement_profile": [...]} -> 200

grant sets status Known and the expiry attribute (default "MAC-Auth Expiry", "YYYY-MM-DD hh:mm:ss" UTC,
which ClearPass enforcement can compare against the current time); revoke sets status Unknown and clears it.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import httpx

from .mab import mac_formats

__all__ = ["ClearPassBackend"]


class ClearPassError(RuntimeError):
    pass


class ClearPassBackend:
    name = "clearpass"

    def __init__(self, base_url: str, client_id: str, client_secret: str, *,
                 expiry_attribute: str = "MAC-Auth Expiry", coa_profile: str = "", verify: str | bool = True,
                 timeout: float = 10.0, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.expiry_attribute = expiry_attribute
        self.coa_profile = coa_profile
        self._client_args: dict[str, Any] = {"verify": verify, "timeout": timeout}
        if transport is not None:
            self._client_args["transport"] = transport
        self._token = ""
        self._token_until = 0.0

    async def _auth(self, c: httpx.AsyncClient, force: bool = False) -> dict[str, str]:
        if force or not self._token or time.monotonic() >= self._token_until:
            r = await c.post(f"{self.base_url}/api/oauth", json={
                "grant_type": "client_credentials", "client_id": self.client_id,
                "client_secret": self.client_secret})
            if r.status_code != 200:
                raise ClearPassError(f"ClearPass OAuth: HTTP {r.status_code}")
            body = r.json()
            self._token = str(body["access_token"])
            self._token_until = time.monotonic() + max(0, int(body.get("expires_in", 300)) - 30)
        return {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}

    async def _request(self, c: httpx.AsyncClient, method: str, path: str, **kw: Any) -> httpx.Response:
        r = await c.request(method, self.base_url + path, headers=await self._auth(c), **kw)
        if r.status_code == 401:  # token expired early or revoked: once more with a fresh one
            r = await c.request(method, self.base_url + path, headers=await self._auth(c, force=True), **kw)
        return r

    @staticmethod
    def _check(r: httpx.Response, *ok: int) -> None:
        if r.status_code not in ok:
            raise ClearPassError(f"ClearPass {r.request.method} {r.request.url.path}: HTTP {r.status_code}")

    async def grant(self, mac: str, expires: float, user: str) -> None:
        m = mac_formats(mac)["bare"]
        until = dt.datetime.fromtimestamp(expires, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        attrs = {self.expiry_attribute: until, "bootgate User": user}
        async with httpx.AsyncClient(**self._client_args) as c:
            r = await self._request(c, "GET", f"/api/endpoint/mac-address/{m}")
            if r.status_code == 404:
                r = await self._request(c, "POST", "/api/endpoint", json={
                    "mac_address": m, "status": "Known", "description": "bootgate imaging exception",
                    "attributes": attrs})
                self._check(r, 201)
                return
            self._check(r, 200)
            r = await self._request(c, "PATCH", f"/api/endpoint/mac-address/{m}",
                                    json={"status": "Known", "attributes": attrs})
            self._check(r, 200)

    async def revoke(self, mac: str) -> None:
        m = mac_formats(mac)["bare"]
        async with httpx.AsyncClient(**self._client_args) as c:
            r = await self._request(c, "GET", f"/api/endpoint/mac-address/{m}")
            if r.status_code == 404:
                return
            self._check(r, 200)
            if self.expiry_attribute not in (r.json().get("attributes") or {}):
                return  # not ours (or already revoked)
            r = await self._request(c, "PATCH", f"/api/endpoint/mac-address/{m}", json={
                "status": "Unknown", "attributes": {self.expiry_attribute: None, "bootgate User": None}})
            self._check(r, 200)

    async def reauthenticate(self, mac: str) -> None:
        m = mac_formats(mac)["bare"]
        body = {"enforcement_profile": [self.coa_profile]} if self.coa_profile else {}
        async with httpx.AsyncClient(**self._client_args) as c:
            r = await self._request(c, "POST", f"/api/session-action/coa/mac/{m}", json=body)
        self._check(r, 200)
