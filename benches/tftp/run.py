#!/usr/bin/env python3
"""The TFTP benchmark: bootgate against tftpd-hpa, dnsmasq and atftpd, over loopback, in one run.

    python3 benches/tftp/run.py [--quick] [--servers bootgate,tftpd-hpa,dnsmasq,atftpd]
                                [--out benches/tftp/RESULTS.md] [--atftpd PATH]

Builds the load generator (benches/tftp, its own cargo workspace, release), writes a 1 MiB and a
32 MiB file of random bytes into a temporary root, measures the loopback UDP limit (bulk
1472-byte datagrams, one sender thread, one receiver thread), then for every cell of the matrix
(server x file x windowsize x N) starts the server afresh, runs N downloads at once with blksize
1468 (each byte checked against the file), records aggregate MB/s, p50/p99 transfer time,
failures and the server's peak memory, and stops the server. Writes a markdown table to --out
and the raw numbers next to it (results.json).

Limits measured in the same run (`tftp-load probe` and `tftp-load lockstep`, 2 s each): bulk
1472-byte datagrams (sendmmsg -> recvmmsg); the same with a GSO sender (8 datagrams per sendmsg);
and, for each N and windowsize of the matrix, a lean TFTP-shaped exchange over N socket pairs (a
"server" thread that answers each ACK with a window of datagrams, a "client" thread that reads
each datagram with one recv and ACKs each window; no protocol work, no verification; the best of
three 2-second runs). The lean exchange is the most any server can move with this kind of client on this machine; the table
gives every cell as a percentage of it, and the notes say which targets it puts out of reach.

Bounds: each cell stops after --deadline seconds (unfinished transfers count as failures); the
32 MiB file runs at N = 1 and 16 only (2000 x 32 MiB would be 64 GB through one loopback that
carries about 0.3 GB/s here); the full matrix takes 6 to 8 minutes here (the slow peers collapse at
N = 2000 and use their whole 20 s), --quick about two.

Servers (a missing one is skipped and said so): bootgate (benches/tftp's bootgate-tftpd, the
engine bootgate serve runs), tftpd-hpa (`in.tftpd -L`, forks one process per transfer),
dnsmasq (`--enable-tftp`; its TFTP port is fixed at 69, so it listens on 127.0.0.69:69),
atftpd (`--daemon --no-fork`, one thread per transfer; Debian's package conflicts with
tftpd-hpa, so benches/tftp/get-peers.sh unpacks it privately into benches/tftp/.peers).
Needs root (dnsmasq binds port 69; tftpd-hpa chroots).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

FILES = {"1M": 1 << 20, "32M": 32 << 20}
FULL = {"1M": [1, 64, 512, 2000], "32M": [1, 16]}
QUICK = {"1M": [1, 64, 512], "32M": [1]}
WINDOWS = [1, 8]
BLKSIZE = 1468


def build() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", HERE / "target"))
    subprocess.run(["cargo", "build", "--release", "-q", "--manifest-path", str(HERE / "Cargo.toml")],
                   check=True, env={**os.environ, "CARGO_TARGET_DIR": str(target)})
    return target / "release"


def which(name: str, *extra: str) -> str | None:
    for p in extra:
        if p and Path(p).is_file() and os.access(p, os.X_OK):
            return p
    return shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}")
                                       if Path(p).is_file()), None)


class Server:
    """How to start one server on (host, port) serving root."""

    def __init__(self, name: str, host: str, port: int, argv: list[str], note: str) -> None:
        self.name, self.host, self.port, self.argv, self.note = name, host, port, argv, note
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(0.3)
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited at start ({self.proc.returncode}): {' '.join(self.argv)}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Ends the server and its children (its own session, started above: its process group)."""
        if self.proc is None:
            return
        pid = self.proc.pid
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=3)
                break
            except subprocess.TimeoutExpired:
                continue
        time.sleep(0.2)  # let forked children (tftpd-hpa) go before the next cell binds
        self.proc = None


