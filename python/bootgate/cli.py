"""The `bootgate` command: serve | init | check-config | hash | machines set-action/clear-action/list."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from . import __version__
from .config import ConfigError, Settings, default_config_text, load_settings

if TYPE_CHECKING:
    from .store import Store

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bootgate", description="Network boot server: proxyDHCP, TFTP, HTTPS iPXE.")
    p.add_argument("--version", action="version", version=f"bootgate {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", metavar="FILE", help="TOML config file (default: embedded defaults)")

    s = sub.add_parser("serve", help="run the server")
    with_config(s)
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    s = sub.add_parser("init", help="write a commented config, the data dir, a private CA and server cert")
    with_config(s)
    s.add_argument("--data-dir", metavar="DIR", help="data directory (overrides the config)")

    s = sub.add_parser("check-config", help="validate a config file (exit 0 if valid, 2 if not)")
    with_config(s)

    from .branchcache import add_hash_parser

    add_hash_parser(sub, with_config)  # bootgate hash FILE (BranchCache Content Information)

    m = sub.add_parser("machines", help="machines and their actions (writes the store directly)")
    msub = m.add_subparsers(dest="machines_command", required=True, metavar="SUBCOMMAND")
    s = msub.add_parser("set-action", help="boot a kernel/initrd from /content on the machine's next boot")
    s.add_argument("mac")
    s.add_argument("--kernel", required=True, help="path under the content root")
    s.add_argument("--initrd", default="", help="path under the content root")
    s.add_argument("--args", default="", help="kernel command line")
    with_config(s)
    s = msub.add_parser("clear-action", help="remove the machine's action (it exits to the next boot device)")
    s.add_argument("mac")
    with_config(s)
    s = msub.add_parser("list", help="list machines, their actions and last boot (JSON lines)")
    with_config(s)
    from .cli_api import add_parsers

    add_parsers(sub, msub, with_config)  # machines hosts|show|..., collections, deployments, approvals, reports
    return p


def _load(args: argparse.Namespace, data_dir: str | None = None) -> Settings:
    return load_settings(args.config, data_dir=data_dir)


def _init(args: argparse.Namespace) -> int:
    from .runtime import StartupError, ensure_layout
    from .tls import ca_fingerprint

    config_path = Path(args.config) if args.config else None
    if config_path is not None and config_path.exists():
        settings = load_settings(config_path, data_dir=args.data_dir)
        wrote = False
    else:
        settings = load_settings(None, data_dir=args.data_dir)
        if config_path is None:
            config_path = settings.server.data_dir / "bootgate.toml"
        wrote = not config_path.exists()
        if wrote:
            config_path.parent.mkdir(parents=True, exist_ok=True)
            config_path.write_text(default_config_text(str(settings.server.data_dir)), encoding="utf-8")
        # validate what was written (and pick up an existing file)
        settings = load_settings(config_path, data_dir=args.data_dir)
    try:
        tls, token_path = ensure_layout(settings)
    except StartupError as e:
        print(f"bootgate: {e}", file=sys.stderr)
        return EXIT_RUNTIME
    except OSError as e:
        print(f"bootgate: cannot create files: {e}: choose a writable --data-dir", file=sys.stderr)
        return EXIT_RUNTIME
    print(f"config:      {config_path}" + (" (written)" if wrote else " (kept)"))
    print(f"data dir:    {settings.server.data_dir}")
    print(f"content:     {settings.content.root}")
    if tls is not None:
        print(f"CA cert:     {tls.ca_cert} (sha256 {ca_fingerprint(tls.ca_cert)})")
        print(f"server cert: {tls.cert}")
    print(f"admin token: {token_path}")
    try:
        from .branchcache import load_or_create_passphrase, passphrase_fingerprint, passphrase_path

        bc_pass = load_or_create_passphrase(settings.server.data_dir, settings.branchcache.passphrase_hex)
        where = "[branchcache] passphrase_hex" if settings.branchcache.passphrase_hex else \
            str(passphrase_path(settings.server.data_dir))
        print(f"branchcache: passphrase {where} (fingerprint {passphrase_fingerprint(bc_pass)})")
    except (OSError, ValueError) as e:
        print(f"bootgate: BranchCache passphrase: {e}", file=sys.stderr)
        return EXIT_RUNTIME
    print(f"start with:  bootgate serve --config {config_path}")
    return EXIT_OK


async def _with_store(settings: Settings) -> Store:
    from .store import Store

    return await Store.open(settings.store.url)


async def _set_action(settings: Settings, mac: str, kernel: str, initrd: str, cmdline: str) -> None:
    from .policy import MachineAction

    store = await _with_store(settings)
    try:
        await store.set_action(mac, MachineAction(kernel=kernel, initrd=initrd, args=cmdline))
    finally:
        await store.close()


async def _clear_action(settings: Settings, mac: str) -> bool:
    store = await _with_store(settings)
    try:
        return await store.delete_action(mac)
    finally:
        await store.close()


async def _list(settings: Settings) -> list[dict[str, object]]:
    store = await _with_store(settings)
    try:
        return await store.list_machines()
    finally:
        await store.close()


def _machines(args: argparse.Namespace) -> int:
    from .policy import normalize_mac
    from .web.api import BadRequest, action_from_fields

    settings = _load(args)
    if args.machines_command == "list":
        for m in asyncio.run(_list(settings)):
            sys.stdout.write(orjson.dumps(m).decode() + "\n")
        return EXIT_OK
    try:
        mac = normalize_mac(args.mac)
    except ValueError as e:
        print(f"bootgate: bad MAC: {e}", file=sys.stderr)
        return EXIT_CONFIG
    if args.machines_command == "clear-action":
        found = asyncio.run(_clear_action(settings, mac))
        print(f"{mac}: action cleared" if found else f"{mac}: had no action")
        return EXIT_OK
    try:
        action = action_from_fields(args.kernel, args.initrd, args.args)
    except BadRequest as e:
        print(f"bootgate: {e}", file=sys.stderr)
        return EXIT_CONFIG
    asyncio.run(_set_action(settings, mac, action.kernel, action.initrd, action.args))
    print(f"{mac}: kernel={action.kernel} initrd={action.initrd} args={action.args!r}")
    return EXIT_OK


def _api(args: argparse.Namespace) -> int:
    from .cli_api import ApiError, run

    try:
        run(_load(args), args)
    except ApiError as e:
        print(f"bootgate: {e}", file=sys.stderr)
        return EXIT_RUNTIME
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "check-config":
            settings = _load(args)
            print(f"OK: {settings.source}")
            return EXIT_OK
        if args.command == "init":
            return _init(args)
        if args.command == "hash":
            from .branchcache import hash_command

            return hash_command(args, _load(args))
        if args.command in ("collections", "deployments", "approvals", "reports") or (
                args.command == "machines" and args.machines_command not in ("set-action", "clear-action", "list")):
            return _api(args)
        if args.command == "machines":
            return _machines(args)
        if args.command == "serve":
            from . import logs
            from .runtime import run

            logs.configure(getattr(logging, args.log_level.upper()))
            return run(_load(args))
    except ConfigError as e:
        print(f"bootgate: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    return EXIT_RUNTIME  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
