from __future__ import annotations

import re

import pytest

from bootgate.policy import BootKernel, Exit
from bootgate.scripts import (
    base_url,
    check_content_path,
    check_kernel_args,
    echo_text,
    render_action,
    render_bootstrap,
    url_component,
    url_path,
)

HOSTILE = [
    "a\nshell",
    "x\r\nchain http://evil/",
    "${net0/mac}",
    "$ {x}",
    "a || shell",
    "a && reboot",
    "#!ipxe",
    ":label",
    "\x00\x1b[2J",
    "ünïcödé ✓",
    "'\"`\\",
    "a b\tc",
]

BOOT_ID = "0123456789abcdef0123456789abcdef"


def _lines(script: str) -> list[str]:
    return script.split("\n")


@pytest.mark.parametrize("value", HOSTILE)
def test_url_component_leaves_only_unreserved_and_percent(value: str) -> None:
    out = url_component(value)
    assert re.fullmatch(r"[A-Za-z0-9._~%-]*", out), out
    assert "\n" not in out and "$" not in out and " " not in out


@pytest.mark.parametrize("value", HOSTILE)
def test_echo_text_is_one_line_without_expansion(value: str) -> None:
    out = echo_text(value)
    assert "\n" not in out and "\r" not in out and "$" not in out and "|" not in out and "&" not in out
    assert "{" not in out and "#" not in out


def test_url_path_encodes_each_segment() -> None:
    assert url_path("debian/vmlinuz 6.1") == "debian/vmlinuz%206.1"
    assert url_path("a/b${x}") == "a/b%24%7Bx%7D"


@pytest.mark.parametrize("path", ["", "/etc/passwd", "../x", "a/../b", "a//b", "./a", "a/.", "a\nb", "a\\b"])
def test_check_content_path_rejects(path: str) -> None:
    with pytest.raises(ValueError):
        check_content_path(path)


@pytest.mark.parametrize("args", ["console=ttyS0\nshell", "a || shell", "a && reboot", "a ; shell", "a #x",
                                  "x\x00", "é"])
def test_check_kernel_args_rejects_command_injection(args: str) -> None:
    with pytest.raises(ValueError):
        check_kernel_args(args)


def test_check_kernel_args_normalises_spaces() -> None:
    assert check_kernel_args("  console=ttyS0   quiet ") == "console=ttyS0 quiet"


@pytest.mark.parametrize("host", ["evil\nshell", "a b", "${x}", "h:1", "[::1]", ""])
def test_base_url_rejects_bad_hosts(host: str) -> None:
    with pytest.raises(ValueError):
        base_url("https", host, 443)


def test_base_url_brackets_ipv6() -> None:
    assert base_url("https", "::1", 8051) == "https://[::1]:8051"
    with pytest.raises(ValueError):
        base_url("ftp", "h", 1)


def test_bootstrap_chains_to_boot_with_identity() -> None:
    s = render_bootstrap("https://198.18.0.1:8051")
    lines = _lines(s)
    assert lines[0] == "#!ipxe"
    assert lines[1].startswith("chain https://198.18.0.1:8051/boot?mac=${netX/mac}&uuid=${uuid}")
    for part in ("serial=${serial:uristring}", "manufacturer=${manufacturer:uristring}",
                 "product=${product:uristring}", "buildarch=${buildarch}", "platform=${platform}", "ip=${netX/ip}",
                 "version=${version:uristring}", "nic=${netX/chip:uristring}", "asset=${asset:uristring}"):
        assert part in lines[1]
    assert len([line for line in lines if line]) == 2


def test_exit_script() -> None:
    s = render_action(Exit("no action for 52:54:00:12:34:56"), mac="52:54:00:12:34:56", boot_id=BOOT_ID,
                      content_base="https://h:1", callback_base="http://h:2")
    assert _lines(s)[0] == "#!ipxe"
    assert _lines(s)[-2] == "exit"
    assert "kernel" not in s


def test_boot_script_shape() -> None:
    s = render_action(BootKernel("debian/vmlinuz", "debian/initrd.gz", "console=ttyS0"), mac="52:54:00:12:34:56",
                      boot_id=BOOT_ID, content_base="https://198.18.0.1:8051", callback_base="http://198.18.0.1:8050")
    lines = [line for line in _lines(s) if line]
    assert lines[0] == "#!ipxe"
    assert lines[2] == (f"kernel https://198.18.0.1:8051/content/debian/vmlinuz console=ttyS0 "
                        f"bootgate.boot={BOOT_ID} bootgate.server=http://198.18.0.1:8050")
    assert lines[3] == "initrd https://198.18.0.1:8051/content/debian/initrd.gz"
    assert lines[4] == "boot"
    assert len(lines) == 5


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_reason_and_paths_cannot_add_lines(value: str) -> None:
    s = render_action(Exit(value), mac="52:54:00:12:34:56", boot_id=BOOT_ID, content_base="https://h:1",
                      callback_base="http://h:2")
    assert len([line for line in _lines(s) if line]) == 3
    if "/" not in value and "\\" not in value and value not in ("", ".", "..") and \
            all(ord(c) >= 0x20 and ord(c) != 0x7F for c in value):
        b = render_action(BootKernel(value, "", ""), mac="52:54:00:12:34:56", boot_id=BOOT_ID,
                          content_base="https://h:1", callback_base="http://h:2")
        kernel_line = [line for line in _lines(b) if line.startswith("kernel ")][0]
        url = kernel_line.split(" ")[1]
        assert re.fullmatch(r"https://h:1/content/[A-Za-z0-9._~%-]+", url), url
        assert len([line for line in _lines(b) if line]) == 4  # #!ipxe, echo, kernel, boot


def test_bad_boot_id_is_refused() -> None:
    with pytest.raises(ValueError):
        render_action(Exit("x"), mac="m", boot_id="abc\nshell", content_base="https://h:1", callback_base="http://h:2")
