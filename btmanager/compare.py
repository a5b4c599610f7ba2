"""`bt compare`: runs side by side, their params and metrics, sorted, or pivoted on two params.

Metrics come from the registry (stored at each validation), never from the run folders, so a
10 000-run sweep is compared with a few queries: the sort and `--top` happen in SQL, and only
the rows kept are decoded. Finished runs with no metrics stored (validated before metrics were
stored, or run with --no-validate) get theirs read once, here, from summary.csv, and stored.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from btmanager.errors import UsageError
from btmanager.registry.db import Registry, selection_where
from btmanager.registry.model import Selection, Status
from btmanager.timeutil import seconds_between

_CHUNK = 500  # ids per `IN (...)` (SQLite's default limit on variables is 32 766; stay small)
# Shown first when present, in this order; other metrics follow in summary.csv's order.
KEY_METRICS = ("total_pnl", "sharpe_ratio", "max_drawdown", "win_rate")
# The metrics row of a run whose summary.csv was read and held none (never shown).
NO_METRICS = ""


@dataclass(frozen=True)
class CompareOptions:
    sort: str | None = None  # METRIC ascending, -METRIC descending
    top: int | None = None
    all_params: bool = False
    pivot: tuple[str, str] | None = None
    metric: str | None = None


@dataclass
class Row:
    run_id: str
    label: str | None
    status: str
    sweep_id: str | None
    params: dict[str, Any]  # every param of the run
    metrics: dict[str, float]
    duration_seconds: float | None


@dataclass
class Pivot:
    """`metric` by the values of two params; a cell is the mean over the runs that share them."""

    row_param: str
    column_param: str
    metric: str
    rows: list[Any]
    columns: list[Any]
    values: list[list[float | None]]
    runs: list[list[int]]  # how many runs each cell averages
    best: tuple[int, int] | None  # the highest value's (row, column)

    def to_dict(self) -> dict[str, Any]:
        return {
            "row_param": self.row_param,
            "column_param": self.column_param,
            "metric": self.metric,
            "rows": self.rows,
            "columns": self.columns,
            "values": self.values,
            "best": None if self.best is None else list(self.best),
        }


@dataclass
class Table:
    params: list[str]  # the params shown: those that differ among the rows, or all
    metrics: list[str]
    rows: list[Row]
    pivot: Pivot | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        if self.pivot is not None:
            return self.pivot.to_dict()
        return {
            "params": self.params,
            "metrics": self.metrics,
            "runs": [
                {
                    "run_id": row.run_id,
                    "label": row.label,
                    "status": row.status,
                    "sweep_id": row.sweep_id,
                    "params": {name: row.params.get(name) for name in self.params},
                    "metrics": {name: row.metrics.get(name) for name in self.metrics},
                    "duration_seconds": row.duration_seconds,
                }
                for row in self.rows
            ],
        }

    def columns(self) -> list[str]:
        """Column names of the flat table (CSV, DataFrame): a param named like a fixed column
        or a metric is prefixed `param.`."""
        fixed = {"run_id", "label", "status", "duration_seconds", *self.metrics}
        shown = [f"param.{name}" if name in fixed else name for name in self.params]
        return ["run_id", "label", *shown, "status", "duration_seconds", *self.metrics]

    def records(self) -> list[list[Any]]:
        """The flat table's rows, in `columns()` order (None where a value is missing)."""
        return [
            [
                row.run_id,
                row.label,
                *(row.params.get(name) for name in self.params),
                row.status,
                row.duration_seconds,
                *(row.metrics.get(name) for name in self.metrics),
            ]
            for row in self.rows
        ]


def parse_sort(text: str) -> tuple[str, bool]:
    """`-M` -> (M, descending), `M` -> (M, ascending)."""
    descending = text.startswith("-")
    name = text[1:] if descending else text.lstrip("+")
    if not name:
        raise UsageError("--sort needs a metric name (METRIC ascending, -METRIC descending)")
    return name, descending


