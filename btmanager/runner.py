"""The life of one run: create it, start its script, watch it, end it, validate, record.

`create_run` records a run (queued for detached runs, running for foreground ones).
`supervise` carries a claimed run from start to its final status; the foreground `bt run` and
every queue worker call the same function, so both behave alike.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from btmanager.command import build_argv, build_env, check_runnable, resolve_script
from btmanager.errors import BtError, StorageError
from btmanager.logs import LOG_FILE, LogReader
from btmanager.runfile import write_run_file
from btmanager.settings import DEFAULT_GRACE, Settings
from btmanager.store import (
    CANCELLED,
    COMPLETED,
    FAILED,
    QUEUED,
    RUNNING,
    ProcessIdentity,
    Registry,
    Run,
)
from btmanager.timeutil import new_run_id, now_iso, utcnow

if TYPE_CHECKING:
    # Annotations only, so `bt` commands that merely import this module skip the backend.
    from btmanager.execution import Backend, LaunchSpec, Outcome, RunningProcess

DEFAULT_DETACHED_NICE = 10
_TICK = 0.1  # how often a watcher mirrors new output; the exit itself wakes it at once
_CANCEL_POLL = 1.0  # how often a watcher looks for a `bt cancel` from another process


@dataclass
class RunRequest:
    """What the user asked `bt run` for, before anything is recorded."""

    script: str
    params: dict[str, str] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)
    cwd: Path = field(default_factory=Path.cwd)
    label: str | None = None
    validate: bool = True
    rules: dict[str, Any] | None = None
    timeout: float | None = None
    grace: float = DEFAULT_GRACE
    priority: int = 0
    nice: int | None = None


class RunObserver(Protocol):
    """Receives what happens during a run (the CLI renders it; workers ignore it)."""

    def started(self, run: Run) -> None: ...

    def output(self, data: bytes) -> None: ...

    def tick(self, elapsed: float) -> None: ...

    def stopping(self, reason: str) -> None: ...

    def finished(self) -> None: ...


class QuietObserver:
    def started(self, run: Run) -> None:
        pass

    def output(self, data: bytes) -> None:
        pass

    def tick(self, elapsed: float) -> None:
        pass

    def stopping(self, reason: str) -> None:
        pass

    def finished(self) -> None:
        pass


class StopRequest:
    """A request to stop a run from inside the supervising process (signal, worker shutdown).

    The first request ends the tree politely (SIGTERM, grace, SIGKILL); a second one forces it.
    """

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.forced = threading.Event()
        self.reason = ""

    def request(self, reason: str) -> None:
        if self.requested.is_set():
            self.forced.set()
        else:
            self.reason = reason
            self.requested.set()


def create_run(
    settings: Settings,
    registry: Registry,
    request: RunRequest,
    *,
    detached: bool,
    supervisor: ProcessIdentity | None = None,
    environ: Mapping[str, str] | None = None,
) -> Run:
    """Resolve the script, make the run folder and record the run.

    A detached run is `queued`; a foreground one is `running` at once (foreground runs start
    immediately and count as active), supervised by `supervisor`.
    """
    env = dict(os.environ if environ is None else environ)
    script = resolve_script(request.script, request.cwd, env)
    check_runnable(script)
    for _attempt in range(5):
        run_id = new_run_id()
        output_dir = settings.run_dir(run_id)
        try:
            output_dir.mkdir(parents=True, exist_ok=False)
            break
        except FileExistsError:
            continue
        except OSError as exc:
            raise StorageError(
                f"Cannot create the run folder {output_dir}: {exc.strerror or exc}"
            ) from None
    else:
        raise StorageError(f"Could not find a free run id in {settings.results_dir}")
    started = now_iso()
    values: dict[str, Any] = {
        "run_id": run_id,
        "script_path": request.script,
        "script_resolved": str(script),
        "params": request.params,
        "extra_args": request.extra_args,
        "command": build_argv(script, request.params, request.extra_args, output_dir, env),
        "cwd": str(request.cwd),
        "output_dir": str(output_dir),
        "status": QUEUED if detached else RUNNING,
        "label": request.label,
        "created_at": started,
        "started_at": None if detached else started,
        "priority": request.priority,
        "detached": int(detached),
        "nice": request.nice,
        "timeout_seconds": request.timeout,
        "grace_seconds": request.grace,
        "validate": int(request.validate),
        "rules": request.rules,
        # A detached run starts later, in a worker another `bt` command may have started: keep
        # the submitter's environment with the run (a foreground run uses it directly).
        "env": env if detached else None,
    }
    if supervisor is not None:
        values["supervisor_pid"] = supervisor.pid
        values["supervisor_create_time"] = supervisor.create_time
    try:
        run = registry.insert(values)
    except BaseException:
        _remove_empty(output_dir)
        raise
    write_run_file(run)
    return run


def _remove_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def launch_spec(run: Run, environ: Mapping[str, str] | None = None) -> LaunchSpec:
    from btmanager.execution import LaunchSpec

    output_dir = Path(run.output_dir)
    base = run.env if run.env is not None else (os.environ if environ is None else environ)
    env = build_env(base, run.run_id, output_dir)
    return LaunchSpec(
        argv=run.command,
        cwd=Path(run.cwd),
        env=env,
        log_path=output_dir / LOG_FILE,
        run_id=run.run_id,
        nice=run.nice,
    )


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {-code} ({name})"
    return f"exit code {code}"


def decide_status(
    outcome: Outcome, report: Mapping[str, Any] | None, timed_out: float | None
) -> tuple[str, str | None]:
    """The final status and error message of a run that ran to an end."""
    if timed_out is not None:
        return FAILED, f"timed out after {timed_out:g} s"
    if outcome.exit_code != 0:
        return FAILED, describe_exit(outcome.exit_code)
    if report is not None and not report.get("valid", False):
        errors = list(report.get("errors") or [])
        first = errors[0] if errors else "output is invalid"
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        return FAILED, f"validation errors: {first}{more}"
    return COMPLETED, None


def validate_run_folder(run: Run) -> dict[str, Any]:
    """Validate a run's folder with the rules recorded at submission."""
    from btmanager.validation.engine import validate_dir
    from btmanager.validation.rules import Rules

    rules = Rules.from_dict(run.rules) if run.rules is not None else None
    try:
        report: dict[str, Any] = validate_dir(Path(run.output_dir), rules, run.params).to_dict()
        return report
    except BtError as exc:  # e.g. the script removed its own output folder
        return {"valid": False, "errors": [str(exc)], "warnings": [], "file_checks": {}}


