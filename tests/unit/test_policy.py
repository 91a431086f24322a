from __future__ import annotations

import pytest

from bootgate.policy import BootKernel, Exit, Machine, MachineAction, decide, normalize_mac


def test_no_action_exits() -> None:
    assert isinstance(decide(Machine("52:54:00:00:00:01"), None), Exit)


def test_action_boots_its_kernel() -> None:
    d = decide(Machine("52:54:00:00:00:01"), MachineAction("vmlinuz", "initrd.img", "quiet"))
    assert d == BootKernel("vmlinuz", "initrd.img", "quiet")


def test_action_without_kernel_exits() -> None:
    assert isinstance(decide(Machine("52:54:00:00:00:01"), MachineAction("")), Exit)


@pytest.mark.parametrize("raw", ["52:54:00:AB:cd:ef", "52-54-00-ab-cd-ef", "5254.00ab.cdef", "525400ABCDEF",
                                 " 52:54:00:ab:cd:ef "])
def test_normalize_mac_spellings(raw: str) -> None:
    assert normalize_mac(raw) == "52:54:00:ab:cd:ef"


@pytest.mark.parametrize("raw", ["", "52:54:00:ab:cd", "52:54:00:ab:cd:eg", "52:54:00:ab:cd:ef:00",
                                 "52::54:00:ab:cd:ef\n", "zz" * 6])
def test_normalize_mac_rejects(raw: str) -> None:
    with pytest.raises(ValueError, match="not a MAC address"):
        normalize_mac(raw)
