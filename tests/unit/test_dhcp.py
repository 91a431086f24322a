from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from pathlib import Path
from typing import Any

from bootgate.dhcp import DhcpService, compile_policy, engine_args, event_record, script_url, script_url_http, \
    trust_encap
from bootgate.events import EventRecorder
from bootgate.metrics import Metrics
from bootgate.store import Store
from bootgate.tls import ca_der, ensure_tls
from tests.conftest import settings_for

DHCP_ON = """
[http]
bind = "0.0.0.0"
[tftp]
bind = "198.18.0.1"
[dhcp]
interface = "br0"
server_ip = "198.18.0.1"
"""


def test_script_urls(tmp_path: Path) -> None:
    s = settings_for(tmp_path, DHCP_ON)
    assert script_url(s) == "https://198.18.0.1:8051/boot.ipxe"
    assert script_url_http(s) is None
    s2 = settings_for(tmp_path, DHCP_ON + "allow_http_scripts = true\n")
    assert script_url_http(s2) == "http://198.18.0.1:8050/boot.ipxe"


def test_script_url_uses_public_host_and_scheme_port(tmp_path: Path) -> None:
    body = DHCP_ON.replace('[http]\nbind = "0.0.0.0"', '[http]\nbind = "0.0.0.0"\nport = 8080\nhttps_port = 8443')
    body += 'script_scheme = "http"\n'
    s = settings_for(tmp_path, body)
    assert script_url(s) == "http://198.18.0.1:8080/boot.ipxe"


def test_trust_encap_is_suboption_90_with_sha256() -> None:
    der = b"\x30\x82fake-der"
    enc = trust_encap([der])
    assert enc[0] == 90 and enc[1] == 32 and enc[2:] == hashlib.sha256(der).digest()
    two = trust_encap([der, b"other"])
    assert two[1] == 64 and len(two) == 66
    assert trust_encap([]) == b""


def test_policy_and_engine_args(tmp_path: Path) -> None:
    s = settings_for(tmp_path, DHCP_ON)
    ensure_tls(s)
    der = ca_der(s.tls.ca_cert)
    assert der is not None
    p = compile_policy(s, der)
    assert p.tftp_server == "198.18.0.1"
    assert (p.boot_bios, p.boot_efi_x64) == ("undionly.kpxe", "snponly.efi")
    assert p.ipxe_encap == bytes([90, 32]) + hashlib.sha256(der).digest()
    args = engine_args(s, p)
    assert args["interface"] == "br0" and args["bind_ip"] == "0.0.0.0"
    assert args["broadcast_ip"] == "255.255.255.255" and args["client_port"] == 68
    assert (args["port"], args["pxe_port"]) == (67, 4011)
    assert args["script_url"] == "https://198.18.0.1:8051/boot.ipxe"
    assert args["ipxe_encap"] == p.ipxe_encap


def test_no_trust_without_flag_or_with_foreign_ca(tmp_path: Path) -> None:
    s = settings_for(tmp_path, DHCP_ON + "trust_ca = false\n")
    assert compile_policy(s, b"der").ipxe_encap == b""
    s2 = settings_for(tmp_path, DHCP_ON + '[tls]\ncert = "/x.pem"\nkey = "/x.key"\n')
    assert compile_policy(s2, b"der").ipxe_encap == b""


def test_event_record() -> None:
    r = event_record({"time": 5.0, "mac": "52:54:00:AA:BB:CC", "uuid": None, "arch": 7, "message_type": 1,
                      "vendor_class": "PXEClient:Arch:00007", "user_class": "", "is_ipxe": False, "port": 67,
                      "relay": None, "answer": "snponly.efi"})
    assert r.kind == "dhcp" and r.mac == "52:54:00:aa:bb:cc" and r.time == 5.0
    assert r.detail["arch"] == 7 and r.detail["answer"] == "snponly.efi" and r.detail["port"] == 67
    assert r.detail["is_ipxe"] is False


class FakeEngine:
    """Implements the native engine handle's methods over a socket pair, like the real queue."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.rx, self.tx = socket.socketpair()
        self.rx.setblocking(False)
        self.queue: list[dict[str, Any]] = []
        self.stopped = False

    def push(self, e: dict[str, Any]) -> None:
        self.queue.append(e)
        self.tx.send(b"\x01")

    def counters(self) -> list[tuple[str, int]]:
        return [("requests", 3), ("dropped_malformed", 1)]

    def drain_events(self, max: int = 1024) -> list[dict[str, Any]]:
        try:
            while self.rx.recv(64):
                pass
        except BlockingIOError:
            pass
        out, self.queue = self.queue[:max], self.queue[max:]
        if self.queue:
            self.tx.send(b"\x01")
        return out

    def event_fd(self) -> int:
        return self.rx.fileno()

    def stop(self) -> None:
        self.stopped = True
        self.rx.close()
        self.tx.close()


async def test_events_flow_from_engine_to_store(tmp_path: Path) -> None:
    s = settings_for(tmp_path, DHCP_ON)
    ensure_tls(s)
    store = await Store.open(s.store.url)
    recorder = EventRecorder(store)
    metrics = Metrics()
    engines: list[FakeEngine] = []

    def factory(**kw: Any) -> FakeEngine:
        engines.append(FakeEngine(**kw))
        return engines[-1]

    svc = DhcpService.start(s, recorder, asyncio.get_running_loop(), metrics, factory=factory)
    fake = engines[0]
    assert fake.kwargs["interface"] == "br0" and len(fake.kwargs["ipxe_encap"]) == 34
    for i in range(3):
        fake.push({"time": 1.0 + i, "mac": f"52:54:00:00:00:0{i}", "arch": 0, "answer": "undionly.kpxe",
                   "port": 67, "is_ipxe": False})
    for _ in range(100):
        await asyncio.sleep(0.01)
        if not fake.queue:
            break
    await recorder.flush()
    rows = await store.list_events(kind="dhcp")
    assert [r["mac"] for r in rows] == ["52:54:00:00:00:02", "52:54:00:00:00:01", "52:54:00:00:00:00"]
    assert rows[0]["detail"]["answer"] == "undionly.kpxe"
    assert metrics.registry.get_sample_value("bootgate_engine_events_total", {"engine": "dhcp"}) == 3
    svc.stop()
    assert fake.stopped
    await store.close()


async def test_bad_events_are_counted_not_fatal(tmp_path: Path) -> None:
    s = settings_for(tmp_path, DHCP_ON)
    store = await Store.open(s.store.url)
    recorder = EventRecorder(store)
    fake = FakeEngine()
    svc = DhcpService.start(s, recorder, asyncio.get_running_loop(), factory=lambda **kw: fake)
    fake.queue.append({"no": "time"})
    fake.queue.append({"time": 2.0, "mac": "52:54:00:00:00:09"})
    assert svc.pump.drain_once() == 2
    assert svc.pump.bad == 1
    await recorder.flush()
    assert [r["mac"] for r in await store.list_events()] == ["52:54:00:00:00:09"]
    svc.stop()
    await store.close()
    assert os.path.exists(s.server.data_dir)