class _Watch:
    """Watch a started script until it ends, acting on time-outs and stop/cancel requests."""

    def __init__(
        self,
        run: Run,
        process: RunningProcess,
        registry: Registry,
        observer: RunObserver,
        stop: StopRequest,
    ) -> None:
        self.run, self.process, self.registry = run, process, registry
        self.observer, self.stop = observer, stop
        self.log = LogReader(Path(run.output_dir) / LOG_FILE)
        self.timed_out: float | None = None
        self._stopper: threading.Thread | None = None

    def _end_tree(self, reason: str) -> None:
        if self._stopper is None:
            self.observer.stopping(reason)
            self._stopper = threading.Thread(
                target=self.process.terminate, args=(self.run.grace_seconds,), daemon=True
            )
            self._stopper.start()

    def _pump(self) -> None:
        for chunk in self.log.read_new():
            self.observer.output(chunk)

    def until_exit(self) -> Outcome:
        start = time.monotonic()
        timeout = self.run.timeout_seconds
        next_cancel_check = start + _CANCEL_POLL
        forced = False
        while True:
            outcome = self.process.wait(_TICK)
            self._pump()
            now = time.monotonic()
            self.observer.tick(now - start)
            if outcome is not None:
                break
            if self.stop.forced.is_set() and not forced:
                forced = True
                self.observer.stopping("killing at once")
                self.process.kill()
            elif self.stop.requested.is_set():
                self._end_tree(self.stop.reason)
            if timeout is not None and self.timed_out is None and now - start >= timeout:
                self.timed_out = timeout
                self._end_tree(f"timed out after {timeout:g} s")
            if now >= next_cancel_check:
                next_cancel_check = now + _CANCEL_POLL
                if self.registry.cancel_requested(self.run.run_id):
                    self._end_tree("cancelled from another bt process")
        if self._stopper is not None:
            self._stopper.join()
        else:
            # What the script left running in the background is still the run's: a supervisor
            # leaves nothing untracked, so it ends with the run.
            self.process.end_leftovers(self.run.grace_seconds)
        self._pump()
        return outcome


def supervise(
    registry: Registry,
    run: Run,
    backend: Backend,
    observer: RunObserver | None = None,
    stop: StopRequest | None = None,
    environ: Mapping[str, str] | None = None,
) -> Run:
    """Start a `running` run's script, watch it to the end and record the final state."""
    observer = observer or QuietObserver()
    stop = stop or StopRequest()
    if registry.cancel_requested(run.run_id) or stop.requested.is_set():
        registry.request_cancel(run.run_id, "cancelled before it started")
        registry.finish(run.run_id, CANCELLED, "cancelled before it started")
        return _final(registry, run.run_id)
    try:
        process = backend.start(launch_spec(run, environ))
    except (OSError, ValueError) as exc:  # ValueError: e.g. a NUL byte in an argument
        reason = getattr(exc, "strerror", None) or exc
        registry.finish(run.run_id, FAILED, f"could not start the script: {reason}")
        return _final(registry, run.run_id)
    registry.set_process(run.run_id, process.identity)
    run = registry.get(run.run_id)
    write_run_file(run)
    observer.started(run)
    watch = _Watch(run, process, registry, observer, stop)
    outcome = watch.until_exit()
    observer.finished()
    if stop.requested.is_set():
        registry.request_cancel(run.run_id, f"cancelled: {stop.reason}")
    report = validate_run_folder(run) if run.validate else None
    status, error = decide_status(outcome, report, watch.timed_out)
    facts: dict[str, Any] = {
        "exit_code": outcome.exit_code,
        "peak_memory_bytes": outcome.peak_memory_bytes,
        "cpu_seconds": outcome.cpu_seconds,
        "log_size": watch.log.offset,
        "log_lines": watch.log.lines,
    }
    if report is not None:
        facts["validation_results"] = report
    registry.finish(run.run_id, status, error, facts)
    return _final(registry, run.run_id)


def _final(registry: Registry, run_id: str) -> Run:
    run = registry.get(run_id)
    write_run_file(run)
    return run


def elapsed_since(iso_start: str | None) -> float:
    from btmanager.timeutil import parse_iso

    begin = parse_iso(iso_start)
    return (utcnow() - begin).total_seconds() if begin else 0.0
