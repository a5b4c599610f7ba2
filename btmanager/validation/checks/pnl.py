"""pnl.csv: one row per day; dates, numbers, running sums, the calendar, the drawdown rule.

PnlCheck reads the rows (or fast-scan chunks) and keeps what the messages need; check_pnl
turns that into messages. The last cumulative_pnl is compared with summary.csv's total_pnl
afterwards (checks.cross_file). As the built-in checklist has it (README, "Validation
rules"), unreadable or out-of-order dates are errors, other columns' bad cells warnings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any, ClassVar, NamedTuple

from btmanager.validation import calendars
from btmanager.validation.checks.csv_file import big_enough, read_csv, report_cells
from btmanager.validation.checks.run_folder import RunFolder
from btmanager.validation.checks.summary import SummaryCheck
from btmanager.validation.findings import SHOWN, Positions, plural, shorten, show_number
from btmanager.validation.readers.fast import Columns, Kind, mark
from btmanager.validation.readers.stdlib import clean_text, finite_number, instant, timestamp
from btmanager.validation.readers.table import column_index
from btmanager.validation.report import FileCheck
from btmanager.validation.rules import Severity

# cumulative_pnl[i] - cumulative_pnl[i-1] may differ from pnl[i] by this much: three values
# rounded to cents, plus float noise relative to the size of the running total.
CUM_ABS_TOL = 0.02
CUM_REL_TOL = 1e-6


def check_pnl(run: RunFolder, check: FileCheck, summary: SummaryCheck | None) -> PnlCheck | None:
    """Report on pnl.csv; the check for the cross-file checks unless rows are ragged.

    `summary` (read before, if at all) may supply the capital for the drawdown rule.
    """
    if not big_enough(check, run.rules.min_bytes.get(check.name, 0)):
        return None
    limit = run.rules.pnl.max_drawdown_pct
    capital, why_not = _capital(run, summary)
    used = capital if limit is not None else None
    scanned = read_csv(run, check, lambda header: PnlCheck(header, used, limit), fast=True)
    if scanned is None:
        return None
    scan, pnl = scanned
    if scan.rows == 0:
        check.error("no data rows")
    for name in pnl.index:
        severity: Severity = "error" if name == "date" else "warning"
        report_cells(check, severity, name, pnl.nulls[name], pnl.bad[name], pnl.kinds[name])
    if pnl.duplicates:
        found = pnl.duplicates
        check.error(
            f"dates not strictly increasing: {plural(found.count, 'duplicate')} {found.lines()}"
        )
    if pnl.backwards:
        found = pnl.backwards
        check.error(
            f"dates not strictly increasing: {plural(found.count, 'date')} earlier than "
            f"the row before {found.lines()}"
        )
    if "cumulative_pnl" in pnl.index and pnl.last_line and pnl.last_cum is None:
        check.error(
            f"the last row's cumulative_pnl is not a number "
            f"({shorten(pnl.last_cum_text or '')!r}, line {pnl.last_line})"
        )
    if pnl.mismatches and run.rules.enabled("running_sum"):
        found = pnl.mismatches
        check.warn(
            f"cumulative_pnl differs from the running sum of pnl at "
            f"{plural(found.count, 'row')} {found.lines()}"
        )
    if pnl.days and not pnl.nulls.get("date") and not pnl.bad.get("date"):
        _calendar(run, check, pnl.days)
    if limit is not None:
        _drawdown(run, check, pnl, limit, capital, why_not)
    return pnl if not scan.ragged.rows else None


def _calendar(run: RunFolder, check: FileCheck, days: Iterable[date]) -> None:
    code = run.rules.calendar
    try:
        result = calendars.check_days(code, days)
    except calendars.CalendarUnavailable as exc:
        check.warn(f"dates not checked against calendar {code}: {exc}")
        return
    if not result.is_exchange:
        if result.missing:
            check.warn(
                f"{plural(len(result.missing), 'weekday')} without a row {_dates(result.missing)}"
            )
        if result.off_days:
            check.warn(
                f"rows on {plural(len(result.off_days), 'weekend day')} {_dates(result.off_days)}"
            )
        return
    if result.missing:
        check.error(
            f"{plural(len(result.missing), f'{code} session')} without a row {_dates(result.missing)}"
        )
    if result.off_days:
        days = result.off_days
        check.warn(f"rows on {plural(len(days), 'day')} outside the {code} sessions {_dates(days)}")


def _drawdown(
    run: RunFolder,
    check: FileCheck,
    pnl: PnlCheck,
    limit: float,
    capital: float | None,
    why_not: str,
) -> None:
    rule = f"max_drawdown_pct = {show_number(limit)}"
    if capital is None:
        check.warn(
            f"{rule} not evaluated: capital unknown ({why_not}set capital in "
            f'[rules."pnl.csv"], pass -p capital=N, or add a capital metric to summary.csv)'
        )
        return
    breach = pnl.breach
    if breach is not None:
        on = f"on {breach.day.isoformat()} " if breach.day else ""
        check.add(
            run.rules.pnl.severity,
            f"drawdown of {breach.pct:.2f}% {on}(line {breach.line}) is below {rule} "
            f"(capital {show_number(capital)})",
        )


def _capital(run: RunFolder, summary: SummaryCheck | None) -> tuple[float | None, str]:
    """Capital from the rule, else the `capital` param, else summary.csv; else why not."""
    if run.rules.pnl.capital is not None:
        return run.rules.pnl.capital, ""
    notes = ""
    raw = run.params.get("capital")
    if raw is not None:
        value = _positive(str(raw))  # a params file's number, or -p text
        if value is not None:
            return value, ""
        notes += f"the capital param {shorten(str(raw))!r} is not a positive number; "
    if summary is not None and "capital" in summary.found:
        line, text = summary.found["capital"]
        value = _positive(text)
        if value is not None:
            return value, ""
        notes += f"summary.csv's capital {shorten(text)!r} (line {line}) is not a positive number; "
    return None, notes


def _positive(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def _dates(days: list[date]) -> str:
    shown = ", ".join(d.isoformat() for d in days[:SHOWN])
    return f"({shown}{', ...' if len(days) > SHOWN else ''})"


class Drawdown(NamedTuple):
    pct: float
    line: int
    day: date | None


class PnlCheck:
    """pnl.csv: dates (order and days), numbers, running sums, last total, drawdown."""

    COLUMNS: ClassVar[dict[str, Kind]] = {
        "date": "time",
        "pnl": "number",
        "cumulative_pnl": "number",
    }

    def __init__(
        self, header: list[str], capital: float | None, drawdown_limit: float | None
    ) -> None:
        self.index = column_index(header, self.COLUMNS)
        self.kinds = {name: self.COLUMNS[name] for name in self.index}
        self.capital = capital
        self.drawdown_limit = drawdown_limit
        self.nulls = {name: Positions() for name in self.index}
        self.bad = {name: Positions() for name in self.index}
        self.duplicates = Positions()
        self.backwards = Positions()
        self.mismatches = Positions()
        self.days: set[date] = set()
        self.last_line = 0  # of the last data row
        self.last_cum: float | None = None
        self.last_cum_text: str | None = None
        self.worst: Drawdown | None = None
        self._prev_time: Any = None  # datetime (rows) or numpy datetime64 (chunks)
        self._prev_cum: float | None = 0.0  # None after a row without a usable total
        self._peak = capital or 0.0
        self._pending: tuple[Positions, int, str | None] | None = None

    def positions(self) -> list[Positions]:
        lists = [*self.nulls.values(), *self.bad.values()]
        return [*lists, self.duplicates, self.backwards, self.mismatches]

    @property
    def breach(self) -> Drawdown | None:
        """The worst drawdown, if it is below the limit."""
        if self.worst is None or self.drawdown_limit is None:
            return None
        return self.worst if self.worst.pct < self.drawdown_limit else None

    def needs_lines(self) -> bool:
        return any(self.positions()) or self.breach is not None

    def finish_fast(self, first_line: int) -> None:
        for positions in self.positions():
            positions.shift(first_line)
        self.last_line += first_line
        if self.worst is not None:
            self.worst = self.worst._replace(line=self.worst.line + first_line)

    def add_row(self, line: int, fields: list[str]) -> None:
        self.last_line = line
        day = None
        if "date" in self.index:
            stamp = timestamp(
                fields[self.index["date"]], line, self.nulls["date"], self.bad["date"]
            )
            if stamp is not None:
                day = stamp.date()  # the session day as written, also for aware times
                self._order(instant(stamp), line)
                self.days.add(day)
        pnl = cum = None
        if "pnl" in self.index:
            pnl = finite_number(fields[self.index["pnl"]], line, self.nulls["pnl"], self.bad["pnl"])
        if "cumulative_pnl" in self.index:
            cum = self._cum(fields[self.index["cumulative_pnl"]], line)
        before, self._prev_cum = self._prev_cum, cum
        if cum is None:
            return
        if pnl is not None and before is not None and _mismatch(cum, before, pnl):
            self.mismatches.add(line)
        if self.capital is not None:
            equity = self.capital + cum
            self._peak = max(self._peak, equity)
            pct = (equity - self._peak) / self._peak * 100
            if self.worst is None or pct < self.worst.pct:
                self.worst = Drawdown(pct, line, day)

    def _order(self, stamp: datetime, line: int) -> None:
        if self._prev_time is not None:
            if stamp == self._prev_time:
                self.duplicates.add(line)
            elif stamp < self._prev_time:
                self.backwards.add(line)
        self._prev_time = stamp

    def _cum(self, text: str, line: int) -> float | None:
        # A bad total on the last row is an error of its own, so the warning about bad totals
        # leaves it out: each bad one is recorded only once a later row shows it was not last.
        if self._pending is not None:
            self._pending[0].add(self._pending[1], self._pending[2])
            self._pending = None
        self.last_cum_text = clean_text(text.strip())
        self.last_cum = None
        nulls, bad = Positions(), Positions()
        value = finite_number(text, line, nulls, bad)
        if value is None:
            target = self.nulls["cumulative_pnl"] if nulls else self.bad["cumulative_pnl"]
            self._pending = (target, line, bad.example)
        self.last_cum = value
        return value

    def add_chunk(self, start: int, columns: Columns) -> None:
        import numpy as np

        self.last_line = start + len(next(iter(columns.values()))) - 1
        stamps = columns.get("date")
        if stamps is not None:
            before = np.concatenate(
                ([stamps[0] if self._prev_time is None else self._prev_time], stamps[:-1])
            )
            first = 1 if self._prev_time is None else 0
            mark(self.duplicates, start + first, (stamps == before)[first:])
            mark(self.backwards, start + first, (stamps < before)[first:])
            self._prev_time = stamps[-1]
            self.days.update(np.unique(stamps.astype("datetime64[D]")).astype(object))
        cum = columns.get("cumulative_pnl")
        if cum is None:
            return
        self.last_cum = float(cum[-1])
        self.last_cum_text = repr(self.last_cum)
        previous = np.array([self._prev_cum], dtype=np.float64)  # never None in a fast scan
        before_cum = np.concatenate((previous, cum[:-1]))
        pnl = columns.get("pnl")
        if pnl is not None:
            mark(self.mismatches, start, _mismatch(cum, before_cum, pnl))
        self._prev_cum = float(cum[-1])
        if self.capital is not None:
            equity = self.capital + cum
            peaks = np.maximum.accumulate(np.concatenate(([self._peak], equity)))[1:]
            self._peak = float(peaks[-1])
            pct = (equity - peaks) / peaks * 100
            at = int(np.argmin(pct))
            if self.worst is None or pct[at] < self.worst.pct:
                day = (
                    stamps[at].astype("datetime64[D]").astype(object)
                    if stamps is not None
                    else None
                )
                self.worst = Drawdown(float(pct[at]), start + at, day)


def _mismatch(cum: Any, before: Any, pnl: Any) -> Any:
    """Whether cum - before differs from pnl beyond rounding; floats or numpy arrays alike."""
    if isinstance(cum, float):
        return abs((cum - before) - pnl) > CUM_ABS_TOL + CUM_REL_TOL * max(abs(cum), abs(before))
    import numpy as np  # only fast scans pass arrays, and only they may pay for numpy

    limit = CUM_ABS_TOL + CUM_REL_TOL * np.maximum(np.abs(cum), np.abs(before))
    return np.abs((cum - before) - pnl) > limit
