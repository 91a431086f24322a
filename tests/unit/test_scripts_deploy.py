"""Menus and profile scripts: structure, escaping, validation."""

from __future__ import annotations

import pytest

from bootgate.policy.deploy import Menu, MenuItem, Profile
from bootgate.scripts import check_chain_url, check_profile, render_menu, render_profile

BID = "0123456789abcdef0123456789abcdef"
BASE = "https://boot.example:8051"


def test_menu_escapes_names_and_has_no_injection() -> None:
    menu = Menu((MenuItem(1, "--gap ${evil} || shell", True), MenuItem(2, "Ubuntu 24.04", False)), default=1,
                timeout=5)
    s = render_menu(menu, title="pc\nshell", boot_id=BID, server_base=BASE)
    lines = s.splitlines()
    assert "${evil}" not in s and "|| shell" not in s
    assert "item d1 [required] gap ??evil? ?? shell" in lines
    assert "item d2 Ubuntu 24.04" in lines
    assert "choose --timeout 5000 --default d1 target || goto local" in lines
    assert f"chain {BASE}/boot/run?boot={BID}&deployment=1 || goto failed" in lines
    assert lines[-1] == "exit"


def test_menu_without_timeout_waits() -> None:
    s = render_menu(Menu((MenuItem(3, "x", False),), default=None, timeout=0, technician=False), title="t",
                    boot_id=BID, server_base=BASE)
    assert "choose --default local target || goto local" in s and "technician" not in s


def test_profile_kinds() -> None:
    k = render_profile(Profile("kernel", kernel="a/vmlinuz", initrds=("a/i 1.gz",), args="quiet"), mac="52:54:00:00:00:01",
                       name="pc", boot_id=BID, deployment_id=4, content_base=BASE, callback_base="http://h:8050")
    assert f"kernel {BASE}/content/a/vmlinuz quiet bootgate.boot={BID} bootgate.server=http://h:8050 " \
           "bootgate.deployment=4" in k
    assert f"initrd {BASE}/content/a/i%201.gz" in k and k.endswith("boot\n")
    c = render_profile(Profile("chain", url="https://x.example/a.ipxe?x=1"), mac="52:54:00:00:00:01", name="pc",
                       boot_id=BID, deployment_id=4, content_base=BASE, callback_base=BASE)
    assert c.splitlines()[-1] == "chain https://x.example/a.ipxe?x=1"


@pytest.mark.parametrize("url", ["ftp://x/a", "https://x/${y}", "https://x/a b", "https://x/#c", "https://-bad-/",
                                 "https://x:port/", "https://x/\n"])
def test_bad_chain_urls(url: str) -> None:
    with pytest.raises(ValueError):
        check_chain_url(url)


@pytest.mark.parametrize("p", [
    Profile("nope"), Profile("kernel"), Profile("kernel", kernel="/abs"), Profile("wimboot", kernel="wimboot"),
    Profile("wimboot", kernel="wimboot", initrds=("win/bad name",)), Profile("template", template=" "),
    Profile("template", template="{{secret}}"), Profile("kernel", kernel="k", args="a ; b"),
])
def test_bad_profiles(p: Profile) -> None:
    with pytest.raises(ValueError):
        check_profile(p)


@pytest.mark.parametrize("host", ["boot.example\n", "boot.example\nchain x", "a..b", ""])
def test_hosts_with_trailing_newline_are_invalid(host: str) -> None:
    from bootgate.scripts import is_valid_host

    assert not is_valid_host(host)
