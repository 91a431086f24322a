"""The native DHCP engine through its Python API on loopback: architecture table, MAC rules swapped
with set_policy, event fields, counters, and argument errors. Waits bounded; no timing assertions."""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

import pytest

native = pytest.importorskip("bootgate._native")

MAC = bytes.fromhex("525400abcdef")
BASE: dict[str, Any] = {"tftp_server": "127.0.0.1", "boot_bios": "undionly.kpxe", "boot_efi_x64": "snponly.efi",
                        "script_url": "https://127.0.0.1:8051/boot.ipxe"}


def discover(xid: int, arch: int, vendor: str = "PXEClient", mac: bytes = MAC, giaddr: bytes = b"\0" * 4,
             extra: bytes = b"") -> bytes:
    head = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0, b"\0" * 4, b"\0" * 4, b"\0" * 4,
                       giaddr, mac.ljust(16, b"\0"), b"", b"")
    vc = f"{vendor}:Arch:{arch:05d}:UNDI:003000".encode()
    opts = bytes([53, 1, 1, 93, 2]) + struct.pack("!H", arch) + bytes([60, len(vc)]) + vc + extra + b"\xff"
    return (head + b"\x63\x82\x53\x63" + opts).ljust(300, b"\0")


def file_of(reply: bytes) -> str:
    return reply[108:236].split(b"\0", 1)[0].decode()


@pytest.fixture
def lab() -> Any:
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.settimeout(10)
    engine = native.DhcpEngine(interface=None, bind_ip="127.0.0.1", server_ip="127.0.0.1", port=0, pxe_port=0,
                               client_port=client.getsockname()[1], broadcast_ip="127.0.0.1",
                               boot_table={"arm64": "arm64/snponly.efi",
                                           "http_efi_x64": "http://127.0.0.1:8050/content/ipxe.efi"},
                               **BASE)
    yield engine, client, ("127.0.0.1", engine.local_ports()[0])
    engine.stop()
    client.close()


def counters(engine: Any) -> dict[str, int]:
    return dict(engine.counters())


def wait_for(engine: Any, name: str, value: int) -> None:
    deadline = time.monotonic() + 10
    while counters(engine)[name] < value:
        assert time.monotonic() < deadline, f"{name} stuck at {counters(engine)[name]}"
        time.sleep(0.005)


def recv_xid(client: socket.socket) -> tuple[int, bytes]:
    data = client.recv(2048)
    return struct.unpack("!I", data[4:8])[0], data


def test_arch_table_and_http_boot(lab: Any) -> None:
    engine, client, dhcp = lab
    client.sendto(discover(1, 11), dhcp)
    assert file_of(recv_xid(client)[1]) == "arm64/snponly.efi"
    client.sendto(discover(2, 16, "HTTPClient"), dhcp)
    xid, r = recv_xid(client)
    assert xid == 2 and file_of(r) == "http://127.0.0.1:8050/content/ipxe.efi"
    assert b"\x3c\x0aHTTPClient" in r[240:], "option 60 HTTPClient"
    client.sendto(discover(3, 27), dhcp)  # RISC-V 64: nothing configured
    client.sendto(discover(4, 0), dhcp)
    assert recv_xid(client)[0] == 4
    wait_for(engine, "answered_offer", 3)
    c = counters(engine)
    assert c["requests_arch_arm64"] == 1 and c["requests_arch_riscv64"] == 1 and c["answered_http_boot"] == 1
    assert c["ignored_no_boot_program"] == 1
    events = engine.drain_events()
    assert [(e["arch"], e["reason"]) for e in events] == [(11, ""), (16, ""), (27, "no_boot_program"), (0, "")]
    assert all(set(e) >= {"relay_agent_info", "reason", "delayed"} for e in events)


def test_set_policy_known_only_and_deny(lab: Any) -> None:
    engine, client, dhcp = lab
    other = bytes.fromhex("021122334455")
    engine.set_policy(known_only=True, known_macs=["02:11:22:33:44:55"], **BASE)
    client.sendto(discover(10, 0), dhcp)
    client.sendto(discover(11, 0, mac=other), dhcp)
    assert recv_xid(client)[0] == 11
    wait_for(engine, "ignored_unknown_machine", 1)
    engine.set_policy(mac_deny=["02:11:22"], **BASE)
    client.sendto(discover(12, 0, mac=other), dhcp)
    client.sendto(discover(13, 0), dhcp)
    assert recv_xid(client)[0] == 13
    wait_for(engine, "ignored_denied", 1)
    reasons = [e["reason"] for e in engine.drain_events() if e["reason"]]
    assert reasons == ["unknown_machine", "denied"]


def test_option_82_reaches_the_event(lab: Any) -> None:
    engine, client, dhcp = lab
    relay = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    relay.bind(("127.0.0.5", dhcp[1]))
    relay.settimeout(10)
    try:
        client.sendto(discover(20, 0, giaddr=bytes([127, 0, 0, 5]), extra=bytes([82, 5, 1, 3, 0x70, 0x6F, 0x31])),
                      dhcp)
        xid, r = recv_xid(relay)
        assert xid == 20 and r[24:28] == bytes([127, 0, 0, 5])
    finally:
        relay.close()
    wait_for(engine, "relay_replies", 1)
    (e,) = engine.drain_events()
    assert e["relay"] == "127.0.0.5" and e["relay_agent_info"] == "0103706f31"


@pytest.mark.parametrize("kw, needle", [
    ({"boot_table": {"sparc": "x"}}, "sparc"),
    ({"mac_allow": ["52:54:0"]}, "52:54:0"),
    ({"known_macs": ["52:54:00"]}, "known_macs"),
    ({"subnets": [("10.0.0.0/33", {"bios": "x"})]}, "10.0.0.0/33"),
    ({"subnets": [("10.0.0.0/8", {"bogus": "x"})]}, "bogus"),
])
def test_bad_policy_arguments_raise_value_error(lab: Any, kw: dict[str, Any], needle: str) -> None:
    engine, _, _ = lab
    with pytest.raises(ValueError, match=needle):
        engine.set_policy(**kw, **BASE)
