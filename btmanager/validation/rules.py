"""Validation rules: what `bt validate` and `bt run` check beyond the built-in checklist.

Rules come from `--rules FILE`, else `bt.toml` in the current directory, else the built-in
defaults. Every key is optional; a file may hold any subset. The full format:

```toml
# Trading calendar for the dates of pnl.csv: "weekdays" (default; a missing Mon-Fri date is a
# warning) or an exchange_calendars code such as "XNYS", "XLON", "XBOM" (needs
# `pip install 'btmanager[calendars]'`; a missing session is an error, a row on a day that is
# not a session a warning).
calendar = "XNYS"

# Which files a run folder holds. Each list gives the named files that level; files not named
# keep their default level. Defaults: trades.csv, summary.csv and pnl.csv required,
# execution.log recommended, metadata.json optional.
#   required     missing is an error
#   recommended  missing is a warning
#   optional     may be missing; checked when present
# Files the lists add are checked by kind: a .csv must parse (and have the columns named
# below), a .json must be valid JSON. Files named nowhere are ignored, as are sub-folders.
[files]
required = ["positions.csv"]
recommended = []
optional = ["execution.log"]

# Columns of a CSV file, same three levels (names match exactly after trimming spaces).
# Defaults: trades.csv requires entry_time, exit_time, pnl and recommends strike, option_type;
# summary.csv requires metric, value; pnl.csv requires date, pnl, cumulative_pnl.
# Extra columns are always fine.
[columns."trades.csv"]
required = ["symbol"]
recommended = ["fees"]
optional = ["option_type"]

[columns."positions.csv"]
required = ["symbol", "qty"]

# The metrics (rows of summary.csv's metric column), same three levels. Defaults: total_pnl,
# win_rate, max_drawdown required; sharpe_ratio recommended.
[metrics]
optional = ["sharpe_ratio"]

# Threshold rules. Each breach is a warning naming the file and the threshold, or an error
# when the table says severity = "error".
[rules."trades.csv"]
max_loss_per_trade = -10000  # a trade whose pnl is below this (a number <= 0)
min_trades = 10              # fewer data rows than this (an integer >= 0)
severity = "warning"         # "warning" (default) or "error"

[rules."pnl.csv"]
max_drawdown_pct = -30       # drawdown of (capital + cumulative_pnl) below -30 % (a number <= 0)
capital = 100000             # else the run's `capital` param, else summary.csv's capital metric
severity = "error"

# Size floors: a file of this many bytes or fewer is "too small" (an error). Defaults:
# trades.csv 100, summary.csv 50, pnl.csv 100. Small but valid outputs (a one-trade
# trades.csv is ~70 bytes) need a lower floor; 0 turns the size check off.
[min_bytes]
"trades.csv" = 40

# Named checks to turn off; each of them only ever warns:
#   metadata       the contents of metadata.json (its params and timestamp keys)
#   execution_log  execution.log: empty, Python tracebacks, CRITICAL/FATAL lines
#   cross_file     summary.csv's totals against trades.csv and pnl.csv
#   running_sum    pnl.csv's cumulative_pnl against the running sum of its pnl
[checks]
disable = ["metadata"]
```

A malformed file (bad TOML, an unknown key or rule, a value of the wrong type, an unknown
calendar) is a RulesError naming the file and the problem.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, Literal, NamedTuple, cast

from btmanager.errors import RulesError
from btmanager.inputs import Wording
from btmanager.validation import calendars

Level = Literal["required", "recommended", "optional"]
Severity = Literal["warning", "error"]

LEVELS: tuple[Level, ...] = ("required", "recommended", "optional")
SEVERITIES: tuple[Severity, ...] = ("warning", "error")

Fail = Callable[[str], RulesError]  # builds the RulesError for a problem, naming the file
NameCheck = Callable[[str, str, Fail], None]

TRADES = "trades.csv"
SUMMARY = "summary.csv"
PNL = "pnl.csv"
METADATA = "metadata.json"
LOG = "execution.log"

DEFAULT_FILES: dict[str, Level] = {
    TRADES: "required",
    SUMMARY: "required",
    PNL: "required",
    METADATA: "optional",
    LOG: "recommended",
}
DEFAULT_COLUMNS: dict[str, dict[str, Level]] = {
    TRADES: {
        "entry_time": "required",
        "exit_time": "required",
        "pnl": "required",
        "strike": "recommended",
        "option_type": "recommended",
    },
    SUMMARY: {"metric": "required", "value": "required"},
    PNL: {"date": "required", "pnl": "required", "cumulative_pnl": "required"},
}
DEFAULT_METRICS: dict[str, Level] = {
    "total_pnl": "required",
    "win_rate": "required",
    "max_drawdown": "required",
    "sharpe_ratio": "recommended",
}

_TOP_KEYS = ("calendar", "files", "columns", "metrics", "rules", "min_bytes", "checks")
# The built-in checklist's size floors: a file must be larger than this.
DEFAULT_MIN_BYTES: dict[str, int] = {TRADES: 100, SUMMARY: 50, PNL: 100}
# Checks a rules file may turn off (`[checks] disable = [...]`): each of them only warns.
CHECK_NAMES = ("metadata", "execution_log", "cross_file", "running_sum")
_RULE_KEYS = {
    TRADES: ("max_loss_per_trade", "min_trades", "severity"),
    PNL: ("max_drawdown_pct", "capital", "severity"),
}


class TradesRules(NamedTuple):
    """Thresholds for trades.csv; None means the rule is off."""

    max_loss_per_trade: float | None = None
    min_trades: int | None = None
    severity: Severity = "warning"


class PnlRules(NamedTuple):
    """Thresholds for pnl.csv; None means the rule is off (capital: found elsewhere)."""

    max_drawdown_pct: float | None = None
    capital: float | None = None
    severity: Severity = "warning"


def _default_columns() -> dict[str, dict[str, Level]]:
    return {name: dict(levels) for name, levels in DEFAULT_COLUMNS.items()}


@dataclass(frozen=True)
class Rules:
    """The effective rules: built-in defaults with a rules file's changes applied."""

    calendar: str = calendars.WEEKDAYS
    files: Mapping[str, Level] = field(default_factory=lambda: dict(DEFAULT_FILES))
    columns: Mapping[str, Mapping[str, Level]] = field(default_factory=_default_columns)
    metrics: Mapping[str, Level] = field(default_factory=lambda: dict(DEFAULT_METRICS))
    trades: TradesRules = TradesRules()  # noqa: RUF009 - an immutable NamedTuple
    pnl: PnlRules = PnlRules()  # noqa: RUF009
    source: str | None = None
    min_bytes: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_MIN_BYTES))
    disabled: frozenset[str] = frozenset()

    def enabled(self, check: str) -> bool:
        """Whether the named check (one of CHECK_NAMES) runs."""
        return check not in self.disabled

    def to_dict(self) -> dict[str, Any]:
        """The rules in the TOML file's shape (all levels spelled out), plus `source`."""
        rules: dict[str, dict[str, Any]] = {}
        for name, table in ((TRADES, self.trades), (PNL, self.pnl)):
            values = {k: getattr(table, k) for k in _RULE_KEYS[name]}
            rules[name] = {k: v for k, v in values.items() if v is not None}
        return {
            "calendar": self.calendar,
            "files": _levels_to_lists(self.files),
            "columns": {name: _levels_to_lists(cols) for name, cols in self.columns.items()},
            "metrics": _levels_to_lists(self.metrics),
            "rules": rules,
            "min_bytes": dict(self.min_bytes),
            "checks": {"disable": sorted(self.disabled)},
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | None = None) -> Rules:
        """Rules from `to_dict()` output (or a parsed TOML table), validated like a file."""
        extra = dict(data)
        stored_source = extra.pop("source", None)
        if source is None and isinstance(stored_source, str):
            source = stored_source
        return _parse(extra, source)

    def column_levels(self, file_name: str) -> Mapping[str, Level]:
        return self.columns.get(file_name, {})


