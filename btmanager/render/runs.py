"""Rich rendering of runs: status panels, tables, listings, and the live foreground view."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any, Literal

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from btmanager.registry.model import Run
from btmanager.render.common import human_bytes, human_duration, short_time, styled_status
from btmanager.render.text import (
    LIST_HEADERS,
    empty_listing,
    list_cells,
    status_messages,
    status_rows,
)


def render_status(
    run: Run,
    console: Console,
    details: Mapping[str, Any] | None = None,
    messages: bool = True,
) -> None:
    """As `text.write_status`, with styles."""
    # Plain lines rather than a grid: a grid pads every line to its widest row.
    unicode = (console.encoding or "").lower().startswith("utf")
    for label, text, style in status_rows(run, details, unicode):
        value = f"[{style}]{escape(text)}[/]" if style else escape(text)
        console.print(f"[bold]{label:<12}[/] {value}", soft_wrap=True)
    for kind, message, style in status_messages(run) if messages else ():
        shown = f"[{style}]{kind}:[/]" if style else f"{kind}"
        console.print(f"  {shown} {escape(message)}", soft_wrap=True)


def render_list(total: int, runs: list[Run], console: Console, registry: str) -> None:
    if not runs:
        console.print(escape(empty_listing(total, registry)), soft_wrap=True)
        return
    table = Table(
        title=f"{len(runs)} of {total} runs",
        title_justify="left",
        box=None,
        pad_edge=False,
        header_style="bold underline",
    )
    for header in LIST_HEADERS:
        wraps = header in ("Label", "Script", "Reason")
        justify: Literal["left", "right"] = "right" if header in ("Duration", "Exit") else "left"
        table.add_column(header, no_wrap=not wraps, justify=justify)
    for run in runs:
        cells = [escape(cell) for cell in list_cells(run)]
        cells[1] = styled_status(run.status)
        table.add_row(*cells)
    console.print(table)


def render_files(listing: dict[str, Any], console: Console) -> None:
    files = listing["files"]
    console.print(escape(listing["output_dir"]), soft_wrap=True)
    table = Table(
        box=None,
        pad_edge=False,
        header_style="bold underline",
    )
    table.add_column("File")
    table.add_column("Size", justify="right")
    table.add_column("Modified")
    for item in files:
        table.add_row(escape(item["name"]), human_bytes(item["size"]), short_time(item["modified"]))
    console.print(table)


class LiveRunView:
    """Mirrors a foreground run's output and keeps an elapsed-time line under it.

    The status line is drawn only on a terminal without NO_COLOR; otherwise output is copied
    byte for byte. Output is written straight to the stdout buffer (not through Rich), so a
    script that prints gigabytes costs little memory and time.
    """

    def __init__(self, console: Console, live_line: bool) -> None:
        self.console = console
        self.live_line = live_line
        self.out = sys.stdout.buffer
        self.run_id = ""
        self._line_shown = False
        self._at_line_start = True
        self._last_draw = 0.0
        self._elapsed = 0.0

    def started(self, run: Run) -> None:
        self.run_id = run.run_id
        self.console.print(
            f"[bold]bt[/] run [cyan]{run.run_id}[/] started: {escape(' '.join(run.command))}",
            soft_wrap=True,
        )
        self.console.file.flush()

    def _clear_line(self) -> None:
        if self._line_shown:
            self.out.write(b"\r\x1b[2K")
            self._line_shown = False

    def _draw_line(self) -> None:
        if not self.live_line or not self._at_line_start:
            return
        text = f"\x1b[2m⏱ running {human_duration(self._elapsed)} · {self.run_id}\x1b[0m"
        self.out.write(b"\r\x1b[2K" + text.encode())
        self.out.flush()
        self._line_shown = True
        self._last_draw = time.monotonic()

    def output(self, data: bytes) -> None:
        self._clear_line()
        self.out.write(data)
        self._at_line_start = data.endswith(b"\n")
        self.out.flush()
        self._draw_line()

    def tick(self, elapsed: float) -> None:
        self._elapsed = elapsed
        if self.live_line and time.monotonic() - self._last_draw >= 0.5:
            self._draw_line()

    def stopping(self, reason: str) -> None:
        self._clear_line()
        self.out.flush()
        self.console.print(f"[yellow]Stopping the run: {escape(reason)}[/]")
        self.console.file.flush()

    def finished(self) -> None:
        self._clear_line()
        if not self._at_line_start:
            self.out.write(b"\n")
        self.out.flush()