def _scope(ids: Sequence[str], selection: Selection) -> tuple[str, list[Any]]:
    """The WHERE clause of the runs named plus those selected."""
    parts: list[str] = []
    args: list[Any] = []
    if ids:
        parts.append(f"runs.run_id IN ({', '.join('?' for _ in ids)})")
        args += list(ids)
    if not selection.is_empty or not ids:
        clause, more = selection_where(selection)
        parts.append(f"({clause.removeprefix('WHERE ')})" if clause else "1")
        args += more
    return "WHERE (" + " OR ".join(parts) + ")", args


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def backfill(
    registry: Registry, writable: Callable[[], Registry | None], where: str, args: list[Any]
) -> int:
    """Store the metrics of finished runs in scope that have none stored: runs validated
    before metrics were stored, and runs not validated (`--no-validate`). Each such run's
    summary.csv is read once: a run without metrics gets the row NO_METRICS, so it is not read
    again. How many runs were read; nothing is stored when the registry is read-only."""
    # Which runs, from the index alone; only those get their rows read.
    lacking = registry.rows(
        f"SELECT runs.seq FROM runs {where}"
        " AND runs.status IN ('completed', 'failed')"
        " AND NOT EXISTS (SELECT 1 FROM metrics m WHERE m.run_id = runs.run_id)",
        args,
    )
    if not lacking:
        return 0
    missing = [
        row
        for chunk in _chunks([int(row[0]) for row in lacking])
        for row in registry.rows(
            f"SELECT run_id, output_dir FROM runs WHERE seq IN ({', '.join('?' for _ in chunk)})",
            chunk,
        )
    ]
    target = writable()
    if target is None:
        return 0
    from btmanager.validation.metrics import read_metrics

    found = [(str(row[0]), read_metrics(Path(row[1]))) for row in missing]
    with target.write() as db:
        for run_id, metrics in found:
            # Only where none were stored meanwhile (a validation that ran since wins).
            if db.execute("SELECT 1 FROM metrics WHERE run_id = ?", (run_id,)).fetchone():
                continue
            db.executemany(
                "INSERT INTO metrics (run_id, name, value) VALUES (?, ?, ?)",
                [(run_id, name, value) for name, value in metrics.items()]
                or [(run_id, NO_METRICS, None)],
            )
    return len(found)


def _rows_by_seq(registry: Registry, seqs: Sequence[int]) -> list[Any]:
    """(run_id, label, status, sweep_id, params, started_at, completed_at) of the runs, in the
    order of `seqs`."""
    found: dict[int, Any] = {}
    for chunk in _chunks(seqs):
        marks = ", ".join("?" for _ in chunk)
        for row in registry.rows(
            "SELECT seq, run_id, label, status, sweep_id, params, started_at, completed_at"
            f" FROM runs WHERE seq IN ({marks})",
            chunk,
        ):
            found[int(row[0])] = tuple(row)[1:]
    return [found[seq] for seq in seqs if seq in found]


def _metrics_of(registry: Registry, ids: Sequence[str]) -> dict[str, dict[str, float]]:
    """{run_id: {metric: value}}, each run's metrics in summary.csv's order."""
    found: dict[str, dict[str, float]] = {run_id: {} for run_id in ids}
    for chunk in _chunks(ids):
        marks = ", ".join("?" for _ in chunk)
        for row in registry.rows(
            f"SELECT run_id, name, value FROM metrics WHERE run_id IN ({marks})"
            " ORDER BY run_id, rowid",
            chunk,
        ):
            if row[2] is not None and row[1] != NO_METRICS:
                found[str(row[0])][str(row[1])] = float(row[2])
    return found