def servers(binaries: Path, root: Path, wanted: list[str], atftpd: str | None,
            bootgate_old: str | None, single_port: bool = False) -> tuple[list[Server], list[str]]:
    out: list[Server] = []
    missing: list[str] = []
    root_user = os.geteuid() == 0
    if bootgate_old:
        out.append(Server("bootgate (before)", "127.0.0.1", 16968,
                          [bootgate_old, "--bind", "127.0.0.1:16968", "--root", str(root),
                           "--max-transfers", "4096", "--max-blksize", str(BLKSIZE)],
                          f"an earlier bootgate-tftpd build ({bootgate_old}), for a before/after comparison"))
    if single_port:
        out.append(Server("bootgate single-port", "127.0.0.1", 16967,
                          [str(binaries / "bootgate-tftpd"), "--bind", "127.0.0.1:16967", "--root", str(root),
                           "--max-transfers", "4096", "--max-blksize", str(BLKSIZE), "--single-port"],
                          "bootgate-tftpd --single-port: every transfer from the listening port"))
    for name in wanted:
        if name == "bootgate":
            out.append(Server(name, "127.0.0.1", 16969,
                              [str(binaries / "bootgate-tftpd"), "--bind", "127.0.0.1:16969", "--root", str(root),
                               "--max-transfers", "4096", "--max-blksize", str(BLKSIZE)],
                              "bootgate-io engine (benches/tftp bootgate-tftpd)"))
        elif name == "tftpd-hpa":
            exe = which("in.tftpd")
            if not exe:
                missing.append("tftpd-hpa (in.tftpd not found: benches/tftp/get-peers.sh)")
                continue
            argv = [exe, "-L", "-a", "127.0.0.1:16970"]
            argv += ["-s", str(root), "-u", "nobody"] if root_user else [str(root)]
            out.append(Server(name, "127.0.0.1", 16970, argv, "in.tftpd -L, a process per transfer"))
        elif name == "dnsmasq":
            exe = which("dnsmasq")
            if not exe or not root_user:
                missing.append("dnsmasq (not found, or not root: it binds port 69)")
                continue
            out.append(Server(name, "127.0.0.69", 69,
                              [exe, "-k", "--port=0", "--enable-tftp", f"--tftp-root={root}",
                               "--listen-address=127.0.0.69", "--bind-interfaces", "--conf-file=/dev/null",
                               "--user=root", "--tftp-max=4096", "--quiet-tftp", "--pid-file=",
                               "--log-facility=/dev/null"],
                              "dnsmasq --enable-tftp --tftp-max=4096, one process"))
        elif name == "atftpd":
            exe = which("atftpd", atftpd or "", str(HERE / ".peers/atftpd-root/usr/sbin/atftpd"))
            if not exe:
                missing.append("atftpd (not found: benches/tftp/get-peers.sh)")
                continue
            argv = [exe, "--daemon", "--no-fork", "--port", "16971", "--bind-address", "127.0.0.1",
                    "--maxthread", "4096", "--logfile", "/dev/null"]
            argv += ["--user", "root.root"] if root_user else []
            out.append(Server(name, "127.0.0.1", 16971, argv + [str(root)],
                              "atftpd --daemon --no-fork, a thread per transfer"))
        else:
            missing.append(f"{name} (unknown)")
    return out, missing


def run_cell(binaries: Path, srv: Server, file: str, ref: Path, n: int, ws: int, deadline: float) -> dict:
    load = float(Path("/proc/loadavg").read_text().split()[0])
    srv.start()
    try:
        argv = [str(binaries / "tftp-load"), "get", "--server", f"{srv.host}:{srv.port}", "--file", file,
                "--reference", str(ref), "-n", str(n), "--blksize", str(BLKSIZE), "--windowsize", str(ws),
                "--deadline", str(deadline), "--pid", str(srv.proc.pid if srv.proc else 0)]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=deadline + 60)
        if r.returncode != 0:
            return {"n": n, "ok": 0, "failed": n, "failures": {f"loadgen: {r.stderr.strip()[:200]}": n},
                    "mb_s": 0.0, "p50_s": 0.0, "p99_s": 0.0}
        res = json.loads(r.stdout)
        res["server_alive"] = srv.alive()
        res["load"] = load
        return res
    finally:
        srv.stop()


