"""The VM lab for bootgate's end-to-end tests: network namespaces, a site DHCP server, QEMU.

Topology (every interface lives inside namespaces this module creates; nothing touches the root
namespace's interfaces):

    namespace A (site)                 namespace B (server under test)
    dnsmasq: DHCP only, no boot        br0 198.18.0.2/24 (+ fe80::2, periodic IPv6 RA, lifetime 0)
    options, pool .100-.199              |- vb  (veth peer of A's va)
    va 198.18.0.1/24  <--- veth --->     |- tap-*  (one per QEMU VM)
                                         bootgate (or the stand-ins) bound to 198.18.0.2

Namespaces are named ``bge2e-<pid>-a|b`` after the creating process, so a later run can remove
leftovers of a run that died (see :func:`cleanup_stale`). Every process is started by this module,
tracked by PID and stopped in :meth:`Lab.close`, which also deletes the namespaces (and with them the
veth, bridge and taps).

Also usable from the command line (as root), for diagnostics:
    python3 tests/e2e/e2e_lab.py cleanup      remove leftovers of dead runs
    python3 tests/e2e/e2e_lab.py ra IFACE S   send IPv6 RAs (router lifetime 0, no prefix) for S seconds
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any, Callable, Sequence

REPO = Path(__file__).resolve().parents[2]
LAB_DIR = Path(os.environ.get("BOOTGATE_LAB_DIR", str(REPO / ".lab")))
IPXE_TRIXIE_DIR = LAB_DIR / "ipxe-trixie"
CONTENT_DIR = LAB_DIR / "content"

NS_PREFIX = "bge2e-"
SITE_IP = "198.18.0.1"
SERVER_IP = "198.18.0.2"
PREFIX_LEN = 24
POOL = ("198.18.0.100", "198.18.0.199")
BRIDGE = "br0"

QEMU = "qemu-system-x86_64"
OVMF_CANDIDATES = ("/usr/share/qemu/OVMF.fd", "/usr/share/ovmf/OVMF.fd")
DNSMASQ = "dnsmasq"


# Wall time of each VM boot in this process: name -> (seconds, how it ended); the e2e conftest prints it.
BOOT_TIMES: dict[str, tuple[float, str]] = {}

# Serial console text that means the firmware gave up network booting (never seen on success).
FAIL_MARKERS = ("No more network devices", "Shell> ", "No bootable device")


def log(msg: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(argv: Sequence[str], check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Runs a short command, capturing its output; raises with the output on failure if check."""
    cp = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and cp.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited {cp.returncode}: {cp.stderr.strip() or cp.stdout.strip()}")
    return cp


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_namespaces() -> list[str]:
    cp = run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in cp.stdout.splitlines() if line.strip()]


def ns_pids(ns: str) -> list[int]:
    cp = run(["ip", "netns", "pids", ns], check=False)
    return [int(p) for p in cp.stdout.split() if p.isdigit()]


