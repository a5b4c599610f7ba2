"""Validation of a run folder: the built-in checks plus those a rules file asks for.

`validate_dir` checks each file the rules name (trades.csv, summary.csv, pnl.csv,
metadata.json, execution.log and any a rules file adds), then the totals across files. Every
message starts with the file it concerns and says where: file line numbers (header = line 1)
or dates, the first few and a count. Nothing is printed; a missing folder is NotFoundError.

Small CSV files are read with the stdlib csv module only, so validating a small folder imports
neither pandas nor pyarrow; big ones get a fast scan first (see readers.fast).
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

from btmanager.errors import NotFoundError
from btmanager.validation import calendars
from btmanager.validation.checks.execution_log import scan_log
from btmanager.validation.readers.stdlib import SHOWN, Positions, plural, shorten
from btmanager.validation.readers.table import (
    C,
    PnlCheck,
    SummaryCheck,
    TableScan,
    TradesCheck,
    scan_table,
)
from btmanager.validation.report import FileCheck, Report
from btmanager.validation.rules import LOG, METADATA, PNL, SUMMARY, TRADES, Level, Rules, Severity

FAST_BYTES_ENV = "BT_VALIDATE_FAST_BYTES"  # CSV files this big or bigger get a fast scan
DEFAULT_FAST_BYTES = 16 << 20
MIN_SIZES = {TRADES: 100, SUMMARY: 50, PNL: 100}  # a file must be larger than this
METADATA_MAX = 64 << 20  # metadata.json is parsed whole; bigger ones are not read
# summary totals versus the files: relative tolerance, with a floor for totals near zero
TOTAL_REL_TOL = 1e-4
TOTAL_ABS_TOL = 0.01
WIN_RATE_TOL = 0.0051  # a fraction rounded to 2 decimals (0.53) is off by up to 0.005
PARAM_KEYS = ("params", "parameters")
TIMESTAMP_KEYS = ("timestamp", "created_at", "executed_at", "start_time")
TIME_HINT = "ISO 8601, e.g. 2024-01-31 or 2024-01-31 09:30:00"


def validate_dir(
    path: Path,
    rules: Rules | None = None,
    params: Mapping[str, str] | None = None,
    *,
    fast_bytes: int | None = None,
    engine: str | None = None,
) -> Report:
    """Validate a run folder. `params` are the run's -p params (for `capital`).

    `fast_bytes` (default: env BT_VALIDATE_FAST_BYTES, else 16 MiB) is the CSV size from
    which a fast scan is tried; `engine` forces "arrow" or "pandas" for it.
    """
    if not path.exists():
        raise NotFoundError(f"Directory not found: {path}")
    if not path.is_dir():
        raise NotFoundError(f"Not a directory: {path}")
    if fast_bytes is None:
        fast_bytes = _env_int(FAST_BYTES_ENV, DEFAULT_FAST_BYTES)
    return _Validation(path, rules or Rules(), params or {}, fast_bytes, engine).run()


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, ""))
    except ValueError:
        return default


class _Validation:
    def __init__(
        self,
        folder: Path,
        rules: Rules,
        params: Mapping[str, str],
        fast_bytes: int,
        engine: str | None,
    ) -> None:
        self.folder = folder
        self.rules = rules
        self.params = params
        self.fast_bytes = fast_bytes
        self.engine = engine
        self.checks: dict[str, FileCheck] = {}
        self.trades: TradesCheck | None = None  # set only when its totals cover every row
        self.summary: SummaryCheck | None = None
        self.pnl: PnlCheck | None = None

    def run(self) -> Report:
        handlers: dict[str, Callable[[FileCheck], None]] = {
            TRADES: self._trades,
            SUMMARY: self._summary,
            PNL: self._pnl,
            METADATA: self._metadata,
            LOG: self._log,
        }
        for name, level in self.rules.files.items():
            check = self.checks[name] = FileCheck(name)
            if not self._present(check, level):
                continue
            try:
                handlers.get(name, self._other)(check)
            except OSError as exc:
                check.error(f"cannot be read ({exc.strerror or exc})")
        if self.summary is not None:
            self._cross_checks(self.checks[SUMMARY], self.summary)
        checks = self.checks.values()
        errors = [m for c in checks for m in c.errors]
        return Report(
            valid=not errors,
            errors=errors,
            warnings=[m for c in checks for m in c.warnings],
            file_checks={name: c.to_dict() for name, c in self.checks.items()},
        )

    # --- presence and CSV structure -------------------------------------------------------

    def _present(self, check: FileCheck, level: Level) -> bool:
        severity: Severity = "error" if level == "required" else "warning"
        try:
            info = (self.folder / check.name).stat()
        except OSError:
            if level != "optional":
                check.add(severity, f"{level} file is missing")
            return False
        check.exists = True
        if not stat.S_ISREG(info.st_mode):
            check.add(severity, "not a regular file")
            return False
        check.size = info.st_size
        return True

    def _big_enough(self, check: FileCheck) -> bool:
        minimum = MIN_SIZES.get(check.name, 0)
        size = check.size or 0
        if size <= minimum:
            check.error(f"too small: {plural(size, 'byte')} (expected more than {minimum})")
        return size > 0

    def _scan_csv(
        self, check: FileCheck, make: Callable[[list[str]], C], fast: bool
    ) -> tuple[TableScan, C] | None:
        """Read a CSV file; report problems of the file as a whole. None: contents unusable."""
        use_fast = fast and (check.size or 0) >= self.fast_bytes
        scan, table = scan_table(self.folder / check.name, make, use_fast, self.engine)
        check.row_count = scan.rows
        check.columns = scan.header
        if scan.binary:
            check.columns = None  # a header read from binary data is noise
            check.error(
                f"binary data, not CSV text: NUL bytes on {plural(scan.binary.count, 'line')} "
                f"{scan.binary.lines()}"
            )
            return None
        if scan.non_utf8:
            check.warn(
                f"{plural(scan.non_utf8.count, 'line')} not valid UTF-8, read as cp1252/latin-1 "
                f"{scan.non_utf8.lines()}"
            )
        if scan.parse_error:
            check.error(f"cannot be parsed as CSV: {scan.parse_error}")
        if scan.header is None or table is None:
            if not scan.parse_error:
                check.error("no header line")
            return None
        ragged = scan.ragged
        if ragged.rows:
            shown = ", ".join(
                f"line {n} has {f}" for n, f in zip(ragged.rows.first, ragged.found, strict=True)
            )
            more = ", ..." if ragged.rows.count > len(ragged.rows.first) else ""
            check.error(
                f"{plural(ragged.rows.count, 'row')} with the wrong number of fields, "
                f"expected {ragged.expected} ({shown}{more})"
            )
        self._check_columns(check, scan.header)
        return None if scan.parse_error else (scan, table)

    def _check_columns(self, check: FileCheck, header: list[str]) -> None:
        levels = self.rules.column_levels(check.name)
        _missing_names(check, "column", levels, header)
        for name in levels:
            if header.count(name) > 1:
                at = ", ".join(str(i + 1) for i, h in enumerate(header) if h == name)
                check.warn(
                    f"column {name} appears {header.count(name)} times (columns {at}); the first is checked"
                )

    # --- the three result files ----------------------------------------------------------

    def _trades(self, check: FileCheck) -> None:
        if not self._big_enough(check):
            return
        limit = self.rules.trades.max_loss_per_trade
        scanned = self._scan_csv(check, lambda header: TradesCheck(header, limit), fast=True)
        if scanned is None:
            return
        scan, trades = scanned
        if scan.rows == 0:
            check.error("no data rows")
        for name in trades.index:
            _null_and_bad(
                check, "error", name, trades.nulls[name], trades.bad[name], trades.kinds[name]
            )
        if trades.exit_before_entry:
            found = trades.exit_before_entry
            check.error(
                f"{plural(found.count, 'trade')} with exit_time before entry_time {found.lines()}"
            )
        severity = self.rules.trades.severity
        if trades.big_losses and limit is not None:
            found = trades.big_losses
            check.add(
                severity,
                f"{plural(found.count, 'trade')} with pnl below max_loss_per_trade = "
                f"{_num(limit)} {found.lines()}",
            )
        minimum = self.rules.trades.min_trades
        if minimum is not None and scan.rows < minimum:
            check.add(severity, f"{plural(scan.rows, 'trade')}, fewer than min_trades = {minimum}")
        if not scan.ragged.rows and trades.pnl_complete:
            self.trades = trades

    def _summary(self, check: FileCheck) -> None:
        if not self._big_enough(check):
            return
        wanted = {*self.rules.metrics, "total_pnl", "win_rate", "capital"}
        scanned = self._scan_csv(check, lambda header: SummaryCheck(header, wanted), fast=False)
        if scanned is None:
            return
        summary = scanned[1]
        if "metric" not in summary.index:
            return
        _missing_names(check, "metric", self.rules.metrics, summary.found)
        for name, repeats in summary.repeats.items():
            first = summary.found[name][0]
            check.warn(
                f"metric {name} appears {repeats.count + 1} times {repeats.lines()}; "
                f"the first (line {first}) is used"
            )
        self.summary = summary

    def _pnl(self, check: FileCheck) -> None:
        if not self._big_enough(check):
            return
        limit = self.rules.pnl.max_drawdown_pct
        capital, why_not = self._capital()
        used = capital if limit is not None else None
        scanned = self._scan_csv(check, lambda header: PnlCheck(header, used, limit), fast=True)
        if scanned is None:
            return
        scan, pnl = scanned
        if scan.rows == 0:
            check.error("no data rows")
        for name in pnl.index:
            severity: Severity = "error" if name == "date" else "warning"
            _null_and_bad(check, severity, name, pnl.nulls[name], pnl.bad[name], pnl.kinds[name])
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
        if pnl.mismatches:
            found = pnl.mismatches
            check.warn(
                f"cumulative_pnl differs from the running sum of pnl at "
                f"{plural(found.count, 'row')} {found.lines()}"
            )
        if pnl.days and not pnl.nulls.get("date") and not pnl.bad.get("date"):
            self._calendar(check, pnl.days)
        if limit is not None:
            self._drawdown(check, pnl, limit, capital, why_not)
        self.pnl = pnl if not scan.ragged.rows else None

    def _calendar(self, check: FileCheck, days: Iterable[date]) -> None:
        code = self.rules.calendar
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
            check.warn(
                f"rows on {plural(len(days), 'day')} outside the {code} sessions {_dates(days)}"
            )

    def _drawdown(
        self, check: FileCheck, pnl: PnlCheck, limit: float, capital: float | None, why_not: str
    ) -> None:
        rule = f"max_drawdown_pct = {_num(limit)}"
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
                self.rules.pnl.severity,
                f"drawdown of {breach.pct:.2f}% {on}(line {breach.line}) is below {rule} "
                f"(capital {_num(capital)})",
            )

    def _capital(self) -> tuple[float | None, str]:
        """Capital from the rule, else the `capital` param, else summary.csv; else why not."""
        if self.rules.pnl.capital is not None:
            return self.rules.pnl.capital, ""
        notes = ""
        raw = self.params.get("capital")
        if raw is not None:
            value = _positive(raw)
            if value is not None:
                return value, ""
            notes += f"the capital param {shorten(str(raw))!r} is not a positive number; "
        if self.summary is not None and "capital" in self.summary.found:
            line, text = self.summary.found["capital"]
            value = _positive(text)
            if value is not None:
                return value, ""
            notes += (
                f"summary.csv's capital {shorten(text)!r} (line {line}) is not a positive number; "
            )
        return None, notes

    # --- across files --------------------------------------------------------------------

    def _cross_checks(self, check: FileCheck, summary: SummaryCheck) -> None:
        total = self._metric(check, summary, "total_pnl")
        if total is not None:
            if self.trades is not None:
                _compare(check, total, self.trades.pnl_sum, "the sum of pnl in trades.csv")
            if self.pnl is not None and self.pnl.last_cum is not None:
                _compare(check, total, self.pnl.last_cum, "the last cumulative_pnl in pnl.csv")
        if "win_rate" in summary.found and self.trades is not None and self.trades.pnl_count:
            self._win_rate(check, summary, self.trades)

    def _metric(self, check: FileCheck, summary: SummaryCheck, name: str) -> float | None:
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

    def _win_rate(self, check: FileCheck, summary: SummaryCheck, trades: TradesCheck) -> None:
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

    # --- metadata, log and files a rules file adds ---------------------------------------

    def _metadata(self, check: FileCheck) -> None:
        data = self._json(check, "warning")
        if data is None:
            return
        if not isinstance(data, dict):
            check.warn(f"not a JSON object (found {_json_kind(data)})")
            return
        params = next((k for k in PARAM_KEYS if k in data), None)
        if params is None:
            check.warn(f"no run parameters (expected key {' or '.join(PARAM_KEYS)})")
        elif not isinstance(data[params], dict):
            check.warn(f"{params} is not an object (found {_json_kind(data[params])})")
        if not any(k in data for k in TIMESTAMP_KEYS):
            keys = ", ".join(TIMESTAMP_KEYS[:-1]) + f" or {TIMESTAMP_KEYS[-1]}"
            check.warn(f"no execution timestamp (expected key {keys})")

    def _json(self, check: FileCheck, severity: Severity) -> Any:
        """The parsed JSON, or None with the problem reported."""
        size = check.size or 0
        if size == 0:
            check.add(severity, "empty file")
            return None
        if size > METADATA_MAX:
            check.add(severity, f"too large to check ({plural(size, 'byte')})")
            return None
        try:
            text = (self.folder / check.name).read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError:
            check.add(severity, "not UTF-8 text")
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            check.add(
                severity, f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
            )
            return None

    def _log(self, check: FileCheck) -> None:
        if not check.size:
            check.warn("empty: the script wrote no output")
            return
        tracebacks, fatal = scan_log(self.folder / check.name)
        if tracebacks:
            check.warn(f"{plural(tracebacks.count, 'Python traceback')} {tracebacks.lines()}")
        if fatal:
            check.warn(f"{plural(fatal.count, 'CRITICAL/FATAL line')} {fatal.lines()}")

    def _other(self, check: FileCheck) -> None:
        if check.name.endswith(".json"):
            self._json(check, "error")
        elif check.name.endswith(".csv"):
            if not check.size:
                check.error("empty file")
                return
            self._scan_csv(check, _RowsOnly, fast=False)


class _RowsOnly:
    """The table check of a CSV file a rules file adds: only its structure is checked."""

    def __init__(self, header: list[str]) -> None:
        self.kinds: dict[str, Any] = {}

    def add_row(self, line: int, fields: list[str]) -> None:
        return None

    def add_chunk(self, start: int, columns: Any) -> None:
        return None

    def positions(self) -> list[Positions]:
        return []

    def needs_lines(self) -> bool:
        return False

    def finish_fast(self, first_line: int) -> None:
        return None


# --- message helpers -----------------------------------------------------------------------


def _missing_names(
    check: FileCheck, what: str, levels: Mapping[str, Level], present: Iterable[str]
) -> None:
    have = set(present)
    wanted: tuple[tuple[Level, Severity], ...] = (("required", "error"), ("recommended", "warning"))
    for level, severity in wanted:
        missing = [n for n, lv in levels.items() if lv == level and n not in have]
        if missing:
            noun = what if len(missing) == 1 else what + "s"
            check.add(severity, f"missing {level} {noun} {', '.join(missing)}")


def _null_and_bad(
    check: FileCheck, severity: Severity, name: str, nulls: Positions, bad: Positions, kind: str
) -> None:
    if nulls:
        check.add(severity, f"{plural(nulls.count, 'null value')} in {name} {nulls.lines()}")
    if not bad:
        return
    if kind == "time":
        text = f"{plural(bad.count, 'unparseable timestamp')} in {name} {bad.lines()}{bad.eg()}; expected {TIME_HINT}"
    else:
        verb = "is not a finite number" if bad.count == 1 else "are not finite numbers"
        text = f"{plural(bad.count, 'value')} in {name} {verb} {bad.lines()}{bad.eg()}"
    check.add(severity, text)


def _compare(check: FileCheck, total: float, other: float, what: str) -> None:
    tolerance = max(TOTAL_REL_TOL * max(abs(total), abs(other)), TOTAL_ABS_TOL)
    if abs(total - other) > tolerance:
        check.warn(f"total_pnl {_num(total)} differs from {what} ({_num(other)})")


def _num(value: float) -> str:
    return f"{value:.10g}"


def _positive(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def _dates(days: list[date]) -> str:
    shown = ", ".join(d.isoformat() for d in days[:SHOWN])
    return f"({shown}{', ...' if len(days) > SHOWN else ''})"


def _json_kind(value: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else "a value")
