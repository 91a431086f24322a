#!/usr/bin/env python3
"""proxyDHCP benchmark: bootgate's engine vs dnsmasq (proxy mode), side by side, plus a UDP echo probe.

Two private network namespaces joined by a veth pair (198.18.220.1 server, .2 client); each server runs
alone in the server namespace while dhcp-load in the client namespace steps through request rates for
three cases (DISCOVER arch 0, DISCOVER arch 7, REQUEST on 4011). Every step is bounded (rate x secs
datagrams, 30 s at most); the namespaces are removed at the end. Needs root, iproute2, dnsmasq.

    sudo python3 benches/dhcp/run.py [--secs 2] [--rates 5000,10000,...] [--out benches/README-dhcp.md]
        [--baseline-bin PATH]   (another build's bootgate-dhcpd, run in the same session: an A/B of engine changes)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", HERE / "target"))
SRV, CLI = f"bgdb-srv-{os.getpid()}", f"bgdb-cli-{os.getpid()}"
SRV_IP, CLI_IP = "198.18.220.1", "198.18.220.2"
CASES = ("discover0", "discover7", "request4011")
LOADAVG: list[str] = []
DEFAULT_RATES = (5_000, 10_000, 20_000, 40_000, 60_000, 80_000, 120_000, 160_000, 240_000)


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True)


def netns_up() -> None:
    sh("ip", "netns", "add", SRV)
    sh("ip", "netns", "add", CLI)
    sh("ip", "link", "add", "bgdb-s", "netns", SRV, "type", "veth", "peer", "name", "bgdb-c", "netns", CLI)
    for ns, dev, ip in ((SRV, "bgdb-s", SRV_IP), (CLI, "bgdb-c", CLI_IP)):
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")


def netns_down() -> None:
    for ns in (SRV, CLI):
        sh("ip", "netns", "del", ns, check=False)


def build() -> None:
    subprocess.run(["cargo", "build", "--release", "--manifest-path", str(HERE / "Cargo.toml")], check=True,
                   env={**os.environ, "CARGO_TARGET_DIR": str(TARGET)})


def start(cmd: list[str], ready: str | None = None) -> subprocess.Popen[str]:
    p = subprocess.Popen(["ip", "netns", "exec", SRV, *cmd], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    if ready:
        line = p.stdout.readline() if p.stdout else ""
        if ready not in line:
            p.kill()
            raise RuntimeError(f"{cmd[0]} did not start: {line!r} {p.stderr.read() if p.stderr else ''}")
    else:
        time.sleep(1.0)
        if p.poll() is not None:
            raise RuntimeError(f"{cmd[0]} exited: {p.stderr.read() if p.stderr else ''}")
    return p


def stop(p: subprocess.Popen[str]) -> str:
    """Closes the server's stdin (bootgate-dhcpd then prints its counters and exits), else SIGTERM, else SIGKILL."""
    try:
        out, _ = p.communicate(input="", timeout=5)
        return out or ""
    except subprocess.TimeoutExpired:
        p.terminate()
    try:
        out, _ = p.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    return out or ""


def dnsmasq_conf(tmp: Path) -> Path:
    conf = tmp / "dnsmasq.conf"
    conf.write_text(f"""port=0
interface=bgdb-s
bind-interfaces
dhcp-range={SRV_IP},proxy
log-facility=/dev/null
pxe-prompt="Boot",0
pxe-service=x86PC,"Network boot (BIOS)",undionly
pxe-service=X86-64_EFI,"Network boot (UEFI)",snponly.efi
dhcp-leasefile={tmp}/leases
pid-file={tmp}/dnsmasq.pid
""")
    return conf


def load(case: str, rate: int, secs: float, port: int | None = None) -> dict[str, float]:
    cmd = ["ip", "netns", "exec", CLI, str(TARGET / "release" / "dhcp-load"), "run", case, "bgdb-c", CLI_IP, SRV_IP,
           str(rate), str(secs)]
    if port:
        cmd.append(str(port))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60).stdout
    return json.loads(out.strip().splitlines()[-1])


