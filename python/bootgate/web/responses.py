"""Response helpers: orjson bodies, plain-text errors, iPXE scripts."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class OrjsonResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> OrjsonResponse:
    return OrjsonResponse({"error": message}, status_code=status, headers=headers)


class IpxeScriptResponse(Response):
    """An iPXE script (text/plain, Cache-Control: no-store): the same headers, in the same order, as
    ``Response(text, media_type="text/plain; charset=utf-8", headers={"Cache-Control": "no-store"})``,
    with only the content length worked out per response."""

    media_type = "text/plain; charset=utf-8"

    def __init__(self, text: str, status_code: int = 200) -> None:
        self.status_code = status_code
        self.background = None
        self.body = body = text.encode("utf-8")
        self.raw_headers = [(b"cache-control", b"no-store"), (b"content-length", str(len(body)).encode()),
                            (b"content-type", b"text/plain; charset=utf-8")]


def ipxe_script(text: str, status: int = 200) -> Response:
    if status < 200 or status in (204, 304):  # no content-length on those: Starlette's own rules
        return Response(text, status_code=status, media_type="text/plain; charset=utf-8",
                        headers={"Cache-Control": "no-store"})
    return IpxeScriptResponse(text, status)