def kill_pids(pids: Sequence[int], grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after a grace period, for the given PIDs (which this lab started)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def delete_namespace(ns: str) -> None:
    pids = ns_pids(ns)
    if pids:
        kill_pids(pids)
    run(["ip", "netns", "delete", ns], check=False)


def cleanup_stale() -> list[str]:
    """Deletes namespaces (and kills the processes inside them) left by lab runs whose creating
    process is gone. Namespaces of live runs are left alone."""
    removed = []
    for ns in list_namespaces():
        if not ns.startswith(NS_PREFIX):
            continue
        parts = ns[len(NS_PREFIX):].split("-")
        owner = int(parts[0]) if parts and parts[0].isdigit() else -1
        if owner > 0 and pid_alive(owner):
            continue
        delete_namespace(ns)
        removed.append(ns)
    return removed


def kvm_usable() -> bool:
    """True only with a real hardware KVM module (a nested software KVM cannot run the firmware)."""
    forced = os.environ.get("BOOTGATE_E2E_ACCEL")
    if forced:
        return forced == "kvm"
    if not os.path.exists("/dev/kvm"):
        return False
    return os.path.isdir("/sys/module/kvm_intel") or os.path.isdir("/sys/module/kvm_amd")


def ovmf_path() -> str | None:
    for p in OVMF_CANDIDATES:
        if os.path.exists(p):
            return p
    return None


def lab_prepared() -> bool:
    return (IPXE_TRIXIE_DIR / "undionly.kpxe").is_file() and (IPXE_TRIXIE_DIR / "snponly.efi").is_file() \
        and (CONTENT_DIR / "vmlinuz").is_file() and (CONTENT_DIR / "initrd.img").is_file()


def prepare_lab() -> None:
    subprocess.run(["bash", str(REPO / "tests/e2e/lab.sh"), "prepare"], check=True, timeout=900)


@dataclasses.dataclass
class VmResult:
    name: str
    firmware: str
    mac: str
    wall_s: float
    returncode: int | None
    timed_out: bool
    serial_log: Path

    def serial_text(self) -> str:
        try:
            return self.serial_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def serial_tail(self, n: int = 60) -> str:
        text = self.serial_text().replace("\r", "")
        # Drop ANSI sequences from the firmware screens for readability.
        import re
        text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
        return "\n".join(text.splitlines()[-n:])


class Lab:
    """The namespace pair, the site DHCP server and the processes started in them.

    Use as a context manager; :meth:`close` runs even when setup fails half way."""

    def __init__(self, workdir: Path, ra: bool = True, capture: bool = True) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tag = f"{os.getpid()}"
        self.ns_a = f"{NS_PREFIX}{self.tag}-a"
        self.ns_b = f"{NS_PREFIX}{self.tag}-b"
        self.ra = ra
        self.capture = capture
        self.pcap = workdir / "dhcp.pcap"
        self.procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []
        self._taps = 0

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> "Lab":
        try:
            self.setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def setup(self) -> None:
        stale = cleanup_stale()
        if stale:
            log(f"removed leftovers of earlier runs: {' '.join(stale)}")
        for ns in (self.ns_a, self.ns_b):
            if ns in list_namespaces():
                delete_namespace(ns)
            run(["ip", "netns", "add", ns])
        a, b = self.ns_a, self.ns_b
        # The veth pair is created inside A with its peer moved straight into B.
        run(["ip", "-n", a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b])
        run(["ip", "-n", a, "link", "set", "lo", "up"])
        run(["ip", "-n", a, "addr", "add", f"{SITE_IP}/{PREFIX_LEN}", "dev", "va"])
        run(["ip", "-n", a, "link", "set", "va", "up"])
        run(["ip", "-n", b, "link", "set", "lo", "up"])
        run(["ip", "-n", b, "link", "add", BRIDGE, "type", "bridge", "stp_state", "0", "forward_delay", "0",
             "mcast_snooping", "0"])
        run(["ip", "-n", b, "link", "set", "vb", "master", BRIDGE])
        run(["ip", "-n", b, "link", "set", "vb", "up"])
        run(["ip", "-n", b, "addr", "add", f"{SERVER_IP}/{PREFIX_LEN}", "dev", BRIDGE])
        run(["ip", "-n", b, "addr", "add", "fe80::2/64", "dev", BRIDGE, "nodad"], check=False)
        run(["ip", "-n", b, "link", "set", BRIDGE, "up"])
        if self.capture and shutil.which("tcpdump"):
            # The DHCP traffic on the bridge, for diagnostics (kept with the work directory on failure).
            self.spawn("tcpdump", ["tcpdump", "-Z", "root", "-i", BRIDGE, "-U", "-s", "0", "-w", str(self.pcap),
                                   "udp and (port 67 or port 68 or port 4011)"], ns=b)
        self.start_site_dhcp()
        if self.ra:
            self.spawn("ra", [sys.executable, str(Path(__file__).resolve()), "ra", BRIDGE, "900"], ns=b)

    def close(self) -> None:
        pids = [p.pid for _, p, _ in self.procs if p.poll() is None]
        if pids:
            kill_pids(pids)
        for _, p, fh in self.procs:
            try:
                p.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
            fh.close()
        self.procs.clear()
        for ns in (self.ns_b, self.ns_a):
            if ns in list_namespaces():
                delete_namespace(ns)

    # -- processes -------------------------------------------------------------------------
    def ns_argv(self, ns: str | None, argv: Sequence[str]) -> list[str]:
        return (["ip", "netns", "exec", ns] if ns else []) + list(argv)

    def spawn(self, name: str, argv: Sequence[str], ns: str | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Starts a long-running process (inside namespace ns), output to <workdir>/<name>.log."""
        logf = open(self.workdir / f"{name}.log", "ab")
        full = self.ns_argv(ns, argv)
        logf.write(f"$ {shlex.join(full)}\n".encode())
        logf.flush()
        p = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                             env=env, start_new_session=True)
        self.procs.append((name, p, logf))
        return p

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 5.0) -> int | None:
        if proc.poll() is None:
            kill_pids([proc.pid], grace=grace)
        try:
            return proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return None

    def log_text(self, name: str) -> str:
        try:
            return (self.workdir / f"{name}.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def exec_b(self, argv: Sequence[str], check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return run(self.ns_argv(self.ns_b, argv), check=check, timeout=timeout)

    # -- services --------------------------------------------------------------------------
    def start_site_dhcp(self) -> None:
        """The site's DHCP server: addresses only, no boot options, no DNS, no ping check."""
        self.spawn("site-dnsmasq", [
            DNSMASQ, "--keep-in-foreground", "--log-facility=-", "--conf-file=/dev/null", "--port=0",
            "--interface=va", "--bind-interfaces", f"--dhcp-range={POOL[0]},{POOL[1]},255.255.255.0,1h",
            "--no-ping", "--leasefile-ro", "--dhcp-authoritative", "--log-dhcp", "--user=root",
            f"--pid-file={self.workdir / 'site-dnsmasq.pid'}",
        ], ns=self.ns_a)

    def add_tap(self) -> str:
        self._taps += 1
        name = f"tap{self._taps}"
        run(["ip", "-n", self.ns_b, "tuntap", "add", "dev", name, "mode", "tap"])
        run(["ip", "-n", self.ns_b, "link", "set", name, "master", BRIDGE])
        run(["ip", "-n", self.ns_b, "link", "set", name, "up"])
        return name

    def wait_tcp(self, host: str, port: int, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
        """Waits until something accepts TCP connections on host:port inside namespace B."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"process exited with {proc.returncode} before listening on {host}:{port}")
            cp = self.exec_b(["bash", "-c", f"exec 3<>/dev/tcp/{host}/{port}"], check=False, timeout=10)
            if cp.returncode == 0:
                return
            time.sleep(0.2)
        raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")

    def http(self, method: str, url: str, token: str | None = None, body: Any = None,
             timeout: float = 20.0) -> tuple[int, bytes]:
        """An HTTP request from inside namespace B (curl); returns (status, body)."""
        argv = ["curl", "-sS", "-k", "-X", method, "-o", "-", "-w", "\n%{http_code}", "--max-time", str(timeout)]
        if token:
            argv += ["-H", f"Authorization: Bearer {token}"]
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
        argv.append(url)
        cp = subprocess.run(self.ns_argv(self.ns_b, argv), capture_output=True, timeout=timeout + 10)
        if cp.returncode != 0:
            raise RuntimeError(f"curl {method} {url} failed ({cp.returncode}): {cp.stderr.decode(errors='replace')}")
        out, _, code = cp.stdout.rpartition(b"\n")
        return int(code), out

    # -- virtual machines ------------------------------------------------------------------
    def qemu_argv(self, firmware: str, mac: str, tap: str, serial_log: Path,
                  monitor: Path | None = None) -> list[str]:
        """`monitor`: a unix socket for QEMU's human monitor (e.g. `sendkey`, see :func:`send_keys`)."""
        accel = "kvm" if kvm_usable() else "tcg"
        mon = f"unix:{monitor},server=on,wait=off" if monitor is not None else "none"
        argv = [QEMU, "-accel", accel, "-m", "512", "-smp", "1", "-nodefaults", "-display", "none",
                "-no-reboot", "-monitor", mon, "-serial", f"file:{serial_log}",
                "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no"]
        if firmware == "bios":
            # SeaBIOS runs the NIC's stock iPXE ROM (Debian 12's ipxe-qemu); mirror its screen to COM1.
            sercon = self.workdir / "sercon-port.bin"
            sercon.write_bytes(struct.pack("<H", 0x3F8))
            argv += ["-device", f"virtio-net-pci,netdev=n0,mac={mac},bootindex=1",
                     "-fw_cfg", f"name=etc/sercon-port,file={sercon}"]
        elif firmware == "uefi":
            ovmf = ovmf_path()
            if ovmf is None:
                raise RuntimeError("OVMF firmware not found (package ovmf)")
            # No option ROM: OVMF's own virtio-net driver and PXE client do DHCP + TFTP.
            argv += ["-bios", ovmf, "-device", f"virtio-net-pci,netdev=n0,mac={mac},romfile=,bootindex=1",
                     "-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n"]
        else:
            raise ValueError(f"unknown firmware {firmware!r}")
        return argv

    def boot_vm(self, name: str, firmware: str, mac: str, timeout: float,
                fail_markers: Sequence[str] = FAIL_MARKERS, monitor: Path | None = None,
                watch: Callable[[str], None] | None = None) -> VmResult:
        """Boots one VM on a fresh tap; returns when QEMU exits (poweroff/reboot), when the serial
        console shows one of fail_markers (the firmware gave up network booting), or after timeout
        seconds. QEMU is killed by PID in the last two cases (timed_out is then True).
        `monitor`: QEMU monitor socket path (see qemu_argv); `watch`: called with the serial console
        text about twice a second while the VM runs (e.g. to type at a prompt through the monitor)."""
        tap = self.add_tap()
        serial_log = self.workdir / f"{name}.serial.log"
        argv = self.qemu_argv(firmware, mac, tap, serial_log, monitor=monitor)
        log(f"booting {name}: {firmware}, mac {mac}, {tap}, accel {argv[2]}")
        t0 = time.monotonic()
        proc = self.spawn(f"{name}.qemu", argv, ns=self.ns_b)
        timed_out = False
        rc: int | None = None
        deadline = t0 + timeout
        gave_up_at: float | None = None
        while True:
            try:
                rc = proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if watch is not None:
                try:
                    watch(serial_log.read_text(errors="replace"))
                except FileNotFoundError:
                    pass
            if gave_up_at is None and fail_markers:
                try:
                    text = serial_log.read_text(errors="replace")
                except FileNotFoundError:
                    text = ""
                if any(m in text for m in fail_markers):
                    gave_up_at = now
            if now >= deadline or (gave_up_at is not None and now - gave_up_at > 3.0):
                timed_out = True
                rc = self.stop(proc, grace=2)
                break
        wall = time.monotonic() - t0
        run(["ip", "-n", self.ns_b, "link", "del", tap], check=False)
        log(f"{name} ended after {wall:.1f} s (rc {rc}{', timed out' if timed_out else ''})")
        return VmResult(name, firmware, mac, wall, rc, timed_out, serial_log)


# -- typing into a VM ------------------------------------------------------------------------
_KEY_NAMES = {"-": "minus", "\n": "ret", " ": "spc", ".": "dot", "_": "shift-minus", "/": "slash", ",": "comma",
              "=": "equal", "\t": "tab"}


def send_keys(monitor: Path, text: str, delay: float = 0.15) -> None:
    """Types `text` into the VM through QEMU's monitor socket (`sendkey`, a PS/2 keyboard, so it works
    whatever console the guest reads). Letters, digits and the characters in _KEY_NAMES."""
    keys = []
    for ch in text:
        if ch.isascii() and (ch.islower() or ch.isdigit()):
            keys.append(ch)
        elif ch.isascii() and ch.isupper():
            keys.append(f"shift-{ch.lower()}")
        elif ch in _KEY_NAMES:
            keys.append(_KEY_NAMES[ch])
        else:
            raise ValueError(f"no key for {ch!r}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(monitor))
        s.settimeout(2.0)
        for key in keys:
            s.sendall(f"sendkey {key}\n".encode())
            time.sleep(delay)
        try:
            s.recv(65536)  # the monitor's banner and echoes; nothing to check
        except OSError:
            pass


# -- IPv6 router advertisements -------------------------------------------------------------
def send_router_advertisements(iface: str, seconds: float, interval: float = 1.0) -> None:
    """Sends an ICMPv6 RA with router lifetime 0 and no prefix to ff02::1 every interval, for a
    bounded time. iPXE waits for an RA before using its DHCPv4 result; this ends the wait."""
    ifindex = socket.if_nametoindex(iface)
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
    # type 134, code 0, checksum (kernel fills it), cur hop limit 0, flags 0 (no M/O),
    # router lifetime 0, reachable time 0, retrans timer 0; no options.
    ra = struct.pack("!BBHBBHII", 134, 0, 0, 0, 0, 0, 0, 0)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            s.sendto(ra, ("ff02::1", 0, 0, ifindex))
        except OSError:
            pass  # no link-local address yet, or the link is down: try again
        time.sleep(interval)


def main(argv: list[str]) -> int:
    if len(argv) >= 1 and argv[0] == "cleanup":
        for ns in cleanup_stale():
            print(f"removed {ns}")
        return 0
    if len(argv) == 3 and argv[0] == "ra":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        send_router_advertisements(argv[1], float(argv[2]))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
