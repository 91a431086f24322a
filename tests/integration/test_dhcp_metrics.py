"""The DHCP engine's labelled Prometheus families, fed by real packets on loopback through the native
engine and the shared collector, and linted with `promtool check metrics` (Debian's prometheus package,
installed by tools/install-test-deps.sh)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from typing import Any

import pytest
from prometheus_client import generate_latest

from bootgate.metrics import Metrics

from tests.integration.test_dhcp_engine import BASE, discover

native = pytest.importorskip("bootgate._native")


def request_4011(xid: int, arch: int) -> bytes:
    d = bytearray(discover(xid, arch))
    d[242] = 3  # option 53 value: REQUEST
    return bytes(d)


@pytest.fixture
def engine() -> Any:
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.settimeout(10)
    e = native.DhcpEngine(interface=None, bind_ip="127.0.0.1", server_ip="127.0.0.1", port=0, pxe_port=0,
                          client_port=client.getsockname()[1], broadcast_ip="127.0.0.1",
                          boot_table={"arm64": "arm64/snponly.efi"}, mac_deny=["02:00:00"], **BASE)
    yield e, client
    e.stop()
    client.close()


def test_labelled_families_count_real_packets_and_pass_promtool(engine: Any) -> None:
    e, client = engine
    dhcp, pxe = (("127.0.0.1", p) for p in e.local_ports())
    relay = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    relay.bind(("127.0.0.7", dhcp[1]))
    relay.settimeout(10)
    try:
        client.sendto(discover(1, 7), dhcp)                  # offer, efi_x64
        client.sendto(discover(2, 7), dhcp)                  # offer, efi_x64
        client.sendto(discover(3, 11), dhcp)                 # offer, arm64
        client.sendto(discover(4, 27), dhcp)                 # riscv64: no program -> drop
        client.sendto(discover(5, 0x1234), dhcp)             # unknown code, no default -> drop
        client.sendto(discover(6, 0, mac=bytes.fromhex("020000000001")), dhcp)  # denied
        client.sendto(discover(7, 0, vendor="MSFT 5.0"), dhcp)                  # not PXE
        client.sendto(b"\x01\x01\x06\x00" + b"\0" * 20, dhcp)                   # truncated
        client.sendto(request_4011(8, 0), pxe)               # ack, bios
        client.sendto(discover(9, 0, giaddr=bytes([127, 0, 0, 7])), dhcp)       # relayed, offer to the relay
        got = {int.from_bytes(client.recv(2048)[4:8], "big") for _ in range(4)}
        assert got == {1, 2, 3, 8}
        assert int.from_bytes(relay.recv(2048)[4:8], "big") == 9
    finally:
        relay.close()
    deadline = time.monotonic() + 10
    while dict(e.counters())["received"] < 10:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    m = Metrics(lambda: [("dhcp", e)])

    def v(name: str, **labels: str) -> float | None:
        return m.registry.get_sample_value(name, labels)

    assert v("bootgate_dhcp_requests_total", type="discover", arch="efi_x64") == 2
    assert v("bootgate_dhcp_requests_total", type="discover", arch="arm64") == 1
    assert v("bootgate_dhcp_requests_total", type="discover", arch="unknown") == 1
    assert v("bootgate_dhcp_requests_total", type="discover", arch="bios") == 2  # denied + relayed
    assert v("bootgate_dhcp_requests_total", type="request", arch="bios") == 1
    assert v("bootgate_dhcp_requests_total", type="inform", arch="none") == 0
    assert v("bootgate_dhcp_replies_total", type="offer", arch="efi_x64") == 2
    assert v("bootgate_dhcp_replies_total", type="offer", arch="bios") == 1
    assert v("bootgate_dhcp_replies_total", type="ack", arch="bios") == 1
    for reason in ("no_boot_program", "unknown_arch", "denied", "not_pxe", "malformed_truncated"):
        assert v("bootgate_dhcp_drops_total", reason=reason) == 1, reason
    assert v("bootgate_dhcp_drops_total", reason="send_error") == 0
    assert v("bootgate_dhcp_relay_messages_total", direction="received") == 1
    assert v("bootgate_dhcp_relay_messages_total", direction="sent") == 1
    text = generate_latest(m.registry).decode()
    assert "bootgate_dhcp_requests_total{" in text and "requests{" not in text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (tools/install-test-deps.sh installs Debian's prometheus)")
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
