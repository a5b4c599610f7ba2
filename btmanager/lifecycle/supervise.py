"""A run's supervisor: the process that is its script's parent from start to end.

It starts the script, watches it (time-out, cancel requests, its watcher's death, the run
folder vanishing), ends its whole tree when asked (each process gets one SIGTERM, then SIGKILL
after the grace), reaps it, writes the exit record into the run folder, validates the outputs and
records the end in the registry. It is the only process that ever reaps or ends a supervised
script, so the `bt` that started it (a foreground `bt run`, a worker) may die at any moment
without changing the run's outcome.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from btmanager.errors import BtError
from btmanager.lifecycle import exitrecord
from btmanager.lifecycle.create import launch_spec
from btmanager.lifecycle.exitrecord import ExitRecord
from btmanager.lifecycle.state import BEFORE_START, RunStates
from btmanager.logs import LogReader
from btmanager.registry.db import Registry
from btmanager.registry.model import ProcessIdentity, Run
from btmanager.settings import Settings
from btmanager.timeutil import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    from btmanager.execution import Backend, LaunchSpec, Outcome, ScriptProcess
    from btmanager.execution.base import Events, TreeStopper
    from btmanager.execution.early import EarlyChannel

TICK = 0.1  # the longest the supervisor sleeps; a child's exit or a message wakes it at once
REGISTRY_POLL = 1.0  # how often it looks for a `bt cancel` whose signal it may have missed
FOLDER_POLL = 1.0  # how often it checks that the run folder still exists
SAMPLE_AFTER = 0.5  # memory is sampled only for runs that last (wait4 covers short ones)
SAMPLE_EVERY = 0.5
COUNT_EVERY = 0.5  # how often it counts the log's new lines (`bt logs` totals stay cached)
RECORD_RETRY = 1.0  # how often a registry that refuses the end is tried again
# How long a registry that refuses the end (full disk, lock held) is tried. The exit record
# keeps the end for the next `bt` command, but a detached run's supervisor has nothing better to
# do than record it itself as soon as it can; a foreground `bt` waits for its supervisor, so
# that one gives up quickly and lets `bt` report.
PATIENCE_WATCHED = 3.0
PATIENCE_DETACHED = 60.0
PATIENCE_WITHOUT_RECORD = 600.0  # only this process knows how the script ended

WATCHER_GONE = "cancelled: bt was killed"


class SupervisorJob(NamedTuple):
    """What a supervisor needs, fixed before it is forked."""

    db_path: Path
    run: Run
    watched: bool  # a foreground run: the watcher's death cancels it


def validate_run_folder(run: Run) -> dict[str, Any]:
    """Validate a run's folder with the rules recorded at submission."""
    from btmanager.validation.engine import validate_dir
    from btmanager.validation.rules import Rules

    try:
        rules = Rules.from_dict(run.rules) if run.rules is not None else None
        report: dict[str, Any] = validate_dir(Path(run.output_dir), rules, run.params).to_dict()
        return report
    except BtError as exc:  # e.g. the script removed its own output folder
        return {"valid": False, "errors": [str(exc)], "warnings": [], "file_checks": {}}


def prepare_end(run: Run) -> None:
    """Import what the run's end needs (settling; for a validated run its checks and readers,
    ~20 ms) while the script runs, on a core the script leaves idle: the end no longer waits
    for them."""
    from btmanager.execution import exits  # noqa: F401
    from btmanager.lifecycle import settle  # noqa: F401

    if run.validate:
        from btmanager.validation import engine, metrics  # noqa: F401


