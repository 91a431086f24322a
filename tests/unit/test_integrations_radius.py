from __future__ import annotations

import asyncio
import hashlib
import hmac
import struct
from typing import cast

import pytest

from bootgate.integrations import radius
from bootgate.integrations.mab import CoaTarget, send_coa

SECRET = b"s3cret"


def test_request_authenticator_and_message_authenticator() -> None:
    attrs = [radius.Attr(radius.CALLING_STATION_ID, b"52-54-00-AA-BB-CC"),
             radius.Attr(radius.CISCO_AVPAIR, b"subscriber:command=reauthenticate", vendor=radius.CISCO)]
    pkt = radius.build_request(43, 7, attrs, SECRET)
    code, ident, auth, parsed = radius.parse_packet(pkt)
    assert (code, ident) == (43, 7) and struct.unpack("!H", pkt[2:4])[0] == len(pkt)
    # RFC 5176 3.5: MD5(Code+Identifier+Length+16 zero octets+Attributes+Secret)
    assert auth == hashlib.md5(pkt[:4] + bytes(16) + pkt[20:] + SECRET).digest()
    # RFC 3579 3.2: HMAC-MD5 over the packet with the Message-Authenticator (and the authenticator) zeroed
    ma = [v for t, v in parsed if t == radius.MESSAGE_AUTHENTICATOR][0]
    zeroed = pkt[:4] + bytes(16) + pkt[20:-16] + bytes(16)
    assert ma == hmac.new(SECRET, zeroed, hashlib.md5).digest()
    vsa = [v for t, v in parsed if t == radius.VENDOR_SPECIFIC][0]
    assert vsa[:4] == b"\x00\x00\x00\x09" and vsa[4] == 1 and vsa[6:] == b"subscriber:command=reauthenticate"


@pytest.mark.parametrize("data", [b"", b"\x2c" * 19, b"\x2c\x01\x00\x10" + bytes(16),
                                  b"\x2c\x01\x00\x17" + bytes(16) + b"\x01\x01\x00",
                                  b"\x2c\x01\x00\x16" + bytes(16) + b"\x01\x05"])
def test_malformed_packets_are_errors(data: bytes) -> None:
    with pytest.raises(radius.RadiusError):
        radius.parse_packet(data)


class FakeSwitch(asyncio.DatagramProtocol):
    """Answers CoA-Requests: `mode` ack | nak | badauth | silent."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.received: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.received.append(data)
        if self.mode == "silent":
            return
        code = 44 if self.mode in ("ack", "badauth") else 45
        attrs = b"" if code == 44 else struct.pack("!BBI", radius.ERROR_CAUSE, 6, 503)
        hdr = struct.pack("!BBH", code, data[1], 20 + len(attrs))
        secret = SECRET if self.mode != "badauth" else b"other"
        auth = hashlib.md5(hdr + data[4:20] + attrs + secret).digest()
        self.transport.sendto(hdr + auth + attrs, addr)


async def with_switch(mode: str, attempts: int = 3) -> tuple[FakeSwitch, Exception | None]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(lambda: FakeSwitch(mode), local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    err: Exception | None = None
    try:
        await send_coa(CoaTarget("127.0.0.1", port, SECRET), "5254.00aa.bbcc", timeout=0.2, attempts=attempts)
    except RuntimeError as e:
        err = e
    finally:
        transport.close()
    return proto, err


async def test_coa_acked() -> None:
    sw, err = await with_switch("ack")
    assert err is None and len(sw.received) == 1
    _, _, _, attrs = radius.parse_packet(sw.received[0])
    assert (radius.CALLING_STATION_ID, b"52-54-00-AA-BB-CC") in attrs


async def test_coa_nak_with_error_cause() -> None:
    _, err = await with_switch("nak")
    assert err is not None and "refused" in str(err) and "503" in str(err)


async def test_answer_with_wrong_secret_is_ignored_and_silence_retransmits() -> None:
    sw, err = await with_switch("badauth", attempts=2)
    assert err is not None and "no answer" in str(err) and len(sw.received) == 2
    sw, err = await with_switch("silent", attempts=3)
    assert err is not None and len(sw.received) == 3 and len(set(sw.received)) == 1  # same packet resent