def lean_limits(binaries: Path, matrix: dict[str, list[int]], windows: list[int], tries: int = 3) -> dict[str, dict]:
    """The lean exchange for every (N, windowsize) of the matrix (N > 1): 'N/window' -> the JSON of the best of
    `tries` 2-second runs (on a shared VM one run can land in a slow second; the best is the limit)."""
    out: dict[str, dict] = {}
    for n in sorted({n for ns in matrix.values() for n in ns if n > 1}):
        for ws in windows:
            runs = []
            for _ in range(tries):
                r = subprocess.run([str(binaries / "tftp-load"), "lockstep", "-n", str(n), "--window", str(ws),
                                    "--secs", "2"], capture_output=True, text=True, timeout=60)
                if r.returncode == 0:
                    runs.append(json.loads(r.stdout))
            if runs:
                best = max(runs, key=lambda j: j["received_mb_s"])
                best["runs_mb_s"] = [round(j["received_mb_s"], 1) for j in runs]
                out[f"{n}/{ws}"] = best
                print(f"lean exchange N {n:5} win {ws}: {best['received_mb_s']:7.1f} MB/s (runs {best['runs_mb_s']})",
                      flush=True)
    return out


def target_notes(results: list[dict], lean: dict[str, dict], probe_mb_s: float = 0.0) -> list[str]:
    """What the lean exchange says about the issue's targets, from this run's own figures."""
    notes = []
    for ws in sorted({r["ws"] for r in results}):
        for n in (64, 512):
            cell = [r for r in results if r["file"] == "1M" and r["ws"] == ws and r["n"] == n]
            peers = [r for r in cell if not r["server"].startswith("bootgate")]
            ours = [r for r in cell if r["server"] == "bootgate"]
            lim = lean.get(f"{n}/{ws}", {}).get("received_mb_s")
            if not peers or not ours or not lim:
                continue
            best = max(peers, key=lambda r: r.get("verified_mb_s", 0))
            need = 1.5 * best.get("verified_mb_s", 0)
            got = ours[0].get("verified_mb_s", 0)
            verdict = ("within the lean limit" if need <= lim else
                       f"**above the lean limit** ({need / lim:.2f}x of it: no server could reach it with this client here)")
            cpu = ""
            ob, pb, lean_cell = per_datagram_us(ours[0]), per_datagram_us(best), lean.get(f"{n}/{ws}", {})
            if ob and pb and lean_cell:
                cpu = (f" CPU per datagram: bootgate {ob[0]:.1f} us, {best['server']} {pb[0]:.1f} us, the lean server "
                       f"{lean_cell['server_us_per_block']:.1f} us; the client {ob[1]:.1f} us (lean: "
                       f"{lean_cell['client_us_per_block']:.1f} us).")
            if probe_mb_s:
                need70 = 0.7 * probe_mb_s
                notes.append(f"1 MiB, win {ws}, N = {n}: 70% of the loopback limit is {need70:.0f} MB/s, "
                             + ("within the lean limit" if need70 <= lim else
                                f"**above the lean limit** ({need70 / lim:.2f}x of it)")
                             + f"; bootgate {got:.0f} MB/s = {100 * got / probe_mb_s:.0f}% of the loopback limit.")
            notes.append(f"1 MiB, win {ws}, N = {n}: 1.5x the best peer ({best['server']} "
                         f"{best.get('verified_mb_s', 0):.0f} MB/s) is {need:.0f} MB/s, {verdict}; bootgate "
                         f"{got:.0f} MB/s = {got / best.get('verified_mb_s', 1):.2f}x the best peer, {100 * got / lim:.0f}% of "
                         f"the lean exchange ({lim:.0f} MB/s).{cpu}")
        lim = lean.get(f"2000/{ws}", {}).get("received_mb_s")
        cell = [r for r in results if r["file"] == "1M" and r["ws"] == ws and r["n"] == 2000]
        peers = [r for r in cell if not r["server"].startswith("bootgate")]
        ours = [r for r in cell if r["server"] == "bootgate"]
        if lim and peers and ours:
            best = max(peers, key=lambda r: r.get("verified_mb_s", 0))
            need = 3 * best.get("verified_mb_s", 0)
            got = ours[0].get("verified_mb_s", 0)
            notes.append(f"1 MiB, win {ws}, N = 2000: 3x the best peer ({best['server']} {best.get('verified_mb_s', 0):.0f} "
                         f"MB/s) is {need:.0f} MB/s, "
                         + ("within the lean limit" if need <= lim else
                            f"**above the lean limit** ({need / lim:.2f}x of it)")
                         + f"; bootgate {got:.0f} MB/s = {got / max(best.get('verified_mb_s', 0), 1e-9):.1f}x the best "
                         f"peer, {ours[0].get('failed', 0)} failed, p99 {ours[0].get('p99_s', 0):.1f} s.")
        if lim:
            # The 99th-percentile transfer cannot end before 99 % of all the bytes have moved.
            floor = 0.99 * 2000 * FILES["1M"] / (lim * 1e6)
            notes.append(f"1 MiB, win {ws}, N = 2000: at the lean exchange's {lim:.0f} MB/s, moving 99 % of the "
                         f"2000 files takes {floor:.1f} s, the least p99 any server can show here "
                         f"(p99 under 2 s needs {0.99 * 2000 * FILES['1M'] / 2e6:.0f} MB/s).")
    return notes


