#!/usr/bin/env python3
"""/boot over HTTPS under load, beside its two ceilings, in one run (loopback only). Not part of `make test`.

    .venv/bin/python benches/boot/run.py [--machines 10000] [--connections 200] [--duration 10]
                                         [--rounds 3] [--storm 2000] [--storm-seconds 10] [--threads 2]

The three servers below run side by side and are measured in turns, --rounds times (median reported),
so that the load of a shared machine falls on all of them alike.

1. bootgate serve (SQLite store seeded with --machines hosts, each with MAC, SMBIOS UUID and serial;
   no deployment, so every answer is `exit`): wrk with --connections keep-alive HTTPS clients, every
   request the /boot of a random seeded machine (boot.lua). Each request identifies the machine in the
   store and records a boot and a boot event.
2. The framework ceiling: ceiling.py, the same hypercorn config (bootgate.runtime.hypercorn_config: same
   TLS files, ciphers, one uvloop worker) and Starlette answering a constant script.
3. The machine's HTTPS ceiling: nginx (worker_processes auto) serving a static script with the same
   certificate.
4. The storm: --storm machines never seen before, each opening its own new TLS connection, spread over
   --storm-seconds; every answer is checked (HTTP 200, an iPXE script that exits) and every one must
   have its boot record afterwards.

After bootgate stops (SIGTERM) the store must hold a boot record for every request wrk and the storm
counted as answered. Prints a Markdown table and a JSON line; benches/boot/README.md has the results.
Needs wrk and nginx (Debian packages; `make bench` installs them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
from tests.integration import store_serve  # noqa: E402  (`bootgate serve` as a subprocess, waited for)
SCRIPT = "#!ipxe\necho bootgate: nothing to do for this machine, next boot device\nexit\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(work: Path, http_port: int, https_port: int, name: str = "bootgate.toml") -> Path:
    cfg = work / name
    cfg.write_text(f"""[server]
