"""Prints the wall time of each e2e VM boot at the end of the pytest run."""

from __future__ import annotations

from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    import sys
    lab = sys.modules.get("e2e_lab")  # imported by test_boot.py when the e2e tests ran
    if lab is None:
        return
    BOOT_TIMES = lab.BOOT_TIMES
    if not BOOT_TIMES:
        return
    terminalreporter.section("e2e boot wall times")
    for name, (seconds, how) in BOOT_TIMES.items():
        terminalreporter.write_line(f"{name}: {seconds:.1f} s ({how})")
