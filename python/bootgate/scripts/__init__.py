"""iPXE scripts, with every client-supplied value escaped.

An iPXE script is line based: a newline starts a new command, ``||``/``&&`` chain commands and
``${...}`` expands settings. So:

- values that end up in URLs are percent-encoded (only ``A-Z a-z 0-9 - . _ ~`` stay as they are);
- text shown with ``echo`` keeps only a small set of harmless characters;
- host names are checked against the grammar of an IP address or DNS name;
- kernel arguments (set by an administrator, not by clients) are checked: printable ASCII only, no
  ``||``/``&&``/``;`` tokens and no token starting with ``#``, so they can never add or hide a command.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from urllib.parse import quote

from ..policy import Action, BootKernel, Exit
from ..policy.deploy import PROFILE_KINDS, Menu, Profile

__all__ = [
    "base_url",
    "check_content_path",
    "check_chain_url",
    "check_kernel_args",
    "check_profile",
    "render_menu",
    "render_profile",
    "render_technician",
    "echo_text",
    "is_valid_host",
    "render_action",
    "render_bootstrap",
    "url_component",
    "url_path",
]

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_ECHO_SAFE = re.compile(r"[^A-Za-z0-9 :._/,()=+-]")


def url_component(value: str) -> str:
    """Percent-encodes everything but unreserved characters: safe in a URL and in an iPXE line."""
    return quote(value, safe="")


def check_content_path(path: str) -> str:
    """Validates a path relative to the content root (kernel, initrd); returns it unchanged.

    Raises ValueError naming what is wrong.
    """
    if not path:
        raise ValueError("is empty")
    if len(path) > 1024:
        raise ValueError("is longer than 1024 characters")
    if path.startswith("/"):
        raise ValueError("must be relative to the content root (no leading '/')")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path) or "\\" in path:
        raise ValueError("contains a control character or backslash")
    for seg in path.split("/"):
        if seg in ("", ".", ".."):
            raise ValueError("contains an empty, '.' or '..' path segment")
    return path


def url_path(path: str) -> str:
    """A validated relative path, each segment percent-encoded."""
    check_content_path(path)
    return "/".join(url_component(seg) for seg in path.split("/"))


def check_kernel_args(args: str) -> str:
    """Validates kernel arguments; returns them with runs of spaces collapsed."""
    if len(args) > 4096:
        raise ValueError("are longer than 4096 characters")
    bad = [c for c in args if not (0x20 <= ord(c) <= 0x7E)]
    if bad:
        raise ValueError(f"contain a character that is not printable ASCII ({bad[0]!r})")
    words = args.split()
    for w in words:
        if w in ("||", "&&", ";"):
            raise ValueError(f"contain {w!r}, which would chain an iPXE command")
        if w.startswith("#"):
            raise ValueError(f"contain {w!r}: iPXE would read it and what follows as a comment")
    return " ".join(words)


def echo_text(text: str) -> str:
    """Text safe to put after `echo`: a single line with no expansions or operators."""
    return _ECHO_SAFE.sub("?", text)[:200]


def is_valid_host(host: str) -> bool:
    """True for an IPv4/IPv6 address or a DNS name (no port, no brackets)."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOSTNAME.fullmatch(host))


def base_url(scheme: str, host: str, port: int) -> str:
    """`scheme://host:port` from checked parts (IPv6 hosts get brackets)."""
    if scheme not in ("http", "https"):
        raise ValueError(f"scheme {scheme!r} is not http or https")
    if not is_valid_host(host):
        raise ValueError(f"host {host!r} is not an IP address or DNS name")
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range")
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


_BOOTSTRAP_QUERY = (
    "mac=${netX/mac}&uuid=${uuid}&serial=${serial:uristring}&manufacturer=${manufacturer:uristring}"
    "&product=${product:uristring}&buildarch=${buildarch}&platform=${platform}&ip=${netX/ip}"
    "&version=${version:uristring}&nic=${netX/chip:uristring}&asset=${asset:uristring}"
)


_PREAMBLE_LINE = re.compile(r"set [a-z][a-z0-9/._-]{0,63} [A-Za-z0-9.:\[\]_-]{1,255}")


def _checked_preamble(preamble: Sequence[str]) -> list[str]:
    """Server-made `set NAME VALUE` lines run before images load (e.g. BranchCache's `set peerdist 1`).
    They come from config, not from clients, but are checked so no line can carry another command."""
    out = []
    for line in preamble:
        if not _PREAMBLE_LINE.fullmatch(line):
            raise ValueError(f"preamble line {line[:64]!r} is not a plain `set NAME VALUE`")
        out.append(line)
    return out


def render_bootstrap(server_base: str) -> str:
    """The `/boot.ipxe` script: chain to /boot with the client's identity (expanded by iPXE itself)."""
    return f"#!ipxe\nchain {server_base}/boot?{_BOOTSTRAP_QUERY}\n"


