"""A private Samba Active Directory DC on a loopback address for the NPS (AD account per MAC) tests.

`samba-tool domain provision` into a temp dir (about 10 s), a test CA and an LDAPS certificate for the
address, then `samba -i -M single` with only the LDAP service, bound to one 127.x.y.z address (ports 389/636
are fixed in Samba, so each lab takes its own loopback address). Killed by PID (its own process group) in
`stop()`.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SAMBA = shutil.which("samba") or ("/usr/sbin/samba" if os.path.exists("/usr/sbin/samba") else None)
SAMBA_TOOL = shutil.which("samba-tool")
OPENSSL = shutil.which("openssl")
AVAILABLE = bool(SAMBA and SAMBA_TOOL and OPENSSL and os.path.isdir("/usr/share/samba/setup/ad-schema"))
SKIP_REASON = "Samba AD DC not installed (apt-get install samba samba-ad-dc samba-ad-provision)"

REALM = "BOOTGATE.TEST"
BASE = "DC=bootgate,DC=test"
ADMIN = "Administrator@bootgate.test"
ADMIN_PW = "Adm1n-Secret!x"


@dataclass
class SambaDc:
    dir: Path
    ip: str
    ca_pem: Path
    proc: subprocess.Popen[bytes]

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://{self.ip}:636"

    @property
    def ldap_url(self) -> str:
        return f"ldap://{self.ip}:389"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)

    def log(self) -> str:
        p = self.dir / "samba.out"
        return p.read_text(errors="replace") if p.exists() else ""


def _make_tls(d: Path, ip: str) -> tuple[Path, Path, Path]:
    d.mkdir(parents=True, exist_ok=True)
    ca_key, ca_pem, key, csr, pem, ext = (d / n for n in ("ca.key", "ca.pem", "server.key", "server.csr",
                                                          "server.pem", "ext.cnf"))
    ext.write_text(f"subjectAltName=IP:{ip},DNS:localhost\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    run = [OPENSSL or "openssl"]
    subprocess.run(run + ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out",
                          str(ca_pem), "-days", "2", "-subj", "/CN=bootgate samba test CA",
                          "-addext", "basicConstraints=critical,CA:TRUE",
                          "-addext", "keyUsage=critical,keyCertSign,cRLSign"], check=True, capture_output=True)
    subprocess.run(run + ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
                          "-subj", "/CN=dc.bootgate.test"], check=True, capture_output=True)
    subprocess.run(run + ["x509", "-req", "-in", str(csr), "-CA", str(ca_pem), "-CAkey", str(ca_key),
                          "-CAcreateserial", "-out", str(pem), "-days", "2", "-extfile", str(ext)],
                   check=True, capture_output=True)
    os.chmod(key, 0o600)  # samba refuses a key others can read
    return ca_pem, pem, key


def _free_ip() -> str:
    for _ in range(50):
        ip = f"127.{random.randint(100, 250)}.{random.randint(1, 250)}.{random.randint(1, 250)}"
        with socket.socket() as s:
            try:
                s.bind((ip, 636))
            except OSError:
                continue
        return ip
    raise RuntimeError("no free loopback address for port 636")


def start(d: Path) -> SambaDc:
    assert SAMBA and SAMBA_TOOL
    ip = _free_ip()
    prov = d / "prov"
    prov.mkdir(parents=True)
    env = {**os.environ, "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin")}
    r = subprocess.run([SAMBA_TOOL, "domain", "provision", f"--realm={REALM}", "--domain=BOOTGATE",
                        f"--adminpass={ADMIN_PW}", "--server-role=dc", "--dns-backend=NONE",
                        f"--targetdir={prov}", f"--host-ip={ip}", "--host-name=dc",
                        f"--option=interfaces={ip}/8", "--option=bind interfaces only=yes",
                        "--option=server services=ldap", f"--option=log file={d}/log.%m",
                        f"--option=pid directory={prov}"],
                       capture_output=True, text=True, timeout=180, env=env)
    if r.returncode != 0:
        raise RuntimeError("samba-tool domain provision failed:\n" + (r.stdout + r.stderr)[-3000:])
    ca_pem, pem, key = _make_tls(d / "tls", ip)
    conf = prov / "etc" / "smb.conf"
    text = conf.read_text().replace("[global]\n", "[global]\n\ttls enabled = yes\n"
                                    f"\ttls keyfile = {key}\n\ttls certfile = {pem}\n\ttls cafile = {ca_pem}\n", 1)
    conf.write_text(text)
    out = open(d / "samba.out", "wb")
    proc = subprocess.Popen([SAMBA, "-i", "-M", "single", "-s", str(conf)], stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    out.close()
    dc = SambaDc(d, ip, ca_pem, proc)
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection((ip, 636), timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                dc.stop()
                raise RuntimeError("samba did not start:\n" + dc.log()[-3000:]) from None
            time.sleep(0.2)
    return dc
