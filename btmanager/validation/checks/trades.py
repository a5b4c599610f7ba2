"""trades.csv: one row per trade; its cells, exit after entry, the trade rules, and totals.

TradesCheck reads the rows (or fast-scan chunks) and keeps counts and positions; check_trades
turns them into messages. The pnl totals it keeps are compared with summary.csv afterwards
(checks.cross_file), but only when every row has a usable pnl: a partial sum would make a
correct total_pnl look wrong.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from btmanager.validation.checks.csv_file import big_enough, read_csv, report_cells
from btmanager.validation.checks.run_folder import RunFolder
from btmanager.validation.findings import Positions, plural, show_number
from btmanager.validation.readers.fast import Columns, Kind, mark
from btmanager.validation.readers.stdlib import finite_number, instant, timestamp
from btmanager.validation.readers.table import column_index
from btmanager.validation.report import FileCheck


def check_trades(run: RunFolder, check: FileCheck) -> TradesCheck | None:
    """Report on trades.csv; the check when its totals cover every row, for cross-checks."""
    if not big_enough(check, run.rules.min_bytes.get(check.name, 0)):
        return None
    limit = run.rules.trades.max_loss_per_trade
    scanned = read_csv(run, check, lambda header: TradesCheck(header, limit), fast=True)
    if scanned is None:
        return None
    scan, trades = scanned
    if scan.rows == 0:
        check.error("no data rows")
    for name in trades.index:
        report_cells(check, "error", name, trades.nulls[name], trades.bad[name], trades.kinds[name])
    if trades.exit_before_entry:
        found = trades.exit_before_entry
        check.error(
            f"{plural(found.count, 'trade')} with exit_time before entry_time {found.lines()}"
        )
    severity = run.rules.trades.severity
    if trades.big_losses and limit is not None:
        found = trades.big_losses
        check.add(
            severity,
            f"{plural(found.count, 'trade')} with pnl below max_loss_per_trade = "
            f"{show_number(limit)} {found.lines()}",
        )
    minimum = run.rules.trades.min_trades
    if minimum is not None and scan.rows < minimum:
        check.add(severity, f"{plural(scan.rows, 'trade')}, fewer than min_trades = {minimum}")
    if not scan.ragged.rows and trades.pnl_complete:
        return trades
    return None


class TradesCheck:
    """trades.csv: nulls, numbers and timestamps, exit after entry, totals for cross-checks."""

    COLUMNS: ClassVar[dict[str, Kind]] = {
        "entry_time": "time",
        "exit_time": "time",
        "pnl": "number",
    }

    def __init__(self, header: list[str], max_loss: float | None) -> None:
        self.index = column_index(header, self.COLUMNS)
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
            value = finite_number(
                fields[self.index["pnl"]], line, self.nulls["pnl"], self.bad["pnl"]
            )
            if value is not None:
                self._count(value)
                if self.max_loss is not None and value < self.max_loss:
                    self.big_losses.add(line)

    def _stamp(self, name: str, line: int, fields: list[str]) -> datetime | None:
        if name not in self.index:
            return None
        return timestamp(fields[self.index[name]], line, self.nulls[name], self.bad[name])

    def _count(self, value: float) -> None:
        self.pnl_count += 1
        self.pnl_sum += value
        self.wins += value > 0
        self.non_losses += value >= 0

    def add_chunk(self, start: int, columns: Columns) -> None:
        import numpy as np

        if "entry_time" in columns and "exit_time" in columns:
            mark(self.exit_before_entry, start, columns["exit_time"] < columns["entry_time"])
        pnl = columns.get("pnl")
        if pnl is not None:
            self.pnl_count += int(pnl.size)
            self.pnl_sum += float(pnl.sum())
            self.wins += int(np.count_nonzero(pnl > 0))
            self.non_losses += int(np.count_nonzero(pnl >= 0))
            if self.max_loss is not None:
                mark(self.big_losses, start, pnl < self.max_loss)
