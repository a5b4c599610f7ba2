"""The execution seam: starting, watching and stopping a run's process.

The runner and the CLI only use the `Backend` / `RunningProcess` interfaces defined in `base`.
`LocalBackend` runs scripts on this machine; a cluster backend (Dask distributed, ...) can stand
beside it later by implementing the same two interfaces. All POSIX-specific calls (sessions,
process groups, signals, wait4) live in `local` and `proctree`, each with a psutil-based path for
other platforms.
"""

from btmanager.execution.base import Backend, LaunchSpec, Outcome, RunningProcess
from btmanager.execution.local import LocalBackend

__all__ = ["Backend", "LaunchSpec", "LocalBackend", "Outcome", "RunningProcess", "default_backend"]


def default_backend() -> Backend:
    return LocalBackend()
