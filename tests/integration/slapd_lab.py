"""A private OpenLDAP slapd on loopback for the security tests: test CA, LDAPS + StartTLS, users, nested groups.

Used by tests/integration/test_ldap*.py and test_login*.py. The server is killed by PID in `stop()`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SLAPD = shutil.which("slapd") or ("/usr/sbin/slapd" if os.path.exists("/usr/sbin/slapd") else None)
SLAPADD = shutil.which("slapadd") or ("/usr/sbin/slapadd" if os.path.exists("/usr/sbin/slapadd") else None)
OPENSSL = shutil.which("openssl")
SKIP_REASON = "OpenLDAP slapd/slapadd or openssl not installed (apt-get install slapd ldap-utils openssl)"
AVAILABLE = bool(SLAPD and SLAPADD and OPENSSL and os.path.isdir("/etc/ldap/schema"))

BASE = "dc=bootgate,dc=test"
ROOT_DN = f"cn=admin,{BASE}"
ROOT_PW = "admin-secret"
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw", "st*r(x)": "star-pw"}
TECHS = f"cn=techs,ou=groups,{BASE}"
SUBTEAM = f"cn=subteam,ou=groups,{BASE}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_ca(d: Path, cn: str = "bootgate test CA") -> tuple[Path, Path, Path, Path]:
    """A test CA and a server cert for 127.0.0.1/localhost: (ca.pem, server.pem, server.key, ca.key)."""
    ca_key, ca_pem = d / "ca.key", d / "ca.pem"
    key, csr, pem = d / "server.key", d / "server.csr", d / "server.pem"
    ext = d / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    run = [OPENSSL or "openssl"]
    subprocess.run(run + ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca_pem),
                          "-days", "2", "-subj", f"/CN={cn}", "-addext", "basicConstraints=critical,CA:TRUE",
                          "-addext", "keyUsage=critical,keyCertSign,cRLSign"], check=True, capture_output=True)
    subprocess.run(run + ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
                          "-subj", "/CN=localhost"], check=True, capture_output=True)
    subprocess.run(run + ["x509", "-req", "-in", str(csr), "-CA", str(ca_pem), "-CAkey", str(ca_key),
                          "-CAcreateserial", "-out", str(pem), "-days", "2", "-extfile", str(ext)],
                   check=True, capture_output=True)
    return ca_pem, pem, key, ca_key


@dataclass
class Slapd:
    dir: Path
    ldap_port: int
    ldaps_port: int
    ca_pem: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def ldap_url(self) -> str:
        return f"ldap://127.0.0.1:{self.ldap_port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


def _ldif() -> str:
    people = f"ou=people,{BASE}"
    out = [f"dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\no: bootgate test\ndc: bootgate\n",
           f"dn: {people}\nobjectClass: organizationalUnit\nou: people\n",
           f"dn: ou=groups,{BASE}\nobjectClass: organizationalUnit\nou: groups\n"]
    for uid, pw in PASSWORDS.items():
        rdn = uid.replace("*", "\\2a").replace("(", "\\28").replace(")", "\\29")
        out.append(f"dn: uid={rdn},{people}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\n"
                   f"userPassword: {pw}\n")
    # techs <- alice (direct), subteam (nested) <- bob; carol in no group.
    out.append(f"dn: {SUBTEAM}\nobjectClass: groupOfNames\ncn: subteam\nmember: uid=bob,{people}\n")
    out.append(f"dn: {TECHS}\nobjectClass: groupOfNames\ncn: techs\nmember: uid=alice,{people}\n"
               f"member: {SUBTEAM}\n")
    out.append(f"dn: cn=others,ou=groups,{BASE}\nobjectClass: groupOfNames\ncn: others\nmember: uid=carol,{people}\n")
    return "\n".join(out)


def _listening(port: int, netns: str | None) -> bool:
    if netns is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False
    probe = ["ip", "netns", "exec", netns, "bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"]
    return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0


def start(d: Path, netns: str | None = None) -> Slapd:
    """slapd on 127.0.0.1 (inside network namespace `netns` when given: the e2e lab's server side)."""
    assert SLAPD and SLAPADD
    d.mkdir(parents=True, exist_ok=True)
    ca_pem, pem, key, _ = make_ca(d)
    db = d / "db"
    db.mkdir(exist_ok=True)
    conf = d / "slapd.conf"
    conf.write_text(f"""
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
pidfile {d}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCACertificateFile {ca_pem}
TLSCertificateFile {pem}
TLSCertificateKeyFile {key}
database mdb
maxsize 10485760
suffix "{BASE}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PW}
directory {db}
access to attrs=userPassword by self read by anonymous auth by * none
access to * by * read
""")
    ldif = d / "data.ldif"
    ldif.write_text(_ldif())
    subprocess.run([SLAPADD, "-f", str(conf), "-l", str(ldif)], check=True, capture_output=True)
    ldap_port, ldaps_port = free_port(), free_port()
    log = open(d / "slapd.log", "wb")
    prefix = ["ip", "netns", "exec", netns] if netns else []
    proc = subprocess.Popen(prefix + [SLAPD, "-d", "0", "-f", str(conf), "-h",
                                      f"ldap://127.0.0.1:{ldap_port}/ ldaps://127.0.0.1:{ldaps_port}/"],
                            stdout=log, stderr=subprocess.STDOUT)
    s = Slapd(d, ldap_port, ldaps_port, ca_pem, proc)
    deadline = time.monotonic() + 15
    while True:
        if _listening(ldaps_port, netns) and _listening(ldap_port, netns):
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            s.stop()
            raise RuntimeError("slapd did not start: " + (d / "slapd.log").read_text(errors="replace")[-2000:])
        time.sleep(0.05)
    return s


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """A private slapd for a test module: `from tests.integration.slapd_lab import slapd` brings the fixture."""
    s = start(tmp_path_factory.mktemp("slapd"))
    try:
        yield s
    finally:
        s.stop()
