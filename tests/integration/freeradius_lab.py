"""Private FreeRADIUS 3.2 instances on loopback for the MAB tests: an authentication server whose rlm_rest
asks bootgate (or whose rlm_sql reads the table bootgate writes), and a "switch" that receives CoA-Requests
and logs them. Killed by PID in `stop()`."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

FREERADIUS = shutil.which("freeradius") or ("/usr/sbin/freeradius" if os.path.exists("/usr/sbin/freeradius") else None)
RADCLIENT = shutil.which("radclient")
AVAILABLE = bool(FREERADIUS and RADCLIENT and os.path.exists("/usr/lib/freeradius/rlm_rest.so"))
SKIP_REASON = "FreeRADIUS 3.2 with rlm_rest and radclient not installed (apt-get install freeradius freeradius-utils " \
              "freeradius-rest)"
SQL_AVAILABLE = bool(FREERADIUS and RADCLIENT and os.path.exists("/usr/lib/freeradius/rlm_sql_sqlite.so"))
SECRET = "testing123"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_COMMON = """
prefix = /usr
localstatedir = {d}
logdir = {d}
raddbdir = {d}
run_dir = {d}
libdir = /usr/lib/freeradius
dictdir = /usr/share/freeradius
pidfile = {d}/radiusd.pid
name = radiusd
max_request_time = 10
cleanup_delay = 0
max_requests = 256
security {{
  allow_core_dumps = no
  max_attributes = 200
  reject_delay = 0
  status_server = no
}}
log {{
  destination = files
  file = {d}/radius.log
}}
thread pool {{
  start_servers = 1
  max_servers = 2
  min_spare_servers = 1
  max_spare_servers = 2
}}
client local {{
  ipaddr = 127.0.0.1
  secret = {secret}
  require_message_authenticator = no
}}
"""

# connection pool shared by the rest and sql modules: retry_delay = 1 (the default 30 s refuses to reconnect for
# half a minute after one failure), and the auth listener both servers use
_POOL = """    pool {
      start = 0
      min = 0
      max = 4
      spare = 1
      uses = 0
      retry_delay = 1
      lifetime = 0
      idle_timeout = 60
    }
