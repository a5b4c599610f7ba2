"""Shared pieces of rendering: consoles, JSON output, humanised numbers, status colours."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

STATUS_STYLES = {
    "queued": "cyan",
    "running": "yellow",
    "completed": "green",
    "failed": "bold red",
    "cancelled": "magenta",
}


def stdout_console() -> Console:
    """Rich decides colour from the terminal and NO_COLOR; we also drop highlighting."""
    from rich.console import Console  # lazily: JSON output never needs Rich (~13 ms)

    return Console(highlight=False, no_color=bool(os.environ.get("NO_COLOR")) or None)


def is_terminal() -> bool:
    """Human output goes through Rich only on a terminal; elsewhere it is plain text."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def write_lines(lines: Iterable[str], stream: IO[str] | None = None) -> None:
    """Log lines verbatim (no markup interpretation), flushed as they come.

    Here rather than with the Rich renderers: `bt logs` must not pay for importing Rich.
    """
    out = stream or sys.stdout
    for line in lines:
        out.write(line + "\n")
        out.flush()


def emit_json(document: Any) -> None:
    """Exactly one JSON document on stdout."""
    import json  # here: most output is not JSON, and a foreground `bt run` starts sooner

    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def styled_status(status: str) -> str:
    style = STATUS_STYLES.get(status, "")
    return f"[{style}]{status}[/]" if style else status


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def human_bytes(size: float | None) -> str:
    if size is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def short_time(iso_text: str | None) -> str:
    """`2026-02-10 14:30:22` in local time, for tables."""
    if not iso_text:
        return "-"
    from datetime import datetime

    return datetime.fromisoformat(iso_text).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def zoned_time(iso_text: str | None) -> str:
    """`2026-02-10 14:30:22 CET`: local time with its zone (run ids are in UTC)."""
    if not iso_text:
        return "-"
    from datetime import datetime

    return datetime.fromisoformat(iso_text).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
