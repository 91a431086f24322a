"""[boot] architecture table, [dhcp] MAC rules / standby settings -> the engine policy; config errors."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from bootgate.config import BOOT_TABLE_KEYS, ConfigError, parse_boot_subnets, split_macs
from bootgate.dhcp import DhcpService, compile_policy, engine_args, event_record, policy_args, priority_encap
from bootgate.events import EventRecorder
from bootgate.policy import MachineAction
from bootgate.store import Store
from tests.conftest import settings_for

DHCP_ON = """
[http]
bind = "0.0.0.0"
[tftp]
bind = "198.18.0.1"
[dhcp]
interface = "br0"
server_ip = "198.18.0.1"
trust_ca = false
"""


def test_default_table_has_only_bios_and_efi_x64(tmp_path: Path) -> None:
    s = settings_for(tmp_path, DHCP_ON)
    assert s.boot.table() == {"bios": "undionly.kpxe", "efi_x64": "snponly.efi"}
    p = compile_policy(s)
    assert p.boot_table == {} and p.subnets == [] and p.mac_allow == [] and p.known_only is False
    assert p.response_delay_ms == 0 and p.ipxe_encap == b""
    assert set(engine_args(s, p)) >= {"boot_table", "mac_allow", "mac_deny", "known_only", "known_macs", "subnets",
                                      "response_delay_ms"}


def test_architecture_keys_and_http_boot_urls(tmp_path: Path) -> None:
    body = DHCP_ON + """
[boot]
arm64 = "arm64/snponly.efi"
riscv64 = "riscv64/ipxe.efi"
default = "fallback.kpxe"
http_efi_x64 = "ipxe.efi"
http_arm64 = "https://boot.example/arm64.efi"
"""
    p = compile_policy(settings_for(tmp_path, body))
    assert p.boot_table == {
        "arm64": "arm64/snponly.efi",
        "riscv64": "riscv64/ipxe.efi",
        "default": "fallback.kpxe",
        "http_efi_x64": "http://198.18.0.1:8050/content/ipxe.efi",
        "http_arm64": "https://boot.example/arm64.efi",
    }
    assert (p.boot_bios, p.boot_efi_x64) == ("undionly.kpxe", "snponly.efi")


def test_every_table_key_is_a_config_key() -> None:
    assert "http_bios" not in BOOT_TABLE_KEYS
    assert {"bios", "efi_x64", "loongarch64", "default", "http_efi_x64", "http_default"} <= set(BOOT_TABLE_KEYS)


@pytest.mark.parametrize("line, needle", [
    ('arm64 = "a b.efi"', "[boot] arm64"),
    ('http_arm64 = "ftp://x/a.efi"', "not an http"),
    ('http_arm64 = "../a.efi"', "climbs"),
    ('http_arm64 = "/abs.efi"', "absolute"),
    ('riscv64 = "' + "x" * 128 + '"', "127 bytes"),
])
def test_bad_boot_entries_are_config_errors(tmp_path: Path, line: str, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        settings_for(tmp_path, DHCP_ON + "[boot]\n" + line + "\n")
    assert needle in str(e.value)


def test_relative_http_url_needs_plain_http(tmp_path: Path) -> None:
    body = DHCP_ON.replace('bind = "0.0.0.0"', 'bind = "0.0.0.0"\nport = 0') + '\nscript_scheme = "https"\n'
    body += '[boot]\nhttp_efi_x64 = "ipxe.efi"\n'
    with pytest.raises(ConfigError, match=r"relative path .* \[http\] port is 0"):
        settings_for(tmp_path, body)


def test_subnets_parse_and_resolve(tmp_path: Path) -> None:
    assert parse_boot_subnets("") == []
    got = parse_boot_subnets(" 198.18.4.7/24: bios=lab.kpxe efi_x64=lab.efi ; 10.1.0.0/16: http_arm64=a.efi")
    assert got == [("198.18.4.0/24", {"bios": "lab.kpxe", "efi_x64": "lab.efi"}),
                   ("10.1.0.0/16", {"http_arm64": "a.efi"})]
    for bad in ("198.18.4.0/24 bios=x", "300.1.1.0/24: bios=x", "10.0.0.0/8: sparc=x", "10.0.0.0/8:",
                "10.0.0.0/8: bios"):
        with pytest.raises(ValueError):
            parse_boot_subnets(bad)
    body = DHCP_ON + '[boot]\nsubnets = "198.19.7.0/24: efi_x64=lab/ipxe.efi http_efi_x64=lab.efi"\n'
    p = compile_policy(settings_for(tmp_path, body))
    assert p.subnets == [("198.19.7.0/24", {"efi_x64": "lab/ipxe.efi",
                                            "http_efi_x64": "http://198.18.0.1:8050/content/lab.efi"})]
    with pytest.raises(ConfigError, match=r"\[boot\] subnets"):
        settings_for(tmp_path, DHCP_ON + '[boot]\nsubnets = "nonsense"\n')


def test_mac_lists_known_only_delay_priority(tmp_path: Path) -> None:
    assert split_macs(" 52:54:00, AA-BB-CC-DD-EE-FF\n02:00 ") == ["52:54:00", "aa:bb:cc:dd:ee:ff", "02:00"]
    with pytest.raises(ValueError, match="zz"):
        split_macs("52:54:00, zz")
    body = DHCP_ON + ('mac_allow = "52:54:00"\nmac_deny = "52:54:00:00:00:01"\nknown_only = true\n'
                      'response_delay_ms = 1500\nipxe_priority = -5\n')
    p = compile_policy(settings_for(tmp_path, body), known_macs=["52:54:00:00:00:09"])
    assert (p.mac_allow, p.mac_deny, p.known_only) == (["52:54:00"], ["52:54:00:00:00:01"], True)
    assert p.known_macs == ["52:54:00:00:00:09"] and p.response_delay_ms == 1500
    assert p.ipxe_encap == bytes([1, 1, 0xFB]), "175.1 = -5 as a signed byte"
    assert priority_encap(0) == b""
    assert p.standby is False
    p = compile_policy(settings_for(tmp_path, DHCP_ON + "response_delay_ms = 3000\nstandby = true\nipv6_ra = true\n"))
    assert p.standby is True and p.response_delay_ms == 3000 and engine_args(
        settings_for(tmp_path, DHCP_ON), p)["standby"] is True
    for line, key in (('mac_deny = "52:54:0"', "mac_deny"), ("response_delay_ms = 20000", "response_delay_ms"),
                      ("ipxe_priority = 200", "ipxe_priority"), ("standby = true", "standby")):
        with pytest.raises(ConfigError, match=rf"\[dhcp\] {key}"):
            settings_for(tmp_path, DHCP_ON + line + "\n")


def test_event_record_keeps_relay_info_and_reason() -> None:
    r = event_record({"time": 1.0, "mac": "52:54:00:00:00:01", "arch": 11, "answer": "", "port": 67,
                      "relay": "198.19.7.1", "relay_agent_info": "0103706f31", "reason": "denied",
                      "delayed": False})
    assert r.detail["relay_agent_info"] == "0103706f31" and r.detail["reason"] == "denied"
    assert r.detail["relay"] == "198.19.7.1" and r.detail["delayed"] is False


class PolicyEngine:
    """A stand-in engine handle that records set_policy calls."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.policies: list[dict[str, Any]] = []
        self.rx, self.tx = socket.socketpair()

    def set_policy(self, **kw: Any) -> None:
        self.policies.append(kw)

    def counters(self) -> list[tuple[str, int]]:
        return []

    def drain_events(self, max: int = 1024) -> list[dict[str, Any]]:
        return []

    def event_fd(self) -> int:
        return self.rx.fileno()

    def stop(self) -> None:
        self.rx.close()
        self.tx.close()


