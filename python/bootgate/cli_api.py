"""`bootgate machines|collections|deployments|approvals|reports ...`: the CLI on the /api/v1 REST API.

The server is found from the config ([http] bind/port, or HTTPS with bootgate's CA); the token from
--token, $BOOTGATE_TOKEN or <data_dir>/admin.token. Lists print JSON lines; errors exit 1 with the
API's message.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from .config import Settings

__all__ = ["API_COMMANDS", "ApiError", "add_parsers", "run"]

API_COMMANDS = ("collections", "deployments", "approvals", "reports")
MACHINE_API_COMMANDS = ("hosts", "show", "rename", "mark-known", "approve-wipe", "share-mac", "unshare-mac")


class ApiError(Exception):
    pass


class Client:
    def __init__(self, base: str, token: str, cafile: str | None) -> None:
        self.base = base.rstrip("/")
        self.token = token
        self.ctx = ssl.create_default_context(cafile=cafile) if base.startswith("https") else None

    def call(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None,
             raw: bool = False) -> Any:
        url = self.base + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30, context=self.ctx) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as e:
            text = e.read().decode("utf-8", "replace")
            try:
                msg = json.loads(text)["error"]
            except (ValueError, KeyError, TypeError):
                msg = text.strip() or e.reason
            raise ApiError(f"{method} {path}: {e.code}: {msg}") from None
        except urllib.error.URLError as e:
            raise ApiError(f"cannot reach the bootgate API at {self.base}: {e.reason}: is `bootgate serve` "
                           "running? (--url to point elsewhere)") from None
        if raw:
            return payload.decode()
        return json.loads(payload) if payload else None

    def pages(self, path: str, query: dict[str, Any] | None = None) -> list[Any]:
        out: list[Any] = []
        after = 0
        while True:
            page = self.call("GET", path, query={**(query or {}), "limit": 1000, "after": after})
            out += page["items"]
            if page["next_after"] is None:
                return out
            after = page["next_after"]


def client_for(settings: Settings, args: argparse.Namespace) -> Client:
    url = args.url
    cafile = None
    if not url:
        host = settings.http.bind
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        shown = f"[{host}]" if ":" in host else host
        if settings.http.port:
            url = f"http://{shown}:{settings.http.port}"
        else:
            url = f"https://{shown}:{settings.http.https_port}"
            cafile = str(settings.tls.ca_cert)
    token = args.token or os.environ.get("BOOTGATE_TOKEN", "")
    if not token:
        try:
            token = settings.admin_token_path.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ApiError(f"no API token: pass --token, set BOOTGATE_TOKEN or make {settings.admin_token_path} "
                           f"readable ({e.strerror})") from None
    return Client(url, token, cafile)


def _api_opts(sp: argparse.ArgumentParser, with_config: Callable[[argparse.ArgumentParser], None]) -> None:
    with_config(sp)
    sp.add_argument("--url", help="API base URL (default: from the config's [http] section)")
    sp.add_argument("--token", help="API token (default: $BOOTGATE_TOKEN, else <data_dir>/admin.token)")


def add_parsers(sub: Any, machines_sub: Any, with_config: Callable[[argparse.ArgumentParser], None]) -> None:
    def add(parent: Any, name: str, help_: str) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = parent.add_parser(name, help=help_)
        _api_opts(sp, with_config)
        return sp

    add(machines_sub, "hosts", "machines by identity (API; JSON lines)").add_argument("--collection")
    add(machines_sub, "show", "one machine (API)").add_argument("host_id", type=int)
    s = add(machines_sub, "rename", "rename a machine (API)")
    s.add_argument("host_id", type=int)
    s.add_argument("name")
    s = add(machines_sub, "mark-known", "take a machine out of the unknown collection (API)")
    s.add_argument("host_id", type=int)
    s.add_argument("--unknown", action="store_true", help="mark it unknown again")
    s = add(machines_sub, "approve-wipe", "let the installer wipe this machine's disk once (API)")
    s.add_argument("host_id", type=int)
    add(machines_sub, "share-mac", "a MAC shared by many machines (USB dongle) (API)").add_argument("mac")
    add(machines_sub, "unshare-mac", "trust a MAC for identification again (API)").add_argument("mac")

    c = sub.add_parser("collections", help="collections of machines (API)")
    cs = c.add_subparsers(dest="sub", required=True, metavar="SUBCOMMAND")
    add(cs, "list", "list collections")
    add(cs, "show", "one collection").add_argument("collection")
    s = add(cs, "create", "create a collection")
    s.add_argument("name")
    s.add_argument("--rule", action="append", default=[], metavar="JSON",
                   help='a rule, e.g. \'{"manufacturer": "Dell*", "subnet": "10.1.0.0/16"}\' (repeatable)')
    s.add_argument("--description", default="")
    add(cs, "delete", "delete a collection").add_argument("collection")
    for verb in ("add", "remove"):
        s = add(cs, verb, f"{verb} a static member")
        s.add_argument("collection")
        s.add_argument("host_id", type=int)

    d = sub.add_parser("deployments", help="deployments of boot profiles to collections (API)")
    ds = d.add_subparsers(dest="sub", required=True, metavar="SUBCOMMAND")
    add(ds, "list", "list deployments")
    add(ds, "show", "one deployment").add_argument("deployment_id", type=int)
    s = add(ds, "create", "deploy a profile to a collection")
    s.add_argument("name")
    s.add_argument("--collection", required=True)
    s.add_argument("--kind", choices=["kernel", "wimboot", "chain", "template"], default="kernel")
    s.add_argument("--kernel", default="")
    s.add_argument("--initrd", action="append", default=[], help="repeatable (wimboot: its files)")
    s.add_argument("--args", default="")
    s.add_argument("--chain-url", default="")
    s.add_argument("--template-file", help="iPXE script with {{placeholders}}")
    s.add_argument("--required", action="store_true", help="start after the countdown (default: available)")
    s.add_argument("--countdown", type=int, default=10)
    s.add_argument("--window-start", type=float)
    s.add_argument("--window-end", type=float)
    s.add_argument("--repeat", action="store_true", help="not one-shot: offer again after success")
    s.add_argument("--require-approval", action="store_true")
    s.add_argument("--require-login", action="store_true", help="login at the iPXE prompt before it runs")
    s.add_argument("--priority", type=int, default=0)
    for verb in ("enable", "disable", "delete"):
        add(ds, verb, f"{verb} a deployment").add_argument("deployment_id", type=int)
    add(ds, "runs", "runs of a deployment").add_argument("deployment_id", type=int)

    a = sub.add_parser("approvals", help="approvals of deployments per machine (API)")
    as_ = a.add_subparsers(dest="sub", required=True, metavar="SUBCOMMAND")
    add(as_, "list", "approvals given")
    add(as_, "pending", "machines waiting for an approval")
    s = add(as_, "grant", "approve a deployment for a machine")
    s.add_argument("deployment_id", type=int)
    s.add_argument("host_id", type=int)
    s.add_argument("--note", default="")
    add(as_, "revoke", "revoke an approval").add_argument("approval_id", type=int)

    r = sub.add_parser("reports", help="reports of boots and installs (API)")
    rs = r.add_subparsers(dest="sub", required=True, metavar="SUBCOMMAND")
    s = add(rs, "boots", "boots and installs grouped")
    s.add_argument("--by", choices=["day", "collection", "model", "result"], default="day")
    s.add_argument("--format", choices=["json", "csv"], default="json")
    s.add_argument("--since", type=float)
    s.add_argument("--until", type=float)


def _lines(items: Any) -> None:
    for it in items if isinstance(items, list) else [items]:
        sys.stdout.write(json.dumps(it, sort_keys=True) + "\n")


def _cid(c: Client, ref: str) -> int:
    if ref.isdigit():
        return int(ref)
    for coll in c.pages("/api/v1/collections"):
        if coll["name"] == ref:
            return int(coll["id"])
    raise ApiError(f"no collection named {ref!r}")


def run(settings: Settings, args: argparse.Namespace) -> None:
    """Runs one API subcommand; raises ApiError."""
    c = client_for(settings, args)
    cmd = args.command
    sub = getattr(args, "sub", None) or getattr(args, "machines_command", None)
    if cmd == "machines":
        if sub == "hosts":
            _lines(c.pages("/api/v1/hosts", {"collection": args.collection}))
        elif sub == "show":
            _lines(c.call("GET", f"/api/v1/hosts/{args.host_id}"))
        elif sub == "rename":
            _lines(c.call("PATCH", f"/api/v1/hosts/{args.host_id}", {"name": args.name}))
        elif sub == "mark-known":
            _lines(c.call("PATCH", f"/api/v1/hosts/{args.host_id}", {"known": not args.unknown}))
        elif sub == "approve-wipe":
            _lines(c.call("PATCH", f"/api/v1/hosts/{args.host_id}", {"wipe_approved": True}))
        elif sub == "share-mac":
            _lines(c.call("PUT", f"/api/v1/shared-macs/{urllib.parse.quote(args.mac)}"))
        elif sub == "unshare-mac":
            c.call("DELETE", f"/api/v1/shared-macs/{urllib.parse.quote(args.mac)}")
    elif cmd == "collections":
        if sub == "list":
            _lines(c.pages("/api/v1/collections"))
        elif sub == "show":
            _lines(c.call("GET", f"/api/v1/collections/{_cid(c, args.collection)}"))
        elif sub == "create":
            try:
                rules = [json.loads(r) for r in args.rule]
            except ValueError as e:
                raise ApiError(f"--rule is not JSON: {e}") from None
            _lines(c.call("POST", "/api/v1/collections", {"name": args.name, "rules": rules,
                                                          "description": args.description}))
        elif sub == "delete":
            c.call("DELETE", f"/api/v1/collections/{_cid(c, args.collection)}")
        else:
            method = "PUT" if sub == "add" else "DELETE"
            c.call(method, f"/api/v1/collections/{_cid(c, args.collection)}/members/{args.host_id}")
    elif cmd == "deployments":
        if sub == "list":
            _lines(c.pages("/api/v1/deployments"))
        elif sub == "show":
            _lines(c.call("GET", f"/api/v1/deployments/{args.deployment_id}"))
        elif sub == "runs":
            _lines(c.pages(f"/api/v1/deployments/{args.deployment_id}/runs"))
        elif sub in ("enable", "disable"):
            _lines(c.call("PATCH", f"/api/v1/deployments/{args.deployment_id}", {"enabled": sub == "enable"}))
        elif sub == "delete":
            c.call("DELETE", f"/api/v1/deployments/{args.deployment_id}")
        else:
            profile: dict[str, Any] = {"kind": args.kind}
            if args.kind in ("kernel", "wimboot"):
                profile.update(kernel=args.kernel, initrds=args.initrd, args=args.args)
            elif args.kind == "chain":
                profile["url"] = args.chain_url
            else:
                if not args.template_file:
                    raise ApiError("--template-file is required for --kind template")
                with open(args.template_file, encoding="utf-8") as f:
                    profile["template"] = f.read()
            _lines(c.call("POST", "/api/v1/deployments", {
                "name": args.name, "collection": args.collection, "profile": profile,
                "intent": "required" if args.required else "available", "countdown": args.countdown,
                "window_start": args.window_start, "window_end": args.window_end, "one_shot": not args.repeat,
                "require_approval": args.require_approval, "priority": args.priority,
                "require_login": args.require_login}))
    elif cmd == "approvals":
        if sub == "list":
            _lines(c.pages("/api/v1/approvals"))
        elif sub == "pending":
            _lines(c.call("GET", "/api/v1/approvals/pending"))
        elif sub == "grant":
            _lines(c.call("POST", "/api/v1/approvals", {"deployment_id": args.deployment_id,
                                                        "host_id": args.host_id, "note": args.note}))
        else:
            c.call("DELETE", f"/api/v1/approvals/{args.approval_id}")
    elif cmd == "reports":
        q = {"by": args.by, "format": args.format, "since": args.since, "until": args.until}
        if args.format == "csv":
            sys.stdout.write(c.call("GET", "/api/v1/reports/boots", query=q, raw=True))
        else:
            _lines(c.call("GET", "/api/v1/reports/boots", query=q)["rows"])
