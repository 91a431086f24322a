"""The IPv6 RA responder ([dhcp] ipv6_ra) against real Router Solicitations, in a private pair of network
namespaces joined by a veth (link-local addresses only): rdisc6 (package ndisc6) and crafted RS from a raw
socket. Asserts the RA's fields on the wire, the hop-limit / code checks, and the multicast-then-unicast rule."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                reason="needs root and iproute2 (network namespaces)")

NS_A, NS_B = f"bgra-{os.getpid()}-a", f"bgra-{os.getpid()}-b"

# Runs in namespace A: sends one RS (rdisc6, or crafted with a given hop limit / code), then collects the RAs
# that arrive on va for up to `wait` seconds; prints them as JSON.
PROBE = textwrap.dedent("""
    import json, socket, struct, subprocess, sys, time
    mode, hops, code, wait = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    ifindex = socket.if_nametoindex("va")
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"va")
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
    out = {"ras": [], "rdisc6": None}
    if mode == "rdisc6":
        r = subprocess.run(["rdisc6", "-1", "-w", "1500", "-r", "2", "va"], capture_output=True, text=True, timeout=20)
        out["rdisc6"] = {"rc": r.returncode, "out": r.stdout + r.stderr}
    else:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, hops)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
        mac = bytes.fromhex(open("/sys/class/net/va/address").read().strip().replace(":", ""))
        rs = bytes([133, code, 0, 0, 0, 0, 0, 0, 1, 1]) + mac
        s.sendto(rs, ("ff02::2", 0, 0, ifindex))
    end = time.monotonic() + wait
    while time.monotonic() < end:
        s.settimeout(max(0.01, end - time.monotonic()))
        try:
            data, anc, _, src = s.recvmsg(1500, socket.CMSG_SPACE(4))
        except (TimeoutError, socket.timeout):
            break
        if data[0] != 134:
            continue
        hop = [struct.unpack("i", d[:4])[0] for lvl, t, d in anc if t == socket.IPV6_HOPLIMIT]
        out["ras"].append({"hex": data.hex(), "hop_limit": hop[0] if hop else None, "src": src[0]})
        if mode == "rdisc6" or len(out["ras"]) >= 1:
            break
    print(json.dumps(out))
""")

# Runs in namespace B: the responder; answers "c" on stdin with its counters, stops at EOF.
RESPONDER = textwrap.dedent("""
    import json, sys
    from bootgate import _native
    ra = _native.RaResponder(interface="vb", unsolicited=False, min_interval_ms=int(sys.argv[1]))
    print("ready", flush=True)
    for line in sys.stdin:
        print(json.dumps(dict(ra.counters())), flush=True)
    ra.stop()