def render_action(action: Action, *, mac: str, boot_id: str, content_base: str, callback_base: str,
                  preamble: Sequence[str] = ()) -> str:
    """The `/boot` script for a decided action.

    `mac` must be normalised; `boot_id` is ours (hex); `content_base` and `callback_base` come from
    :func:`base_url`. Kernel/initrd paths and args are validated here again.
    """
    _check_boot_id(boot_id)
    lines = ["#!ipxe"]
    if isinstance(action, Exit):
        lines.append(f"echo bootgate: {echo_text(action.reason)}, continuing with the next boot device")
        lines.append("exit")
        return "\n".join(lines) + "\n"
    assert isinstance(action, BootKernel)
    kernel = f"{content_base}/content/{url_path(action.kernel)}"
    args = check_kernel_args(action.args)
    extra = f"bootgate.boot={boot_id} bootgate.server={callback_base}"
    lines.append(f"echo bootgate: booting {echo_text(action.kernel)} on {echo_text(mac)} (boot {boot_id})")
    lines += _checked_preamble(preamble)
    lines.append(f"kernel {kernel} {args} {extra}" if args else f"kernel {kernel} {extra}")
    if action.initrd:
        lines.append(f"initrd {content_base}/content/{url_path(action.initrd)}")
    lines.append("boot")
    return "\n".join(lines) + "\n"