data_dir = "{work / 'data'}"
[http]
bind = "127.0.0.1"
port = {http_port}
https_port = {https_port}
[tftp]
enabled = false
""")
    return cfg


def uuid_of(i: int) -> str:
    return f"{i:08x}-b0b0-4b0b-8b0b-{i:012x}"


async def seed(url: str, n: int) -> None:
    """n hosts with one MAC each, as zero-touch registration would have left them."""
    from sqlalchemy import insert

    from bootgate.store import Store, schema
    store = await Store.open(url)
    now = time.time()
    try:
        async with store.engine.begin() as conn:
            await conn.execute(insert(schema.hosts), [
                {"id": i + 1, "name": f"BENCH-{i:05d}", "uuid": uuid_of(i), "serial": f"BENCH{i:05d}",
                 "manufacturer": "QEMU", "product": "Standard PC", "known": True, "registered": now,
                 "last_seen": now, "wipe_approved": False} for i in range(n)])
            await conn.execute(insert(schema.host_macs), [
                {"host_id": i + 1, "mac": f"02:b0:00:00:{i >> 8:02x}:{i & 0xff:02x}", "first_seen": now,
                 "last_seen": now} for i in range(n)])
    finally:
        await store.close()


async def count_boots(url: str) -> tuple[int, int, int]:
    """(boot records, boot events, boot records of storm MACs 02:b1:...)."""
    from sqlalchemy import func, select

    from bootgate.store import Store, schema
    store = await Store.open(url)
    try:
        async with store.engine.connect() as conn:
            b, e = schema.boots, schema.events
            boots = (await conn.execute(select(func.count()).select_from(b))).scalar_one()
            events = (await conn.execute(select(func.count()).select_from(e).where(e.c.kind == "boot"))).scalar_one()
            storm = (await conn.execute(select(func.count(func.distinct(b.c.mac))).where(
                b.c.mac.like("02:b1:%")))).scalar_one()
    finally:
        await store.close()
    return int(boots), int(events), int(storm)


def spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTGATE_")}
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int | None:
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
            return None
    return proc.returncode


def wait_https(port: int, ctx: ssl.SSLContext, proc: subprocess.Popen[bytes], log: Path, path: str = "/boot") -> None:
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as raw, \
                    ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(f"GET {path}?mac=02:00:00:00:00:01 HTTP/1.1\r\nHost: localhost\r\n"
                          "Connection: close\r\n\r\n".encode())
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server did not answer on {port}:\n{log.read_text()[-3000:]}")


def wrk(port: int, args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    argv = ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{max(1, round(seconds))}s", "--timeout", "10s",
            "-s", str(HERE / "boot.lua"), f"https://localhost:{port}/boot"]
    cp = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "MACHINES": str(args.machines)},
                        timeout=seconds + 60)
    m = re.search(r"^WRKJSON (.*)$", cp.stdout, re.M)
    if cp.returncode != 0 or m is None:
        raise SystemExit(f"wrk failed ({cp.returncode}): {cp.stdout}\n{cp.stderr}")
    r: dict[str, Any] = json.loads(m.group(1))
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["errors"] = sum(r[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    return r


def measure(name: str, port: int, args: argparse.Namespace) -> dict[str, Any]:
    wrk(port, args, args.warmup)
    r = wrk(port, args, args.duration)
    print(f"  {name}: {r['rps']:.0f} req/s, p50 {r['p50_us'] / 1000:.1f} ms, p99 {r['p99_us'] / 1000:.1f} ms, "
          f"errors {r['errors']}", flush=True)
    return r


async def storm(port: int, ctx: ssl.SSLContext, n: int, seconds: float) -> dict[str, Any]:
    """n new machines, each its own new TLS connection, started evenly over `seconds`; checks each answer."""
    t0 = time.monotonic()
    lat: list[float] = []
    bad: list[str] = []

    async def one(i: int) -> None:
        await asyncio.sleep(max(0.0, t0 + i * seconds / n - time.monotonic()))
        start = time.monotonic()
        mac = f"02:b1:00:00:{i >> 8:02x}:{i & 0xff:02x}"
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                "127.0.0.1", port, ssl=ctx, server_hostname="localhost"), 30)
            writer.write(f"GET /boot?mac={mac}&serial=STORM{i:05d}&platform=pcbios&buildarch=i386 HTTP/1.1\r\n"
                         "Host: localhost\r\nConnection: close\r\n\r\n".encode())
            data = await asyncio.wait_for(reader.read(), 30)
            writer.close()
        except (OSError, asyncio.TimeoutError) as e:
            bad.append(f"{mac}: {e!r}")
            return
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200") or not body.startswith(b"#!ipxe\n") or b"\nexit" not in body:
            bad.append(f"{mac}: {data[:200]!r}")
            return
        lat.append(time.monotonic() - start)

    await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.monotonic() - t0
    lat.sort()
    return {"machines": n, "answered_ok": len(lat), "failed": len(bad), "first_failures": bad[:5], "wall_s": wall,
            "p50_ms": lat[len(lat) // 2] * 1000 if lat else None,
            "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else None}


def nginx_conf(work: Path, port: int, keepalive: int) -> Path:
    www = work / "www"
    www.mkdir(exist_ok=True)
    (www / "boot").write_text(SCRIPT)
    tls = work / "data" / "tls"
    conf = work / "nginx.conf"
    conf.write_text(f"""worker_processes auto;
