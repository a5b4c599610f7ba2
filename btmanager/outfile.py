"""Writing a file the user named (`--csv`, `--png`): a new file or a regular one, atomically.

A symlink, a directory or a device at the destination is refused (exit 2) rather than replaced
or written through.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from btmanager.errors import UsageError


def check_destination(path: Path) -> None:
    """Refuse a destination that is not a regular file (or absent), before any work."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise UsageError(f"Cannot write {path}: no such folder {path.parent}") from None
        return
    except OSError as exc:
        raise UsageError(f"Cannot write {path}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(info.st_mode):
        raise UsageError(f"Refusing to write {path}: it is a symlink")
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"Refusing to write {path}: it is not a regular file")


def temporary_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.bt-partial")


def write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder, then rename."""
    check_destination(path)
    temp = temporary_for(path)
    try:
        with open(temp, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(temp, path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise UsageError(f"Cannot write {path}: {exc.strerror or exc}") from None