_CHAIN_URL = re.compile(r"^https?://[A-Za-z0-9.\[\]:-]+(/[A-Za-z0-9._~%!'()*+,;=:@/?&-]*)?$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
TEMPLATE_VARS = ("boot_id", "mac", "name", "deployment", "content", "callback", "auth")
# the boot token query added to content URLs after a login: "mac=..&bgt=.." (percent-encoded, no spaces or $)
_CONTENT_QUERY = re.compile(r"[A-Za-z0-9._~%=&-]{0,4096}")


def check_chain_url(url: str) -> str:
    """An http(s) URL iPXE may chain to: no spaces, no `$` (settings expansion), no `#`, no control chars."""
    if len(url) > 2048 or not _CHAIN_URL.fullmatch(url):
        raise ValueError("must be an http:// or https:// URL without spaces, '$', '#' or control characters")
    host = url.split("://", 1)[1].split("/", 1)[0]
    if host.startswith("["):
        host = host[1:host.find("]")] if "]" in host else ""
    elif ":" in host:
        host, port = host.rsplit(":", 1)
        if not port.isdigit():
            raise ValueError("has a bad port")
    if not is_valid_host(host):
        raise ValueError("has a bad host")
    return url


def check_profile(p: Profile) -> Profile:
    """Validates a boot profile (from the API). Raises ValueError naming the field."""
    if p.kind not in PROFILE_KINDS:
        raise ValueError(f"kind must be one of {', '.join(PROFILE_KINDS)}")
    if p.kind in ("kernel", "wimboot"):
        try:
            check_content_path(p.kernel)
        except ValueError as e:
            raise ValueError(f"kernel {e}") from None
        if len(p.initrds) > 16:
            raise ValueError("initrds: at most 16 files")
        for f in p.initrds:
            try:
                check_content_path(f)
            except ValueError as e:
                raise ValueError(f"initrd {f[:64]!r} {e}") from None
            if p.kind == "wimboot" and not _FILE_NAME.fullmatch(f.rsplit("/", 1)[-1]):
                raise ValueError(f"wimboot file {f[:64]!r}: its name must be letters, digits, '.', '_', '-'")
        if p.kind == "wimboot" and not p.initrds:
            raise ValueError("wimboot needs its files in initrds (bootmgr, BCD, boot.sdi, boot.wim)")
        try:
            args = check_kernel_args(p.args)
        except ValueError as e:
            raise ValueError(f"args {e}") from None
        return Profile(p.kind, kernel=p.kernel, initrds=p.initrds, args=args)
    if p.kind == "chain":
        try:
            return Profile("chain", url=check_chain_url(p.url))
        except ValueError as e:
            raise ValueError(f"url {e}") from None
    if not p.template.strip() or len(p.template) > 65536:
        raise ValueError("template must be a non-empty iPXE script (at most 64 KiB)")
    for name in _PLACEHOLDER.findall(p.template):
        if name not in TEMPLATE_VARS:
            raise ValueError(f"template: unknown placeholder {{{{{name}}}}} (known: {', '.join(TEMPLATE_VARS)})")
    if "\x00" in p.template:
        raise ValueError("template contains a NUL character")
    return Profile("template", template=p.template)


def _menu_text(text: str) -> str:
    return echo_text(text).lstrip("- ") or "?"


_BOOT_ID = re.compile(r"[0-9a-f]{8,64}")


def _check_boot_id(boot_id: str) -> None:
    if not _BOOT_ID.fullmatch(boot_id):
        raise ValueError("boot_id must be lowercase hex")


def render_menu(menu: Menu, *, title: str, boot_id: str, server_base: str,
                login_items: AbstractSet[int] = frozenset()) -> str:
    """The deployment menu: required items marked and preselected with their countdown, items in
    `login_items` marked "(login)", the local disk, and the technician entry (its login belongs to the
    technician route)."""
    _check_boot_id(boot_id)
    lines = ["#!ipxe", f"menu bootgate: {_menu_text(title)}", "item --gap Deployments:"]
    for it in menu.items:
        mark = "[required] " if it.required else ""
        login_mark = " (login)" if it.deployment_id in login_items else ""
        lines.append(f"item d{it.deployment_id} {mark}{_menu_text(it.name)}{login_mark}")
    lines += ["item --gap Other:", "item local Boot from the local disk"]
    if menu.technician:
        lines.append("item technician Technician menu (login)")
    default = f"d{menu.default}" if menu.default is not None else "local"
    timeout = f"--timeout {int(menu.timeout) * 1000} " if menu.timeout > 0 else ""
    lines.append(f"choose {timeout}--default {default} target || goto local")
    lines.append("goto ${target}")
    for it in menu.items:
        lines.append(f":d{it.deployment_id}")
        lines.append(f"chain {server_base}/boot/run?boot={boot_id}&deployment={it.deployment_id} || goto failed")
    if menu.technician:
        lines += [":technician", f"chain {server_base}/boot/technician?boot={boot_id} || goto local"]
    lines += [":failed", "echo bootgate: the deployment could not be started",
              "prompt --timeout 10000 Press a key to continue with the local disk ||",
              ":local", "echo bootgate: continuing with the next boot device", "exit"]
    return "\n".join(lines) + "\n"


def render_profile(profile: Profile, *, mac: str, name: str, boot_id: str, deployment_id: int,
                   content_base: str, callback_base: str, preamble: Sequence[str] = (), content_query: str = "") -> str:
    """The script that runs a deployment's profile (validated again here). `content_query` (the boot
    token after a login, "mac=..&bgt=..") is added to every kernel/initrd URL and is {{auth}} in templates."""
    _check_boot_id(boot_id)
    p = check_profile(profile)
    if not _CONTENT_QUERY.fullmatch(content_query):
        raise ValueError("content_query must be a percent-encoded query")
    q = f"?{content_query}" if content_query else ""
    safe_name = re.sub(r"[^A-Za-z0-9-]", "-", name)[:63]
    extra = f"bootgate.boot={boot_id} bootgate.server={callback_base} bootgate.deployment={deployment_id}"
    lines = ["#!ipxe", f"echo bootgate: deployment {deployment_id} on {echo_text(mac)} (boot {boot_id})"]
    lines += _checked_preamble(preamble)
    if p.kind == "kernel":
        lines.append(f"kernel {content_base}/content/{url_path(p.kernel)}{q} {p.args} {extra}".replace("  ", " "))
        lines += [f"initrd {content_base}/content/{url_path(f)}{q}" for f in p.initrds]
        lines.append("boot")
    elif p.kind == "wimboot":
        lines.append(f"kernel {content_base}/content/{url_path(p.kernel)}{q} {p.args}".rstrip())
        for f in p.initrds:
            lines.append(f"initrd --name {f.rsplit('/', 1)[-1]} {content_base}/content/{url_path(f)}{q}")
        lines.append("boot")
    elif p.kind == "chain":
        lines.append(f"chain {p.url}")
    else:
        values = {"boot_id": boot_id, "mac": mac if re.fullmatch(r"[0-9a-f:]{17}", mac) else "",
                  "name": safe_name, "deployment": str(deployment_id), "content": f"{content_base}/content",
                  "callback": callback_base, "auth": content_query}
        body = _PLACEHOLDER.sub(lambda m: values[m.group(1)], p.template)
        if body.startswith("#!ipxe"):
            body = body.split("\n", 1)[1] if "\n" in body else ""
        lines += body.rstrip("\n").split("\n")
    return "\n".join(lines) + "\n"


def render_technician(boot_id: str, items: Sequence[tuple[int, str]], *, user: str, server_base: str,
                      query: str) -> str:
    """The technician menu, shown after a login: every enabled deployment (collections, schedules and
    one-shot marks do not limit a technician), the local disk. `query` ("mac=..&tech=<token>") goes on
    every item's URL; /boot/run checks it."""
    _check_boot_id(boot_id)
    if not _CONTENT_QUERY.fullmatch(query):
        raise ValueError("query must be a percent-encoded query")
    lines = ["#!ipxe", f"menu bootgate: technician menu ({_menu_text(user)})",
             "item --gap Deployments:"]
    lines += [f"item d{int(did)} {_menu_text(name)}" for did, name in items]
    lines += ["item --gap Other:", "item local Boot from the local disk",
              "choose --timeout 300000 --default local target || goto local", "goto ${target}"]
    for did, _ in items:
        lines += [f":d{int(did)}",
                  f"chain {server_base}/boot/run?boot={boot_id}&deployment={int(did)}&{query} || goto failed"]
    lines += [":failed", "echo bootgate: the deployment could not be started",
              "prompt --timeout 10000 Press a key to continue with the local disk ||",
              ":local", "echo bootgate: continuing with the next boot device", "exit"]
    return "\n".join(lines) + "\n"