def per_datagram_us(r: dict) -> tuple[float, float] | None:
    """(server, client) CPU microseconds per datagram moved in a cell, from tftp-load's CPU readings."""
    datagrams = r.get("verified_bytes", 0) / BLKSIZE
    if datagrams < 1 or "server_cpu_s" not in r:
        return None
    return 1e6 * r["server_cpu_s"] / datagrams, 1e6 * r["client_cpu_s"] / datagrams


def cpu_per_datagram(r: dict) -> str:
    v = per_datagram_us(r)
    if not v:
        return "-"
    # A forking server's transfer processes are counted only while alive or once reaped: not comparable.
    server = "n/a" if r.get("server_procs", 1) > 1 else f"{v[0]:.1f}"
    return f"{server} / {v[1]:.1f}"


def mib(kb: int) -> float:
    return kb / 1024


def table(results: list[dict], probe: dict, probe_end: dict, notes: list[str], quick: bool, elapsed: float,
          gso: dict | None = None, lean: dict[str, dict] | None = None) -> str:
    limit = probe.get("received_mb_s", 0.0)
    lean = lean or {}
    lines = [
        "# TFTP benchmark results",
        "",
        f"Written by `benches/tftp/run.py{' --quick' if quick else ''}` in {elapsed:.0f} s on "
        f"{os.cpu_count()} vCPUs ({platform.system()} {platform.release()}), all over loopback. "
        "**The machine is shared: other engineers' builds and tests compete for the same 2 cores during "
        "the run, so every number is noisy and only the relative order within one run means much.**",
        "",
        f"Loopback limit (bulk UDP, 1472-byte datagrams, one sender and one receiver thread): "
        f"**{limit:.0f} MB/s** delivered at the start of the run, {probe_end.get('received_mb_s', 0.0):.0f} MB/s "
        "at its end."
        + (f" The same with a GSO sender (8 datagrams per sendmsg, as a server sending a window of 8 can): "
           f"**{gso.get('received_mb_s', 0.0):.0f} MB/s**." if gso else ""),
        "",
        "Lean exchange (`tftp-load lockstep`, the limit for this client): N socket pairs, one thread answering "
        "each ACK with a window of 1472-byte datagrams (UDP_SEGMENT for a window of 8), one thread reading each "
        "datagram with one recv and ACKing each window; no protocol work; best of three 2-second runs. `% lean` = a cell's MB/s / the lean "
        "exchange's at the same N and windowsize. "
        + ", ".join(f"N {k.split('/')[0]} win {k.split('/')[1]}: {v['received_mb_s']:.0f} MB/s "
                    f"(server {v['server_us_per_block']:.1f} us, client {v['client_us_per_block']:.1f} us CPU per datagram)"
                    for k, v in lean.items()) + ("." if lean else ""),
        "",
        "blksize 1468 requested; `win` = windowsize requested / granted (a server without RFC 7440 "
        "grants 1). MB/s = bytes received in order and verified (complete files and the verified part of "
        "transfers cut by the cell's deadline) / wall time from the first RRQ to the last byte or the "
        "deadline. p50/p99 = per-transfer time from its RRQ (a failed transfer counts its time to the "
        "failure). mem = the server's peak memory: VmHWM (peak RSS) of its process, or for a forking "
        "server the peak sampled sum of PSS over its processes (`procs` = most processes seen). "
        "`% limit` = MB/s / loopback limit at the start. CPU per datagram: the server's (its process; n/a "
        "for a forking server, whose finished processes are not all counted) and the load generator's CPU "
        "time in the cell / datagrams moved. `load` = the machine's 1-minute load average "
        "when the cell started (2 cores: above 2, other work competed with the cell). Each cell runs "
        "every server one after the other, so servers in one cell saw about the same load.",
        "",
        "| file | win | N | server | ok | failed | MB/s | % limit | % lean | server / client CPU us per datagram | p50 s | p99 s | mem MiB | procs | load | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        fails = "; ".join(f"{k}: {v}" for k, v in sorted(r.get("failures", {}).items()))
        note = fails
        if r.get("server_alive") is False:
            note = ("server died; " + note).strip("; ")
        mem = max(r.get("server_vmhwm_kb", 0) if r.get("server_procs", 1) <= 1 else 0,
                  r.get("server_peak_pss_kb", 0))
        pct = 100 * r.get("verified_mb_s", 0) / limit if limit else 0
        lim = lean.get(f"{r['n']}/{r['ws']}", {}).get("received_mb_s")
        pct_lean = f"{100 * r.get('verified_mb_s', 0) / lim:.0f}%" if lim else "-"
        lines.append(
            f"| {r['file']} | {r['ws']}/{r.get('granted_window', 0) or '-'} | {r['n']} | {r['server']} | "
            f"{r.get('ok', 0)} | {r.get('failed', 0)} | {r.get('verified_mb_s', 0):.0f} | {pct:.0f}% | {pct_lean} | {cpu_per_datagram(r)} | "
            f"{r.get('p50_s', 0):.3f} | {r.get('p99_s', 0):.3f} | {mib(mem):.1f} | {r.get('server_procs', 0)} | "
            f"{r.get('load', 0):.1f} | {note} |")
    lines += ["", *[f"- {n}" for n in notes], ""]
    tn = target_notes(results, lean, limit)
    if tn:
        lines += ["Targets against the lean exchange (this run's own figures):", "", *[f"- {n}" for n in tn], ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 MiB at N=1,64,512 and 32 MiB at N=1 only")
    ap.add_argument("--servers", default="bootgate,tftpd-hpa,dnsmasq,atftpd")
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    ap.add_argument("--deadline", type=float, default=20.0, help="seconds a cell may last")
    ap.add_argument("--atftpd", help="path of atftpd (default: PATH, then benches/tftp/.peers)")
    ap.add_argument("--windows", default="1,8")
    ap.add_argument("--n", help="comma-separated N for the 1 MiB file (overrides the matrix)")
    ap.add_argument("--bootgate-old", help="another bootgate-tftpd binary to run as 'bootgate (before)'")
    ap.add_argument("--single-port", action="store_true", help="also run bootgate in single-port mode")
    ap.add_argument("--from-json", help="only write --out again from a results.json of an earlier run")
    args = ap.parse_args()
    if args.from_json:
        data = json.loads(Path(args.from_json).read_text())
        notes = data.get("notes", [])
        Path(args.out).write_text(table(data["results"], data["probe"], data["probe_end"], notes, False,
                                        data.get("elapsed", 0.0), data.get("gso_probe"), data.get("lean")))
        print(f"wrote {args.out}")
        return 0

    t0 = time.monotonic()
    binaries = build()
    matrix = dict(QUICK if args.quick else FULL)
    if args.n:
        matrix = {"1M": [int(x) for x in args.n.split(",")], "32M": []}
    windows = [int(w) for w in args.windows.split(",")]
    with tempfile.TemporaryDirectory(prefix="bootgate-tftp-bench-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        os.chmod(tmp, 0o755)
        os.chmod(root, 0o755)
        for name, size in FILES.items():
            p = root / name
            p.write_bytes(os.urandom(size))
            os.chmod(p, 0o644)
        probe = json.loads(subprocess.run([str(binaries / "tftp-load"), "probe", "--secs", "2"],
                                          capture_output=True, text=True, check=True).stdout)
        print(f"loopback limit: {probe['received_mb_s']:.0f} MB/s", flush=True)
        gso = json.loads(subprocess.run([str(binaries / "tftp-load"), "probe", "--secs", "2", "--gso", "8"],
                                        capture_output=True, text=True, check=True).stdout)
        print(f"loopback limit, GSO sender: {gso['received_mb_s']:.0f} MB/s", flush=True)
        lean = lean_limits(binaries, matrix, windows)
        srvs, missing = servers(binaries, root, args.servers.split(","), args.atftpd, args.bootgate_old,
                                args.single_port)
        notes = [f"{s.name}: {s.note}" for s in srvs] + [f"skipped: {m}" for m in missing]
        results: list[dict] = []
        for file, ns in matrix.items():
            for ws in windows:
                for n in ns:
                    for srv in srvs:
                        try:
                            r = run_cell(binaries, srv, file, root / file, n, ws, args.deadline)
                        except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
                            r = {"n": n, "ok": 0, "failed": n, "failures": {str(e)[:200]: n}}
                        r.update(server=srv.name, file=file, ws=ws)
                        results.append(r)
                        print(f"{srv.name:10} {file:4} win {ws} N {n:5}: {r.get('verified_mb_s', 0):7.1f} MB/s "
                              f"ok {r.get('ok', 0)} failed {r.get('failed', 0)} p50 {r.get('p50_s', 0):.3f} "
                              f"p99 {r.get('p99_s', 0):.3f} mem {mib(max(r.get('server_vmhwm_kb', 0), r.get('server_peak_pss_kb', 0))):.1f} MiB "
                              f"load {r.get('load', 0):.1f} {r.get('failures', {}) or ''}", flush=True)
        probe_end = json.loads(subprocess.run([str(binaries / "tftp-load"), "probe", "--secs", "2"],
                                              capture_output=True, text=True, check=True).stdout)
    elapsed = time.monotonic() - t0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table(results, probe, probe_end, notes, args.quick, elapsed, gso, lean))
    out.with_name("results.json").write_text(
        json.dumps({"probe": probe, "probe_end": probe_end, "gso_probe": gso, "lean": lean, "results": results,
                    "notes": notes, "elapsed": elapsed}, indent=1))
    print(f"wrote {out} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
