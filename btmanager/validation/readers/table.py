"""Row checks and totals of trades.csv, pnl.csv and summary.csv, and the scan that feeds them.

Each table check takes rows from the stdlib reader (`add_row`, with line numbers) or numpy
chunks from a fast scan (`add_chunk`, with row indices turned into lines at the end). Both
ways apply the same arithmetic in the same order, so the findings are the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from btmanager.validation.readers.fast import (
    Columns,
    GiveUp,
    Kind,
    one_line_records,
    scan_columns,
)
from btmanager.validation.readers.stdlib import (
    CsvReader,
    Positions,
    Ragged,
    clean_text,
    instant,
    is_null,
    parse_timestamp,
)

# cumulative_pnl[i] - cumulative_pnl[i-1] may differ from pnl[i] by this much: three values
# rounded to cents, plus float noise relative to the size of the running total.
CUM_ABS_TOL = 0.02
CUM_REL_TOL = 1e-6


class TableCheck(Protocol):
    kinds: dict[str, Kind]

    def add_row(self, line: int, fields: list[str]) -> None: ...

    def add_chunk(self, start: int, columns: Columns) -> None: ...

    def positions(self) -> list[Positions]: ...

    def needs_lines(self) -> bool: ...

    def finish_fast(self, first_line: int) -> None: ...


C = TypeVar("C", bound=TableCheck)


@dataclass
class TableScan:
    """What reading a CSV file found about the file as a whole."""

    header: list[str] | None = None
    header_line: int = 0
    rows: int = 0
    non_utf8: Positions = field(default_factory=Positions)
    binary: Positions = field(default_factory=Positions)
    ragged: Ragged = field(default_factory=Ragged)
    parse_error: str | None = None
    fast: bool = False  # confirmed by a fast scan


def scan_table(
    path: Path, make_check: Callable[[list[str]], C], fast: bool, engine: str | None = None
) -> tuple[TableScan, C | None]:
    """Read a CSV file once, feeding a check; fast scan first when `fast` and it can vouch."""
    if fast:
        done = _try_fast(path, make_check, engine)
        if done is not None:
            return done
    reader = CsvReader(path)
    check: C | None = None
    for line, fields in reader.records():
        if check is None:
            assert reader.header is not None
            check = make_check(reader.header)
        check.add_row(line, fields)
    if check is None and reader.header is not None:
        check = make_check(reader.header)
    scan = TableScan(
        reader.header,
        reader.header_line,
        reader.rows,
        reader.non_utf8,
        reader.binary,
        reader.ragged,
        reader.parse_error,
    )
    return scan, check


def _try_fast(
    path: Path, make_check: Callable[[list[str]], C], engine: str | None
) -> tuple[TableScan, C] | None:
    head = CsvReader(path)
    head.read_header()
    if head.header is None or head.raw_header is None or head.binary or head.non_utf8:
        return None
    if head.parse_error:
        return None
    check = make_check(head.header)
    if not check.kinds or any(head.header.count(name) > 1 for name in check.kinds):
        return None
    names = {name: head.raw_header[head.header.index(name)] for name in check.kinds}
    try:
        result = scan_columns(path, names, check.kinds, len(head.header), check.add_chunk, engine)
    except GiveUp:
        return None
    lines = head.header_line + result.rows
    if check.needs_lines() and (result.quotes or not one_line_records(path, lines)):
        return None  # row indices cannot be turned into line numbers
    check.finish_fast(head.header_line + 1)
    return TableScan(head.header, head.header_line, result.rows, fast=True), check


def _first_index(header: list[str], names: Iterable[str]) -> dict[str, int]:
    return {name: header.index(name) for name in names if name in header}


def _number(text: str, line: int, nulls: Positions, bad: Positions) -> float | None:
    """The cell as a finite float, else None with the null or bad value recorded."""
    if is_null(text):
        nulls.add(line)
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        bad.add(line, clean_text(text.strip()))
        return None
    return value


def _time(text: str, line: int, nulls: Positions, bad: Positions) -> datetime | None:
    if is_null(text):
        nulls.add(line)
        return None
    try:
        return parse_timestamp(text)
    except ValueError:
        bad.add(line, clean_text(text.strip()))
        return None


class TradesCheck:
    """trades.csv: nulls, numbers and timestamps, exit after entry, totals for cross-checks."""

    COLUMNS: ClassVar[dict[str, Kind]] = {
        "entry_time": "time",
        "exit_time": "time",
        "pnl": "number",
    }

    def __init__(self, header: list[str], max_loss: float | None) -> None:
        self.index = _first_index(header, self.COLUMNS)
        self.kinds = {name: self.COLUMNS[name] for name in self.index}
        self.max_loss = max_loss
        self.nulls = {name: Positions() for name in self.index}
        self.bad = {name: Positions() for name in self.index}
        self.exit_before_entry = Positions()
        self.big_losses = Positions()
        self.pnl_count = 0
        self.pnl_sum = 0.0
        self.wins = 0  # pnl > 0
        self.non_losses = 0  # pnl >= 0: scripts differ on whether a flat trade is a win

    def positions(self) -> list[Positions]:
        lists = [*self.nulls.values(), *self.bad.values()]
        return [*lists, self.exit_before_entry, self.big_losses]

    def needs_lines(self) -> bool:
        return any(self.positions())

    def finish_fast(self, first_line: int) -> None:
        for positions in self.positions():
            positions.shift(first_line)

    @property
    def pnl_complete(self) -> bool:
        """Every row has a finite pnl, so the totals cover all trades."""
        return "pnl" in self.index and not self.nulls["pnl"] and not self.bad["pnl"]

    def add_row(self, line: int, fields: list[str]) -> None:
        entry = self._stamp("entry_time", line, fields)
        exit_ = self._stamp("exit_time", line, fields)
        if entry is not None and exit_ is not None and instant(exit_) < instant(entry):
            self.exit_before_entry.add(line)
        if "pnl" in self.index:
            value = _number(fields[self.index["pnl"]], line, self.nulls["pnl"], self.bad["pnl"])
            if value is not None:
                self._count(value)
                if self.max_loss is not None and value < self.max_loss:
                    self.big_losses.add(line)

    def _stamp(self, name: str, line: int, fields: list[str]) -> datetime | None:
        if name not in self.index:
            return None
        return _time(fields[self.index[name]], line, self.nulls[name], self.bad[name])

    def _count(self, value: float) -> None:
        self.pnl_count += 1
        self.pnl_sum += value
        self.wins += value > 0
        self.non_losses += value >= 0

    def add_chunk(self, start: int, columns: Columns) -> None:
        import numpy as np

        if "entry_time" in columns and "exit_time" in columns:
            _mark(self.exit_before_entry, start, columns["exit_time"] < columns["entry_time"])
        pnl = columns.get("pnl")
        if pnl is not None:
            self.pnl_count += int(pnl.size)
            self.pnl_sum += float(pnl.sum())
            self.wins += int(np.count_nonzero(pnl > 0))
            self.non_losses += int(np.count_nonzero(pnl >= 0))
            if self.max_loss is not None:
                _mark(self.big_losses, start, pnl < self.max_loss)


def _mark(positions: Positions, start: int, mask: Any) -> None:
    import numpy as np

    hits = np.flatnonzero(mask)
    if hits.size:
        positions.add_indices(start, hits[:5].tolist(), int(hits.size))


@dataclass
class Drawdown:
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
        self.index = _first_index(header, self.COLUMNS)
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
            self.worst.line += first_line

    def add_row(self, line: int, fields: list[str]) -> None:
        self.last_line = line
        day = None
        if "date" in self.index:
            stamp = _time(fields[self.index["date"]], line, self.nulls["date"], self.bad["date"])
            if stamp is not None:
                day = stamp.date()  # the session day as written, also for aware times
                self._order(instant(stamp), line)
                self.days.add(day)
        pnl = cum = None
        if "pnl" in self.index:
            pnl = _number(fields[self.index["pnl"]], line, self.nulls["pnl"], self.bad["pnl"])
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
        value = _number(text, line, nulls, bad)
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
            _mark(self.duplicates, start + first, (stamps == before)[first:])
            _mark(self.backwards, start + first, (stamps < before)[first:])
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
            _mark(self.mismatches, start, _mismatch(cum, before_cum, pnl))
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


class SummaryCheck:
    """summary.csv: the first line and value of each metric of interest, and repeats."""

    def __init__(self, header: list[str], wanted: Iterable[str]) -> None:
        self.index = _first_index(header, ("metric", "value"))
        self.kinds: dict[str, Kind] = {}  # never fast-scanned: summaries are small
        self.wanted = set(wanted)
        self.found: dict[str, tuple[int, str]] = {}
        self.repeats: dict[str, Positions] = {}

    def positions(self) -> list[Positions]:
        return list(self.repeats.values())

    def needs_lines(self) -> bool:
        return True

    def finish_fast(self, first_line: int) -> None:
        raise GiveUp("summary.csv is always read row by row")

    def add_row(self, line: int, fields: list[str]) -> None:
        if "metric" not in self.index:
            return
        name = clean_text(fields[self.index["metric"]]).strip()
        if name not in self.wanted:
            return
        value = clean_text(fields[self.index["value"]]).strip() if "value" in self.index else ""
        if name in self.found:
            self.repeats.setdefault(name, Positions()).add(line)
        else:
            self.found[name] = (line, value)

    def add_chunk(self, start: int, columns: Columns) -> None:
        raise GiveUp("summary.csv is always read row by row")
