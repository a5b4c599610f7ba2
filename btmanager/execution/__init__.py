"""The execution seam: starting, watching and stopping a run's processes.

The rest of btmanager only uses the interfaces defined in `base`. `LocalBackend` runs scripts
on this machine, each under a supervisor process of its own; a cluster backend can stand beside
it by implementing the same interfaces. All POSIX-specific calls (fork, sessions, process
groups, signals, wait4) live in `local`, `proctree` and `spawn`, with psutil-based paths for
other platforms where one exists.
"""

from btmanager.execution.base import Backend, LaunchSpec, Outcome, ScriptProcess

__all__ = ["Backend", "LaunchSpec", "Outcome", "ScriptProcess", "default_backend"]


def default_backend() -> Backend:
    from btmanager.execution.local import LocalBackend

    return LocalBackend()
