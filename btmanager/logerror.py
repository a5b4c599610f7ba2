"""The line of a failed run's log that says what went wrong (`KeyError: 'x'`).

Read from the end of execution.log, a bounded number of bytes, so a failed run's status costs
the same on a 1 GB log. The last line that looks like an error wins: a Python exception line
(the last line of a traceback), else a line with an ERROR/CRITICAL/FATAL level or an
`error:` of a command-line tool.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

TAIL_BYTES = 64 * 1024
MAX_LINE = 300  # characters shown; the log has the rest

_EXCEPTION = re.compile(
    r"^(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|Fault|Failure)(?::|$)"
)
_LEVEL = re.compile(r"\b(?:ERROR|CRITICAL|FATAL)\b|\b[Ee]rror:|Fatal Python error")


def last_error_line(log: Path, tail_bytes: int = TAIL_BYTES) -> str | None:
    """The last error-looking line among the log's last `tail_bytes` bytes, or None."""
    try:
        # Never through a symlink, nor a FIFO: the script may have put one there.
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        with os.fdopen(os.open(log, flags), "rb") as reader:
            info = os.fstat(reader.fileno())
            if not stat.S_ISREG(info.st_mode):
                return None
            size = info.st_size
            start = max(0, size - tail_bytes)
            reader.seek(start)
            data = reader.read(tail_bytes)
    except OSError:
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
