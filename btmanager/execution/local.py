"""Run scripts as local processes: the one spawn path of btmanager.

The script gets its own session (POSIX) or process group (Windows), so a Ctrl-C in the user's
terminal or the death of the submitting shell never reaches it directly: `bt` decides what
happens. Its stdout and stderr go straight to the run's execution.log (one file descriptor, so the
two streams stay interleaved in order), not through a pipe, so the script keeps running and
logging even if the process watching it dies.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from typing import Any

from btmanager.execution import proctree
from btmanager.execution.base import LaunchSpec, Outcome
from btmanager.store import ProcessIdentity

_IS_POSIX = os.name == "posix"
# Sample the tree's memory only for runs that last; short runs are covered by wait4's maxrss and
# never pay for importing psutil.
_SAMPLE_AFTER = 0.5
_SAMPLE_EVERY = 0.5


class LocalProcess:
    """A started script. A dedicated thread reaps it (wait4) so no zombie is ever left."""

    def __init__(self, spec: LaunchSpec) -> None:
        self.spec = spec
        kwargs: dict[str, Any] = {}
        if _IS_POSIX:
            kwargs["start_new_session"] = True
        else:
            kwargs["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        with open(spec.log_path, "ab", buffering=0) as log:
            self._popen = subprocess.Popen(
                spec.argv,
                cwd=spec.cwd,
                env=spec.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                close_fds=True,
                **kwargs,
            )
        pid = self._popen.pid
        made = proctree.create_time(pid)
        self._identity = ProcessIdentity(pid, made if made is not None else 0.0)
        if spec.nice is not None:
            self._set_nice(spec.nice)
        self._done = threading.Event()
        self._outcome: Outcome | None = None
        self._peak_sampled = 0
        threading.Thread(target=self._reap, name=f"reap-{pid}", daemon=True).start()
        threading.Thread(target=self._sample, name=f"sample-{pid}", daemon=True).start()

    @property
    def identity(self) -> ProcessIdentity:
        return self._identity

    def _set_nice(self, value: int) -> None:
        # Set right after the spawn: Popen has no race-free, thread-safe way to do it before
        # exec (preexec_fn is unsafe in a threaded worker). A child forked in this instant would
        # keep the old priority; backtests start far slower than that.
        with contextlib.suppress(OSError):
            if _IS_POSIX:
                os.setpriority(os.PRIO_PROCESS, self._identity.pid, value)
            else:
                import psutil

                # Windows-only constants (the type stubs are those of this platform).
                below = psutil.BELOW_NORMAL_PRIORITY_CLASS  # type: ignore[attr-defined]
                normal = psutil.NORMAL_PRIORITY_CLASS  # type: ignore[attr-defined]
                psutil.Process(self._identity.pid).nice(below if value > 0 else normal)

    def _reap(self) -> None:
        if _IS_POSIX:
            _, status, usage = os.wait4(self._popen.pid, 0)
            code = os.waitstatus_to_exitcode(status)
            self._popen.returncode = code  # keep Popen consistent: we reaped it
            peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
            cpu = usage.ru_utime + usage.ru_stime
            self._outcome = Outcome(code, max(peak, self._peak_sampled), round(cpu, 3))
        else:
            code = self._popen.wait()
            self._outcome = Outcome(code, self._peak_sampled or None, None)
        self._done.set()

    def _sample(self) -> None:
        """Peak RSS of the whole tree (wait4 only knows the largest single process)."""
        if self._done.wait(_SAMPLE_AFTER):
            return
        import psutil

        try:
            root = psutil.Process(self._identity.pid)
        except psutil.Error:
            return
        while not self._done.is_set():
            total = 0
            try:
                for proc in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        total += proc.memory_info().rss
            except psutil.Error:
                return
            self._peak_sampled = max(self._peak_sampled, total)
            self._done.wait(_SAMPLE_EVERY)

    def wait(self, timeout: float | None = None) -> Outcome | None:
        if not self._done.wait(timeout):
            return None
        return self._outcome

    def terminate(self, grace: float) -> None:
        # Also once the root has ended: what it left behind is still the run's.
        proctree.terminate_tree(self._identity, self.spec.run_id, grace)

    def kill(self) -> None:
        self.terminate(0)

    def end_leftovers(self, grace: float) -> bool:
        if not proctree.leftovers_exist(self._identity, self.spec.run_id):
            return False
        # The root is gone; its pid still names its group until reused (collect_tree checks).
        proctree.terminate_tree(self._identity, self.spec.run_id, grace)
        return True


class LocalBackend:
    def start(self, spec: LaunchSpec) -> LocalProcess:
        return LocalProcess(spec)

    def is_alive(self, process: ProcessIdentity) -> bool:
        return proctree.is_alive(process)

    def terminate(self, process: ProcessIdentity | None, run_id: str, grace: float) -> None:
        proctree.terminate_tree(process, run_id, grace)

    def current(self) -> ProcessIdentity:
        return proctree.current_identity()
