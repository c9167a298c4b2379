"""Prints, after the run, which ``console`` blocks of the README and docs the docs test ran
and which it could not (each marked in the source with its reason)."""

from __future__ import annotations

from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from tests.docs import report

    if not report.RAN and not report.NOT_RUN:
        return
    write = terminalreporter.write_line
    terminalreporter.section("console blocks of README.md and docs/")
    write(f"run ({len(report.RAN)}):")
    for line in report.RAN:
        write(f"  {line}")
    write(f"not run ({len(report.NOT_RUN)}), as marked in the source:")
    for line in report.NOT_RUN:
        write(f"  {line}")