def load_rules(path: Path | None, cwd: Path) -> Rules | None:
    """Rules from an explicit file, else `cwd/bt.toml` if it exists, else None."""
    if path is None:
        candidate = cwd / "bt.toml"
        if not candidate.exists():
            return None
        shown, resolved = "bt.toml", candidate
    else:
        resolved = path if path.is_absolute() else cwd / path
        shown = str(path)
        if not resolved.exists():
            raise RulesError(f"Rules file not found: {shown}")
    if resolved.is_dir():
        raise RulesError(f"Rules file {shown}: is a directory")
    from btmanager.inputs import load_document

    # Size and nesting limits: a rules file may be anything (/dev/zero, 100 000 nested arrays).
    data = load_document(
        resolved, "Rules file", toml=True, error=RulesError, shown=shown, wording=_WORDING
    )
    if "source" in data:
        raise RulesError(_problem(shown, f"unknown key 'source' (allowed: {', '.join(_TOP_KEYS)})"))
    return replace(_parse(data, shown), source=str(resolved.resolve()))


_WORDING = Wording(
    not_found="{what} not found: {path}",
    unreadable="{what} {path}: cannot be read ({detail})",
    too_large="{what} {path}: too large (more than {limit} bytes)",
    not_utf8="{what} {path}: not UTF-8 text",
    invalid_toml="{what} {path}: invalid TOML: {detail}",
    too_deep="{what} {path}: nested too deeply (at most {depth} levels)",
    not_table="{what} {path}: not a table",
)


