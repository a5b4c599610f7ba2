"""summary.csv: metric,value rows; the metrics the rules name, and repeats.

SummaryCheck keeps the first line and value of each metric of interest: those the rules name,
plus total_pnl and win_rate (compared with the other files by checks.cross_file) and capital
(the drawdown rule of pnl.csv may need it). A summary is small, so it is always read row by
row with the stdlib reader, never fast-scanned.
"""

from __future__ import annotations

from collections.abc import Iterable

from btmanager.validation.checks.csv_file import big_enough, read_csv, report_missing
from btmanager.validation.checks.run_folder import RunFolder
from btmanager.validation.findings import Positions
from btmanager.validation.readers.fast import Columns, GiveUp, Kind
from btmanager.validation.readers.stdlib import clean_text
from btmanager.validation.readers.table import column_index
from btmanager.validation.report import FileCheck


def check_summary(run: RunFolder, check: FileCheck) -> SummaryCheck | None:
    """Report on summary.csv; its metrics for the cross-file checks, when it has a metric column."""
    if not big_enough(check, run.rules.min_bytes.get(check.name, 0)):
        return None
    wanted = {*run.rules.metrics, "total_pnl", "win_rate", "capital"}
    scanned = read_csv(run, check, lambda header: SummaryCheck(header, wanted), fast=False)
    if scanned is None:
        return None
    summary = scanned[1]
    if "metric" not in summary.index:
        return None
    report_missing(check, "metric", run.rules.metrics, summary.found)
    for name, repeats in summary.repeats.items():
        first = summary.found[name][0]
        check.warn(
            f"metric {name} appears {repeats.count + 1} times {repeats.lines()}; "
            f"the first (line {first}) is used"
        )
    return summary


class SummaryCheck:
    """summary.csv: the first line and value of each metric of interest, and repeats."""

    def __init__(self, header: list[str], wanted: Iterable[str]) -> None:
        self.index = column_index(header, ("metric", "value"))
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
