"""The line of a failed run's log that says what went wrong (`KeyError: 'x'`).

Read from the end of execution.log, a bounded number of bytes, so a failed run's status costs
the same on a 1 GB log, and never through a link leading out of the run folder. The last line
that looks like an error wins: a Python exception line (the last line of a traceback), else a
line with an ERROR/CRITICAL/FATAL level or an `error:` of a command-line tool.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

TAIL_BYTES = 64 * 1024
MAX_LINE = 300  # characters shown; the log has the rest

_EXCEPTION = re.compile(
    r"^(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|Fault|Failure)(?::|$)"
)
_LEVEL = re.compile(r"\b(?:ERROR|CRITICAL|FATAL)\b|\b[Ee]rror:|Fatal Python error")


def last_error_line(folder: Path, name: str, tail_bytes: int = TAIL_BYTES) -> str | None:
    """The last error-looking line among the last `tail_bytes` bytes of the run folder's log
    `name`, or None. Read like every file of a run folder: never from outside it."""
    from btmanager.errors import BtError
    from btmanager.safe_files import open_in_folder

    try:
        with open_in_folder(folder, name) as reader:
            size = os.fstat(reader.fileno()).st_size
            start = max(0, size - tail_bytes)
            reader.seek(start)
            data = reader.read(tail_bytes)
    except (BtError, OSError):
        return None
    lines = data.decode("utf-8", errors="replace").splitlines()
    if start > 0 and lines:
        lines = lines[1:]  # the first line was cut by the window
    fallback: str | None = None
    for line in reversed(lines):
        text = line.strip()
        if not text:
            continue
        if _EXCEPTION.match(text):
            return _shorten(text)
        if fallback is None and _LEVEL.search(text):
            fallback = text
    return None if fallback is None else _shorten(fallback)


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 3] + "..."