def _problem(source: str | None, text: str) -> str:
    return f"Rules file {source}: {text}" if source else f"Invalid rules: {text}"


def _parse(data: Mapping[str, Any], source: str | None) -> Rules:
    def fail(text: str) -> RulesError:
        return RulesError(_problem(source, text))

    _check_keys(data, _TOP_KEYS, "", fail)
    calendar = data.get("calendar", calendars.WEEKDAYS)
    if not isinstance(calendar, str) or not calendar.strip():
        raise fail(f"calendar must be a non-empty string, got {_show(calendar)}")
    calendar = calendar.strip()
    problem = calendars.calendar_problem(calendar)
    if problem:
        raise fail(problem)

    files = dict(DEFAULT_FILES)
    files.update(_level_table(data.get("files", {}), "files", fail, _check_file_name))
    columns = _default_columns()
    col_tables = _table(data.get("columns", {}), "columns", fail)
    for file_name, table in col_tables.items():
        where = f'columns."{file_name}"'
        if not file_name.endswith(".csv"):
            raise fail(f"{where}: columns apply to .csv files only")
        if file_name not in files:
            raise fail(f"{where}: {file_name} is not a checked file (name it in [files])")
        columns.setdefault(file_name, {}).update(_level_table(table, where, fail, None))
    metrics = dict(DEFAULT_METRICS)
    metrics.update(_level_table(data.get("metrics", {}), "metrics", fail, None))

    rule_tables = _table(data.get("rules", {}), "rules", fail)
    for file_name in rule_tables:
        if file_name not in _RULE_KEYS:
            raise fail(f'no rules exist for "{file_name}" (rules exist for {TRADES}, {PNL})')
    trades_t = _table(rule_tables.get(TRADES, {}), f'rules."{TRADES}"', fail)
    pnl_t = _table(rule_tables.get(PNL, {}), f'rules."{PNL}"', fail)
    _check_keys(trades_t, _RULE_KEYS[TRADES], f'rules."{TRADES}".', fail, "rule")
    _check_keys(pnl_t, _RULE_KEYS[PNL], f'rules."{PNL}".', fail, "rule")
    trades = TradesRules(
        max_loss_per_trade=_number(trades_t, "max_loss_per_trade", TRADES, fail, at_most=0.0),
        min_trades=_count(trades_t, "min_trades", fail),
        severity=_severity(trades_t, TRADES, fail),
    )
    capital = _number(pnl_t, "capital", PNL, fail)
    if capital is not None and capital <= 0:
        raise fail(f'rules."{PNL}".capital must be a number > 0, got {_show(capital)}')
    pnl = PnlRules(
        max_drawdown_pct=_number(pnl_t, "max_drawdown_pct", PNL, fail, at_most=0.0),
        capital=capital,
        severity=_severity(pnl_t, PNL, fail),
    )
    min_bytes = dict(DEFAULT_MIN_BYTES)
    for name, value in _table(data.get("min_bytes", {}), "min_bytes", fail).items():
        if name not in DEFAULT_MIN_BYTES:
            raise fail(f'min_bytes."{name}": size floors exist for {", ".join(DEFAULT_MIN_BYTES)}')
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise fail(f'min_bytes."{name}" must be an integer >= 0, got {_show(value)}')
        min_bytes[name] = value
    checks = _table(data.get("checks", {}), "checks", fail)
    _check_keys(checks, ("disable",), "checks.", fail)
    disable = checks.get("disable", [])
    if not isinstance(disable, list) or not all(isinstance(n, str) for n in disable):
        raise fail(f"checks.disable must be a list of check names, got {_show(disable)}")
    for name in disable:
        if name not in CHECK_NAMES:
            raise fail(f"checks.disable: unknown check {name!r} (known: {', '.join(CHECK_NAMES)})")
    return Rules(
        calendar, files, columns, metrics, trades, pnl, source, min_bytes, frozenset(disable)
    )


