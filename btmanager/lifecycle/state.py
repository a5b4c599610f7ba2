"""The one owner of run state: every status change of every run happens here.

Each change is one guarded write transaction (read the row, decide, update, under the write
lock, so of two processes racing to change a run exactly one wins) followed by the rewrite of
the run folder's run.json. Times come from an injectable clock. Nothing else in btmanager
updates a run's status.

    queued --claim--> running --end--> completed | failed | cancelled
    queued --cancel_queued--> cancelled
    running --lose--> failed (supervisor lost)          (settling a run nobody watches)
    completed | failed | cancelled --delete--> (gone)  (`bt rm`, `bt gc`)
    (run.json) --restore_many--> as it was recorded     (`bt registry rebuild`)
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from btmanager.lifecycle.exitrecord import ExitRecord
from btmanager.registry.db import Registry
from btmanager.registry.model import FINAL_STATUSES, FailureKind, ProcessIdentity, Run, Status
from btmanager.timeutil import SYSTEM_CLOCK, Clock

MAX_PARALLEL_KEY = "max_parallel"
BEFORE_START = "cancelled before it started"


def default_limit() -> int:
    return os.cpu_count() or 1


class Decision(NamedTuple):
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


def _make_folder(run: Run) -> None:
    """A starting run's folder, if it was queued without one (a sweep's runs are, see
    `RunStates.queue_sweep`). Best effort: if it cannot be made, the start fails and says why."""
    from pathlib import Path

    from btmanager.lifecycle.create import RUN_FOLDER_MODE

    try:
        Path(run.output_dir).mkdir(mode=RUN_FOLDER_MODE, exist_ok=True)
    except OSError:
        pass


# A sweep's environment waits for its runs in one owner-only file beside the registry (never in
# it: it may hold credentials), copied into each run's folder as the run starts, and deleted
# once none of the sweep's runs is queued any more.
SWEEP_ENV_DIR = ".bt-env"


def _sweep_env_path(db_path: Path, sweep_id: str) -> Path:
    return db_path.parent / SWEEP_ENV_DIR / f"{sweep_id}.json"


def save_sweep_environment(db_path: Path, sweep_id: str, env: Mapping[str, str]) -> None:
    import json

    from btmanager.errors import StorageError
    from btmanager.lifecycle.create import NOT_KEPT

    path = _sweep_env_path(db_path, sweep_id)
    kept = {key: value for key, value in env.items() if key not in NOT_KEPT}
    try:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(kept, handle)
    except OSError as exc:
        raise StorageError(f"Cannot write {path}: {exc.strerror or exc}") from None


def sweep_environment_to_run(registry: Registry, run: Run) -> None:
    """Copy the sweep's environment into a starting run's folder (best effort: a run without
    one starts with its worker's environment)."""
    import json

    from btmanager.errors import BtError
    from btmanager.lifecycle.create import save_environment

    assert run.sweep_id is not None
    try:
        env = json.loads(_sweep_env_path(registry.path, run.sweep_id).read_text(encoding="utf-8"))
        if isinstance(env, dict):
            save_environment(Path(run.output_dir), {str(k): str(v) for k, v in env.items()})
    except (OSError, ValueError, BtError):
        pass
    forget_sweep_environment_if_started(registry, run.sweep_id)


def forget_sweep_environment_if_started(registry: Registry, sweep_id: str) -> None:
    try:
        queued = registry.db.execute(
            "SELECT EXISTS (SELECT 1 FROM runs WHERE sweep_id = ? AND status = 'queued')",
            (sweep_id,),
        ).fetchone()[0]
    except sqlite3.Error:
        return
    if not queued:
        try:
            _sweep_env_path(registry.path, sweep_id).unlink()
        except OSError:
            pass


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

    def queue_sweep(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        sweep: Mapping[str, Any],
        after: Sequence[str] = (),
    ) -> None:
        """Queue a sweep's runs (and the sweep) in one transaction, as fast as SQLite inserts.

        `rows` are ready for SQLite, one value per column of `columns` (JSON columns already
        encoded, see `registry.db.dumps`): the caller builds 10 000 of them from what they share.
        Unlike `create_many`, this reads nothing back and touches no file: 10 000 run folders
        and run.json files would cost seconds, several times the inserts themselves. A sweep's
        run gets its folder and its run.json when it starts (see `claim`), which is when they
        first hold anything; until then the registry alone knows the run. The submitter's
        environment is stored once, with the sweep (`sweep["env"]`), and copied into each run
        as it starts.
        """
        if not rows:
            return
        now = self.clock.now_iso()
        sweep_id = sweep["sweep_id"]
        queued = str(Status.QUEUED)
        names = [*columns, "status", "created_at", "sweep_id"]
        env = sweep.get("env")
        if env is not None:
            save_sweep_environment(self.registry.path, sweep_id, env)
        with self.registry.write() as db:
            db.execute(
                "INSERT INTO sweeps (sweep_id, script_path, created_at, max_parallel, count)"
                " VALUES (?, ?, ?, ?, ?)",
                (sweep_id, sweep["script_path"], now, sweep.get("max_parallel"), len(rows)),
            )
            marks = ", ".join("?" for _ in names)
            db.executemany(
                f"INSERT INTO runs ({', '.join(names)}) VALUES ({marks})",
                ((*row, queued, now, sweep_id) for row in rows),
            )
            if after:
                at = list(columns).index("run_id")
                db.executemany(
                    "INSERT OR IGNORE INTO run_after (run_id, after_run_id) VALUES (?, ?)",
                    [(row[at], dependency) for row in rows for dependency in after],
                )

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
        if run_id is None:
            return None
        started = self.registry.get(run_id)
        _make_folder(started)
        if started.sweep_id is not None:
            # A sweep's runs were queued without their environment (see `queue_sweep`).
            sweep_environment_to_run(self.registry, started)
        if self.write_files:
            from btmanager.lifecycle.runfile import write_run_file

            write_run_file(started)
        return started

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
            from btmanager.lifecycle.serving import this_host

            host = this_host()
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
        if not changed:
            return None
        run = self._recorded(run_id)
        if run.sweep_id is not None:
            forget_sweep_environment_if_started(self.registry, run.sweep_id)
        return run

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
        announce: Callable[[], None] | None = None,
    ) -> Run | None:
        """A running run's script ended as `record` says: make the run final.

        `announce` is called once the end is committed, before run.json is rewritten (a
        watcher may read the end meanwhile). Returns the final run, or None if it was
        already final (someone else settled it).
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
        if announce is not None:
            announce()
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

    # --- removing and restoring runs -----------------------------------------------------------

    def delete(self, run_id: str, unless_tagged: str | None = None) -> Run | None:
        """Remove a finished run's row, tags, metrics and dependencies (`bt rm`, `bt gc`).

        Guarded like every change: only a run that is final when the write lock is held goes,
        so a run that was queued or started meanwhile is never removed. Queued runs waiting
        for a failed or cancelled run are cancelled first, as a claim would have, so removing
        the run they waited for cannot let them start. A run tagged `unless_tagged` (`keep`,
        for `bt gc`) stays too, even if tagged a moment ago. Returns the removed run, or None.
        """
        finals = [str(status) for status in FINAL_STATUSES]
        sql = f"DELETE FROM runs WHERE run_id = ? AND status IN ({', '.join('?' for _ in finals)})"
        args: list[Any] = [run_id, *finals]
        if unless_tagged is not None:
            sql += " AND NOT EXISTS (SELECT 1 FROM tags WHERE run_id = ? AND tag = ?)"
            args += [run_id, unless_tagged]
        with self.registry.write() as db:
            dropped = self._cancel_broken_dependents(db)
            run = self.registry.row_in(db, run_id)
            cursor = db.execute(sql, args)
            if cursor.rowcount == 1:
                for table, column in (
                    ("tags", "run_id"),
                    ("metrics", "run_id"),
                    ("run_after", "run_id"),
                    ("run_after", "after_run_id"),
                ):
                    db.execute(f"DELETE FROM {table} WHERE {column} = ?", (run_id,))
            else:
                run = None
        for dropped_id in dropped:
            self._recorded(dropped_id)
        return run

    def restore_many(
        self, rows: Sequence[Mapping[str, Any]], metrics: Mapping[str, Mapping[str, float]]
    ) -> list[str]:
        """Record runs read back from their folders (`bt registry rebuild`), each with the
        status (and tags) its run.json says. Runs already recorded stay as they are; returns
        the ids recorded now. Runs that were running are settled by the next command (from their exit
        record, or as lost), like any run whose supervisor is gone."""
        restored: list[str] = []
        sweeps: dict[str, list[Mapping[str, Any]]] = {}
        with self.registry.write() as db:
            for values in rows:
                run_id = str(values["run_id"])
                if db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
                    continue
                self.registry.insert_in(db, values)
                self._store_metrics(db, run_id, metrics.get(run_id, {}))
                if values.get("sweep_id"):
                    sweeps.setdefault(str(values["sweep_id"]), []).append(values)
                restored.append(run_id)
            for sweep_id, members in sweeps.items():
                db.execute(
                    "INSERT OR IGNORE INTO sweeps (sweep_id, script_path, created_at, count)"
                    " VALUES (?, ?, ?, ?)",
                    (
                        sweep_id,
                        members[0]["script_path"],
                        min(str(member["created_at"]) for member in members),
                        len(members),
                    ),
                )
        return restored
