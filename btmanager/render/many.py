"""Human output of the many-runs commands: sweeps, sweep progress, compare tables, pivots.

Each table is built once as plain cells; `write_*` draws it as plain text (no Rich import),
`render_*` with Rich on a terminal, so the two never say different things.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

from btmanager.render.common import STATUS_STYLES, human_duration, short_time

if TYPE_CHECKING:
    from rich.console import Console

    from btmanager.compare import Pivot, Table
    from btmanager.sweeps.progress import Progress
    from btmanager.sweeps.submit import Planned


def number(value: float | None) -> str:
    """A metric for a table: whole numbers plainly, large ones with 2 decimals, else 4
    significant digits."""
    if value is None:
        return ""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    if abs(value) >= 1000:
        return f"{value:.2f}"
    return f"{value:.4g}"


def text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Grid:
    """Headers, rows of cells, which columns are right-aligned, and per-cell Rich styles."""

    def __init__(self, headers: Sequence[str], right: Sequence[bool]) -> None:
        self.headers = list(headers)
        self.right = list(right)
        self.rows: list[list[str]] = []
        self.styles: list[list[str | None]] = []

    def add(self, cells: Sequence[str], styles: Sequence[str | None] | None = None) -> None:
        self.rows.append(list(cells))
        self.styles.append(list(styles) if styles is not None else [None] * len(cells))

    def write(self, out: IO[str]) -> None:
        widths = [
            max([len(header), *(len(row[i]) for row in self.rows)])
            for i, header in enumerate(self.headers)
        ]

        def line(cells: Sequence[str]) -> str:
            parts = [
                cell.rjust(width) if right else cell.ljust(width)
                for cell, width, right in zip(cells, widths, self.right, strict=True)
            ]
            return "  ".join(parts).rstrip()

        out.write(line(self.headers) + "\n")
        for row in self.rows:
            out.write(line(row) + "\n")

    def render(self, console: Console, title: str | None = None) -> None:
        from rich.markup import escape
        from rich.table import Table as RichTable

        table = RichTable(
            title=title, title_justify="left", box=None, pad_edge=False,
            header_style="bold underline",
        )  # fmt: skip
        for header, right in zip(self.headers, self.right, strict=True):
            table.add_column(escape(header), justify="right" if right else "left", no_wrap=True)
        for row, styles in zip(self.rows, self.styles, strict=True):
            table.add_row(
                *(
                    f"[{style}]{escape(cell)}[/]" if style else escape(cell)
                    for cell, style in zip(row, styles, strict=True)
                )
            )
        console.print(table)


# --- bt sweep --dry-run, bt sweeps -------------------------------------------------------------


def plan_grid(planned: Planned) -> Grid:
    keys: list[str] = list(planned.params[0]) if planned.params else []
    labelled = any(label is not None for label in planned.labels)
    grid = Grid(
        ["#", *keys, *(["Label"] if labelled else [])],
        [True] + [False] * len(keys) + [False] * labelled,
    )
    for number_, (params, label) in enumerate(
        zip(planned.params, planned.labels, strict=True), start=1
    ):
        grid.add(
            [str(number_), *(params[key] for key in keys), *([label or ""] if labelled else [])]
        )
    return grid


def plan_title(planned: Planned) -> str:
    count = len(planned.params)
    return f"{count} run{'' if count == 1 else 's'} (dry run: nothing queued)"


SWEEP_HEADERS = (
    "Sweep", "Script", "Created", "Runs", "Completed", "Failed", "Cancelled", "Running", "Queued",
)  # fmt: skip


def sweeps_grid(sweeps: Sequence[Mapping[str, Any]]) -> Grid:
    grid = Grid(SWEEP_HEADERS, [False, False, False, *([True] * 6)])
    for sweep in sweeps:
        counts = sweep["by_status"]
        cells = [
            sweep["sweep_id"],
            str(sweep["script_path"]),
            short_time(sweep["created_at"])[:16],
            str(sweep["count"]),
            *(
                str(counts.get(status, 0))
                for status in ("completed", "failed", "cancelled", "running", "queued")
            ),
        ]
        styles: list[str | None] = [None, None, None, None]
        styles += [
            STATUS_STYLES[status] if counts.get(status) else None
            for status in ("completed", "failed", "cancelled", "running", "queued")
        ]
        grid.add(cells, styles)
    return grid


def no_sweeps(registry: str) -> str:
    return f"No sweeps in the registry {registry}"


# --- bt compare ----------------------------------------------------------------------------------


def compare_grid(table: Table) -> Grid:
    headers = ["Run", "Label", *table.params, "Status", "Duration", *table.metrics]
    right = [
        False,
        False,
        *([False] * len(table.params)),
        False,
        True,
        *([True] * len(table.metrics)),
    ]
    grid = Grid(headers, right)
    for row in table.rows:
        cells = [
            row.run_id,
            row.label or "",
            *(text(row.params.get(name)) for name in table.params),
            row.status,
            human_duration(row.duration_seconds) if row.duration_seconds is not None else "",
            *(number(row.metrics.get(name)) for name in table.metrics),
        ]
        styles: list[str | None] = [None] * len(cells)
        styles[2 + len(table.params)] = STATUS_STYLES.get(row.status)
        grid.add(cells, styles)
    return grid


def compare_title(table: Table) -> str:
    count = len(table.rows)
    return f"{count} run{'' if count == 1 else 's'}"


def pivot_grid(pivot: Pivot, best_mark: str = "*") -> Grid:
    corner = f"{pivot.row_param} \\ {pivot.column_param}"
    grid = Grid(
        [corner, *(text(value) for value in pivot.columns)], [False] + [True] * len(pivot.columns)
    )
    for i, (value, line) in enumerate(zip(pivot.rows, pivot.values, strict=True)):
        cells = [text(value)]
        styles: list[str | None] = [None]
        for j, cell in enumerate(line):
            best = pivot.best == (i, j)
            cells.append(number(cell) + (best_mark if best and best_mark else ""))
            styles.append("bold green" if best else None)
        grid.add(cells, styles)
    return grid


def pivot_title(pivot: Pivot) -> str:
    return f"{pivot.metric} by {pivot.row_param} (rows) and {pivot.column_param} (columns)"


def pivot_notes(pivot: Pivot, plain: bool) -> list[str]:
    notes = [
        "* marks the best (highest) value" if plain else "the best (highest) value is in green"
    ]
    shared = max((count for line in pivot.runs for count in line), default=0)
    if shared > 1:
        notes.append(f"a cell is the mean of the runs sharing its two values (up to {shared})")
    return notes


def write_table(table: Table, out: IO[str] | None = None) -> None:
    stream = out or sys.stdout
    if table.pivot is not None:
        stream.write(pivot_title(table.pivot) + "\n")
        pivot_grid(table.pivot).write(stream)
        for note in pivot_notes(table.pivot, plain=True):
            stream.write(note + "\n")
    elif not table.rows:
        stream.write("No runs to compare (completed runs by default; see --status)\n")
    else:
        stream.write(compare_title(table) + "\n")
        compare_grid(table).write(stream)
    stream.flush()


def render_table(table: Table, console: Console) -> None:
    from rich.markup import escape

    if table.pivot is not None:
        pivot_grid(table.pivot, best_mark="").render(console, escape(pivot_title(table.pivot)))
        for note in pivot_notes(table.pivot, plain=False):
            console.print(f"[dim]{escape(note)}[/]")
    elif not table.rows:
        console.print("No runs to compare (completed runs by default; see --status)")
    else:
        compare_grid(table).render(console, compare_title(table))


# --- sweep progress ---------------------------------------------------------------------------------


class PlainProgress:
    """One line per change: `sweep_x: 3/10 done, 1 failed, 2 running, 5 queued`."""

    def __init__(self, sweep_id: str, out: IO[str] | None = None) -> None:
        self.sweep_id = sweep_id
        self.out = out or sys.stdout

    def update(self, progress: Progress) -> None:
        self.out.write(f"{self.sweep_id}: {progress.line()}\n")
        self.out.flush()

    def close(self) -> None:
        pass


class RichProgress:
    """A live bar: done of total, and the counts by state."""

    def __init__(self, sweep_id: str, total: int, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.task = self.bar.add_task(sweep_id, total=total, detail="")
        self.bar.start()

    def update(self, progress: Progress) -> None:
        failed = f"[red]{progress.failed} failed[/]" if progress.failed else "0 failed"
        if progress.cancelled:
            failed += f" · [magenta]{progress.cancelled} cancelled[/]"
        detail = f"{failed} · {progress.running} running · {progress.queued} queued"
        self.bar.update(self.task, completed=progress.done, total=progress.total, detail=detail)

    def close(self) -> None:
        self.bar.stop()
