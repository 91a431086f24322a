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
from urllib.parse import quote

from ..policy import Action, BootKernel, Exit

__all__ = [
    "base_url",
    "check_content_path",
    "check_kernel_args",
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
        return bool(_HOSTNAME.match(host))


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
)


def render_bootstrap(server_base: str) -> str:
    """The `/boot.ipxe` script: chain to /boot with the client's identity (expanded by iPXE itself)."""
    return f"#!ipxe\nchain {server_base}/boot?{_BOOTSTRAP_QUERY}\n"


def render_action(action: Action, *, mac: str, boot_id: str, content_base: str, callback_base: str) -> str:
    """The `/boot` script for a decided action.

    `mac` must be normalised; `boot_id` is ours (hex); `content_base` and `callback_base` come from
    :func:`base_url`. Kernel/initrd paths and args are validated here again.
    """
    if not re.fullmatch(r"[0-9a-f]{8,64}", boot_id):
        raise ValueError("boot_id must be lowercase hex")
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
    lines.append(f"kernel {kernel} {args} {extra}" if args else f"kernel {kernel} {extra}")
    if action.initrd:
        lines.append(f"initrd {content_base}/content/{url_path(action.initrd)}")
    lines.append("boot")
    return "\n".join(lines) + "\n"