def sweep(case: str, rates: list[int], secs: float, port: int | None = None) -> list[dict[str, float]]:
    rows = []
    for rate in rates:
        r = load(case, rate, secs, port)
        rows.append(r)
        print(f"  {case:12} {rate:>8}/s  recv {r['recv_rate']:>9.0f}/s  loss {r['loss_pct']:6.2f}%  "
              f"p50 {r['p50_us']}us p99 {r['p99_us']}us", flush=True)
        if r["loss_pct"] > 50:
            break  # far past saturation: stop stepping
    return rows


def summary(rows: list[dict[str, float]]) -> dict[str, float]:
    clean = [r for r in rows if r["loss_pct"] < 1.0]
    best = max(clean, key=lambda r: r["rate"]) if clean else None
    return {
        "clean_rate": best["rate"] if best else 0,
        "clean_p99_us": best["p99_us"] if best else 0,
        "peak": max((min(r["recv_rate"], r["received"] / max(r["sent"] / r["rate"], 1e-9)) for r in rows),
                    default=0),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--secs", type=float, default=2.0, help="seconds per rate step (at most 30)")
    ap.add_argument("--rates", default=",".join(map(str, DEFAULT_RATES)), help="comma-separated request rates")
    ap.add_argument("--out", default=str(HERE.parent / "README-dhcp.md"), help="markdown results file")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--baseline-bin", help="bootgate-dhcpd of another build (e.g. the previous commit) to run too, "
                    "as server 'bootgate-base': an A/B under the same machine load")
    args = ap.parse_args()
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("dnsmasq"):
        print("needs root, iproute2 and dnsmasq", file=sys.stderr)
        return 2
    rates = [int(x) for x in args.rates.split(",") if x]
    secs = min(args.secs, 30.0)
    if not args.no_build:
        build()
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="bgdb-"))
    LOADAVG.append(Path("/proc/loadavg").read_text().split()[0])
    netns_up()
    try:
        print("UDP echo probe", flush=True)
        echo = start([str(TARGET / "release" / "dhcp-load"), "echo-server", "bgdb-s", "9007"], "ready")
        try:
            results["echo"] = {"echo": sweep("echo", rates + [320_000, 480_000, 640_000], secs, 9007)}
        finally:
            stop(echo)
        servers: list[tuple[str, list[str], str | None]] = [
            ("bootgate", [str(TARGET / "release" / "bootgate-dhcpd"), "bgdb-s", SRV_IP], "ready"),
            ("dnsmasq", ["dnsmasq", "--keep-in-foreground", f"--conf-file={dnsmasq_conf(tmp)}"], None),
        ]
        if args.baseline_bin:
            servers.insert(1, ("bootgate-base", [str(Path(args.baseline_bin).resolve()), "bgdb-s", SRV_IP], "ready"))
        for name, cmd, ready in servers:
            print(name, flush=True)
            proc = start(cmd, ready)
            try:
                results[name] = {case: sweep(case, rates, secs) for case in CASES}
            finally:
                out = stop(proc)
            if name.startswith("bootgate"):
                counters = dict(line.split() for line in out.splitlines() if len(line.split()) == 2)
                print("  engine:", {k: v for k, v in counters.items() if v != "0"}, flush=True)
    finally:
        netns_down()
        shutil.rmtree(tmp, ignore_errors=True)
    LOADAVG.append(Path("/proc/loadavg").read_text().split()[0])
    write_markdown(Path(args.out), results, secs)
    print(f"results: {args.out}")
    return 0


