"""How a process ended, in words: exit codes, and signals by name."""

from __future__ import annotations

import signal


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def describe_exit(code: int) -> str:
    """`exit code 3`, or `killed by signal 9 (SIGKILL)` for minus a signal number."""
    if code < 0:
        name = signal_name(-code)
        shown = name if not name.startswith("signal ") else "unknown signal"
        return f"killed by signal {-code} ({shown})"
    return f"exit code {code}"
