"""The core operations behind every `bt` command, returning plain data and never printing.

The CLI renders what these return (Rich, plain text or JSON); an HTTP layer can call the same
methods and return the same JSON shapes.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

from btmanager.errors import BtError, NoRegistry, NotFoundError, UsageError
from btmanager.registry.model import FINAL_STATUSES, STATUSES, FailureKind, Run, Selection, Status
from btmanager.settings import Settings
from btmanager.timeutil import SYSTEM_CLOCK, Clock, now_iso

# Every `bt` command builds a Service, most only to read the registry: what only running,
# tailing or listing files needs is imported where it is used (start-up time).
if TYPE_CHECKING:
    from btmanager.compare import CompareOptions, Table
    from btmanager.execution import Backend
    from btmanager.execution.base import SupervisorHandle
    from btmanager.execution.early import EarlySupervisor
    from btmanager.keeping.rebuild import Rebuild
    from btmanager.keeping.remove import Removal
    from btmanager.lifecycle.dask_worker import DaskWorker
    from btmanager.lifecycle.queue import Worker
    from btmanager.lifecycle.request import RunRequest
    from btmanager.lifecycle.state import RunStates
    from btmanager.lifecycle.watch import RunObserver, StopRequest
    from btmanager.plot import Curve
    from btmanager.registry.db import Registry
    from btmanager.results import ResultFile
    from btmanager.sweeps.progress import Progress
    from btmanager.sweeps.submit import Planned, SweepRequest, SweepResult
    from btmanager.validation.report import Report

QUEUED, RUNNING = Status.QUEUED, Status.RUNNING

_WAIT_POLL = 0.2


class LogTail(NamedTuple):
    run_id: str
    lines: list[str]
    total_lines: int

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "lines": self.lines, "total_lines": self.total_lines}


class LogLine(NamedTuple):
    number: int  # the first line of a log is 1
    text: str


class CancelResult(NamedTuple):
    success: bool
    message: str
    run: Run

    def to_dict(self) -> dict[str, Any]:
        return {"success": self.success, "message": self.message}


class Listing(NamedTuple):
    run: Run
    files: list[ResultFile]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run.run_id,
            "output_dir": self.run.output_dir,
            "files": [item.to_dict() for item in self.files],
        }


class ValidationOutcome(NamedTuple):
    report: Report
    name: str  # the run id, or the folder validated
    run: Run | None


class Service:
    """One per command invocation; opens the registry on first use.

    Reads use a read-only connection (they work on a full disk and never wait for a writer);
    housekeeping (settling runs whose supervisor died, starting a worker for queued runs) is
    tried with a separate writable connection and skipped, never failing the read, when the
    registry cannot be written.
    """

    def __init__(
        self,
        settings: Settings,
        backend: Backend | None = None,
        spawn_workers: bool = True,
        clock: Clock = SYSTEM_CLOCK,
        reader: Registry | None = None,
    ) -> None:
        self.settings = settings
        self._backend = backend
        # Workers themselves must not spawn workers on start-up (that would chain forever).
        self.spawn_workers = spawn_workers
        self.clock = clock
        # A reader given is used as it is, without the housekeeping of an open (its owner
        # does that elsewhere).
        self._registry: Registry | None = reader
        self._writable: Registry | None = None
        self.housekeeping_problem: str | None = None
        # A foreground run's request given to the early supervisor, and that supervisor.
        self._handed_over: tuple[RunRequest, EarlySupervisor] | None = None
        # Supervisors of foreground runs whose end is recorded, reaped when this closes: they
        # finish (run.json, exit) while the end is shown.
        self._finishing: list[SupervisorHandle] = []

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
        if self._registry is None:
            from btmanager.registry.db import Registry

            self._registry = Registry(self.settings.db_path, create=False, readonly=True)
            self._housekeeping(self._registry)
        return self._registry

    def _writable_registry(self) -> Registry:
        """The registry for commands that record: created on first use."""
        if self._writable is None:
            from btmanager.registry.db import Registry

            self._writable = Registry(self.settings.db_path, create=True)
            self._housekeeping(self._writable)
        return self._writable

    def states(self) -> RunStates:
        from btmanager.lifecycle.state import RunStates

        return RunStates(self._writable_registry(), self.clock)

    def _housekeeping(self, reader: Registry) -> None:
        """Settle runs whose supervisor died, and make sure queued runs have something to
        execute them (e.g. after a reboot). Skipped, never failing the command, when the
        registry cannot be written (full disk, held lock)."""
        try:
            if reader.any_running():
                from btmanager.lifecycle.settle import unsupervised

                stale = unsupervised(reader.runs_with_status("running"), self.backend, self.clock)
                if stale:
                    from btmanager.lifecycle.settle import settle

                    settle(self._writable_registry(), self.backend, self.clock)
            if self.spawn_workers:
                self.ensure_worker(reader)
        except (BtError, OSError) as exc:
            self.housekeeping_problem = str(exc)

    def ensure_worker(self, reader: Registry | None = None) -> None:
        from btmanager.lifecycle.queue import ensure_worker
        from btmanager.lifecycle.state import MAX_PARALLEL_KEY, default_limit

        registry = reader or self._writable_registry()
        stored = registry.setting(MAX_PARALLEL_KEY)
        limit = int(stored) if stored is not None else default_limit()
        ensure_worker(self.settings, registry, limit)

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

    def _reread(self, run_id: str) -> Run:
        """A run as it is now (after a write of this process, or another's)."""
        registry = self._writable if self._writable is not None else self.registry
        return registry.get(run_id)

    def close(self) -> None:
        while self._finishing:
            self._finishing.pop().release()
        for registry in (self._registry, self._writable):
            if registry is not None:
                registry.close()
        self._registry = self._writable = None

    # --- the parallel limit ---------------------------------------------------------------

    def parallel(self, value: int | None = None) -> int:
        """The stored parallel limit, after setting it to `value` if given."""
        from btmanager.lifecycle.state import MAX_PARALLEL_KEY, default_limit

        if value is not None:
            check_limit(value, "the parallel limit")
            self.states().set_limit(value)
            self.ensure_worker()
            return value
        try:
            stored = self.registry.setting(MAX_PARALLEL_KEY)
        except NoRegistry:
            stored = None
        return int(stored) if stored is not None else default_limit()

    def _store_env_limit(self) -> None:
        """BT_MAX_PARALLEL in the environment of a command that queues work sets the limit."""
        raw = self.settings.env_max_parallel
        if raw is None:
            return
        try:
            value = int(raw)
        except ValueError:
            raise UsageError(
                f"BT_MAX_PARALLEL must be a whole number from 1 to {MAX_LIMIT}, not {raw!r}"
            ) from None
        check_limit(value, "BT_MAX_PARALLEL")
        states = self.states()
        if states.limit() != value:
            states.set_limit(value)

    # --- runs ---------------------------------------------------------------------------

    def run_foreground(
        self,
        request: RunRequest,
        observer: RunObserver,
        stop: StopRequest,
        meanwhile: Callable[[], None] | None = None,
    ) -> Run:
        """Run in the foreground, watched by this process; `meanwhile` is called once while
        the script runs (the caller's preparations for showing the end)."""
        from btmanager.lifecycle.watch import watch

        started = self._start_early(request)
        if started is not None:
            run, supervisor = started
        else:
            from btmanager.lifecycle.create import create_run
            from btmanager.lifecycle.supervise import SupervisorJob, start_supervisor

            run = create_run(
                self.settings,
                self.states(),
                request,
                detached=False,
                watcher=self.backend.current(),
            )
            # No registry connection may cross the fork that starts the supervisor.
            self.close()
            job = SupervisorJob(self.settings.db_path, run, watched=True)
            supervisor = start_supervisor(job, self.backend)

        def prepare() -> None:
            # Open the registry for reading the end now, not after it (the fork is behind us).
            with contextlib.suppress(BtError):
                self.registry  # noqa: B018
            if meanwhile is not None:
                meanwhile()

        watch(run, supervisor, observer, stop, prepare)
        self._finishing.append(supervisor)
        # Reading it again also does the housekeeping: this run's slot is free again, so a
        # worker is started if queued runs can start now.
        final = self.registry.get(run.run_id)
        if final.status == "running":
            # The supervisor could not write the registry (full disk, held lock): its exit
            # record holds the end; record it now if the registry lets us.
            from btmanager.lifecycle.settle import settle_one

            try:
                settled = settle_one(self.states(), final, self.backend, self.clock)
            except BtError:
                settled = None
            final = settled or final
        return final

    def hand_over(self, request: RunRequest) -> None:
        """Give a foreground run's request to this `bt`'s early supervisor now (see
        btmanager.execution.early): it records the run while this process gets ready to watch
        it. `run_foreground` with the same request takes its answer; without this call it
        hands the request over itself."""
        from btmanager.execution import early

        handle = early.take()
        if handle is None:
            return
        plain = request.to_plain()
        sent = False
        # Only for the local backend this process would use (another one is not forked).
        if plain is not None and self._backend is None:
            where = self.settings
            job = {
                "settings": [str(where.results_dir), str(where.db_path), where.env_max_parallel],
                "request": plain,
            }
            try:
                sent = handle.send(job)
            except ValueError:  # not plain data (marshal): nothing was sent
                pass
        if sent:
            self._handed_over = (request, handle)
        else:
            handle.discard()

    def _start_early(self, request: RunRequest) -> tuple[Run, SupervisorHandle] | None:
        """The run as the early supervisor recorded it, and that supervisor; None if there is
        none, or it recorded nothing."""
        if self._handed_over is None or self._handed_over[0] is not request:
            self.hand_over(request)
        if self._handed_over is None or self._handed_over[0] is not request:
            return None
        handle = self._handed_over[1]
        self._handed_over = None
        # Imported before waiting for the answer, not after it: this process is idle until then.
        from btmanager.execution.local import LocalSupervisor

        reply = handle.reply()
        if reply is None:
            return None
        supervisor = LocalSupervisor(handle.pid, handle.control_fd, handle.done_fd)
        if isinstance(reply, dict):
            return Run(**reply), supervisor
        return self.registry.get(str(reply)), supervisor

    def submit(self, request: RunRequest) -> Run:
        from btmanager.lifecycle.create import DEFAULT_DETACHED_NICE, create_run

        if request.nice is None:
            request.nice = DEFAULT_DETACHED_NICE
        self._store_env_limit()
        run = create_run(self.settings, self.states(), request, detached=True)
        try:
            self.ensure_worker()
        except (BtError, OSError) as exc:
            # The run is recorded: it starts with the next worker any `bt` command starts.
            self.housekeeping_problem = str(exc)
        return run

    def status(self, ref: str) -> Run:
        return self._find(ref)

    def selection(
        self,
        sweep: str | None = None,
        label: str | None = None,
        tags: Sequence[str] | None = None,
        status: str | None = None,
        script: str | None = None,
    ) -> Selection:
        """The selection options of a command, checked (status) and resolved (sweep prefix,
        script path)."""
        if status is not None and status not in STATUSES:
            raise UsageError(f"Unknown status {status!r}; expected one of {', '.join(STATUSES)}")
        sweep_id = None
        if sweep is not None:
            try:
                sweep_id = self.registry.resolve_sweep(sweep)
            except NoRegistry:
                raise NotFoundError(f"No sweep matches '{sweep}'") from None
        resolved = os.path.normpath(Path(script).expanduser().absolute()) if script else None
        return Selection(sweep_id, label, tuple(tags or ()), status, script, resolved)

    def list_runs(
        self, selection: Selection, limit: int | None, offset: int = 0
    ) -> tuple[int, list[Run]]:
        if limit is not None and limit < 0:
            raise UsageError("--limit must be 0 or more")
        if offset < 0:
            raise UsageError("offset must be 0 or more")
        try:
            registry = self.registry
        except NoRegistry:
            return 0, []
        return registry.select(selection, limit, offset)

    def selected_ids(self, refs: Sequence[str], selection: Selection) -> list[str]:
        """The runs named (ids, prefixes, latest) plus those the selection matches, in order,
        each once. A selection that matches nothing is an error when no run is named."""
        ids = [self._find(ref).run_id for ref in refs]
        if not selection.is_empty:
            try:
                _total, runs = self.registry.select(selection, None)
            except NoRegistry:
                runs = []
            if not runs and not ids:
                raise NotFoundError("No runs match the selection")
            ids += [run.run_id for run in reversed(runs)]
        if not ids:
            raise UsageError("Name at least one run, or select runs (--sweep, --label, --tag, ...)")
        return list(dict.fromkeys(ids))

    def health(self) -> dict[str, Any]:
        """The registry's and the results folder's health, and the queue's counts.

        Unhealthy (with the reasons): a results path that is not a readable folder, a registry
        that fails SQLite's quick_check or cannot be opened. Worth saying but not unhealthy:
        a registry that could not be written just now (busy, full disk).
        """
        problems: list[str] = []
        notes: list[str] = []
        root = self.settings.results_dir
        if root.exists() and not root.is_dir():
            problems.append(f"the results path {root} is a file, not a folder")
        elif root.is_dir() and not os.access(root, os.R_OK | os.X_OK):
            problems.append(f"the results folder {root} cannot be read")
        counts = dict.fromkeys(STATUSES, 0)
        limit: int | None = None
        dask = None
        if not problems:
            try:
                registry = self.registry
                verdict = registry.quick_check()
                if verdict != "ok":
                    problems.append(f"the registry {self.settings.db_path} is corrupt: {verdict}")
                counts = registry.count_by_status()
                limit = self.parallel()
                from btmanager.lifecycle.serving import serving

                dask = serving(registry)
            except NoRegistry:
                limit = self.parallel()
            except BtError as exc:
                problems.append(str(exc))
        if self.housekeeping_problem:
            notes.append(self.housekeeping_problem)
        data: dict[str, Any] = {
            "status": "unhealthy" if problems else "healthy",
            "timestamp": now_iso(),
            "active_runs": counts[RUNNING],
            "queued_runs": counts[QUEUED],
            "registry": str(self.settings.db_path),
            "registry_exists": self.settings.db_path.exists(),
            "results_dir": str(root),
            "max_parallel": limit,
        }
        if dask is not None:
            data["dask"] = dask.health()
        if problems:
            data["reason"] = "; ".join(problems)
        if notes:
            data["problem"] = "; ".join(notes)
        return data

    def cancel(self, ref: str, grace: float) -> CancelResult:
        """Cancel a queued run at once, or have a running run's supervisor end it; returns
        once the run is final (its tree ended)."""
        run = self._find(ref)
        if not self._begin_cancel(run.run_id, grace):
            current = self._reread(run.run_id)
            return CancelResult(False, f"Run already {current.status}", current)
        self._end_cancel(run.run_id, grace)
        return CancelResult(True, "Run cancelled", self._reread(run.run_id))

    def cancel_many(self, run_ids: Sequence[str], grace: float) -> int:
        """Cancel every queued and running run of `run_ids` (together, not one after the
        other); how many were cancelled."""
        begun = [run_id for run_id in run_ids if self._begin_cancel(run_id, grace)]
        for run_id in begun:
            self._end_cancel(run_id, grace)
        return len(begun)

    def _begin_cancel(self, run_id: str, grace: float) -> bool:
        """Cancel a queued run, or ask a running run's supervisor to; False if it was final."""
        states = self.states()
        if states.cancel_queued(run_id) is not None:
            return True
        current = states.request_cancel(run_id, "cancelled by user", grace)
        if current is None:
            return False
        from btmanager.lifecycle.serving import DASK_EXECUTOR

        supervisor = current.supervisor_identity
        # A Dask run's supervisor is the `bt worker --dask` serving many runs: it reads the
        # request from the registry (a signal would stop it).
        if supervisor is not None and current.executor != DASK_EXECUTOR:
            self.backend.signal(supervisor, "SIGTERM")
        return True

    def _end_cancel(self, run_id: str, grace: float) -> None:
        """Wait for a cancelled run to be final; end its tree here if nobody else can."""
        final = self._await_final(run_id, grace + 15.0)
        if final is not None:
            return
        current = self._reread(run_id)
        if current.status != "running":
            return
        self.backend.terminate(current.script_identity, current.run_id, grace)
        from btmanager.lifecycle.settle import settle_one

        states = self.states()
        if settle_one(states, current, self.backend, self.clock) is None:
            states.lose(current.run_id, "cancelled by user", FailureKind.CANCELLED)

    def _await_final(self, run_id: str, patience: float) -> Run | None:
        """The run once final; None if nobody supervises it (any more) or `patience` ran out."""
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            run = self._reread(run_id)
            if run.is_final:
                return run
            supervisor = run.supervisor_identity
            if supervisor is None or not self.backend.is_alive(supervisor):
                time.sleep(_WAIT_POLL / 4)  # it may have recorded the end just now
                run = self._reread(run_id)
                return run if run.is_final else None
            time.sleep(_WAIT_POLL / 4)
        return None

    def wait(self, ids: Sequence[str], timeout: float | None) -> tuple[list[Run], bool]:
        """Block until every run is final; (runs, timed_out)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        next_housekeeping = time.monotonic() + 2.0
        final: dict[str, Run] = {}
        while True:
            pending = [run_id for run_id in ids if run_id not in final]
            for run in self.registry.get_many(pending):
                if run.status in FINAL_STATUSES:
                    final[run.run_id] = run
            if len(final) == len(ids):
                return [final[run_id] for run_id in ids], False
            if deadline is not None and time.monotonic() >= deadline:
                return self.registry.get_many(ids), True
            if time.monotonic() >= next_housekeeping:
                self._housekeeping(self.registry)
                next_housekeeping = time.monotonic() + 2.0
            time.sleep(_WAIT_POLL)

    # --- logs and files -------------------------------------------------------------------

    def logs(self, ref: str, lines: int) -> LogTail:
        if lines < 0:
            raise UsageError("--lines must be 0 or more")
        from btmanager.logs import (
            count_lines,
            mark_for,
            open_log,
            read_mark,
            tail_lines,
            write_mark,
        )

        run = self._find(ref)
        folder = Path(run.output_dir)
        if run.status == QUEUED and not folder.exists():
            return LogTail(run.run_id, [], 0)  # a sweep's queued runs get their folder later
        handle = open_log(folder)
        if handle is None:
            return LogTail(run.run_id, [], 0)  # not started yet: no log, no lines
        with handle:
            try:
                # The count mark, not the registry's (size, lines): only the mark can tell
                # whether the part counted before was rewritten since (see btmanager.logs).
                mark = read_mark(folder)
                reader = count_lines(handle, mark)
                tail = tail_lines(handle, lines, end=reader.offset)
                counted = mark_for(handle, reader)
            except OSError as exc:
                raise NotFoundError(f"Cannot read {run.output_dir}/execution.log: {exc}") from None
        if counted != mark:
            write_mark(folder, counted)  # only a cache: where it cannot be written, recount
        return LogTail(run.run_id, tail, reader.lines)

    def follow(self, ref: str, lines: int) -> Iterator[str]:
        """The last `lines` lines, then new lines as they are written, until the run ends."""
        from btmanager.logs import LineSplitter, LogReader, complete_lines_end, iter_tail, open_log

        run = self._find(ref)
        registry = self.registry
        folder = Path(run.output_dir)

        def opened() -> BinaryIO | None:
            if registry.get(run.run_id).status == QUEUED and not folder.exists():
                return None  # a sweep's queued runs get their folder when they start
            return open_log(folder)

        handle = opened()
        while handle is None and registry.get(run.run_id).status in (QUEUED, RUNNING):
            time.sleep(_WAIT_POLL)
            handle = opened()
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

    def follow_numbered(
        self, ref: str, after: int | None = None, last: int | None = None
    ) -> Generator[LogLine | None, None, None]:
        """The log's lines with their numbers (the first line is 1), then new lines as they
        are written, until the run is final.

        Starts after line `after` (resuming a stream), else with the last `last` lines, else
        at the first line. Yields None each time it has caught up and waits for more, so a
        consumer can stop (close the generator) or flush there. Memory stays bounded whatever
        the log's size: the start is found by counting line breaks, lines are read forwards
        from there and each is cut as `follow` cuts it.
        """
        from btmanager.logs import (
            LineSplitter,
            LogReader,
            count_lines,
            open_log,
            read_mark,
            tail_start,
        )

        run = self._find(ref)
        registry = self.registry
        folder = Path(run.output_dir)
        handle = open_log(folder)
        while handle is None and registry.get(run.run_id).status in (QUEUED, RUNNING):
            yield None
            time.sleep(_WAIT_POLL)
            handle = open_log(folder)
        if handle is None:
            return
        with handle:
            try:
                counted = count_lines(handle, read_mark(folder))
            except OSError as exc:
                raise NotFoundError(f"Cannot read {run.output_dir}/execution.log: {exc}") from None
            if after is not None:
                first = after + 1
            elif last is not None:  # counting an unfinished last line, as `logs` does
                first = max(1, counted.lines - max(last, 0) + 1)
            else:
                first = 1
            # Read from the start of line `first` (or of the unfinished last line): every line
            # from there is complete or still being written, so none is lost, repeated or cut.
            number = min(first, counted.newlines + 1)
            start = tail_start(handle, counted.lines - number + 1, counted.offset)
            follower = LogReader(None, start, handle=handle)
            splitter = LineSplitter()
            while True:
                finished = registry.get(run.run_id).status in FINAL_STATUSES
                for chunk in follower.read_new():
                    for text in splitter.feed(chunk):
                        if number >= first:
                            yield LogLine(number, text)
                        number += 1
                if finished:
                    break
                yield None
                time.sleep(_WAIT_POLL)
            if splitter.pending and number >= first:
                yield LogLine(number, splitter.finish())

    def results(self, ref: str) -> Listing:
        from btmanager.results import list_files

        run = self._find(ref)
        if run.status == QUEUED and not Path(run.output_dir).exists():
            return Listing(run, [])  # a sweep's queued runs get their folder when they start
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
        from btmanager.validation.engine import validate_dir
        from btmanager.validation.rules import Rules, load_rules

        rules = load_rules(rules_file, cwd)
        folder = Path(target)
        if folder.is_dir():
            # A folder the user names is the one they chose, even through a symlink; a run's
            # folder (below) is refused when its script replaced it by one.
            report = validate_dir(folder, rules, allow_symlinked_folder=True)
            return ValidationOutcome(report, str(folder), None)
        if folder.exists():
            raise UsageError(f"{target} is not a directory (give a run or a folder of outputs)")
        try:
            run = self._find(target)
        except NotFoundError:
            raise NotFoundError(f"No such directory or run: {target}") from None
        if rules is None and run.rules is not None:
            rules = Rules.from_dict(run.rules)
        report = validate_dir(Path(run.output_dir), rules, run.params)
        from btmanager.validation.metrics import read_metrics

        metrics = read_metrics(Path(run.output_dir))
        updated = self.states().revalidate(run.run_id, report.to_dict(), metrics)
        return ValidationOutcome(report, run.run_id, updated)

    # --- queue ------------------------------------------------------------------------------

    def worker(
        self,
        max_parallel: int | None,
        idle_exit: float | None,
        drain: bool,
        on_event: Callable[[str], None] | None = None,
    ) -> Worker:
        from btmanager.lifecycle.queue import Worker

        self._before_worker(max_parallel, store_env_limit=not drain)
        return Worker(self.settings, self.backend, idle_exit, drain, on_event)

    def _before_worker(self, max_parallel: int | None, store_env_limit: bool) -> None:
        """A worker's limit stored (`--max-parallel`, else BT_MAX_PARALLEL), the registry
        migrated and settled, then closed: the worker opens its own connection (and forks)."""
        if max_parallel is not None:
            self.parallel(max_parallel)
        elif store_env_limit:
            self._store_env_limit()
        self._writable_registry()
        self.close()

    def dask_worker(
        self,
        address: str,
        max_parallel: int | None,
        idle_exit: float | None,
        on_event: Callable[[str], None] | None = None,
    ) -> DaskWorker:
        """`bt worker --dask ADDRESS`: the queue executed on a Dask cluster."""
        import importlib.util

        from btmanager.lifecycle.dask_worker import EXTRA_MISSING, DaskWorker, parse_address

        # A bad address or a missing extra is refused before anything changes.
        parse_address(address)
        if importlib.util.find_spec("distributed") is None:
            raise UsageError(EXTRA_MISSING)
        self._before_worker(max_parallel, store_env_limit=True)
        return DaskWorker(self.settings, address, self.backend, idle_exit, on_event)

    # --- many runs: sweeps, compare, plots (the work is in btmanager.sweeps, compare, plot) ---

    def sweep(self, request: SweepRequest) -> SweepResult:
        """Queue a sweep's runs (detached, one transaction) and make sure a worker runs them."""
        from btmanager.lifecycle.create import DEFAULT_DETACHED_NICE
        from btmanager.sweeps.submit import plan, submit_sweep

        if request.max_parallel is not None:
            check_limit(request.max_parallel, "--max-parallel")
        if request.base.nice is None:
            request.base.nice = DEFAULT_DETACHED_NICE
        request.after = [self._find(ref).run_id for ref in request.after]
        planned = plan(request)  # every refusal before anything is stored
        self._store_env_limit()
        result = submit_sweep(self.settings, self.states(), request, planned)
        try:
            self.ensure_worker()
        except (BtError, OSError) as exc:
            self.housekeeping_problem = str(exc)
        return result

    def sweep_plan(self, request: SweepRequest) -> Planned:
        """What `sweep` would queue (`--dry-run`)."""
        from btmanager.sweeps.submit import dry_run

        if request.max_parallel is not None:
            check_limit(request.max_parallel, "--max-parallel")
        for ref in request.after:
            self._find(ref)
        return dry_run(request)

    def follow_sweep(self, sweep_id: str, on_change: Callable[[Progress], None]) -> Progress:
        """Report a sweep's progress on each change until all its runs are final."""
        from btmanager.sweeps import progress, store

        return progress.follow(
            lambda: store.counts(self.registry, sweep_id),
            on_change,
            lambda: self._housekeeping(self.registry),
        )

    def sweeps(self) -> list[dict[str, Any]]:
        from btmanager.sweeps.store import list_sweeps

        try:
            return list_sweeps(self.registry)
        except NoRegistry:
            return []

    def compare(self, refs: Sequence[str], selection: Selection, options: CompareOptions) -> Table:
        """The compare table of the runs named plus those selected (completed ones unless the
        selection names a status)."""
        from btmanager.compare import Table, compare

        ids = [self._find(ref).run_id for ref in refs]
        try:
            registry = self.registry
        except NoRegistry:
            return Table([], [], [])  # nothing recorded yet: nothing to compare
        return compare(registry, self._writable_or_none, ids, selection, options)

    def _writable_or_none(self) -> Registry | None:
        """The writable registry, or None when it cannot be written (full disk, read-only)."""
        try:
            return self._writable_registry()
        except (BtError, OSError):
            return None

    def curves(self, refs: Sequence[str]) -> list[Curve]:
        """The equity curves (pnl.csv) of the runs, in the order named."""
        from btmanager.plot import read_curve

        return [read_curve(self._find(ref)) for ref in refs]

    # --- keeping runs: details, rerun, tags and notes, rm and gc, rebuild (btmanager.keeping) --

    def details(self, run: Run) -> dict[str, Any]:
        """What `bt status` shows beside the run's row: summary.csv's metrics as stored, and
        for a failed run the last error line of its log (read from the end, bounded)."""
        try:
            metrics = self.registry.metrics_of(run.run_id)
        except NoRegistry:
            metrics = {}
        log_error = None
        if run.status == Status.FAILED:
            from btmanager.logerror import last_error_line
            from btmanager.logs import LOG_FILE

            log_error = last_error_line(Path(run.output_dir), LOG_FILE)
        return {"metrics": metrics, "log_error": log_error}

    def run_ids(self, refs: Sequence[str]) -> list[str]:
        """The full ids of the runs named (ids, prefixes, latest), each once."""
        return list(dict.fromkeys(self._find(ref).run_id for ref in refs))

    def rerun_request(
        self,
        ref: str,
        assignments: Sequence[str],
        flags: Sequence[str],
        label: str | None,
        exact: bool,
    ) -> RunRequest:
        from btmanager.keeping.rerun import rerun_request

        return rerun_request(self._find(ref), assignments, flags, label, exact, os.environ)

    def tag(self, ref: str, tags: Sequence[str], remove: bool) -> Run:
        from btmanager.keeping.annotate import change_tags

        return change_tags(self._writable_registry(), self._find(ref), tags, remove)

    def note(self, ref: str, text: str, append: bool) -> Run:
        from btmanager.keeping.annotate import set_note

        return set_note(self._writable_registry(), self._find(ref), text, append)

    def remove(self, refs: Sequence[str], selection: Selection, cancel: bool) -> Removal:
        """Remove the runs named or selected; queued and running ones are refused (nothing is
        removed) unless `cancel`, which cancels them first."""
        from btmanager.errors import RefusedError
        from btmanager.keeping.remove import remove_runs
        from btmanager.settings import DEFAULT_GRACE

        ids = self.selected_ids(refs, selection)
        runs = self.registry.get_many(ids)
        active = [run.run_id for run in runs if not run.is_final]
        if active and not cancel:
            raise RefusedError(
                f"{len(active)} of these runs are queued or running ({', '.join(active[:5])}"
                f"{' ...' if len(active) > 5 else ''}); cancel them first, or add --cancel. "
                "Nothing was removed"
            )
        if active:
            self.cancel_many(active, DEFAULT_GRACE)
            runs = self.registry.get_many(ids)
        return remove_runs(self.settings, self.states(), runs)

    def gc(
        self,
        older_than: str | None,
        statuses: str | None,
        keep_last: int | None,
        dry_run: bool,
    ) -> Removal:
        """Remove the finished runs the filters match, never one tagged `keep`."""
        from btmanager.keeping.annotate import KEEP_TAG
        from btmanager.keeping.remove import Removal, parse_age, parse_statuses, remove_runs
        from btmanager.timeutil import iso

        if older_than is None and statuses is None and keep_last is None:
            raise UsageError(
                "Say what to remove: --older-than AGE, --status S and/or --keep-last N"
            )
        if keep_last is not None and keep_last < 0:
            raise UsageError("--keep-last must be 0 or more")
        cutoff = None if older_than is None else iso(self.clock.now() - parse_age(older_than))
        chosen = parse_statuses(statuses)
        try:
            registry = self.registry
        except NoRegistry:
            return Removal(dry_run=dry_run)
        runs = registry.removable(
            ended_before=cutoff, statuses=chosen, keep_last=keep_last, protect_tag=KEEP_TAG
        )
        states = None if dry_run else self.states()
        return remove_runs(self.settings, states, runs, unless_tagged=KEEP_TAG)

    def rebuild_registry(self) -> Rebuild:
        from btmanager.keeping.rebuild import rebuild

        self.close()  # no connection of ours may hold the file about to be set aside
        return rebuild(self.settings, self.clock)


MAX_LIMIT = 1024


def check_limit(value: int, name: str) -> None:
    if not 1 <= value <= MAX_LIMIT:
        raise UsageError(f"{name} must be a whole number from 1 to {MAX_LIMIT}, not {value}")