daemon off;
pid {work / 'nginx.pid'};
error_log {work / 'nginx-error.log'} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {work}/nginx-tmp;
    keepalive_requests {keepalive};
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {tls / 'server.pem'};
        ssl_certificate_key {tls / 'server.key'};
        root {www};
        location = /boot {{ default_type "text/plain; charset=utf-8"; }}
    }}
}}
""")
    return conf


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--machines", type=int, default=10_000)
    ap.add_argument("--connections", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--storm", type=int, default=2000)
    ap.add_argument("--storm-seconds", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-nginx", action="store_true")
    args = ap.parse_args()
    for tool in ("wrk",) + (() if args.skip_nginx else ("nginx",)):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            raise SystemExit(f"{tool} is not installed (apt-get install wrk nginx)")

    from hypercorn.config import Config as HypercornConfig

    from bootgate.config import load_settings
    from bootgate.runtime import ensure_layout

    work = Path(tempfile.mkdtemp(prefix="bootgate-bench-boot-"))
    work.chmod(0o755)  # nginx workers (www-data) read the static script
    port, http_port = free_port(), free_port()
    cfg = write_config(work, http_port, port)
    settings = load_settings(cfg, env={})
    ensure_layout(settings)
    ctx = ssl.create_default_context(cafile=str(settings.tls.ca_cert))
    url = settings.store.url
    print(f"work {work}; seeding {args.machines} machines", flush=True)
    asyncio.run(seed(url, args.machines))
    results: dict[str, Any] = {"machines": args.machines, "connections": args.connections,
                               "duration_s": args.duration, "cpus": os.cpu_count(),
                               "loadavg_before": os.getloadavg()[0]}

    # all three servers up at once on their own ports; measured in turns, --rounds times, so that the
    # load of a shared machine falls on all of them alike (the median round of each is reported)
    ceil_port, ceil_http, nginx_port = free_port(), free_port(), free_port()
    ceil_cfg = write_config(work, ceil_http, ceil_port, name="ceiling.toml")
    servers: dict[str, tuple[int, subprocess.Popen[bytes], Path]] = {}
    # bootgate serve through the tests' helper (same config as write_config: data dir, loopback, TFTP off)
    bg = store_serve.start(work, "bootgate", port=http_port, https=port, data=work / "data", script_clients=None)
    servers["bootgate"] = (port, bg.proc, bg.log)
    try:
        servers["framework_ceiling"] = (ceil_port, spawn([sys.executable, str(HERE / "ceiling.py"), str(ceil_cfg)],
                                                         work / "ceiling.log"), work / "ceiling.log")
        if not args.skip_nginx:
            keepalive = HypercornConfig().keep_alive_max_requests
            nginx = shutil.which("nginx") or "/usr/sbin/nginx"
            (work / "nginx-tmp").mkdir(exist_ok=True)
            servers["nginx"] = (nginx_port, spawn([nginx, "-c", str(nginx_conf(work, nginx_port, keepalive)), "-e",
                                                   str(work / "nginx-error.log")], work / "nginx.log"),
                                work / "nginx-error.log")
        for name, (p, proc, lg) in servers.items():
            wait_https(p, ctx, proc, lg)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
        for rnd in range(args.rounds):
            for name, (p, _proc, _lg) in servers.items():
                runs[name].append(measure(f"round {rnd + 1} {name}", p, args))
        for name, rs in runs.items():
            by_rps = sorted(rs, key=lambda r: r["rps"])
            results[name] = dict(by_rps[len(by_rps) // 2], rounds_rps=[round(r["rps"]) for r in rs],
                                 rounds_p99_ms=[round(r["p99_us"] / 1000, 1) for r in rs])
        print(f"  storm: {args.storm} new machines, one new TLS connection each, over {args.storm_seconds} s",
              flush=True)
        results["storm"] = asyncio.run(storm(port, ctx, args.storm, args.storm_seconds))
        print(f"  storm: {results['storm']}", flush=True)
    finally:
        for name, (_p, proc, _lg) in servers.items():
            rc = stop(proc, signal.SIGQUIT if name == "nginx" else signal.SIGTERM)
            if name == "bootgate":
                results["bootgate_exit"] = rc
    boots, events, storm_recorded = asyncio.run(count_boots(url))
    answered = sum(r["requests"] for r in runs["bootgate"]) + results["storm"]["answered_ok"]
    results["recorded"] = {"boots": boots, "boot_events": events, "storm_machines_recorded": storm_recorded,
                           "answered_in_measured_runs_and_storm": answered}

    results["loadavg_after"] = os.getloadavg()[0]
    b, f = results["bootgate"], results["framework_ceiling"]
    print("\n| server (median of rounds) | req/s | p50 ms | p99 ms | errors | vs framework ceiling | rounds req/s |")
    print("|---|---:|---:|---:|---:|---:|---|")
    rows = [("bootgate /boot (store lookup + boot record + event)", b), ("framework ceiling (constant script)", f)]
    if "nginx" in results:
        rows.append(("nginx static script (machine ceiling)", results["nginx"]))
    for name, r in rows:
        print(f"| {name} | {r['rps']:.0f} | {r['p50_us'] / 1000:.1f} | {r['p99_us'] / 1000:.1f} | {r['errors']} | "
              f"{100 * r['rps'] / f['rps']:.0f}% | {r['rounds_rps']} |")
    s = results["storm"]
    print(f"\nstorm: {s['answered_ok']}/{s['machines']} answered correctly, {s['failed']} failed, wall "
          f"{s['wall_s']:.1f} s, p50 {s['p50_ms']:.0f} ms, p99 {s['p99_ms']:.0f} ms")
    print(f"recorded after SIGTERM (exit {results['bootgate_exit']}): {results['recorded']}")
    print("RESULTS " + json.dumps(results))
    ok = (s["failed"] == 0 and storm_recorded == args.storm and boots >= answered and events >= answered
          and results["bootgate_exit"] == 0)
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
