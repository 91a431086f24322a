"""Prints the wall time of each e2e VM boot at the end of the pytest run."""

from __future__ import annotations

from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    try:
        from test_boot import BOOT_TIMES  # the e2e test module (tests/e2e is on sys.path)
    except Exception:
        return
    if not BOOT_TIMES:
        return
    terminalreporter.section("e2e boot wall times")
    for name, (seconds, how) in BOOT_TIMES.items():
        terminalreporter.write_line(f"{name}: {seconds:.1f} s ({how})")
