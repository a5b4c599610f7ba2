"""Settling runs nobody supervises any more: no run stays `running` for a finished script.

Every `bt` command (and every worker, periodically) looks at the running runs. One whose
supervisor (checked by pid *and* create time) is gone is settled from what its folder and the
process table say:
- the exit record is there: the script's true end (exit code, time, resources) is recorded,
  validated as its supervisor would have;
- the script still runs: it stays `running` (cancellable, and ended if it outlives its time-out
  or a cancel request);
- neither: `failed`, supervisor lost, with what was found.
A run executed on a Dask cluster whose `bt worker --dask` died is `failed` ("executor lost").
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from btmanager.lifecycle import exitrecord
from btmanager.lifecycle.exitrecord import ExitRecord
from btmanager.lifecycle.serving import DASK_EXECUTOR
from btmanager.lifecycle.state import RunStates
from btmanager.registry.db import Registry
from btmanager.registry.model import FailureKind, Run, Status
from btmanager.timeutil import SYSTEM_CLOCK, Clock, parse_iso

if TYPE_CHECKING:
    from btmanager.execution import Backend

# A claimed run whose worker died before its supervisor recorded itself is given this long
# (the supervisor may be about to record itself) before it is settled as lost.
CLAIM_GRACE = 10.0


def report_for(run: Run, record: ExitRecord) -> dict[str, Any] | None:
    """The validation a run's end calls for: none for cancelled runs, unstarted scripts, lost
    folders and runs submitted with --no-validate."""
    if (
        not run.validate
        or run.cancel_requested
        or record.cancelled is not None
        or record.launch_error is not None
        or record.internal_error is not None
        or record.folder_lost
    ):
        return None
    from btmanager.lifecycle.supervise import validate_run_folder

    return validate_run_folder(run)


def metrics_for(run: Run, report: dict[str, Any] | None) -> dict[str, float] | None:
    """summary.csv's numeric metrics, stored whenever a run is validated."""
    if report is None:
        return None
    from btmanager.validation.metrics import read_metrics

    return read_metrics(Path(run.output_dir))


def _age(run: Run, clock: Clock) -> float:
    started = parse_iso(run.started_at)
    return (clock.now() - started).total_seconds() if started else 0.0


def unsupervised(runs: list[Run], backend: Backend, clock: Clock = SYSTEM_CLOCK) -> list[Run]:
    """The running runs that may need settling (cheap: process checks only, no writes)."""
    found = []
    for run in runs:
        supervisor = run.supervisor_identity
        if supervisor is not None:
            if not backend.is_alive(supervisor):
                found.append(run)
            continue
        watcher = run.worker_identity
        if watcher is not None and backend.is_alive(watcher):
            continue  # about to start its supervisor
        if _age(run, clock) >= CLAIM_GRACE:
            found.append(run)
    return found


def settle(registry: Registry, backend: Backend, clock: Clock = SYSTEM_CLOCK) -> list[str]:
    """Settle the running runs whose supervisor is gone; the ids whose status changed."""
    states = RunStates(registry, clock)
    changed: list[str] = []
    for stale in unsupervised(registry.runs_with_status(Status.RUNNING), backend, clock):
        run = registry.get(stale.run_id)  # again: it may have ended meanwhile
        if run.status != Status.RUNNING:
            continue
        if settle_one(states, run, backend, clock) is not None:
            changed.append(run.run_id)
    return changed


def settle_one(
    states: RunStates, run: Run, backend: Backend, clock: Clock = SYSTEM_CLOCK
) -> Run | None:
    record = exitrecord.read(Path(run.output_dir))
    if record is not None:
        report = report_for(run, record)
        return states.end(run.run_id, record, report, metrics_for(run, report))
    if run.executor == DASK_EXECUTOR:
        # Its supervisor is the `bt worker --dask` that submitted it, and the script runs
        # elsewhere (its pid means nothing here). While that process lives, it records the end;
        # once it has died, its Dask task has ended the tree.
        executor = run.supervisor_identity
        if executor is not None and backend.is_alive(executor):
            return None
        return states.lose(
            run.run_id,
            f"executor lost: the bt worker --dask that ran it (pid {run.supervisor_pid}) died",
        )
    script = run.script_identity
    supervisor = f"supervisor (pid {run.supervisor_pid})"
    if script is not None and backend.is_alive(script):
        # Nobody watches this script any more: act on what its supervisor would have.
        if run.cancel_requested:
            backend.terminate(script, run.run_id, run.cancel_grace or run.grace_seconds)
            message = "cancelled by user (supervisor had died)"
            return states.lose(run.run_id, message, FailureKind.CANCELLED)
        started = parse_iso(run.started_at)
        timeout = run.timeout_seconds
        if timeout is not None and started and (clock.now() - started).total_seconds() > timeout:
            backend.terminate(script, run.run_id, run.grace_seconds)
            message = f"timed out after {timeout:g} s (supervisor had died)"
            return states.lose(run.run_id, message, FailureKind.TIMEOUT)
        return None
    if script is None:
        # It may have started the script in the instant before it died, too early to record
        # the pid: end whatever carries the run's marker rather than leave it untracked.
        backend.terminate(None, run.run_id, run.grace_seconds)
        if run.supervisor_pid is None:
            who = f"worker (pid {run.worker_pid})" if run.worker_pid else "its worker"
            return states.lose(run.run_id, f"{who} died before the run started")
        return states.lose(run.run_id, f"{supervisor} died before the script started")
    return states.lose(
        run.run_id,
        f"supervisor died; exit status unknown (supervisor pid {run.supervisor_pid} and script "
        f"pid {run.pid} are no longer running)",
    )
