"""Rich rendering of a validation report: a table of files, then messages grouped by file.

The status column carries the meaning in its symbol (and in words where the terminal cannot
show the symbols), so the report reads the same without colour.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from btmanager.render.common import human_bytes
from btmanager.validate import Report

# (symbol, ASCII fallback, style) per file status
_STATUS = {
    "ok": ("✓", "ok", "green"),
    "error": ("✗", "ERR", "bold red"),
    "warning": ("!", "WARN", "yellow"),
    "absent": ("-", "-", "dim"),
}


def render_report(report: Report, console: Console, title: str | None = None) -> None:
    unicode = (console.encoding or "").lower().startswith("utf")
    table = Table(
        title=escape(title) if title else None,
        box=box.SIMPLE_HEAD if unicode else box.ASCII,
        title_justify="left",
    )
    table.add_column("", no_wrap=True)
    table.add_column("File", no_wrap=True)
    table.add_column("Size", justify="right")
    table.add_column("Rows", justify="right")
    table.add_column("Columns", justify="right")
    for name, check in report.file_checks.items():
        symbol, ascii_symbol, style = _STATUS[_status(check)]
        table.add_row(
            Text(symbol if unicode else ascii_symbol, style=style),
            Text(name),
            "-" if not check.get("exists") else human_bytes(check.get("size")),
            _count(check.get("row_count")),
            _count(len(check["columns"]) if check.get("columns") is not None else None),
        )
    console.print(table)
    _messages(console, "Errors", "bold red", report, "errors")
    _messages(console, "Warnings", "yellow", report, "warnings")
    verdict = Text(
        "Valid" if report.valid else "Invalid", style="bold green" if report.valid else "bold red"
    )
    counts = f": {_plural(len(report.errors), 'error')}, {_plural(len(report.warnings), 'warning')}"
    console.print(verdict + Text(counts))


def _status(check: dict[str, Any]) -> str:
    if check.get("errors"):
        return "error"
    if check.get("warnings"):
        return "warning"
    return "ok" if check.get("exists") else "absent"


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _messages(console: Console, heading: str, style: str, report: Report, key: str) -> None:
    groups = {name: check.get(key) or [] for name, check in report.file_checks.items()}
    groups = {name: messages for name, messages in groups.items() if messages}
    if not groups:
        return
    console.print(Text(heading, style=style))
    for name, messages in groups.items():
        console.print(Text(f"  {name}", style="bold"))
        prefix = f"{name}: "
        for message in messages:
            shown = message[len(prefix) :] if message.startswith(prefix) else message
            console.print(Text(f"    - {shown}"), soft_wrap=False, overflow="fold")
