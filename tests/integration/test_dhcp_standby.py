"""Standby mode with two real engines on loopback: a primary (127.0.0.1) and a standby (127.0.0.2,
[dhcp] standby with response_delay_ms). The client "broadcasts" by sending each request to both.
Primary up: the client takes the primary's offer and moves on, the standby stays silent. Primary down:
the client retransmits the same transaction after the delay and the standby answers, then answers that
client's next transaction (iPXE's own DHCP) at once. A secs field past the delay is answered at once."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.test_dhcp_engine import BASE, discover

native = pytest.importorskip("bootgate._native")

DELAY_MS = 300
MAC_A = bytes.fromhex("52540000aa01")
MAC_B = bytes.fromhex("52540000aa02")
MAC_C = bytes.fromhex("52540000aa03")


def with_secs(packet: bytes, secs: int) -> bytes:
    return packet[:8] + struct.pack("!H", secs) + packet[10:]


@pytest.fixture
def pair() -> Iterator[tuple[Any, Any, socket.socket]]:
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    port = client.getsockname()[1]

    def engine(ip: str, **kw: Any) -> Any:
        return native.DhcpEngine(interface=None, bind_ip=ip, server_ip=ip, port=0, pxe_port=0, client_port=port,
                                 broadcast_ip="127.0.0.1", **BASE, **kw)

    primary = engine("127.0.0.1")
    standby = engine("127.0.0.2", response_delay_ms=DELAY_MS, standby=True)
    yield primary, standby, client
    primary.stop()
    standby.stop()
    client.close()


def broadcast(client: socket.socket, packet: bytes, *engines: Any) -> None:
    for e, ip in engines:
        client.sendto(packet, (ip, e.local_ports()[0]))


def replies(client: socket.socket, wait: float) -> list[tuple[str, int]]:
    """(server address, xid) of every reply until nothing came for `wait` seconds."""
    out = []
    client.settimeout(wait)
    while True:
        try:
            data, (ip, _) = client.recvfrom(2048)
        except (TimeoutError, socket.timeout):
            return out
        out.append((ip, struct.unpack("!I", data[4:8])[0]))


def counter(engine: Any, name: str) -> int:
    return int(dict(engine.counters())[name])


def wait_counter(engine: Any, name: str, value: int) -> None:
    deadline = time.monotonic() + 10
    while counter(engine, name) < value:
        assert time.monotonic() < deadline, f"{name}: {dict(engine.counters())}"
        time.sleep(0.005)


def test_standby_silent_while_primary_answers_then_takes_over(pair: tuple[Any, Any, socket.socket]) -> None:
    primary, standby, client = pair
    both = ((primary, "127.0.0.1"), (standby, "127.0.0.2"))
    # Primary up: one DISCOVER, the primary's offer; the client moves on (its next transaction has a new xid,
    # even long after the delay): the standby never answers.
    broadcast(client, discover(1, 0, mac=MAC_A), *both)
    assert replies(client, 1.0) == [("127.0.0.1", 1)]
    time.sleep(DELAY_MS * 2 / 1000)
    broadcast(client, discover(2, 7, mac=MAC_A), *both)
    assert replies(client, 1.0) == [("127.0.0.1", 2)]
    wait_counter(standby, "ignored_standby_wait", 2)
    assert counter(standby, "answered_offer") == 0 and counter(standby, "answered_standby") == 0

    # Primary down: no answer to the first DISCOVER; the client retransmits the same xid after the delay and
    # the standby answers it; the client's next transaction (new xid) is answered at once.
    primary.stop()
    broadcast(client, discover(10, 0, mac=MAC_B), (standby, "127.0.0.2"))
    assert replies(client, DELAY_MS * 2 / 1000) == []
    broadcast(client, discover(10, 0, mac=MAC_B), (standby, "127.0.0.2"))
    assert replies(client, 1.0) == [("127.0.0.2", 10)]
    broadcast(client, discover(11, 7, mac=MAC_B), (standby, "127.0.0.2"))
    assert replies(client, 1.0) == [("127.0.0.2", 11)]
    assert counter(standby, "answered_standby") == 2

    # A client whose secs field is past the delay has waited long enough: answered on first sight.
    broadcast(client, with_secs(discover(20, 0, mac=MAC_C), 5), (standby, "127.0.0.2"))
    assert replies(client, 1.0) == [("127.0.0.2", 20)]
    events = standby.drain_events()
    assert [e["reason"] for e in events] == ["standby_wait", "standby_wait", "standby_wait", "", "", ""]
    assert dict(standby.counters())["drops{reason=standby_wait}"] == 3