def write_markdown(out: Path, results: dict[str, dict[str, list[dict[str, float]]]], secs: float) -> None:
    nproc = os.cpu_count()
    echo = summary(results["echo"]["echo"])
    lines = [
        "# proxyDHCP benchmark: bootgate vs dnsmasq",
        "",
        "Generated by `sudo python3 benches/dhcp/run.py` (wire it as `make bench`): two network namespaces joined",
        "by a veth pair (198.18.220.0/24), each server alone in the server namespace, `dhcp-load` in the client",
        f"namespace stepping request rates ({secs:g} s per step; a step's loss is unanswered requests after a 500 ms",
        "grace). Cases: PXE ROM DISCOVER arch 0 (broadcast; dnsmasq with a boot menu, as configured for BIOS), arch 7,",
        "and a REQUEST to the boot server port 4011. *Clean rate*: the highest step with < 1 % loss; *peak*: the",
        "highest reply rate seen; *p99* at the clean rate. UDP echo probe: one thread echoing 300-byte datagrams",
        f"in the server namespace: the machine's packet limit on this path. Machine: {nproc} CPUs.",
        "",
        f"UDP echo probe: clean {echo['clean_rate']:.0f}/s, peak {echo['peak']:.0f}/s, p99 at clean "
        f"{echo['clean_p99_us']:.0f} us.",
        "",
        "| case | bootgate clean/s | dnsmasq clean/s | ratio | bootgate peak/s | dnsmasq peak/s | ratio | bootgate p99 (us) | dnsmasq p99 (us) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in CASES:
        b, d = summary(results["bootgate"][case]), summary(results["dnsmasq"][case])
        ratio = lambda x, y: f"{x / y:.1f}x" if y else "n/a"  # noqa: E731
        lines.append(f"| {case} | {b['clean_rate']:.0f} | {d['clean_rate']:.0f} | {ratio(b['clean_rate'], d['clean_rate'])} "
                     f"| {b['peak']:.0f} | {d['peak']:.0f} | {ratio(b['peak'], d['peak'])} | {b['clean_p99_us']:.0f} "
                     f"| {d['clean_p99_us']:.0f} |")
    if "bootgate-base" in results:
        lines += ["", "A/B in the same run: this build vs `--baseline-bin` (bootgate-base).", "",
                  "| case | this build clean/s | base clean/s | this build peak/s | base peak/s | this build p99 (us) "
                  "| base p99 (us) |", "|---|---:|---:|---:|---:|---:|---:|"]
        for case in CASES:
            b, a = summary(results["bootgate"][case]), summary(results["bootgate-base"][case])
            lines.append(f"| {case} | {b['clean_rate']:.0f} | {a['clean_rate']:.0f} | {b['peak']:.0f} | {a['peak']:.0f} "
                         f"| {b['clean_p99_us']:.0f} | {a['clean_p99_us']:.0f} |")
    lines += ["", f"Load average (1 min) before / after the run: {LOADAVG[0]} / {LOADAVG[1]} — other work on the",
              "machine competes for the same cores, so compare the columns of one run, not runs of different days.",
              "", "## Every step", "",
              "| server | case | rate/s | sent/s (achieved) | received/s | loss % | p50 us | p99 us |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for server, cases in results.items():
        for case, rows in cases.items():
            for r in rows:
                lines.append(f"| {server} | {case} | {r['rate']:.0f} | {r['send_rate']:.0f} | {r['recv_rate']:.0f} "
                             f"| {r['loss_pct']:.2f} "
                             f"| {r['p50_us']:.0f} | {r['p99_us']:.0f} |")
    lines += ["", "## Notes", "",
              "- The issue's targets (clean rate >= 3x dnsmasq, peak >= 2x, p99 < 1 ms at the clean rate) are only",
              "  meaningful when the echo probe reaches the machine's real packet rate (about 600 k/s on a quiet",
              "  2-vCPU host); when the probe saturates far lower, every server is measured against a busy machine.",
              "- `bootgate-dhcpd` runs the same engine as `bootgate serve` (bootgate-io DhcpEngine, SO_BINDTODEVICE on",
              "  the veth, events drained every 10 ms like the Python service); it prints its counters at the end",
              "  (engine-side drops vs. losses on the way back are told apart by `received` vs. `answered_*`).",
              "- dnsmasq numbers its `pxe-service` entries 0x8000, 0x8001, ... and answers a 4011 REQUEST only for a",
              "  listed boot server type (43.71): the load generator asks for 0x8001, the UEFI entry.",
              "- Bounded: at most rate x secs datagrams per step (secs <= 30), stepping stops once loss passes 50 %;",
              "  the namespaces and every process started are removed at the end."]
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
