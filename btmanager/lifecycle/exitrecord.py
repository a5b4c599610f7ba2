"""The exit record: how a run's script ended, kept in its folder by the run's supervisor.

It is the truth about a finished script, whatever happened to the registry or to the `bt`
process that watched it: any later `bt` command settles the run from it. The file is reserved
(written full size) before the script starts, and later overwritten in place with one write, so
recording an exit needs no new disk blocks and still works when the script filled the disk.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

STATE_DIR = ".bt"  # bt's own files inside a run folder
EXIT_RECORD = "exit.json"
RECORD_SIZE = 4096


class ExitRecord(NamedTuple):
    """How a script ended. `exit_code` is minus the signal number when a signal killed it."""

    exit_code: int | None
    ended_at: str
    peak_memory_bytes: int | None = None
    cpu_seconds: float | None = None
    timed_out: float | None = None  # the time-out in seconds, when it ended the run
    cancelled: str | None = None  # the cancel reason, when a cancel ended the run
    launch_error: str | None = None  # the script could not be started
    folder_lost: bool = False  # the run folder vanished while the script ran
    internal_error: str | None = None  # a bug in bt's supervisor ended the run
    log_size: int | None = None
    log_lines: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExitRecord:
        known = {name: data[name] for name in cls._fields if name in data}
        return cls(**known)


def record_path(run_dir: Path) -> Path:
    return run_dir / STATE_DIR / EXIT_RECORD


def reserve(run_dir: Path) -> Path | None:
    """Create the record full of blanks (read as "not ended yet"); None if it cannot be made."""
    path = record_path(run_dir)
    try:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b" " * RECORD_SIZE)
        finally:
            os.close(fd)
    except OSError:
        return None
    return path


def write(run_dir: Path, record: ExitRecord) -> bool:
    """Overwrite the reserved record in place (one write); returns whether it was written."""
    data = json.dumps(record.to_dict(), separators=(",", ":")).encode()
    path = record_path(run_dir)
    if len(data) < RECORD_SIZE:
        data = data.ljust(RECORD_SIZE)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            written = os.pwrite(fd, data, 0)
            if written == len(data) and len(data) > RECORD_SIZE:
                os.ftruncate(fd, len(data))
        finally:
            os.close(fd)
    except OSError:
        return False
    return written == len(data)


def read(run_dir: Path) -> ExitRecord | None:
    """The record, or None if the script has not ended (or nothing could be recorded)."""
    try:
        raw = record_path(run_dir).read_bytes().strip()
    except OSError:
        return None
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None  # torn or damaged: treat as not written
    return ExitRecord.from_dict(data) if isinstance(data, dict) else None