async def test_known_only_reads_the_inventory_and_swaps_policy(tmp_path: Path) -> None:
    s = settings_for(tmp_path, DHCP_ON + "known_only = true\n")
    store = await Store.open(s.store.url)
    await store.set_action("52:54:00:00:00:07", MachineAction(kernel="vmlinuz", initrd="initrd.img"))
    engines: list[PolicyEngine] = []

    def factory(**kw: Any) -> PolicyEngine:
        engines.append(PolicyEngine(**kw))
        return engines[-1]

    svc = DhcpService.start(s, EventRecorder(store), asyncio.get_running_loop(), factory=factory)
    eng = engines[0]
    assert eng.kwargs["known_only"] is True and eng.kwargs["known_macs"] == []
    for _ in range(200):  # the refresh task runs at once
        if eng.policies:
            break
        await asyncio.sleep(0.01)
    assert [p["known_macs"] for p in eng.policies] == [["52:54:00:00:00:07"]]
    assert eng.policies[0]["known_only"] is True and "interface" not in eng.policies[0]
    # Nothing changed: no swap.
    assert await svc.refresh_known(store) is False
    assert svc.set_known_machines(["52:54:00:00:00:07", "52:54:00:00:00:08"]) is True
    assert eng.policies[-1]["known_macs"] == ["52:54:00:00:00:07", "52:54:00:00:00:08"]
    assert set(policy_args(svc.policy)) == set(eng.policies[-1])
    svc.stop()
    await store.close()
