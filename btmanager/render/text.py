"""What the human output says, as plain data, and plain-text drawing of it.

Output that is not a terminal (a pipe, a file, a CI log, cron mail) is never coloured, so it is
drawn here as plain text without importing Rich (~25 ms to import and draw, a quarter of a
small foreground `bt run`). The Rich renderers (`runs.py`, `validation.py`) draw the same rows
with styles, so the two never say different things.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import IO, Any

from btmanager.registry.model import Run
from btmanager.render.common import (
    STATUS_STYLES,
    human_bytes,
    human_duration,
    zoned_time,
)
from btmanager.timeutil import elapsed_since

MESSAGES_SHOWN = 5  # validation messages `bt status` lists before "... N more"

# (label, text, Rich style or None)
Row = tuple[str, str, str | None]
# A value on several lines goes on under the value column (labels are 12 wide, then a space).
_CONTINUED = "\n" + " " * 13


GLANCE_METRICS = ("total_pnl", "sharpe_ratio", "max_drawdown", "win_rate")


def _metric_text(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.2f}" if abs(value) >= 1000 else f"{value:.4g}"


def glance_rows(run: Run, unicode: bool = True, metrics: bool = True) -> list[Row]:
    """A finished run's equity curve as a sparkline and its key metrics, when its files have
    them (pnl.csv, summary.csv); nothing otherwise. Small files only: `bt status` stays fast."""
    if run.status not in ("completed", "failed"):
        return []
    from pathlib import Path

    from btmanager.plot import SPARK_MAX_BYTES, PnlError, read_pnl, sparkline
    from btmanager.validation.metrics import read_metrics

    folder = Path(run.output_dir)
    rows: list[Row] = []
    try:
        dates, values = read_pnl(folder, SPARK_MAX_BYTES)
    except (PnlError, OSError):
        pass
    else:
        span = f"{dates[0]} .. {dates[-1]}, last {_metric_text(values[-1])}"
        rows.append(("Equity", f"{sparkline(values, unicode=unicode)}  {span}", "cyan"))
    found = read_metrics(folder) if metrics else {}
    shown = [f"{name} {_metric_text(found[name])}" for name in GLANCE_METRICS if name in found]
    if shown:
        rows.append(("Metrics", "  ".join(shown), None))
    return rows


def status_rows(
    run: Run, details: Mapping[str, Any] | None = None, unicode: bool = True
) -> list[Row]:
    """The rows of a run's status; `details` adds what is read beside the run's row
    (`metrics`, and `log_error`: the log's last error line)."""
    from btmanager.params import param_text

    details = details or {}
    duration = run.duration_seconds
    if duration is None and run.status == "running":
        duration = elapsed_since(run.started_at)
    params = []
    for key, value in run.params.items():
        text = param_text(value)  # None: a flag, shown by its name alone
        params.append(key if text is None else f"{key}={text}")
    rows: list[Row] = [
        ("Run", run.run_id, None),
        ("Status", run.status, STATUS_STYLES.get(run.status)),
        ("Script", run.script_path, None),
        ("Params", " ".join(params) or "-", None),
    ]
    if run.label:
        rows.append(("Label", run.label, None))
    if run.tags:
        rows.append(("Tags", ", ".join(run.tags), None))
    if run.rerun_of:
        rows.append(("Rerun of", run.rerun_of, None))
    rows += [
        ("Created", zoned_time(run.created_at), None),
        ("Started", zoned_time(run.started_at), None),
        ("Finished", zoned_time(run.completed_at), None),
        ("Duration", human_duration(duration), None),
        ("Exit code", "-" if run.exit_code is None else str(run.exit_code), None),
        ("PID", "-" if run.pid is None else str(run.pid), None),
        ("Peak memory", human_bytes(run.peak_memory_bytes), None),
        ("CPU time", human_duration(run.cpu_seconds), None),
        ("Output", run.output_dir, None),
    ]
    source = _source_text(run.provenance)
    if source:
        rows.append(("Source", source, None))
    if run.priority:
        rows.append(("Priority", str(run.priority), None))
    if run.error_message:
        rows.append(("Error", run.error_message, "red"))
    if details.get("log_error"):
        rows.append(("Log says", str(details["log_error"]), "red"))
    metrics = details.get("metrics")
    if metrics:
        rows.append(("Metrics", _wrapped([f"{k}={v:g}" for k, v in metrics.items()]), None))
    results = run.validation_results
    if results:
        valid = bool(results.get("valid"))
        errors, warnings = len(results.get("errors", [])), len(results.get("warnings", []))
        verdict = f"{'valid' if valid else 'invalid'} ({message_counts(errors, warnings)})"
        rows.append(("Validation", verdict, "green" if valid else "red"))
    elif not run.validate:
        rows.append(("Validation", "skipped (--no-validate)", None))
    rows += glance_rows(run, unicode, metrics=not details.get("metrics"))
    if run.note:
        rows.append(("Note", run.note.replace("\n", _CONTINUED), None))
    return rows


def _wrapped(items: list[str], width: int = 80) -> str:
    """Items on lines of at most `width` characters, continued under the value column."""
    lines: list[str] = []
    for item in items:
        if lines and len(lines[-1]) + 1 + len(item) <= width:
            lines[-1] += " " + item
        else:
            lines.append(item)
    return _CONTINUED.join(lines)


def _source_text(provenance: Mapping[str, Any] | None) -> str:
    """`sha256 1a2b3c4d5e6f, git 0123abcd (main, dirty)`: where the script came from."""
    if not provenance:
        return ""
    parts = []
    digest = provenance.get("script_sha256")
    if digest:
        parts.append(f"sha256 {str(digest)[:12]}")
    git = provenance.get("git")
    if isinstance(git, Mapping):
        where = ", ".join(
            str(item) for item in (git.get("branch"), "dirty" if git.get("dirty") else None) if item
        )
        commit = str(git.get("commit") or "no commit")[:10]
        parts.append(f"git {commit}" + (f" ({where})" if where else ""))
    return ", ".join(parts)


def status_messages(run: Run) -> list[Row]:
    """The first validation errors and warnings of a run: (kind, message, style)."""
    results = run.validation_results or {}
    rows: list[Row] = []
    for key, style in (("errors", "red"), ("warnings", "yellow")):
        messages = list(results.get(key) or [])
        rows += [(key[:-1], message, style) for message in messages[:MESSAGES_SHOWN]]
        if len(messages) > MESSAGES_SHOWN:
            more = f"{len(messages) - MESSAGES_SHOWN} more {key} (bt status --json, or bt validate)"
            rows.append(("...", more, None))
    return rows


def write_status(
    run: Run,
    out: IO[str] | None = None,
    details: Mapping[str, Any] | None = None,
    messages: bool = True,
) -> None:
    """A run's status; `messages=False` leaves out the validation messages (for a summary
    that shows the full report right after)."""
    stream = out or sys.stdout
    unicode = (getattr(stream, "encoding", "") or "").lower().startswith("utf")
    for label, text, _style in status_rows(run, details, unicode):
        stream.write(f"{label:<12} {text}\n")
    for kind, message, _style in status_messages(run) if messages else ():
        stream.write(f"  {kind}: {message}\n")
    stream.flush()


# --- validation reports -------------------------------------------------------------------

# file status -> (symbol, ASCII symbol, Rich style)
FILE_STATUS = {
    "ok": ("✓", "ok", "green"),
    "error": ("✗", "ERR", "bold red"),
    "warning": ("!", "WARN", "yellow"),
    "absent": ("-", "-", "dim"),
}
REPORT_HEADERS = ("", "File", "Size", "Rows", "Columns")


def file_status(check: Mapping[str, Any]) -> str:
    if check.get("errors"):
        return "error"
    if check.get("warnings"):
        return "warning"
    return "ok" if check.get("exists") else "absent"


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def report_rows(file_checks: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    """(file status, [name, size, rows, columns]) per file."""
    rows = []
    for name, check in file_checks.items():
        columns = check.get("columns")
        rows.append(
            (
                file_status(check),
                [
                    name,
                    "-" if not check.get("exists") else human_bytes(check.get("size")),
                    _count(check.get("row_count")),
                    _count(len(columns) if columns is not None else None),
                ],
            )
        )
    return rows


def report_messages(
    file_checks: Mapping[str, Mapping[str, Any]], key: str
) -> list[tuple[str, list[str]]]:
    """(file, its messages without the leading 'file: ') for files with `key` messages."""
    groups = []
    for name, check in file_checks.items():
        messages = list(check.get(key) or [])
        if messages:
            prefix = f"{name}: "
            shown = [m[len(prefix) :] if m.startswith(prefix) else m for m in messages]
            groups.append((name, shown))
    return groups


def message_counts(errors: int, warnings: int) -> str:
    """`1 error, 2 warnings`."""
    return f"{plural(errors, 'error')}, {plural(warnings, 'warning')}"


def report_verdict(valid: bool, errors: int, warnings: int) -> tuple[str, str]:
    """('Valid' or 'Invalid', ': N errors, M warnings')."""
    return ("Valid" if valid else "Invalid"), f": {message_counts(errors, warnings)}"


def write_report(report: Any, title: str | None = None, out: IO[str] | None = None) -> None:
    """A validation `Report` as aligned plain text."""
    stream = out or sys.stdout
    unicode = (getattr(stream, "encoding", "") or "").lower().startswith("utf")
    table = [list(REPORT_HEADERS)]
    for status, cells in report_rows(report.file_checks):
        symbol, ascii_symbol, _style = FILE_STATUS[status]
        table.append([symbol if unicode else ascii_symbol, *cells])
    widths = [max(len(row[i]) for row in table) for i in range(len(REPORT_HEADERS))]
    if title:
        stream.write(f"{title}\n")
    for row in table:
        cells = [
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        stream.write("  " + "  ".join(cells).rstrip() + "\n")
    for heading, key in (("Errors", "errors"), ("Warnings", "warnings")):
        groups = report_messages(report.file_checks, key)
        if groups:
            stream.write(f"{heading}\n")
        for name, messages in groups:
            stream.write(f"  {name}\n")
            stream.writelines(f"    - {message}\n" for message in messages)
    word, counts = report_verdict(report.valid, len(report.errors), len(report.warnings))
    stream.write(f"{word}{counts}\n")
    stream.flush()


# --- a foreground run on a pipe -------------------------------------------------------------


class PlainRunView:
    """A foreground run's output copied byte for byte, with bt's own lines in plain text."""

    def __init__(self) -> None:
        self.out = sys.stdout.buffer
        self._at_line_start = True

    def _say(self, text: str) -> None:
        if not self._at_line_start:
            self.out.write(b"\n")
            self._at_line_start = True
        self.out.write(text.encode("utf-8", errors="replace") + b"\n")
        self.out.flush()

    def started(self, run: Run) -> None:
        self._say(f"bt run {run.run_id} started: {' '.join(run.command)}")

    def output(self, data: bytes) -> None:
        self.out.write(data)
        self._at_line_start = data.endswith(b"\n")
        self.out.flush()

    def tick(self, elapsed: float) -> None:
        pass

    def stopping(self, reason: str) -> None:
        self._say(f"Stopping the run: {reason}")

    def finished(self) -> None:
        if not self._at_line_start:
            self.out.write(b"\n")
            self._at_line_start = True
        self.out.flush()


# --- lists of runs, files, health ---------------------------------------------------------

LIST_HEADERS = ("Run", "Status", "Script", "Label", "Created", "Duration", "Exit", "Reason")
_RIGHT = {"Size", "Duration", "Exit"}


def list_cells(run: Run) -> list[str]:
    """One row of `bt list`, the same columns every time (empty cells stay)."""
    from pathlib import PurePath

    from btmanager.render.common import short_time

    duration = run.duration_seconds
    if duration is None and run.status == "running":
        duration = elapsed_since(run.started_at)
    exit_text = ""
    if run.exit_code is not None:
        exit_text = str(run.exit_code)
        if run.exit_code < 0:
            from btmanager.execution.exits import signal_name

            exit_text = signal_name(-run.exit_code)
    return [
        run.run_id,
        run.status,
        PurePath(run.script_path).name,
        run.label or "",
        short_time(run.created_at)[5:16],
        human_duration(duration),
        exit_text,
        run.failure_reason or "",
    ]


def empty_listing(total: int, registry: str) -> str:
    return f"No runs ({total} match) in the registry {registry}"


def write_table(headers: tuple[str, ...], rows: list[list[str]], out: IO[str]) -> None:
    """Plain columns as wide as their widest cell: nothing is ever cut."""
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]

    def line(cells: list[str] | tuple[str, ...]) -> str:
        parts = [
            cell.rjust(width) if header in _RIGHT else cell.ljust(width)
            for cell, width, header in zip(cells, widths, headers, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out.write(line(headers) + "\n")
    for row in rows:
        out.write(line(row) + "\n")


def write_list(total: int, runs: list[Run], registry: str, out: IO[str] | None = None) -> None:
    stream = out or sys.stdout
    if not runs:
        stream.write(empty_listing(total, registry) + "\n")
        return
    stream.write(f"{len(runs)} of {total} runs\n")
    write_table(LIST_HEADERS, [list_cells(run) for run in runs], stream)
    stream.flush()


def write_files(listing: Mapping[str, Any], out: IO[str] | None = None) -> None:
    from btmanager.render.common import short_time

    stream = out or sys.stdout
    stream.write(f"{listing['output_dir']}\n")
    rows = [
        [item["name"], human_bytes(item["size"]), short_time(item["modified"])]
        for item in listing["files"]
    ]
    write_table(("File", "Size", "Modified"), rows, stream)
    stream.flush()


def health_line(health: Mapping[str, Any]) -> str:
    if health.get("reason"):
        return f"{health['status']}: {health['reason']}"
    registry = str(health["registry"])
    if not health.get("registry_exists", True):
        registry += " (not created yet: no runs recorded there)"
    text = (
        f"{health['status']}: {health['active_runs']} running, {health['queued_runs']} queued "
        f"(limit {health['max_parallel']}); registry {registry}"
    )
    dask = health.get("dask")
    if dask:
        text += (
            f"; served by bt worker --dask: scheduler {dask['scheduler']}, "
            f"{dask['workers']} workers, {dask['threads']} threads"
        )
    if health.get("problem"):
        text += f"; {health['problem']}"
    return text


# --- removing runs, rebuilding the registry ---------------------------------------------------

StyledLine = tuple[str, str | None]


def removal_lines(removal: Mapping[str, Any]) -> list[StyledLine]:
    """`bt rm` / `bt gc`: a line per run removed (or that would be), then the total, then
    the runs left alone and why."""
    verb = "Would remove" if removal.get("dry_run") else "Removed"
    lines: list[StyledLine] = [
        (f"{verb} {item['run_id']}  {item['status']:<9}  {human_bytes(item['bytes'])}", None)
        for item in removal["runs"]
    ]
    freed = removal["bytes_freed"]
    what = "would free" if removal.get("dry_run") else "freed"
    total = f"{plural(len(removal['runs']), 'run')}, {what} {human_bytes(freed)} ({freed} bytes)"
    lines.append((f"{verb} {total}" if removal["runs"] else "Nothing to remove", "bold"))
    lines += [(f"Left {item['run_id']}: {item['reason']}", "yellow") for item in removal["skipped"]]
    return lines


def rebuild_lines(rebuild: Mapping[str, Any]) -> list[StyledLine]:
    lines: list[StyledLine] = []
    if rebuild.get("set_aside"):
        lines.append((f"The corrupt registry was kept as {rebuild['set_aside']}", "yellow"))
    lines.append(
        (
            f"Recovered {plural(rebuild['recovered'], 'run')} into {rebuild['registry']} "
            f"({rebuild['already_recorded']} already recorded)",
            "green",
        )
    )
    lines += [
        (f"Skipped {item['folder']}: {item['reason']}", "yellow") for item in rebuild["skipped"]
    ]
    return lines
