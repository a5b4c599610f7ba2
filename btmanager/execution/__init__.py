"""The execution seam: starting, watching and stopping a run's processes.

The rest of btmanager only uses the interfaces defined in `base`. `LocalBackend` runs scripts
on this machine, each under a supervisor process of its own; a cluster backend can stand beside
it by implementing the same interfaces. All POSIX-specific calls (fork, sessions, process
groups, signals, wait4) live in `local`, `early`, `proctree` and `spawn`, with psutil-based
paths for other platforms where one exists.

Importing this package imports nothing else: `bt` forks a foreground run's early supervisor
(`early`) before anything is imported. The interfaces are loaded on first use.
"""

from __future__ import annotations

# Not `typing.TYPE_CHECKING`: that would import typing (mypy reads the name the same way).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from btmanager.execution.base import Backend, LaunchSpec, Outcome, ScriptProcess

__all__ = ["Backend", "LaunchSpec", "Outcome", "ScriptProcess", "default_backend"]


def __getattr__(name: str) -> object:
    if name in ("Backend", "LaunchSpec", "Outcome", "ScriptProcess"):
        from btmanager.execution import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def default_backend() -> Backend:
    from btmanager.execution.local import LocalBackend

    return LocalBackend()
