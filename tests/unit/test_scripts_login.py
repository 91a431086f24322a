"""Scripts of the login flow: the technician menu and boot-token queries on content URLs."""

from __future__ import annotations

import pytest

from bootgate.policy.deploy import Profile
from bootgate.scripts import render_profile, render_technician

BOOT = "0123456789abcdef0123456789abcdef"
Q = "mac=52%3A54%3A00%3Aaa%3Abb%3Acc&bgt=v1.eyJtIjoi.c2ln-_"


def test_profile_urls_carry_the_token_query() -> None:
    s = render_profile(Profile("kernel", kernel="k/vmlinuz", initrds=("initrd.img",), args="quiet"), mac="m",
                       name="pc", boot_id=BOOT, deployment_id=3, content_base="https://b:8051",
                       callback_base="http://b:8050", content_query=Q)
    assert f"kernel https://b:8051/content/k/vmlinuz?{Q} quiet bootgate.boot={BOOT}" in s
    assert f"initrd https://b:8051/content/initrd.img?{Q}\n" in s
    w = render_profile(Profile("wimboot", kernel="wimboot", initrds=("win/BCD",)), mac="m", name="pc", boot_id=BOOT,
                       deployment_id=3, content_base="https://b:8051", callback_base="http://b:8050", content_query=Q)
    assert f"initrd --name BCD https://b:8051/content/win/BCD?{Q}\n" in w
    t = render_profile(Profile("template", template="kernel {{content}}/x?{{auth}}\nboot"), mac="m", name="pc",
                       boot_id=BOOT, deployment_id=3, content_base="https://b:8051", callback_base="http://b:8050",
                       content_query=Q)
    assert f"kernel https://b:8051/content/x?{Q}\n" in t
    plain = render_profile(Profile("kernel", kernel="vmlinuz"), mac="m", name="pc", boot_id=BOOT, deployment_id=3,
                           content_base="https://b:8051", callback_base="http://b:8050")
    assert "kernel https://b:8051/content/vmlinuz bootgate.boot" in plain


@pytest.mark.parametrize("bad", ["a b", "x\nchain http://evil", "${password}", "a#b", "a;b"])
def test_token_query_cannot_inject(bad: str) -> None:
    with pytest.raises(ValueError):
        render_profile(Profile("kernel", kernel="vmlinuz"), mac="m", name="pc", boot_id=BOOT, deployment_id=3,
                       content_base="https://b:8051", callback_base="http://b:8050", content_query=bad)
    with pytest.raises(ValueError):
        render_technician(BOOT, [], user="u", server_base="https://b:8051", query=bad)


def test_technician_menu_items_and_escaping() -> None:
    s = render_technician(BOOT, [(4, "Win 11 ${x} || reboot"), (9, "memtest")], user="bob\nchain x",
                          server_base="https://b:8051", query="mac=m&tech=t")
    lines = s.splitlines()
    assert lines[0] == "#!ipxe" and lines[1] == "menu bootgate: technician menu (bob?chain x)"
    assert "item d4 Win 11 ??x? ?? reboot" in lines and "item d9 memtest" in lines
    assert f"chain https://b:8051/boot/run?boot={BOOT}&deployment=4&mac=m&tech=t || goto failed" in lines
    assert "choose --timeout 300000 --default local target || goto local" in lines
    assert not any(ln.startswith("chain x") for ln in lines)
    with pytest.raises(ValueError):
        render_technician("not-hex", [], user="u", server_base="https://b:8051", query="")


def test_menu_marks_login_items_and_login_prompt_is_escaped() -> None:
    from bootgate.policy.deploy import Menu, MenuItem
    from bootgate.scripts import render_menu
    from bootgate.web.login import login_script

    m = render_menu(Menu((MenuItem(1, "a", True), MenuItem(2, "b", False)), default=1, timeout=5), title="t",
                    boot_id=BOOT, server_base="https://b:8051", login_items={2})
    assert "item d1 [required] a\n" in m and "item d2 b (login)\n" in m
    s = login_script("https://b:8051", "/boot/run", "boot=1&mac=m", prompt="x || reboot ${password}\nshell")
    lines = s.splitlines()
    assert "echo x ?? reboot ??password??shell" in lines
    assert not any(ln.strip() in ("reboot", "shell") for ln in lines)
