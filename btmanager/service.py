"""The core operations behind every `bt` command, returning plain data and never printing.

The CLI renders what these return (Rich or JSON); a later HTTP layer (`bt serve`) can call the
same methods and return the same JSON shapes, which are the guide's API shapes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from btmanager.errors import NotFoundError, UsageError
from btmanager.settings import Settings
from btmanager.store import FINAL_STATUSES, QUEUED, RUNNING, STATUSES, NoRegistry, Registry, Run
from btmanager.timeutil import now_iso

# Every `bt` command builds a Service, most only to read the registry: what only running,
# tailing or listing files needs is imported where it is used (start-up time, issue 5).
if TYPE_CHECKING:
    from btmanager.execution import Backend
    from btmanager.results import ResultFile
    from btmanager.runner import RunObserver, RunRequest, StopRequest
    from btmanager.validate import Report
    from btmanager.worker import Worker

_WAIT_POLL = 0.2


@dataclass
class LogTail:
    run_id: str
    lines: list[str]
    total_lines: int

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "lines": self.lines, "total_lines": self.total_lines}


@dataclass
class CancelResult:
    success: bool
    message: str
    run: Run

    def to_dict(self) -> dict[str, Any]:
        return {"success": self.success, "message": self.message}


@dataclass
class Listing:
    run: Run
    files: list[ResultFile]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run.run_id,
            "output_dir": self.run.output_dir,
            "files": [item.to_dict() for item in self.files],
        }


@dataclass
class ValidationOutcome:
    report: Report
    name: str  # the run id, or the folder validated
    run: Run | None


class Service:
    """One per command invocation; opens the registry on first use."""

    def __init__(
        self, settings: Settings, backend: Backend | None = None, spawn_workers: bool = True
    ) -> None:
        self.settings = settings
        self._backend = backend
        # Workers themselves must not spawn workers on start-up (that would chain forever).
        self.spawn_workers = spawn_workers
        self._registry: Registry | None = None

    @property
    def backend(self) -> Backend:
        """Loaded on first use: commands that only read the registry never need it."""
        if self._backend is None:
            from btmanager.execution import default_backend

            self._backend = default_backend()
        return self._backend

    @property
    def registry(self) -> Registry:
        """The registry for commands that only read: a missing file is `NoRegistry`."""
        return self._open(create=False)

    def _writable_registry(self) -> Registry:
        """The registry for commands that record runs: created on first use."""
        return self._open(create=True)

    def _open(self, create: bool) -> Registry:
        if self._registry is None:
            from btmanager.reconcile import reconcile
            from btmanager.worker import ensure_worker

            self._registry = Registry(self.settings.db_path, create=create)
            # Housekeeping every command does: settle runs whose watcher died, and make sure
            # queued runs have something to execute them (e.g. after a reboot).
            # (Only running runs can need it; without any, skip loading the execution backend.)
            if self._registry.runs_with_status(RUNNING):
                reconcile(self._registry, self.backend)
            if self.spawn_workers:
                try:
                    ensure_worker(self.settings, self._registry)
                except OSError:
                    pass  # e.g. a read-only results folder: reading must still work
        return self._registry

    def _find(self, ref: str) -> Run:
        """The run `ref` names (id, prefix or latest), in an existing registry."""
        try:
            registry = self.registry
        except NoRegistry:
            raise NotFoundError(
                f"No run matches '{ref}': nothing is recorded under {self.settings.results_dir} "
                "yet (see --results-dir / BT_RESULTS_DIR)"
            ) from None
        return registry.resolve(ref)

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()
            self._registry = None

    # --- runs ---------------------------------------------------------------------------

    def run_foreground(self, request: RunRequest, observer: RunObserver, stop: StopRequest) -> Run:
        from btmanager.runner import create_run, supervise
        from btmanager.worker import ensure_worker

        registry = self._writable_registry()
        run = create_run(
            self.settings, registry, request, detached=False, supervisor=self.backend.current()
        )
        try:
            return supervise(registry, run, self.backend, observer, stop)
        finally:
            # This run's slot is free again: queued runs may start now.
            ensure_worker(self.settings, registry)

    def submit(self, request: RunRequest) -> Run:
        from btmanager.runner import DEFAULT_DETACHED_NICE, create_run
        from btmanager.worker import ensure_worker

        if request.nice is None:
            request.nice = DEFAULT_DETACHED_NICE
        registry = self._writable_registry()
        run = create_run(self.settings, registry, request, detached=True)
        ensure_worker(self.settings, registry)
        return run

    def status(self, ref: str) -> Run:
        return self._find(ref)

    def list_runs(
        self, status: str | None, script: str | None, limit: int
    ) -> tuple[int, list[Run]]:
        if status is not None and status not in STATUSES:
            raise UsageError(f"Unknown status {status!r}; expected one of {', '.join(STATUSES)}")
        if limit < 0:
            raise UsageError("--limit must be 0 or more")
        try:
            registry = self.registry
        except NoRegistry:
            return 0, []
        resolved = os.path.normpath(Path(script).expanduser().absolute()) if script else None
        return registry.list_runs(status, script, limit, resolved)

    def health(self) -> dict[str, Any]:
        try:
            counts = self.registry.count_by_status()
        except NoRegistry:
            counts = dict.fromkeys(STATUSES, 0)
        return {
            "status": "healthy",
            "timestamp": now_iso(),
            "active_runs": counts[RUNNING],
            "queued_runs": counts[QUEUED],
            "registry": str(self.settings.db_path),
            "results_dir": str(self.settings.results_dir),
            "max_parallel": self.settings.max_parallel,
        }

    def cancel(self, ref: str, grace: float) -> CancelResult:
        run = self._find(ref)
        registry = self.registry
        from btmanager.runfile import write_run_file

        if registry.cancel_queued(run.run_id):
            final = registry.get(run.run_id)
            write_run_file(final)  # no supervisor will ever write it
            return CancelResult(True, "Run cancelled", final)
        if registry.request_cancel(run.run_id):
            current = registry.get(run.run_id)
            self.backend.terminate(current.script_identity, current.run_id, grace)
            # The run's own watcher records the outcome as `cancelled`; if it is gone, we do,
            # and then nobody else will rewrite run.json either.
            if registry.finish(current.run_id, "cancelled", "cancelled by user"):
                supervisor = current.supervisor_identity
                if supervisor is None or not self.backend.is_alive(supervisor):
                    write_run_file(registry.get(current.run_id))
            return CancelResult(True, "Run cancelled", registry.get(run.run_id))
        current = registry.get(run.run_id)
        return CancelResult(False, f"Run already {current.status}", current)

    def wait(self, refs: Sequence[str], timeout: float | None) -> tuple[list[Run], bool]:
        """Block until every run is final; (runs, timed_out)."""
        from btmanager.reconcile import reconcile
        from btmanager.worker import ensure_worker

        ids = [self._find(ref).run_id for ref in refs]
        registry = self.registry
        deadline = None if timeout is None else time.monotonic() + timeout
        next_reconcile = time.monotonic() + 2.0
        while True:
            runs = [registry.get(run_id) for run_id in ids]
            if all(run.status in FINAL_STATUSES for run in runs):
                return runs, False
            if deadline is not None and time.monotonic() >= deadline:
                return runs, True
            if time.monotonic() >= next_reconcile:
                reconcile(registry, self.backend)
                ensure_worker(self.settings, registry)
                next_reconcile = time.monotonic() + 2.0
            time.sleep(_WAIT_POLL)

    # --- logs and files -------------------------------------------------------------------

    def logs(self, ref: str, lines: int) -> LogTail:
        if lines < 0:
            raise UsageError("--lines must be 0 or more")
        from btmanager.logs import count_lines, open_log, tail_lines

        run = self._find(ref)
        registry = self.registry
        handle = open_log(Path(run.output_dir))
        if handle is None:
            return LogTail(run.run_id, [], 0)  # not started yet: no log, no lines
        with handle:
            try:
                reader = count_lines(handle, run.log_size, run.log_lines)
                tail = tail_lines(handle, lines, end=reader.offset)
            except OSError as exc:
                raise NotFoundError(f"Cannot read {run.output_dir}/execution.log: {exc}") from None
        if reader.offset != run.log_size:
            try:
                registry.set_log_cache(run.run_id, reader.offset, reader.lines)
            except Exception:
                pass
        return LogTail(run.run_id, tail, reader.lines)

    def follow(self, ref: str, lines: int) -> Iterator[str]:
        """The last `lines` lines, then new lines as they are written, until the run ends."""
        from btmanager.logs import LineSplitter, LogReader, complete_lines_end, iter_tail, open_log

        run = self._find(ref)
        registry = self.registry
        folder = Path(run.output_dir)
        handle = open_log(folder)
        while handle is None and registry.get(run.run_id).status in (QUEUED, RUNNING):
            time.sleep(_WAIT_POLL)
            handle = open_log(folder)
        if handle is None:
            return
        with handle:
            # Tail the complete lines up to a fixed point, then stream from exactly there: no
            # line is lost, repeated or cut in two. One descriptor throughout, opened safely.
            offset = complete_lines_end(handle)
            yield from iter_tail(handle, lines, end=offset)
            follower = LogReader(None, offset, handle=handle)
            splitter = LineSplitter()
            while True:
                finished = registry.get(run.run_id).status in FINAL_STATUSES
                for chunk in follower.read_new():
                    yield from splitter.feed(chunk)
                if finished:
                    break
                time.sleep(_WAIT_POLL)
            if splitter.pending:
                yield splitter.finish()

    def results(self, ref: str) -> Listing:
        from btmanager.results import list_files

        run = self._find(ref)
        return Listing(run, list_files(Path(run.output_dir)))

    def result_file(self, ref: str, name: str) -> BinaryIO:
        """A file of the run folder, open for reading (never one outside the folder)."""
        from btmanager.results import open_result

        run = self._find(ref)
        return open_result(Path(run.output_dir), name)

    @staticmethod
    def copy_result(source: BinaryIO, destination: Path, force: bool = False) -> int:
        """Copy an open result file to a path: a regular file or a new one, atomically."""
        import shutil

        from btmanager.safe_files import write_atomic

        return write_atomic(
            destination,
            lambda writer: shutil.copyfileobj(source, writer, 1024 * 1024),
            force=force,
            option="--output",
        )

    # --- validation -----------------------------------------------------------------------

    def validate(self, target: str, rules_file: Path | None, cwd: Path) -> ValidationOutcome:
        """Validate a directory, or a run (storing the result; its status may follow)."""
        from btmanager.execution import Outcome
        from btmanager.rules import Rules, load_rules
        from btmanager.runner import decide_status
        from btmanager.validate import validate_dir

        rules = load_rules(rules_file, cwd)
        folder = Path(target)
        if folder.is_dir():
            return ValidationOutcome(validate_dir(folder, rules), str(folder), None)
        if folder.exists():
            raise UsageError(f"{target} is not a directory (give a run or a folder of outputs)")
        try:
            run = self._find(target)
        except NotFoundError:
            raise NotFoundError(f"No such directory or run: {target}") from None
        registry = self.registry
        if rules is None and run.rules is not None:
            rules = Rules.from_dict(run.rules)
        report = validate_dir(Path(run.output_dir), rules, run.params)
        new_status, error = None, None
        # Only a finished run that exited 0 and failed (if at all) for its output follows.
        follows = run.error_message is None or run.error_message.startswith("validation errors")
        if run.status in ("completed", "failed") and run.exit_code == 0 and follows:
            new_status, error = decide_status(Outcome(0, None, None), report.to_dict(), None)
        registry.store_validation(run.run_id, report.to_dict(), new_status, error)
        updated = registry.get(run.run_id)
        from btmanager.runfile import write_run_file

        write_run_file(updated)  # the folder keeps telling the same story as the registry
        return ValidationOutcome(report, run.run_id, updated)

    # --- queue ------------------------------------------------------------------------------

    def worker(
        self,
        slots: int,
        idle_exit: float | None,
        drain: bool,
        on_event: Callable[[str], None] | None = None,
    ) -> Worker:
        from btmanager.worker import Worker

        self._writable_registry()  # migrate and reconcile before the threads start
        limit = slots if not drain else self.settings.max_parallel
        return Worker(self.settings, self.backend, slots, limit, idle_exit, drain, on_event)
