"""A small RADIUS client for Change-of-Authorization (RFC 5176) over UDP, written from RFC 2865/5176.

Only what bootgate needs: build a CoA-Request or Disconnect-Request with plain and vendor-specific
attributes, sign it (Request Authenticator per RFC 5176 3.5, Message-Authenticator per RFC 3579 3.2),
send it with retries and backoff, and check the answer's Response Authenticator before trusting it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import struct
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "CODES", "Attr", "CoaResult", "RadiusError", "build_request", "parse_packet", "send_request",
    "CALLING_STATION_ID", "MESSAGE_AUTHENTICATOR", "NAS_IP_ADDRESS", "VENDOR_SPECIFIC", "CISCO", "CISCO_AVPAIR",
    "ERROR_CAUSE", "USER_NAME",
]

CODES = {"CoA-Request": 43, "CoA-ACK": 44, "CoA-NAK": 45,
         "Disconnect-Request": 40, "Disconnect-ACK": 41, "Disconnect-NAK": 42}
USER_NAME = 1
NAS_IP_ADDRESS = 4
VENDOR_SPECIFIC = 26
CALLING_STATION_ID = 31
MESSAGE_AUTHENTICATOR = 80
ERROR_CAUSE = 101
CISCO = 9
CISCO_AVPAIR = 1


class RadiusError(Exception):
    pass


@dataclass(frozen=True)
class Attr:
    type: int
    value: bytes
    vendor: int = 0  # non-zero: a Vendor-Specific attribute (type 26) with this vendor id and vendor type

    def encode(self) -> bytes:
        if self.vendor:
            inner = struct.pack("!BB", self.type, 2 + len(self.value)) + self.value
            body = struct.pack("!I", self.vendor) + inner
            t = VENDOR_SPECIFIC
        else:
            body, t = self.value, self.type
        if len(body) > 253:
            raise RadiusError(f"attribute {t} too long ({len(body)} bytes)")
        return struct.pack("!BB", t, 2 + len(body)) + body


@dataclass(frozen=True)
class CoaResult:
    acked: bool
    code: int
    error_cause: int | None = None


def build_request(code: int, ident: int, attrs: Sequence[Attr], secret: bytes) -> bytes:
    """A signed CoA-/Disconnect-Request (Message-Authenticator included)."""
    body = b"".join(a.encode() for a in attrs)
    ma = struct.pack("!BB", MESSAGE_AUTHENTICATOR, 18) + bytes(16)
    length = 20 + len(body) + len(ma)
    if length > 4096:
        raise RadiusError("packet too long")
    zero_auth_packet = struct.pack("!BBH", code, ident, length) + bytes(16) + body + ma
    mac = hmac.new(secret, zero_auth_packet, hashlib.md5).digest()
    attrs_bytes = body + ma[:2] + mac
    auth = hashlib.md5(struct.pack("!BBH", code, ident, length) + bytes(16) + attrs_bytes + secret).digest()
    return struct.pack("!BBH", code, ident, length) + auth + attrs_bytes


def parse_packet(data: bytes) -> tuple[int, int, bytes, list[tuple[int, bytes]]]:
    """(code, identifier, authenticator, [(type, value)]); RadiusError when malformed."""
    if len(data) < 20:
        raise RadiusError("short packet")
    code, ident, length = struct.unpack("!BBH", data[:4])
    if length < 20 or length > len(data):
        raise RadiusError("bad length")
    attrs: list[tuple[int, bytes]] = []
    pos = 20
    while pos < length:
        if pos + 2 > length:
            raise RadiusError("truncated attribute")
        t, alen = data[pos], data[pos + 1]
        if alen < 2 or pos + alen > length:
            raise RadiusError("bad attribute length")
        attrs.append((t, data[pos + 2:pos + alen]))
        pos += alen
    return code, ident, data[4:20], attrs


def _check_response(resp: bytes, req: bytes, secret: bytes) -> tuple[int, list[tuple[int, bytes]]]:
    code, ident, auth, attrs = parse_packet(resp)
    if ident != req[1]:
        raise RadiusError("identifier mismatch")
    length = struct.unpack("!H", resp[2:4])[0]
    want = hashlib.md5(resp[:4] + req[4:20] + resp[20:length] + secret).digest()
    if not hmac.compare_digest(want, auth):
        raise RadiusError("bad response authenticator (wrong secret?)")
    return code, attrs


class _Proto(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.queue.put_nowait(data)


async def send_request(host: str, port: int, secret: bytes, code: int, attrs: Sequence[Attr], *,
                       timeout: float = 2.0, attempts: int = 3, backoff: float = 2.0) -> CoaResult:
    """Sends the request, retransmitting the same packet on timeout (waits timeout, timeout*backoff, ...).
    Returns the verified answer; RadiusError when there is none."""
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Proto, remote_addr=(host, port))
    try:
        packet = build_request(code, secrets.randbelow(256), attrs, secret)
        wait = timeout
        for _ in range(max(1, attempts)):
            transport.sendto(packet)
            deadline = loop.time() + wait
            while (left := deadline - loop.time()) > 0:
                try:
                    data = await asyncio.wait_for(proto.queue.get(), left)
                except TimeoutError:
                    break
                try:
                    rcode, rattrs = _check_response(data, packet, secret)
                except RadiusError:
                    continue  # not an answer to us: keep waiting
                cause = next((int.from_bytes(v, "big") for t, v in rattrs if t == ERROR_CAUSE and len(v) == 4),
                             None)
                return CoaResult(acked=rcode in (CODES["CoA-ACK"], CODES["Disconnect-ACK"]), code=rcode,
                                 error_cause=cause)
            wait *= backoff
        raise RadiusError(f"no answer from {host}:{port} after {attempts} attempts")
    finally:
        transport.close()
