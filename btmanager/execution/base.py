"""Interfaces of the execution seam (see the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from btmanager.store import ProcessIdentity


@dataclass(frozen=True)
class LaunchSpec:
    """Everything needed to start one run's script."""

    argv: list[str]
    cwd: Path
    env: dict[str, str]
    log_path: Path
    run_id: str
    nice: int | None = None


@dataclass(frozen=True)
class Outcome:
    """How a script ended. `exit_code` is minus the signal number when killed by a signal."""

    exit_code: int
    peak_memory_bytes: int | None
    cpu_seconds: float | None


class RunningProcess(Protocol):
    """A started script, watched by the process that started it."""

    @property
    def identity(self) -> ProcessIdentity: ...

    def wait(self, timeout: float | None = None) -> Outcome | None:
        """The outcome once the script has ended; None if `timeout` passed first."""
        ...

    def terminate(self, grace: float) -> None:
        """End the whole tree: ask politely, then force after `grace` seconds."""
        ...

    def kill(self) -> None:
        """End the whole tree at once."""
        ...

    def end_leftovers(self, grace: float) -> bool:
        """After the script's main process ended: end what it left running. True if any."""
        ...


class Backend(Protocol):
    """Starts scripts and acts on processes other `bt` processes started."""

    def start(self, spec: LaunchSpec) -> RunningProcess: ...

    def is_alive(self, process: ProcessIdentity) -> bool: ...

    def terminate(self, process: ProcessIdentity | None, run_id: str, grace: float) -> None:
        """End a run's tree from any process (cancel, reconciliation): by identity and marker."""
        ...

    def current(self) -> ProcessIdentity:
        """The identity of the calling process (recorded as a run's supervisor)."""
        ...
