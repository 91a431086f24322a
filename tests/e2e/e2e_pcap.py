"""Reading DHCP packets out of a classic pcap file (tcpdump -w) and describing them.

Only what the e2e lab needs: Ethernet (optionally 802.1Q) / IPv4 / UDP records, DHCP option decoding
for a one-line summary. Usage for diagnostics: python3 tests/e2e/e2e_pcap.py FILE.pcap
"""

from __future__ import annotations

import dataclasses
import struct
import sys
from pathlib import Path

DHCP_MSG = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK", 7: "RELEASE",
            8: "INFORM"}


@dataclasses.dataclass
class UdpDatagram:
    time: float
    src_mac: str
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes


def read_udp(path: Path) -> list[UdpDatagram]:
    data = path.read_bytes()
    if len(data) < 24:
        return []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path}: not a classic pcap file")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    if linktype != 1:
        raise ValueError(f"{path}: link type {linktype}, want Ethernet (1)")
    out = []
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        frame = data[off:off + incl]
        off += incl
        t = sec + frac / (1e9 if nano else 1e6)
        if len(frame) < 14:
            continue
        src_mac = ":".join(f"{b:02x}" for b in frame[6:12])
        etype = struct.unpack("!H", frame[12:14])[0]
        p = 14
        if etype == 0x8100 and len(frame) >= 18:
            etype = struct.unpack("!H", frame[16:18])[0]
            p = 18
        if etype != 0x0800 or len(frame) < p + 20:
            continue
        ihl = (frame[p] & 0x0F) * 4
        if frame[p + 9] != 17:
            continue
        total = struct.unpack("!H", frame[p + 2:p + 4])[0]
        src = ".".join(str(b) for b in frame[p + 12:p + 16])
        dst = ".".join(str(b) for b in frame[p + 16:p + 20])
        u = p + ihl
        if len(frame) < u + 8:
            continue
        sport, dport, ulen = struct.unpack("!HHH", frame[u:u + 6])
        end = min(u + ulen, p + total, len(frame))
        out.append(UdpDatagram(t, src_mac, src, sport, dst, dport, frame[u + 8:end]))
    return out


def dhcp_options(payload: bytes) -> dict[int, bytes]:
    """Options of a BOOTP/DHCP payload (first occurrence wins; overloads ignored)."""
    opts: dict[int, bytes] = {}
    if len(payload) < 240 or payload[236:240] != b"\x63\x82\x53\x63":
        return opts
    i = 240
    while i < len(payload):
        code = payload[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        if i + 1 >= len(payload):
            break
        ln = payload[i + 1]
        opts.setdefault(code, payload[i + 2:i + 2 + ln])
        i += 2 + ln
    return opts


def encapsulated(value: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    i = 0
    while i + 1 < len(value):
        code, ln = value[i], value[i + 1]
        if code in (0, 255):
            i += 1
            continue
        out[code] = value[i + 2:i + 2 + ln]
        i += 2 + ln
    return out


def describe(d: UdpDatagram) -> str:
    o = dhcp_options(d.payload)
    op = d.payload[0] if d.payload else 0
    mt = DHCP_MSG.get(o.get(53, b"\0")[0], "BOOTP") if 53 in o else "BOOTP"
    parts = [f"{d.src}:{d.sport}->{d.dst}:{d.dport}", "req" if op == 1 else "rep", mt,
             f"chaddr={':'.join(f'{b:02x}' for b in d.payload[28:34])}"]
    if 60 in o:
        parts.append(f"60={o[60].decode(errors='replace')!r}")
    if 77 in o:
        parts.append(f"77={o[77]!r}")
    if 93 in o:
        parts.append(f"93={o[93].hex()}")
    if 175 in o:
        enc = encapsulated(o[175])
        parts.append("175={" + ",".join(f"{k}:{v.hex()}" for k, v in sorted(enc.items())) + "}")
        parts.append(f"175raw={o[175].hex()}")
    if 43 in o:
        parts.append(f"43={o[43].hex()}")
    if op == 2:
        fname = d.payload[108:236].split(b"\0")[0]
        sname = d.payload[44:108].split(b"\0")[0]
        siaddr = ".".join(str(b) for b in d.payload[20:24])
        yiaddr = ".".join(str(b) for b in d.payload[16:20])
        parts.append(f"yiaddr={yiaddr} siaddr={siaddr} sname={sname!r} file={fname!r}")
        if 67 in o:
            parts.append(f"67={o[67]!r}")
    return " ".join(parts)


if __name__ == "__main__":
    for i, dg in enumerate(read_udp(Path(sys.argv[1]))):
        print(f"{i:3d} {dg.time:.3f} {describe(dg)}")