def _metric_names(rows: Sequence[Row]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        for name in row.metrics:
            seen.setdefault(name, None)
    key = [name for name in KEY_METRICS if name in seen]
    return key + [name for name in seen if name not in KEY_METRICS]


def _varying(rows: Sequence[Row], all_params: bool) -> list[str]:
    names: dict[str, None] = {}
    for row in rows:
        for name in row.params:
            names.setdefault(name, None)
    if all_params:
        return list(names)
    missing = object()
    return [
        name
        for name in names
        if len({json.dumps(row.params.get(name, missing), default=str) for row in rows}) > 1
    ]


def _known_metrics(registry: Registry, where: str, args: list[Any]) -> list[str]:
    rows = registry.rows(
        "SELECT DISTINCT m.name FROM metrics m WHERE m.name != ''"
        f" AND m.run_id IN (SELECT runs.run_id FROM runs {where}) ORDER BY m.name",
        args,
    )
    return [str(row[0]) for row in rows]


def _unknown_metric(
    registry: Registry, where: str, args: list[Any], name: str, option: str
) -> UsageError:
    known = _known_metrics(registry, where, args)
    listed = ", ".join(known[:30]) + (" ..." if len(known) > 30 else "") if known else "none"
    return UsageError(f"{option}: no run here has the metric {name!r} (metrics: {listed})")


def compare(
    registry: Registry,
    writable: Callable[[], Registry | None],
    ids: Sequence[str],
    selection: Selection,
    options: CompareOptions,
) -> Table:
    """The compare table of the runs `ids` plus those `selection` matches (its completed runs
    unless it names a status; every completed run if nothing is named or selected)."""
    if options.top is not None and options.top < 0:
        raise UsageError("--top must be 0 or more")
    if options.metric is not None and options.pivot is None:
        raise UsageError("--metric goes with --pivot P1,P2")
    if options.pivot is not None and options.metric is None:
        raise UsageError("--pivot needs --metric M (the value shown in each cell)")
    if selection.status is None and (not selection.is_empty or not ids):
        selection = selection._replace(status=str(Status.COMPLETED))
    where, args = _scope(ids, selection)
    backfill(registry, writable, where, args)

    sort_name, descending = parse_sort(options.sort) if options.sort else (None, False)
    # The order first, from the indexes alone (a sweep's runs by sweep, status and run_id, their
    # metrics by run_id and name); then the rows kept, by seq.
    if sort_name is not None:
        direction = "DESC" if descending else "ASC"
        sql = (
            "SELECT runs.seq, m.value FROM runs"
            " LEFT JOIN metrics m ON m.run_id = runs.run_id AND m.name = ?"
            f" {where} ORDER BY m.value IS NULL, m.value {direction}, runs.seq"
        )
        query_args: list[Any] = [sort_name, *args]
    else:
        sql = f"SELECT runs.seq, NULL FROM runs {where} ORDER BY runs.seq"
        query_args = list(args)
    if options.top is not None:
        sql += " LIMIT ?"
        query_args.append(options.top)
    order = registry.rows(sql, query_args)
    if sort_name is not None and order and order[0][1] is None:
        raise _unknown_metric(registry, where, args, sort_name, "--sort")
    found = _rows_by_seq(registry, [int(row[0]) for row in order])
    run_ids = [str(row[0]) for row in found]
    metrics = _metrics_of(registry, run_ids)
    rows = [
        Row(
            run_id=str(row[0]),
            label=row[1],
            status=str(row[2]),
            sweep_id=row[3],
            params=json.loads(row[4]) if row[4] else {},
            metrics=metrics[str(row[0])],
            duration_seconds=seconds_between(row[5], row[6]),
        )
        for row in found
    ]
    table = Table(_varying(rows, options.all_params), _metric_names(rows), rows)
    if options.pivot is not None and options.metric is not None:
        if not rows:
            raise UsageError("No runs match: nothing to pivot")
        if options.metric not in table.metrics:
            raise _unknown_metric(registry, where, args, options.metric, "--metric")
        table.pivot = pivot(rows, options.pivot, options.metric)
    return table


# --- pivot ------------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def ordered(values: Iterable[Any]) -> list[Any]:
    """Distinct values, ascending: numerically when all are numbers, else as text."""
    distinct: dict[str, Any] = {}
    for value in values:
        distinct.setdefault(json.dumps(value, default=str), value)
    items = list(distinct.values())
    numbers = [_number(value) for value in items]
    if all(number is not None for number in numbers):
        keyed = [(number or 0.0, item) for number, item in zip(numbers, items, strict=True)]
        return [item for _key, item in sorted(keyed, key=lambda pair: pair[0])]
    return sorted(items, key=str)


def pivot(rows: Sequence[Row], params: tuple[str, str], metric: str) -> Pivot:
    """`metric` with the first param's values as rows and the second's as columns."""
    first, second = params
    if first == second:
        raise UsageError("--pivot needs two different params (P1,P2)")
    for name in (first, second):
        seen = ordered(row.params[name] for row in rows if name in row.params)
        if not seen:
            raise UsageError(f"--pivot: {name!r} is not a param of these runs")
        if len(seen) < 2:
            raise UsageError(
                f"--pivot: {name!r} does not vary among these runs (always {seen[0]!r})"
            )
    row_values = ordered(row.params[first] for row in rows if first in row.params)
    column_values = ordered(row.params[second] for row in rows if second in row.params)
    row_at = {json.dumps(value, default=str): i for i, value in enumerate(row_values)}
    column_at = {json.dumps(value, default=str): j for j, value in enumerate(column_values)}
    sums = [[0.0] * len(column_values) for _ in row_values]
    counts = [[0] * len(column_values) for _ in row_values]
    for row in rows:
        if first not in row.params or second not in row.params or metric not in row.metrics:
            continue
        i = row_at[json.dumps(row.params[first], default=str)]
        j = column_at[json.dumps(row.params[second], default=str)]
        sums[i][j] += row.metrics[metric]
        counts[i][j] += 1
    values: list[list[float | None]] = [
        [sums[i][j] / counts[i][j] if counts[i][j] else None for j in range(len(column_values))]
        for i in range(len(row_values))
    ]
    best: tuple[int, int] | None = None
    for i, line in enumerate(values):
        for j, value in enumerate(line):
            if value is not None and (best is None or value > _cell(values, best)):
                best = (i, j)
    return Pivot(first, second, metric, row_values, column_values, values, counts, best)


def _cell(values: list[list[float | None]], at: tuple[int, int]) -> float:
    value = values[at[0]][at[1]]
    return -math.inf if value is None else value


# --- CSV --------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def to_csv(table: Table) -> str:
    """The table (or the pivot) as CSV text."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if table.pivot is not None:
        grid = table.pivot
        writer.writerow([f"{grid.row_param}\\{grid.column_param}", *map(_text, grid.columns)])
        for value, line in zip(grid.rows, grid.values, strict=True):
            writer.writerow([_text(value), *map(_text, line)])
    else:
        writer.writerow(table.columns())
        writer.writerows([_text(cell) for cell in record] for record in table.records())
    return buffer.getvalue()