def _show(value: object) -> str:
    kind = {bool: "boolean", str: "string", int: "integer", float: "number"}.get(type(value))
    if kind is None:
        kind = "table" if isinstance(value, Mapping) else type(value).__name__
    return f"{kind} {value!r}"


def _check_keys(
    data: Mapping[str, Any], allowed: Sequence[str], prefix: str, fail: Fail, what: str = "key"
) -> None:
    for key in data:
        if key not in allowed:
            raise fail(f"unknown {what} '{prefix}{key}' (allowed: {', '.join(allowed)})")


def _table(value: object, where: str, fail: Fail) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise fail(f"{where} must be a table, got {_show(value)}")
    return dict(value)


def _level_table(
    value: object, where: str, fail: Fail, check_name: NameCheck | None
) -> dict[str, Level]:
    table = _table(value, where, fail)
    _check_keys(table, LEVELS, f"{where}.", fail)
    levels: dict[str, Level] = {}
    for level in LEVELS:
        names = table.get(level, [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise fail(f"{where}.{level} must be a list of strings, got {_show(names)}")
        for raw in names:
            name = raw.strip()
            if not name:
                raise fail(f"{where}.{level}: empty name")
            if check_name is not None:
                check_name(name, where, fail)
            if name in levels and levels[name] != level:
                raise fail(f"{where}: {name} is both {levels[name]} and {level}")
            levels[name] = level
    return levels


def _check_file_name(name: str, where: str, fail: Fail) -> None:
    path = PurePosixPath(name)
    if "\\" in name or "\x00" in name or path.is_absolute() or ".." in path.parts:
        raise fail(f"{where}: {name!r} must be a relative path inside the run folder")


def _number(
    table: Mapping[str, Any], key: str, file_name: str, fail: Fail, at_most: float | None = None
) -> float | None:
    if key not in table:
        return None
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise fail(f'rules."{file_name}".{key} must be a number, got {_show(value)}')
    if at_most is not None and value > at_most:
        raise fail(f'rules."{file_name}".{key} must be <= {at_most:g} (a loss), got {value!r}')
    return float(value)


def _count(table: Mapping[str, Any], key: str, fail: Fail) -> int | None:
    if key not in table:
        return None
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise fail(f'rules."{TRADES}".{key} must be an integer >= 0, got {_show(value)}')
    return value


def _severity(table: Mapping[str, Any], file_name: str, fail: Fail) -> Severity:
    value = table.get("severity", "warning")
    if value not in SEVERITIES:
        raise fail(f'rules."{file_name}".severity must be "warning" or "error", got {_show(value)}')
    return cast(Severity, value)


def _levels_to_lists(levels: Mapping[str, Level]) -> dict[str, list[str]]:
    return {level: [n for n, lv in levels.items() if lv == level] for level in LEVELS}
