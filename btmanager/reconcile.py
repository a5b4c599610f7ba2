"""Crash-proof status: no run stays `running` after the process that watched it died.

Called at the start of every `bt` command (and periodically by workers). A running run whose
supervisor (checked by pid *and* create time) is gone is either still alive as a script (left
`running`, cancellable, and ended if it outlives its time-out or a cancel request) or finished
unseen, and then it becomes `failed` with what was found.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from btmanager.store import CANCELLED, FAILED, RUNNING, Registry, Run
from btmanager.timeutil import parse_iso, utcnow

if TYPE_CHECKING:
    from btmanager.execution import Backend


def _overdue(run: Run) -> bool:
    started = parse_iso(run.started_at)
    if run.timeout_seconds is None or started is None:
        return False
    return (utcnow() - started).total_seconds() > run.timeout_seconds


def reconcile(registry: Registry, backend: Backend) -> list[str]:
    """Settle runs whose supervisor died; return the ids whose status changed."""
    changed: list[str] = []
    for run in registry.runs_with_status(RUNNING):
        supervisor = run.supervisor_identity
        if supervisor is not None and backend.is_alive(supervisor):
            continue
        # Read again: the list may predate the supervisor's last writes (its script's pid).
        run = registry.get(run.run_id)
        if run.status != RUNNING:
            continue
        script = run.script_identity
        if script is not None and backend.is_alive(script):
            # Nobody watches this script any more: act on what its watcher would have.
            if run.cancel_requested:
                backend.terminate(script, run.run_id, run.grace_seconds)
                status, message = CANCELLED, "cancelled by user (supervisor had died)"
            elif _overdue(run):
                backend.terminate(script, run.run_id, run.grace_seconds)
                status = FAILED
                message = f"timed out after {run.timeout_seconds:g} s (supervisor had died)"
            else:
                continue
        elif script is None:
            # It may have started the script in the instant before it died, too early to record
            # the pid: end whatever carries the run's marker rather than leave it untracked.
            backend.terminate(None, run.run_id, run.grace_seconds)
            status = FAILED
            message = f"supervisor (pid {run.supervisor_pid}) died before the script started"
        else:
            status = FAILED
            message = (
                f"supervisor died; exit status unknown (supervisor pid {run.supervisor_pid} "
                f"and script pid {run.pid} are no longer running)"
            )
        if registry.finish(run.run_id, status, message):
            from btmanager.runfile import write_run_file

            changed.append(run.run_id)
            write_run_file(registry.get(run.run_id))
    return changed
