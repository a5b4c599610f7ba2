"""The ranges of every numeric option, checked in one place.

Typer turns `--timeout nan`, `--timeout inf` and `--limit 100000000000000000000` into Python
values without complaint; further in they would disable a time-out, hang a worker or overflow
SQLite's 64-bit integers. Each command passes its numeric options through `check` first, so
such values end in one `Error:` line naming the option, before anything is done. (Commands
import this module inside their function: `bt status` does not pay for it.)
"""

from __future__ import annotations

import math

from btmanager.errors import UsageError

# Ten years: far beyond any backtest, and far within what timers and SQLite can hold.
MAX_SECONDS = 10 * 365 * 24 * 3600
MAX_COUNT = 10**9


class Whole:
    """An integer option in [low, high]."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high

    def problem(self, value: float) -> str | None:
        if isinstance(value, int) and self.low <= value <= self.high:
            return None
        return f"must be a whole number from {self.low} to {self.high}"


class Seconds:
    """A duration: finite, above 0 (or from 0 when `zero_ok`), at most MAX_SECONDS."""

    def __init__(self, zero_ok: bool) -> None:
        self.zero_ok = zero_ok

    def problem(self, value: float) -> str | None:
        low_ok = value >= 0 if self.zero_ok else value > 0
        if math.isfinite(value) and low_ok and value <= MAX_SECONDS:
            return None
        low = "0 or more" if self.zero_ok else "more than 0"
        return f"must be a number of seconds, {low} and at most {MAX_SECONDS} (10 years)"


# SQLite stores integers in 64 bits.
PRIORITY = Whole(-(2**63), 2**63 - 1)
NICE = Whole(-20, 19)
# A worker holds a thread per slot; more than this is a mistake, not a machine.
MAX_PARALLEL = Whole(1, 1024)
COUNT = Whole(0, MAX_COUNT)
TIMEOUT = Seconds(zero_ok=False)  # run --timeout: 0 would end every run at once
GRACE = Seconds(zero_ok=True)  # 0: SIGKILL right after SIGTERM
WAIT = Seconds(zero_ok=True)  # wait --timeout 0: look once
IDLE = Seconds(zero_ok=True)  # worker --idle-exit 0: return as soon as idle


def check(*options: tuple[str, int | float | None, Whole | Seconds]) -> None:
    """Each (option name, value, rule); None means not given. Raises UsageError on the first
    value out of range, naming the option and the value."""
    for name, value, rule in options:
        if value is None:
            continue
        problem = rule.problem(value)
        if problem is not None:
            shown = value if isinstance(value, int) or math.isfinite(value) else str(value)
            raise UsageError(f"{name} {problem}, not {shown}")
