"""A tiny stand-in for bootgate's HTTP boot service, used only to prove the VM lab (standin.py).

Serves /boot.ipxe, /boot (always a kernel+initrd script), /content/<file> and accepts
POST /api/v1/boots/<id>/status; every request is appended as one JSON line to the record file.
Usage: standin_http.py BIND PORT CONTENT_DIR RECORD_FILE
"""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

BIND, PORT, CONTENT, RECORDS = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
BASE = f"http://{BIND}:{PORT}"
boots: list[dict[str, str]] = []


def record(**kw: object) -> None:
    kw["time"] = time.time()
    with RECORDS.open("a") as f:
        f.write(json.dumps(kw) + "\n")


class Handler(BaseHTTPRequestHandler):
    def reply(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        u = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        if u.path == "/boot.ipxe":
            record(kind="boot.ipxe", client=self.client_address[0])
            self.reply(200, (f"#!ipxe\nchain {BASE}/boot?mac=${{netX/mac}}&buildarch=${{buildarch}}"
                             f"&platform=${{platform}}&ip=${{netX/ip}}\n").encode())
        elif u.path == "/boot":
            boots.append(q)
            bid = str(len(boots))
            record(kind="boot", id=bid, query=q, client=self.client_address[0])
            self.reply(200, (f"#!ipxe\nkernel {BASE}/content/vmlinuz console=ttyS0 bootgate.boot={bid} "
                             f"bootgate.server={BASE}\ninitrd {BASE}/content/initrd.img\nboot\n").encode())
        elif u.path.startswith("/content/"):
            f = CONTENT / Path(u.path[len("/content/"):]).name
            if not f.is_file():
                record(kind="content", path=u.path, status=404)
                self.reply(404, b"not found\n")
                return
            data = f.read_bytes()
            record(kind="content", path=u.path, status=200, bytes=len(data))
            self.reply(200, data, "application/octet-stream")
        else:
            self.reply(404, b"not found\n")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode(errors="replace")
        parts = self.path.split("/")
        if len(parts) == 6 and parts[1:4] == ["api", "v1", "boots"] and parts[5] == "status":
            record(kind="status", id=parts[4], body=body, client=self.client_address[0])
            self.reply(200, b'{"ok": true}\n', "application/json")
        else:
            self.reply(404, b"not found\n")


ThreadingHTTPServer((BIND, PORT), Handler).serve_forever()
