"""Interfaces of the execution seam (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, Protocol

from btmanager.registry.model import ProcessIdentity


class LaunchSpec(NamedTuple):
    """Everything needed to start one run's script."""

    argv: list[str]
    cwd: Path
    env: dict[str, str]
    log_path: Path
    run_id: str
    nice: int | None = None


class Outcome(NamedTuple):
    """How a script ended. `exit_code` is minus the signal number when killed by a signal."""

    exit_code: int
    peak_memory_bytes: int | None
    cpu_seconds: float | None


class ScriptProcess(Protocol):
    """A started script, a child of the run's supervisor (the only process that reaps it)."""

    @property
    def identity(self) -> ProcessIdentity: ...

    def poll(self) -> Outcome | None:
        """Reap what has ended (the script, and orphans the supervisor adopted); the script's
        outcome once it has ended."""
        ...

    def sample(self) -> None:
        """Measure the tree's memory now (peak RSS of the whole tree, not only the script)."""
        ...


class TreeStopper(Protocol):
    """Ends a run's process tree without blocking: one SIGTERM each, SIGKILL after the grace."""

    def begin(self) -> None: ...

    def force(self) -> None:
        """Skip the rest of the grace."""
        ...

    def step(self) -> bool:
        """Make progress; True once no process of the tree is left."""
        ...


class Events(Protocol):
    """What a supervisor waits on: child exits, signals sent to it, its watcher's messages."""

    def wait(self, timeout: float) -> list[str]:
        """Block until something happens or `timeout` passes; the watcher's messages, if any
        (`"EOF"` once the watcher is gone)."""
        ...

    def ended(self) -> None:
        """The run's end is recorded in the registry: tell its watcher, which may read it
        while the supervisor finishes (the run folder's run.json, its exit)."""
        ...


class SupervisorHandle(Protocol):
    """A run's supervisor, seen from the process that started it."""

    @property
    def identity(self) -> ProcessIdentity: ...

    def fileno(self) -> int:
        """Readable once the supervisor has something to say or has exited (for select)."""
        ...

    def wait(self, timeout: float) -> bool:
        """True once the run's end is recorded (a watched supervisor says so) or the
        supervisor has exited; `release` then waits for its exit."""
        ...

    def release(self) -> None:
        """Wait for the supervisor to exit, and reap it."""
        ...

    def send(self, message: str) -> None:
        """A message to a watched supervisor (`cancel REASON`, `kill`)."""
        ...


# The supervisor's body: runs in the supervisor process with its events; returns the exit code.
SupervisorMain = Callable[[Events], int]


class Backend(Protocol):
    """Starts supervisors and scripts, and acts on processes other `bt` processes started."""

    def launch_supervisor(
        self, main: SupervisorMain, watched: bool, log_path: Path | None
    ) -> SupervisorHandle:
        """Start `main` in a supervisor process of its own (own session). `watched`: a
        foreground run, whose supervisor ends the run if the watcher dies."""
        ...

    def start_script(self, spec: LaunchSpec) -> ScriptProcess:
        """From inside a supervisor: start the script in a session of its own."""
        ...

    def reap_children(self) -> list[int]:
        """Reap exited children (supervisors a worker started); their pids."""
        ...

    def is_alive(self, process: ProcessIdentity) -> bool: ...

    def signal(self, process: ProcessIdentity, name: str) -> bool:
        """Send SIGTERM/SIGUSR1... to a process if it is still the one recorded."""
        ...

    def terminate(self, process: ProcessIdentity | None, run_id: str, grace: float) -> None:
        """End a run's tree from any process (nobody supervises it): by identity and marker."""
        ...

    def leftovers_exist(self, root: ProcessIdentity, run_id: str) -> bool:
        """From inside a supervisor, once its script is reaped: is anything of the run still
        running (what the script started)?"""
        ...

    def stopper(self, root: ProcessIdentity, run_id: str, grace: float) -> TreeStopper:
        """From inside a supervisor: a stopper for the tree of its script."""
        ...

    def current(self) -> ProcessIdentity:
        """The identity of the calling process."""
        ...