class Supervision:
    """Watch-and-end of one script, with no registry: start it, watch it (time-out, messages
    from its watcher, the run folder vanishing), end its whole tree when asked, and hand back
    how it ended as an `ExitRecord` (also written into the run folder).

    `Supervisor` adds the registry (cancel requests, start and end recorded); the Dask
    executor's remote side uses it as it is, on a machine that has no registry.
    """

    def __init__(
        self,
        run_id: str,
        run_dir: Path,
        timeout: float | None,
        grace: float,
        backend: Backend,
        events: Events,
        watcher_gone: str | None,
        clock: Clock = SYSTEM_CLOCK,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run_id, self.run_dir = run_id, run_dir
        self.timeout, self.grace = timeout, grace
        self.backend, self.events, self.clock = backend, events, clock
        self.monotonic = monotonic
        # The cancel reason when the watcher's channel closes (None: nobody watches).
        self.watcher_gone = watcher_gone
        self.stop: TreeStopper | None = None
        self.stop_reason: str | None = None  # a cancel (None for a time-out or lost folder)
        self.message_grace: float | None = None  # the grace a watcher's `grace S` asked for
        self.timed_out: float | None = None
        self.folder_lost = False
        self.script: ScriptProcess | None = None
        self.log = LogReader(self.run_dir / "execution.log")

    # --- what a subclass adds ----------------------------------------------------------------

    def _cancel_request(self) -> tuple[str, float | None] | None:
        """A cancel recorded elsewhere than in the messages (reason, grace), or None."""
        return None

    def _spec(self) -> LaunchSpec:
        raise NotImplementedError

    def _supervised(self) -> None:
        """The supervisor runs (before the script starts)."""

    def _script_started(self, script: ScriptProcess) -> None:
        """The script runs."""

    # --- life --------------------------------------------------------------------------------

    def _crashed(self, exc: Exception) -> ExitRecord:
        """A bug must not leave the run `running` nor its tree behind: say so and end it."""
        import traceback

        traceback.print_exc()  # into the run's supervisor log
        error = f"{type(exc).__name__}: {exc}"
        if self.script is not None:
            self.backend.terminate(self.script.identity, self.run_id, 0.0)
        return ExitRecord(None, self.clock.now_iso(), internal_error=error, cancelled=None)

    def _run_script(self) -> ExitRecord:
        self._supervised()
        exitrecord.reserve(self.run_dir)
        before = self._stop_requested_before_start()
        if before is not None:
            return ExitRecord(None, self.clock.now_iso(), cancelled=before)
        try:
            self.script = self.backend.start_script(self._spec())
        except (OSError, ValueError) as exc:  # ValueError: e.g. a NUL byte in an argument
            reason = getattr(exc, "strerror", None) or str(exc)
            return ExitRecord(None, self.clock.now_iso(), launch_error=reason)
        self._script_started(self.script)
        outcome = self._watch(self.script)
        return self._record(outcome)

    def run_to_end(self) -> ExitRecord:
        """Run the script to its end; how it ended, also written into the run folder."""
        try:
            record = self._run_script()
        except Exception as exc:
            record = self._crashed(exc)
        exitrecord.write(self.run_dir, record)
        return record

    def _stop_requested_before_start(self) -> str | None:
        for message in self.events.wait(0):
            reason = self._message_reason(message)
            if reason is not None:
                return reason
        request = self._cancel_request()
        if request is not None:
            return request[0] if request[0] else BEFORE_START
        return None

    def _message_reason(self, message: str) -> str | None:
        """The cancel reason a message or signal carries (None for other messages)."""
        if message == "EOF":
            return self.watcher_gone
        if message.startswith("cancel "):
            return message[len("cancel ") :]
        if message in ("SIGTERM", "kill", "SIGUSR1"):
            request = self._cancel_request()
            return request[0] if request else f"cancelled: supervisor received {message}"
        return None

    def _begin_stop(self, reason: str | None, grace: float | None = None) -> None:
        if self.stop is not None:
            return
        assert self.script is not None
        self.stop_reason = reason
        grace = self.grace if grace is None else grace
        self.stop = self.backend.stopper(self.script.identity, self.run_id, grace)
        self.stop.begin()

    def _handle(self, messages: list[str]) -> None:
        for message in messages:
            if message.startswith("grace "):
                # Sent before a `cancel`: the grace of that cancel (e.g. `bt cancel --grace`).
                try:
                    self.message_grace = max(float(message[len("grace ") :]), 0.0)
                except ValueError:
                    pass
                continue
            if message in ("kill", "SIGUSR1"):
                if self.stop is None:
                    self._begin_stop(self._message_reason(message), 0.0)
                assert self.stop is not None
                self.stop.force()
                continue
            reason = self._message_reason(message)
            if reason is None:
                continue
            grace = self.message_grace
            if message == "SIGTERM":
                request = self._cancel_request()
                grace = request[1] if request else None
            self._begin_stop(reason, grace)

    def _watch(self, script: ScriptProcess) -> Outcome:
        begin = self.monotonic()
        timeout = self.timeout
        next_registry = begin + REGISTRY_POLL
        next_folder = begin + FOLDER_POLL
        next_sample = begin + SAMPLE_AFTER
        next_count = begin + COUNT_EVERY
        outcome: Outcome | None = None
        leftovers_checked = False
        while True:
            outcome = script.poll()
            now = self.monotonic()
            if outcome is not None and self.stop is None and not leftovers_checked:
                leftovers_checked = True
                # The record is written as soon as the script ends, before its leftovers are
                # ended (that may take the grace period), so nothing is lost if we die now.
                exitrecord.write(self.run_dir, self._record(outcome))
                if self.backend.leftovers_exist(script.identity, self.run_id):
                    # What the script left running is still the run's: it ends with the run.
                    self._begin_stop(None)
            if self.stop is not None:
                if self.stop.step() and outcome is not None:
                    return outcome
            elif outcome is not None:
                return outcome
            if outcome is None and self.stop is None:
                if timeout is not None and now - begin >= timeout:
                    self.timed_out = timeout
                    self._begin_stop(None)
                elif now >= next_registry:
                    next_registry = now + REGISTRY_POLL
                    request = self._cancel_request()
                    if request is not None:
                        self._begin_stop(request[0], request[1])
                if self.stop is None and now >= next_folder:
                    next_folder = now + FOLDER_POLL
                    if not self.run_dir.is_dir():
                        self.folder_lost = True
                        self._begin_stop(None)
            if outcome is None and now >= next_sample:
                next_sample = now + SAMPLE_EVERY
                script.sample()
            if now >= next_count:
                next_count = now + COUNT_EVERY
                self._count_log()
            self._handle(self.events.wait(TICK if outcome is None else 0.05))

    def _count_log(self) -> None:
        for _ in self.log.read_new(4 << 20):
            pass

    def _record(self, outcome: Outcome) -> ExitRecord:
        self._count_log()
        return ExitRecord(
            exit_code=outcome.exit_code,
            ended_at=self.clock.now_iso(),
            peak_memory_bytes=outcome.peak_memory_bytes,
            cpu_seconds=outcome.cpu_seconds,
            timed_out=self.timed_out,
            cancelled=self.stop_reason,
            folder_lost=self.folder_lost or not self.run_dir.is_dir(),
            log_size=self.log.offset,
            log_lines=self.log.lines,
        )


class Supervisor(Supervision):
    """A run's supervisor: `Supervision` plus the registry (the start, cancel requests from
    `bt cancel` or a stopping worker, and the end, validated, are recorded there)."""

    def __init__(
        self,
        job: SupervisorJob,
        backend: Backend,
        events: Events,
        clock: Clock = SYSTEM_CLOCK,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        run = job.run
        super().__init__(
            run.run_id,
            Path(run.output_dir),
            run.timeout_seconds,
            run.grace_seconds,
            backend,
            events,
            WATCHER_GONE if job.watched else None,
            clock,
            monotonic,
        )
        self.job = job
        self.run = run
        self.registry: Registry | None = None

    # --- the registry, which may be busy or unwritable at any moment ------------------------

    def _states(self) -> RunStates | None:
        if self.registry is None:
            try:
                # Never create it: a missing registry was moved or deleted, and a new empty one
                # would not know this run (its exit record keeps the end instead).
                self.registry = Registry(self.job.db_path, create=False)
            except BtError:
                return None
        return RunStates(self.registry, self.clock)

    def _try(self, action: str, *args: Any) -> Any:
        states = self._states()
        if states is None:
            return None
        try:
            return getattr(states, action)(*args)
        except BtError:
            return None

    def _cancel_request(self) -> tuple[str, float | None] | None:
        """A cancel recorded in the registry (by `bt cancel` or a stopping worker)."""
        states = self._states()
        if states is None:
            return None
        try:
            run = states.registry.get(self.run.run_id)
        except BtError:
            return None
        if not run.cancel_requested:
            return None
        return run.error_message or "cancelled by user", run.cancel_grace

    def _spec(self) -> LaunchSpec:
        return launch_spec(self.run)

    def _supervised(self) -> None:
        if self.run.supervisor_pid == os.getpid():
            return  # this process recorded the run, and itself with it (an early supervisor)
        self._try("supervised", self.run.run_id, self.backend.current())

    def _script_started(self, script: ScriptProcess) -> None:
        from btmanager.lifecycle.create import forget_environment

        forget_environment(self.run_dir)  # the script has it now; no copy stays on disk
        self._try("script_started", self.run.run_id, script.identity)
        prepare_end(self.run)

    # --- life --------------------------------------------------------------------------------

    def main(self) -> int:
        try:
            return self._finish(self._run_script())
        except Exception as exc:
            return self._finish(self._crashed(exc))

    def _finish(self, record: ExitRecord) -> int:
        from btmanager.lifecycle.create import forget_environment
        from btmanager.lifecycle.settle import metrics_for, report_for

        forget_environment(self.run_dir)
        recorded = exitrecord.write(self.run_dir, record)
        run = self.run
        states = self._states()
        if states is not None:
            try:
                run = states.registry.get(run.run_id)  # a cancel may have come in meanwhile
            except BtError:
                pass
        report = report_for(run, record)
        metrics = metrics_for(run, report)
        patience = PATIENCE_WATCHED if self.job.watched else PATIENCE_DETACHED
        if not recorded and not self.job.watched:
            patience = PATIENCE_WITHOUT_RECORD
        deadline = time.monotonic() + patience
        while True:
            states = self._states()
            if states is not None:
                try:
                    states.end(self.run.run_id, record, report, metrics, self.events.ended)
                    break
                except BtError:
                    pass
            if time.monotonic() >= deadline:
                break  # the exit record keeps the end; the next `bt` command settles it
            time.sleep(RECORD_RETRY)
            if self.registry is not None:
                self.registry.close()
                self.registry = None
        if self.registry is not None:
            self.registry.close()
        return 0


def supervisor_main(job: SupervisorJob, backend: Backend) -> Any:
    """The body a backend runs in the supervisor process."""

    def main(events: Events) -> int:
        return Supervisor(job, backend, events).main()

    return main


def supervisor_log(run: Run) -> Path:
    """Where a run's supervisor writes what it has to say (its folder made if need be)."""
    log = Path(run.output_dir) / exitrecord.STATE_DIR / "supervisor.log"
    try:
        log.parent.mkdir(mode=0o700, exist_ok=True)
    except OSError:
        pass
    return log


def start_supervisor(job: SupervisorJob, backend: Backend) -> Any:
    """Start the run's supervisor process; its handle (see execution.base.SupervisorHandle)."""
    return backend.launch_supervisor(
        supervisor_main(job, backend), job.watched, supervisor_log(job.run)
    )


def serve_early(channel: EarlyChannel, validate: bool) -> int:
    """The body of an early supervisor (see btmanager.execution.early): prepare while `bt`
    starts, record the run it is handed, then supervise it like any other."""
    # What recording the run and starting its script need, then the registry.
    from btmanager import provenance  # noqa: F401
    from btmanager.execution.local import LocalBackend, LocalEvents, log_supervisor_to
    from btmanager.lifecycle import runfile, serving  # noqa: F401
    from btmanager.lifecycle.create import create_run
    from btmanager.lifecycle.request import RunRequest
    from btmanager.registry.model import RUN_FIELDS

    registry = _open_likely_registry()
    # What only the run's end needs, while `bt` is still busy: never once its request waits
    # (the supervisor imports the rest while the script runs; see prepare_end).
    for step in _end_imports(validate):
        if channel.pending():
            break
        step()
    job = channel.receive()
    if not isinstance(job, dict):
        return 0  # `bt` ended without a run for us
    results_dir, db_path, env_max_parallel = job["settings"]
    settings = Settings(Path(results_dir), Path(db_path), env_max_parallel)
    if registry is not None and registry.path != settings.db_path:
        registry.close()  # guessed wrong: `bt` knows better
        registry = None
    try:
        if registry is None:
            registry = Registry(settings.db_path, create=True)
        run = create_run(
            settings,
            RunStates(registry),
            RunRequest.from_plain(job["request"]),
            detached=False,
            watcher=_identity(channel.watcher),
            supervisor=_identity(os.getpid()),
        )
    except Exception:
        # Nothing was recorded: `bt` records the run itself and reports why that fails.
        if registry is not None:
            registry.close()
        channel.reply(None)
        return 0
    try:
        channel.reply({name: getattr(run, name) for name in RUN_FIELDS})
    except ValueError:  # not plain data after all: `bt` reads the run from the registry
        channel.reply(run.run_id)
    log_supervisor_to(supervisor_log(run))
    supervisor = Supervisor(
        SupervisorJob(settings.db_path, run, watched=True),
        LocalBackend(),
        LocalEvents(channel.control_fd, channel.done_fd),
    )
    supervisor.registry = registry
    return supervisor.main()


def _end_imports(validate: bool) -> list[Callable[[], object]]:
    import importlib

    names = ["btmanager.execution.exits", "btmanager.lifecycle.settle"]
    if validate:
        names += ["btmanager.validation.engine", "btmanager.validation.metrics"]
    return [functools.partial(importlib.import_module, name) for name in names]


def _open_likely_registry() -> Registry | None:
    """The registry this `bt run` will most likely record into, opened while `bt` starts: the
    one its command line and environment name, if it exists (never created before `bt` has
    parsed the command line)."""
    import sys

    from btmanager.cmdline import RESULTS_DIR_OPTION, global_value

    try:
        settings = Settings.resolve(global_value(sys.argv[1:], RESULTS_DIR_OPTION))
        return Registry(settings.db_path, create=False)
    except (BtError, OSError, ValueError):
        return None


def _identity(pid: int) -> ProcessIdentity:
    from btmanager.execution.proctree import create_time

    made = create_time(pid)
    return ProcessIdentity(pid, made if made is not None else time.time())
