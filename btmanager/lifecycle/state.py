"""The one owner of run state: every status change of every run happens here.

Each change is one guarded write transaction (read the row, decide, update, under the write
lock, so of two processes racing to change a run exactly one wins) followed by the rewrite of
the run folder's run.json. Times come from an injectable clock. Nothing else in btmanager
updates a run's status.

    queued --claim--> running --end--> completed | failed | cancelled
    queued --cancel_queued--> cancelled
    running --lose--> failed (supervisor lost)          (settling a run nobody watches)
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from btmanager.lifecycle.exitrecord import ExitRecord
from btmanager.registry.db import Registry
from btmanager.registry.model import FailureKind, ProcessIdentity, Run, Status
from btmanager.timeutil import SYSTEM_CLOCK, Clock

MAX_PARALLEL_KEY = "max_parallel"
BEFORE_START = "cancelled before it started"


def default_limit() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class Decision:
    status: Status
    failure_kind: FailureKind | None
    message: str | None


def describe_validation(report: Mapping[str, Any]) -> str:
    errors = list(report.get("errors") or [])
    first = errors[0] if errors else "output is invalid"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"validation errors: {first}{more}"


def decide(run: Run, record: ExitRecord, report: Mapping[str, Any] | None) -> Decision:
    """The final status of a run whose script ended as `record` says."""
    from btmanager.execution.exits import describe_exit

    if run.cancel_requested or record.cancelled:
        # The first cancel request's reason is the run's message (stored with the request).
        reason = (run.error_message if run.cancel_requested else None) or record.cancelled
        return Decision(Status.CANCELLED, FailureKind.CANCELLED, reason or "cancelled by user")
    if record.internal_error is not None:
        message = f"internal error while supervising the run: {record.internal_error}"
        return Decision(Status.FAILED, FailureKind.SUPERVISOR_LOST, message)
    if record.launch_error is not None:
        message = f"could not start the script: {record.launch_error}"
        return Decision(Status.FAILED, FailureKind.LAUNCH, message)
    if record.timed_out is not None:
        return Decision(
            Status.FAILED, FailureKind.TIMEOUT, f"timed out after {record.timed_out:g} s"
        )
    if record.folder_lost:
        message = "run folder disappeared while the script ran"
        return Decision(Status.FAILED, FailureKind.FOLDER_LOST, message)
    code = record.exit_code
    if code is None:
        return Decision(Status.FAILED, FailureKind.SUPERVISOR_LOST, "exit status unknown")
    if code != 0:
        kind = FailureKind.SIGNAL if code < 0 else FailureKind.EXIT_CODE
        return Decision(Status.FAILED, kind, describe_exit(code))
    if report is not None and not report.get("valid", False):
        return Decision(Status.FAILED, FailureKind.VALIDATION, describe_validation(report))
    return Decision(Status.COMPLETED, None, None)


class RunStates:
    """Status changes of the runs in one registry."""

    def __init__(
        self, registry: Registry, clock: Clock = SYSTEM_CLOCK, write_files: bool = True
    ) -> None:
        self.registry = registry
        self.clock = clock
        self.write_files = write_files

    def _recorded(self, run_id: str) -> Run:
        run = self.registry.get(run_id)
        if self.write_files:
            from btmanager.lifecycle.runfile import write_run_file

            write_run_file(run)
        return run

    # --- the parallel limit ------------------------------------------------------------------

    def limit(self) -> int:
        stored = self.registry.setting(MAX_PARALLEL_KEY)
        return int(stored) if stored is not None else default_limit()

    def set_limit(self, value: int) -> None:
        self.registry.set_setting(MAX_PARALLEL_KEY, str(value))

    # --- creation and start --------------------------------------------------------------------

    def create(self, values: Mapping[str, Any], *, running: bool, after: Sequence[str] = ()) -> Run:
        """Record a new run: `queued`, or `running` at once (a foreground run). A queued run
        with `after` starts only once each of those runs has completed."""
        (run,) = self.create_many([values], running=running, after=after)
        return run

    def create_many(
        self,
        rows: Sequence[Mapping[str, Any]],
        *,
        running: bool = False,
        after: Sequence[str] = (),
        sweep: Mapping[str, Any] | None = None,
    ) -> list[Run]:
        """Record runs in one transaction (a sweep of 10 000 costs about one commit)."""
        now = self.clock.now_iso()
        ids: list[str] = []
        with self.registry.write() as db:
            if sweep is not None:
                db.execute(
                    "INSERT INTO sweeps (sweep_id, script_path, created_at, max_parallel, count)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (
                        sweep["sweep_id"],
                        sweep["script_path"],
                        now,
                        sweep.get("max_parallel"),
                        len(rows),
                    ),
                )
            for values in rows:
                row = dict(values)
                row["status"] = str(Status.RUNNING if running else Status.QUEUED)
                row["created_at"] = now
                row["started_at"] = now if running else None
                if sweep is not None:
                    row["sweep_id"] = sweep["sweep_id"]
                self.registry.insert_in(db, row)
                ids.append(str(row["run_id"]))
                for dependency in after:
                    db.execute(
                        "INSERT OR IGNORE INTO run_after (run_id, after_run_id) VALUES (?, ?)",
                        (row["run_id"], dependency),
                    )
        return [self._recorded(run_id) for run_id in ids]

    def claim(self, worker: ProcessIdentity, executor: str | None = None) -> Run | None:
        """Move the next startable queued run to `running`, within the stored limit.

        `executor` ("dask"): the claiming process executes the run elsewhere and is its
        supervisor too (recorded in the same write).

        One IMMEDIATE transaction holds the write lock across the checks and the update, so any
        number of concurrent workers can neither start a run twice nor exceed the global limit
        or a sweep's own cap. Queued runs waiting for a run that failed or was cancelled are
        cancelled on the way ("dependency RUN failed").
        """
        dropped: list[str] = []
        run_id: str | None = None
        with self.registry.write() as db:
            dropped = self._cancel_broken_dependents(db)
            stored = self.registry.setting_in(db, MAX_PARALLEL_KEY)
            limit = int(stored) if stored is not None else default_limit()
            if self.registry.running_count_in(db) < limit:
                run_id = self.registry.next_claimable_in(db)
            if run_id is not None:
                values: dict[str, Any] = {
                    "status": str(Status.RUNNING),
                    "started_at": self.clock.now_iso(),
                    "worker_pid": worker.pid,
                    "worker_create_time": worker.create_time,
                }
                if executor is not None:
                    values["executor"] = executor
                    values["supervisor_pid"] = worker.pid
                    values["supervisor_create_time"] = worker.create_time
                self.registry.update_in(db, run_id, values, (Status.QUEUED,))
        for dropped_id in dropped:
            self._recorded(dropped_id)
        return None if run_id is None else self._recorded(run_id)

    def _cancel_broken_dependents(self, db: sqlite3.Connection) -> list[str]:
        """Cancel queued runs whose dependency failed, and theirs in turn (inside a write)."""
        dropped: list[str] = []
        while broken := self.registry.broken_dependents_in(db):
            for run_id, dependency, status in broken:
                cause = "" if status == Status.FAILED else " (it was cancelled)"
                changed = self.registry.update_in(
                    db,
                    run_id,
                    {
                        "status": str(Status.CANCELLED),
                        "failure_kind": str(FailureKind.DEPENDENCY),
                        "error_message": f"dependency {dependency} failed{cause}",
                        "completed_at": self.clock.now_iso(),
                    },
                    (Status.QUEUED,),
                )
                if changed:
                    dropped.append(run_id)
        return dropped

    def supervised(self, run_id: str, supervisor: ProcessIdentity) -> Run:
        """The run's supervisor process has started (it records itself before the script)."""
        with self.registry.write() as db:
            self.registry.update_in(
                db,
                run_id,
                {
                    "supervisor_pid": supervisor.pid,
                    "supervisor_create_time": supervisor.create_time,
                },
                (Status.RUNNING,),
            )
        return self.registry.get(run_id)

    def script_started(self, run_id: str, script: ProcessIdentity, host: str | None = None) -> Run:
        """The script runs, on `host` (default: this machine)."""
        if host is None:
            import socket

            host = socket.gethostname()
        with self.registry.write() as db:
            self.registry.update_in(
                db,
                run_id,
                {"pid": script.pid, "pid_create_time": script.create_time, "host": host},
                (Status.RUNNING,),
            )
        return self._recorded(run_id)

    # --- cancelling --------------------------------------------------------------------------

    def cancel_queued(self, run_id: str) -> Run | None:
        """A queued run never starts: `cancelled` at once. None if it was not queued."""
        with self.registry.write() as db:
            changed = self.registry.update_in(
                db,
                run_id,
                {
                    "status": str(Status.CANCELLED),
                    "completed_at": self.clock.now_iso(),
                    "error_message": BEFORE_START,
                    "failure_kind": str(FailureKind.CANCELLED),
                },
                (Status.QUEUED,),
            )
        return self._recorded(run_id) if changed else None

    def request_cancel(self, run_id: str, reason: str, grace: float | None = None) -> Run | None:
        """Mark a running run for cancelling; its supervisor ends it. The first request's
        reason (and grace) is kept. None if the run is not running."""
        with self.registry.write() as db:
            run = self.registry.row_in(db, run_id)
            if run is None or run.status != Status.RUNNING:
                return None
            if not run.cancel_requested:
                self.registry.update_in(
                    db,
                    run_id,
                    {"cancel_requested": 1, "error_message": reason, "cancel_grace": grace},
                    (Status.RUNNING,),
                )
        return self.registry.get(run_id)

    # --- the end -----------------------------------------------------------------------------

    def end(
        self,
        run_id: str,
        record: ExitRecord,
        report: Mapping[str, Any] | None,
        metrics: Mapping[str, float] | None = None,
    ) -> Run | None:
        """A running run's script ended as `record` says: make the run final.

        Returns the final run, or None if it was already final (someone else settled it).
        """
        with self.registry.write() as db:
            run = self.registry.row_in(db, run_id)
            if run is None or run.status != Status.RUNNING:
                return None
            decision = decide(run, record, report)
            values: dict[str, Any] = {
                "status": str(decision.status),
                "failure_kind": None
                if decision.failure_kind is None
                else str(decision.failure_kind),
                "error_message": decision.message,
                "exit_code": record.exit_code,
                "completed_at": record.ended_at,
                "peak_memory_bytes": record.peak_memory_bytes,
                "cpu_seconds": record.cpu_seconds,
                # Cancelled runs are not validated: what they left is not a result.
                "validation_results": None if decision.status == Status.CANCELLED else report,
            }
            if record.log_size is not None and record.log_lines is not None:
                values["log_size"] = record.log_size
                values["log_lines"] = record.log_lines
            self.registry.update_in(db, run_id, values, (Status.RUNNING,))
            if report is not None and decision.status != Status.CANCELLED:
                self._store_metrics(db, run_id, metrics or {})
        return self._recorded(run_id)

    @staticmethod
    def _store_metrics(db: sqlite3.Connection, run_id: str, metrics: Mapping[str, float]) -> None:
        db.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
        db.executemany(
            "INSERT INTO metrics (run_id, name, value) VALUES (?, ?, ?)",
            [(run_id, name, value) for name, value in metrics.items()],
        )

    def lose(
        self, run_id: str, message: str, kind: FailureKind = FailureKind.SUPERVISOR_LOST
    ) -> Run | None:
        """Settle a running run whose supervisor is gone without an exit record: `kind` says
        what the settling process found (a requested cancel always wins)."""
        with self.registry.write() as db:
            run = self.registry.row_in(db, run_id)
            if run is None or run.status != Status.RUNNING:
                return None
            status = Status.FAILED
            if run.cancel_requested or kind == FailureKind.CANCELLED:
                status, kind = Status.CANCELLED, FailureKind.CANCELLED
                message = (run.error_message if run.cancel_requested else None) or message
            self.registry.update_in(
                db,
                run_id,
                {
                    "status": str(status),
                    "failure_kind": str(kind),
                    "error_message": message,
                    "completed_at": self.clock.now_iso(),
                },
                (Status.RUNNING,),
            )
        return self._recorded(run_id)

    def revalidate(
        self, run_id: str, report: Mapping[str, Any], metrics: Mapping[str, float] | None = None
    ) -> Run:
        """Store a new validation; a finished run that exited 0 and failed (if at all) only for
        its output follows the new result. Cancelled runs and other failures keep theirs."""
        with self.registry.write() as db:
            run = self.registry.row_in(db, run_id)
            if run is None:
                from btmanager.errors import NotFoundError

                raise NotFoundError(f"No such run: {run_id}")
            values: dict[str, Any] = {"validation_results": dict(report)}
            follows = (
                run.status in (Status.COMPLETED, Status.FAILED)
                and run.exit_code == 0
                and run.failure_kind in (None, FailureKind.VALIDATION)
            )
            if follows:
                valid = bool(report.get("valid", False))
                values["status"] = str(Status.COMPLETED if valid else Status.FAILED)
                values["failure_kind"] = None if valid else str(FailureKind.VALIDATION)
                values["error_message"] = None if valid else describe_validation(report)
            self.registry.update_in(db, run_id, values)
            if run.status != Status.CANCELLED:
                self._store_metrics(db, run_id, metrics or {})
        return self._recorded(run_id)
