"""`run.json`: what a run did, readable from its folder alone (the folder is the source of truth).

Written when the run starts and again when it ends (atomically: temp file + rename), so a reader
never sees half a file and the folder tells the story even without the registry.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from btmanager import __version__
from btmanager.registry.model import Run

RUN_FILE = "run.json"


def write_run_file(run: Run) -> None:
    """Best effort: a run folder the script deleted or made read-only must not crash `bt`."""
    folder = Path(run.output_dir)
    document: dict[str, Any] = {
        **run.to_status_dict(),
        "bt_version": __version__,
        "nice": run.nice,
        "grace_seconds": run.grace_seconds,
        "validate": run.validate,
        "supervisor_pid": run.supervisor_pid,
        # What `bt registry rebuild` needs to record the run again from this file alone.
        "script_resolved": run.script_resolved,
        "rules": run.rules,
        "pid_create_time": run.pid_create_time,
        "supervisor_create_time": run.supervisor_create_time,
        "worker_create_time": run.worker_create_time,
    }
    temp = folder / f".{RUN_FILE}.{os.getpid()}.tmp"
    try:
        temp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        os.replace(temp, folder / RUN_FILE)
    except OSError:
        try:
            temp.unlink(missing_ok=True)
        except OSError:
            pass