"""
_LISTEN = """listen {{
  type = auth
  ipaddr = 127.0.0.1
  port = {port}
  virtual_server = default
}}
"""

_AUTH = """
modules {{
  always ok {{
    rcode = ok
  }}
  always reject {{
    rcode = reject
  }}
  expr {{
  }}
  rest {{
    connect_uri = "{bootgate}"
    connect_timeout = 2.0
    authorize {{
      uri = "${{..connect_uri}}/api/v1/mab/authorize?mac=%{{Calling-Station-Id}}"
      method = 'get'
      auth = 'basic'
      username = "freeradius"
      password = "{rest_secret}"
      require_auth = yes
      timeout = 3
    }}
{pool}  }}
}}
{listen}server default {{
  authorize {{
    if (&Service-Type != Call-Check) {{
      reject
    }}
    rest
    if (ok || updated) {{
      update control {{
        &Auth-Type := Accept
      }}
    }}
    else {{
      reject
    }}
  }}
  authenticate {{
  }}
}}
"""

# rlm_sql reading bootgate's SQLite exception table through its radcheck/radreply-shaped views; the MAB
# branch normalises Calling-Station-Id to 12 lower-case hex digits first (docs/security.md, "FreeRADIUS over SQL")
_SQL_AUTH = """
modules {{
  always reject {{
    rcode = reject
  }}
  expr {{
  }}
  sql bootgate_mab_sql {{
    dialect = "sqlite"
    driver = "rlm_sql_sqlite"
    sqlite {{
      filename = "{db}"
      busy_timeout = 200
    }}
    sql_user_name = "%{{Tmp-String-0}}"
    authcheck_table = "{table}_radcheck"
    authreply_table = "{table}_radreply"
    read_groups = no
    read_profiles = no
    read_clients = no
    authorize_check_query = "SELECT id, username, attribute, value, op FROM ${{authcheck_table}} \
      WHERE username = '%{{SQL-User-Name}}' ORDER BY id"
    authorize_reply_query = "SELECT id, username, attribute, value, op FROM ${{authreply_table}} \
      WHERE username = '%{{SQL-User-Name}}' ORDER BY id"
{pool}  }}
}}
{listen}server default {{
  authorize {{
    if (&Service-Type == Call-Check && &Calling-Station-Id =~ \
        /^([0-9a-f]{{2}})[-:.]?([0-9a-f]{{2}})[-:.]?([0-9a-f]{{2}})[-:.]?([0-9a-f]{{2}})[-:.]?([0-9a-f]{{2}})[-:.]?([0-9a-f]{{2}})$/i) {{
      update request {{
        &Tmp-String-0 := "%{{tolower:%{{1}}%{{2}}%{{3}}%{{4}}%{{5}}%{{6}}}}"
      }}
      bootgate_mab_sql
      if (ok) {{
        update control {{
          &Auth-Type := Accept
        }}
      }}
      else {{
        reject
      }}
    }}
    else {{
      reject
    }}
  }}
  authenticate {{
  }}
}}
"""

_SWITCH = """
modules {{
  always ok {{
    rcode = ok
  }}
  linelog coa_log {{
    filename = {d}/coa.log
    format = "%{{Packet-Type}} %{{Calling-Station-Id}} %{{Cisco-AVPair}}"
  }}
}}
listen {{
  type = coa
  ipaddr = 127.0.0.1
  port = {port}
  virtual_server = switch
}}
server switch {{
  recv-coa {{
    coa_log
    ok
  }}
  send-coa {{
    ok
  }}
}}
"""


@dataclass
class Radius:
    dir: Path
    port: int
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)

    def log(self) -> str:
        p = self.dir / "debug.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def coa_lines(self) -> list[str]:
        p = self.dir / "coa.log"
        return p.read_text().splitlines() if p.exists() else []


def _start(d: Path, body: str, port: int) -> Radius:
    assert FREERADIUS
    d.mkdir(parents=True, exist_ok=True)
    (d / "dictionary").write_text("")
    (d / "radiusd.conf").write_text(_COMMON.format(d=d, secret=SECRET) + body)
    check = subprocess.run([FREERADIUS, "-C", "-d", str(d)], capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError("freeradius config check failed:\n" + check.stdout[-3000:] + check.stderr[-2000:])
    # -X: foreground, one thread, debug output (kept in debug.log to explain a failing test)
    out = open(d / "debug.log", "wb")
    proc = subprocess.Popen([FREERADIUS, "-X", "-d", str(d)], stdout=out, stderr=subprocess.STDOUT)
    out.close()
    r = Radius(d, port, proc)
    deadline = time.monotonic() + 15
    while "Ready to process requests" not in r.log():
        if proc.poll() is not None or time.monotonic() > deadline:
            r.stop()
            raise RuntimeError("freeradius did not start:\n" + r.log()[-3000:])
        time.sleep(0.05)
    return r


def start_auth_server(d: Path, bootgate_url: str, rest_secret: str) -> Radius:
    port = free_udp_port()
    return _start(d, _AUTH.format(bootgate=bootgate_url, rest_secret=rest_secret, pool=_POOL,
                                   listen=_LISTEN.format(port=port)), port)


def start_sql_auth_server(d: Path, db: Path, table: str) -> Radius:
    port = free_udp_port()
    return _start(d, _SQL_AUTH.format(db=db, table=table, pool=_POOL, listen=_LISTEN.format(port=port)), port)


def start_switch(d: Path) -> Radius:
    port = free_udp_port()
    return _start(d, _SWITCH.format(d=d, port=port), port)


async def mab_request(port: int, mac_as_sent: str, service_type: str = "Call-Check") -> str:
    """One MAB Access-Request as a switch sends it; returns the reply packet type (or "timeout")."""
    assert RADCLIENT
    bare = "".join(c for c in mac_as_sent if c.isalnum()).lower()
    attrs = (f'User-Name = "{bare}", User-Password = "{bare}", Calling-Station-Id = "{mac_as_sent}", '
             f"Service-Type = {service_type}, NAS-IP-Address = 127.0.0.1, Message-Authenticator = 0x00\n")
    proc = await asyncio.create_subprocess_exec(
        RADCLIENT, "-x", "-r", "1", "-t", "5", f"127.0.0.1:{port}", "auth", SECRET,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(attrs.encode()), 20)
    text = out.decode(errors="replace")
    for kind in ("Access-Accept", "Access-Reject"):
        if f"Received {kind}" in text:
            return kind + (" " + text.split("Session-Timeout = ")[1].split()[0] if "Session-Timeout = " in text
                           else "")
    return "timeout:" + text[-500:]
