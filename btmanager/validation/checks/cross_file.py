"""The totals across files: summary.csv's total_pnl and win_rate against trades.csv and pnl.csv.

They run last, on what the checks of each file kept, and only on totals that cover every row
(see checks.trades and checks.pnl), so a mismatch means the files disagree, not that one of
them was partly unreadable. Mismatches are warnings reported on summary.csv: which file is
wrong cannot be told.
"""

from __future__ import annotations

import math

from btmanager.validation.checks.pnl import PnlCheck
from btmanager.validation.checks.summary import SummaryCheck
from btmanager.validation.checks.trades import TradesCheck
from btmanager.validation.findings import plural, shorten, show_number
from btmanager.validation.report import FileCheck

# summary totals versus the files: relative tolerance, with a floor for totals near zero
TOTAL_REL_TOL = 1e-4
TOTAL_ABS_TOL = 0.01
WIN_RATE_TOL = 0.0051  # a fraction rounded to 2 decimals (0.53) is off by up to 0.005


def check_totals(
    check: FileCheck,
    summary: SummaryCheck,
    trades: TradesCheck | None,
    pnl: PnlCheck | None,
) -> None:
    """Compare summary.csv's totals (`check` is summary.csv's) with the other files' totals."""
    total = _metric(check, summary, "total_pnl")
    if total is not None:
        if trades is not None:
            _compare(check, total, trades.pnl_sum, "the sum of pnl in trades.csv")
        if pnl is not None and pnl.last_cum is not None:
            _compare(check, total, pnl.last_cum, "the last cumulative_pnl in pnl.csv")
    if "win_rate" in summary.found and trades is not None and trades.pnl_count:
        _win_rate(check, summary, trades)


def _metric(check: FileCheck, summary: SummaryCheck, name: str) -> float | None:
    if name not in summary.found:
        return None
    line, text = summary.found[name]
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        check.warn(f"{name} {shorten(text)!r} is not a number (line {line})")
        return None
    return value


def _compare(check: FileCheck, total: float, other: float, what: str) -> None:
    tolerance = max(TOTAL_REL_TOL * max(abs(total), abs(other)), TOTAL_ABS_TOL)
    if abs(total - other) > tolerance:
        check.warn(f"total_pnl {show_number(total)} differs from {what} ({show_number(other)})")


def _win_rate(check: FileCheck, summary: SummaryCheck, trades: TradesCheck) -> None:
    line, text = summary.found["win_rate"]
    percent = text.endswith("%")
    try:
        value = float(text.rstrip("%").strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or value > 100:
        check.warn(
            f"win_rate {shorten(text)!r} is not a fraction (0-1) or a percentage (0-100) (line {line})"
        )
        return
    # A value up to 1 may be a fraction or a small percentage; accept either reading.
    readings = [value / 100] if percent or value > 1 else [value, value / 100]
    low = trades.wins / trades.pnl_count
    high = trades.non_losses / trades.pnl_count
    if any(low - WIN_RATE_TOL <= r <= high + WIN_RATE_TOL for r in readings):
        return
    check.warn(
        f"win_rate {text} does not match trades.csv: {trades.wins} of "
        f"{plural(trades.pnl_count, 'trade')} have pnl > 0 ({low:.4g}, i.e. {low * 100:.2f}%)"
    )
