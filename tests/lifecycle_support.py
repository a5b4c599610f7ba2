"""Support for the lifecycle tests (no tests): reading a run's end without `bt`."""

from __future__ import annotations

import json
from typing import Any

from tests.helpers import wait_for
from tests.queue_support import QueueLab


def final_row(lab: QueueLab, run_id: str, timeout: float = 20) -> dict[str, Any]:
    """The registry row once the run is final, read without `bt` (a `bt` command could settle
    the run itself; these tests want to see who recorded it)."""

    def final() -> dict[str, Any] | None:
        row = lab.rows().get(run_id)
        return row if row and row["status"] not in ("queued", "running") else None

    row: dict[str, Any] = wait_for(final, timeout)
    return row


def exit_record(lab: QueueLab, run_id: str) -> dict[str, Any] | None:
    """The run's exit record (<run>/.bt/exit.json) once its supervisor wrote the script's end;
    None before (the file is reserved full of blanks)."""
    try:
        raw = (lab.run_dir(run_id) / ".bt" / "exit.json").read_bytes().strip()
    except OSError:
        return None
    try:
        record: dict[str, Any] | None = json.loads(raw) if raw else None
    except ValueError:
        return None  # being written
    return record
