"""Proves the VM lab without bootgate: dnsmasq as proxyDHCP + TFTP and a tiny HTTP stand-in
(standin_http.py) inside namespace B, the real firmware/iPXE/kernel/initramfs in QEMU. Captures the
DHCP traffic on the bridge to <workdir>/dhcp.pcap. A diagnostic, not a test (run as root):

    python3 tests/e2e/standin.py [--workdir DIR] [--timeout S] [--https-match HEX] bios uefi

--https-match: a dnsmasq --dhcp-match value (prefix of option 175, wildcards allowed) that marks
iPXE builds that should get the script URL; the others get the boot program over TFTP.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import e2e_lab  # noqa: E402
import e2e_pcap as pcap  # noqa: E402

MACS = {"bios": "52:54:00:e2:e0:01", "uefi": "52:54:00:e2:e0:02"}


def client_kind(d: pcap.UdpDatagram) -> str | None:
    """Names the client that sent a DHCP request seen in the lab (None for server replies)."""
    if not d.payload or d.payload[0] != 1:
        return None
    o = pcap.dhcp_options(d.payload)
    vc = o.get(60, b"")
    arch = o.get(93, b"")
    enc = pcap.encapsulated(o.get(175, b""))
    if vc.startswith(b"udhcp"):
        return "linux-udhcpc"
    if o.get(77) == b"iPXE":
        fw = "efi" if arch == b"\x00\x07" else "bios"
        if 20 in enc:  # HTTPS-capable build: Debian trixie's
            return f"ipxe-trixie-{fw}"
        return "seabios-ipxe" if fw == "bios" else "ipxe-old-efi"
    if vc.startswith(b"PXEClient:Arch:00007"):
        return "ovmf"
    return None


def save_captures(pcap_file: Path, out: Path) -> list[str]:
    """Saves the UDP payload of the first DISCOVER, REQUEST and port-4011 REQUEST of each client
    kind as <kind>-<discover|request|request-4011>.bin."""
    out.mkdir(parents=True, exist_ok=True)
    saved = []
    for d in pcap.read_udp(pcap_file):
        kind = client_kind(d)
        if kind is None:
            continue
        mt = pcap.dhcp_options(d.payload).get(53, b"\0")[0]
        step = {1: "discover", 3: "request"}.get(mt)
        if step is None:
            continue
        if d.dport == 4011:
            step += "-4011"
        name = f"{kind}-{step}.bin"
        if name in saved:
            continue
        (out / name).write_bytes(d.payload)
        saved.append(name)
    return saved


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("firmware", nargs="+", choices=["bios", "uefi"])
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--timeout", type=float, default=240)
    ap.add_argument("--https-match", default="")
    ap.add_argument("--no-ra", action="store_true")
    ap.add_argument("--save-captures", type=Path, help="write the first client packet of each kind here")
    args = ap.parse_args()
    if not e2e_lab.lab_prepared():
        e2e_lab.prepare_lab()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bootgate-standin-"))
    work.mkdir(parents=True, exist_ok=True)
    records = work / "http-records.jsonl"
    records.unlink(missing_ok=True)
    e2e_lab.log(f"workdir {work}")
    results = []
    with e2e_lab.Lab(work, ra=not args.no_ra) as lab:
        b = lab.ns_b
        dnsmasq = [
            "dnsmasq", "--keep-in-foreground", "--log-facility=-", "--conf-file=/dev/null", "--port=0",
            f"--interface={e2e_lab.BRIDGE}", "--bind-interfaces", f"--dhcp-range={e2e_lab.SERVER_IP},proxy",
            "--leasefile-ro", "--log-dhcp", "--user=root", "--enable-tftp",
            f"--tftp-root={e2e_lab.IPXE_TRIXIE_DIR}",
            f"--pid-file={work / 'proxy-dnsmasq.pid'}",
        ]
        url = f"http://{e2e_lab.SERVER_IP}:8050/boot.ipxe"
        if args.https_match:
            dnsmasq += [f"--dhcp-match=set:https,175,{args.https_match}",
                        f"--dhcp-boot=tag:https,{url}",
                        "--pxe-service=tag:!https,x86PC,stand-in,undionly.kpxe",
                        "--pxe-service=tag:!https,X86-64_EFI,stand-in,snponly.efi",
                        "--pxe-service=tag:!https,BC_EFI,stand-in,snponly.efi"]
        else:
            dnsmasq += ["--pxe-service=x86PC,stand-in,undionly.kpxe",
                        "--pxe-service=X86-64_EFI,stand-in,snponly.efi",
                        "--pxe-service=BC_EFI,stand-in,snponly.efi"]
        lab.spawn("proxy-dnsmasq", dnsmasq, ns=b)
        http = lab.spawn("standin-http", [sys.executable, str(Path(__file__).resolve().parent / "standin_http.py"),
                                          e2e_lab.SERVER_IP, "8050", str(e2e_lab.CONTENT_DIR), str(records)], ns=b)
        lab.wait_tcp(e2e_lab.SERVER_IP, 8050, proc=http)
        time.sleep(1.0)
        for fw in args.firmware:
            res = lab.boot_vm(f"standin-{fw}", fw, MACS[fw], timeout=args.timeout)
            results.append(res)
            print(f"--- serial tail of {res.name} ---\n{res.serial_tail(25)}\n---", flush=True)
        time.sleep(0.5)
    print("=== HTTP stand-in records ===")
    if records.exists():
        for line in records.read_text().splitlines():
            r = json.loads(line)
            print(" ", {k: v for k, v in r.items() if k != "time"})
    print("=== DHCP packets on br0 ===")
    if (work / "dhcp.pcap").exists():
        for i, d in enumerate(pcap.read_udp(work / "dhcp.pcap")):
            print(f"{i:3d} {d.time:.3f} {pcap.describe(d)}")
    if args.save_captures and (work / "dhcp.pcap").exists():
        for name in save_captures(work / "dhcp.pcap", args.save_captures):
            print(f"saved {name}")
    for r in results:
        print(f"BOOT {r.name}: wall {r.wall_s:.1f} s, rc {r.returncode}, timed out {r.timed_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
