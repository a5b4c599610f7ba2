"""Rich rendering of a validation report: a table of files, then messages grouped by file.

The status column carries the meaning in its symbol (and in words where the terminal cannot
show the symbols), so the report reads the same without colour.
"""

from __future__ import annotations

from typing import Literal

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from btmanager.render.text import (
    FILE_STATUS,
    REPORT_HEADERS,
    report_messages,
    report_rows,
    report_verdict,
)
from btmanager.validation.report import Report


def render_report(report: Report, console: Console, title: str | None = None) -> None:
    unicode = (console.encoding or "").lower().startswith("utf")
    table = Table(
        title=escape(title) if title else None,
        box=box.SIMPLE_HEAD if unicode else box.ASCII,
        title_justify="left",
    )
    for header in REPORT_HEADERS:
        table.add_column(
            header, no_wrap=header in ("", "File"), justify=_JUSTIFY.get(header, "left")
        )
    for status, (name, size, rows, columns) in report_rows(report.file_checks):
        symbol, ascii_symbol, style = FILE_STATUS[status]
        table.add_row(
            Text(symbol if unicode else ascii_symbol, style=style), Text(name), size, rows, columns
        )
    console.print(table)
    for heading, key, style in (
        ("Errors", "errors", "bold red"),
        ("Warnings", "warnings", "yellow"),
    ):
        groups = report_messages(report.file_checks, key)
        if groups:
            console.print(Text(heading, style=style))
        for name, messages in groups:
            console.print(Text(f"  {name}", style="bold"))
            for message in messages:
                console.print(Text(f"    - {message}"), soft_wrap=False, overflow="fold")
    word, counts = report_verdict(report.valid, len(report.errors), len(report.warnings))
    console.print(Text(word, style="bold green" if report.valid else "bold red") + Text(counts))


_JUSTIFY: dict[str, Literal["left", "right"]] = {
    "Size": "right",
    "Rows": "right",
    "Columns": "right",
}