""")


def ns(name: str, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", name, *argv], capture_output=True, text=True, timeout=timeout,
                          check=True)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Path]:
    for n in (NS_A, NS_B):
        subprocess.run(["ip", "netns", "add", n], check=True)
    try:
        for n in (NS_A, NS_B):
            # No DAD (the link-local address is usable at once); no RS from the kernel itself.
            for key in ("accept_dad=0", "router_solicitations=0"):
                ns(n, "sysctl", "-qw", f"net.ipv6.conf.default.{key}")
        subprocess.run(["ip", "-n", NS_A, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", NS_B],
                       check=True)
        subprocess.run(["ip", "-n", NS_A, "addr", "add", "198.18.230.1/24", "dev", "va"], check=True)
        subprocess.run(["ip", "-n", NS_B, "addr", "add", "198.18.230.2/24", "dev", "vb"], check=True)
        for n, dev in ((NS_A, "va"), (NS_B, "vb")):
            subprocess.run(["ip", "-n", n, "link", "set", dev, "up"], check=True)
        (tmp_path / "probe.py").write_text(PROBE)
        (tmp_path / "responder.py").write_text(RESPONDER)
        yield tmp_path
    finally:
        for n in (NS_A, NS_B):
            subprocess.run(["ip", "netns", "del", n], check=False)


class Responder:
    def __init__(self, tmp: Path, min_interval_ms: int) -> None:
        self.proc = subprocess.Popen(["ip", "netns", "exec", NS_B, sys.executable, str(tmp / "responder.py"),
                                      str(min_interval_ms)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdin is not None
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", line + (self.proc.stderr.read() if self.proc.stderr else "")

    def counters(self) -> dict[str, int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("c\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def probe(tmp: Path, mode: str, hops: int = 255, code: int = 0, wait: float = 3.0) -> dict[str, Any]:
    r = ns(NS_A, sys.executable, str(tmp / "probe.py"), mode, str(hops), str(code), str(wait))
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def parse_ra(hexdata: str) -> dict[str, Any]:
    b = bytes.fromhex(hexdata)
    opts, rest = [], b[16:]
    while rest:
        assert rest[1] > 0, "option length 0"
        opts.append((rest[0], rest[2:rest[1] * 8]))
        rest = rest[rest[1] * 8:]
    return {"type": b[0], "code": b[1], "cur_hop_limit": b[4], "flags": b[5],
            "lifetime": int.from_bytes(b[6:8], "big"), "reachable": int.from_bytes(b[8:12], "big"),
            "retrans": int.from_bytes(b[12:16], "big"), "options": opts}


def wait_counter(r: Responder, name: str, value: int) -> dict[str, int]:
    deadline = time.monotonic() + 10
    while (c := r.counters())[name] < value:
        assert time.monotonic() < deadline, f"{name} stuck: {c}"
        time.sleep(0.05)
    return c


def test_answers_solicitations_with_a_no_router_ra(lab: Path) -> None:
    if shutil.which("rdisc6") is None:
        pytest.skip("rdisc6 not installed (package ndisc6; tools/install-test-deps.sh)")
    vb_mac = ns(NS_B, "cat", "/sys/class/net/vb/address").stdout.strip()
    r = Responder(lab, min_interval_ms=60_000)
    try:
        # 1. rdisc6's RS -> multicast RA with every field of a "no router here" answer.
        out = probe(lab, "rdisc6")
        assert out["rdisc6"]["rc"] == 0, out
        assert "Router lifetime" in out["rdisc6"]["out"] and "Prefix" not in out["rdisc6"]["out"], out
        (ra,) = out["ras"]
        assert ra["hop_limit"] == 255 and ra["src"].startswith("fe80::"), ra
        f = parse_ra(ra["hex"])
        assert (f["type"], f["code"], f["cur_hop_limit"], f["flags"]) == (134, 0, 0, 0), f
        assert (f["lifetime"], f["reachable"], f["retrans"]) == (0, 0, 0), f
        assert f["options"] == [(1, bytes.fromhex(vb_mac.replace(":", "")))], "only our source link-layer address"
        c = wait_counter(r, "sent_multicast", 1)
        assert c["solicitations"] >= 1 and c["sent_unicast"] == 0

        # 2. Inside the 60 s multicast interval: a crafted RS from A's link-local address gets a unicast RA.
        out = probe(lab, "raw")
        assert len(out["ras"]) == 1 and parse_ra(out["ras"][0]["hex"])["lifetime"] == 0, out
        wait_counter(r, "sent_unicast", 1)

        # 3. RFC 4861 6.1.1: hop limit not 255, or code not 0 -> dropped and counted, never answered.
        assert probe(lab, "raw", hops=64, wait=1.0)["ras"] == []
        assert probe(lab, "raw", code=1, wait=1.0)["ras"] == []
        c = wait_counter(r, "invalid{reason=bad_code}", 1)
        assert c["invalid{reason=bad_hop_limit}"] == 1
        assert c["sent_unicast"] == 1 and c["sent_multicast"] == 1 and c["send_errors"] == 0
    finally:
        r.close()


def test_service_starts_the_responder_only_when_asked() -> None:
    from bootgate import dhcp

    class S:
        class dhcp:  # noqa: N801 - a settings stand-in
            ipv6_ra = False
            interface = "vb"

    calls: list[dict[str, Any]] = []
    assert dhcp.start_ra(S(), lambda **kw: calls.append(kw)) is None  # type: ignore[arg-type]
    S.dhcp.ipv6_ra = True
    dhcp.start_ra(S(), lambda **kw: calls.append(kw) or "ra")  # type: ignore[arg-type]
    assert calls == [{"interface": "vb", "unsolicited": True}]
