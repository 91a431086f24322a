"""Pure boot decisions: ``decide(machine, action) -> Action``. No I/O here."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Action", "BootKernel", "Exit", "Machine", "MachineAction", "decide", "normalize_mac"]


@dataclass(frozen=True)
class Machine:
    """What a booting client told us about itself (already validated / normalised)."""

    mac: str
    uuid: str = ""
    serial: str = ""
    manufacturer: str = ""
    product: str = ""
    buildarch: str = ""
    platform: str = ""


@dataclass(frozen=True)
class MachineAction:
    """The action an administrator assigned to a machine."""

    kernel: str
    initrd: str = ""
    args: str = ""


@dataclass(frozen=True)
class Exit:
    """Leave iPXE and continue with the next boot device."""

    reason: str


@dataclass(frozen=True)
class BootKernel:
    """Boot this kernel (and initrd) from the content store."""

    kernel: str
    initrd: str
    args: str


Action = Exit | BootKernel


def decide(machine: Machine, action: MachineAction | None) -> Action:
    """What `machine` should do, given the action assigned to it (None: none)."""
    if action is None:
        return Exit(reason=f"no action for {machine.mac}")
    if not action.kernel:
        return Exit(reason=f"the action for {machine.mac} names no kernel")
    return BootKernel(kernel=action.kernel, initrd=action.initrd, args=action.args)


_HEX = set("0123456789abcdef")
_CANONICAL_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")


def normalize_mac(value: str) -> str:
    """`aa:bb:cc:dd:ee:ff` from the usual spellings (colons, hyphens, Cisco dots, bare hex).

    Raises ValueError with a clear message for anything else.
    """
    if len(value) == 17 and _CANONICAL_MAC.fullmatch(value):  # already normal (iPXE's ${netX/mac})
        return value
    raw = value.strip().lower()
    compact = raw.replace(":", "").replace("-", "").replace(".", "")
    if len(compact) != 12 or not set(compact) <= _HEX or len(raw) > 17:
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise ValueError(f"{shown!r} is not a MAC address (expected six hex bytes, e.g. 52:54:00:12:34:56)")
    return ":".join(compact[i:i + 2] for i in range(0, 12, 2))
