"""Run scripts as local processes: the one place btmanager starts processes for runs.

Each run gets a supervisor process of its own, forked from `bt` (no interpreter start-up), in a
session of its own: it is the script's parent, reaps it, and records how it ended, so neither
the foreground `bt` nor a worker needs to outlive the run. The supervisor is also the subreaper
of the run's tree (Linux), so what the script orphans stays its child and is never a zombie.

The script gets its own session too, so a Ctrl-C in the user's terminal never reaches it
directly: `bt` decides what happens. Its stdout and stderr go straight to the run's
execution.log (one file descriptor, so the two streams stay interleaved in order).

Forking is done only with no registry connection open and no other thread running (the
foreground `bt` and workers are single-threaded), as fork requires.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from btmanager.errors import BtError
from btmanager.execution import proctree
from btmanager.execution.base import LaunchSpec, Outcome, SupervisorMain
from btmanager.registry.model import ProcessIdentity

_IS_POSIX = os.name == "posix"
_PR_SET_CHILD_SUBREAPER = 36
# Exit code of a supervisor that crashed (a bug): the run is then settled from what was found.
SUPERVISOR_CRASHED = 70
# What a watched supervisor writes on its pipe to the watcher once the run's end is recorded.
ENDED = b"ended\n"
# Set in a supervisor that is the subreaper of its run's tree (Linux): whatever the script
# leaves running is then always a child of the supervisor.
_subreaper = False


class LocalScript:
    """A started script, the child of the calling supervisor."""

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
        self._pid = self._popen.pid
        self._identity: ProcessIdentity | None = None
        if spec.nice is not None:
            self._set_nice(spec.nice)
        self._outcome: Outcome | None = None
        self._peak_sampled = 0

    @property
    def identity(self) -> ProcessIdentity:
        # Read when first asked, not at the start: /proc/PID/stat of a process in the middle of
        # its exec blocks the reader until the exec is done (~5 ms before the script could
        # start). The pid cannot be reused meanwhile: only this process reaps it, and it reads
        # the identity first (see poll).
        if self._identity is None:
            made = proctree.create_time(self._pid)
            self._identity = ProcessIdentity(self._pid, made if made is not None else 0.0)
        return self._identity

    def _set_nice(self, value: int) -> None:
        # Right after the spawn: a child forked in this instant would keep the old priority;
        # backtests start far slower than that.
        with contextlib.suppress(OSError):
            if _IS_POSIX:
                os.setpriority(os.PRIO_PROCESS, self._pid, value)
            else:
                import psutil

                # Windows-only constants (the type stubs are those of this platform).
                below = psutil.BELOW_NORMAL_PRIORITY_CLASS  # type: ignore[attr-defined]
                normal = psutil.NORMAL_PRIORITY_CLASS  # type: ignore[attr-defined]
                psutil.Process(self._pid).nice(below if value > 0 else normal)

    def poll(self) -> Outcome | None:
        if self._outcome is not None:
            reap_all()
            return self._outcome
        self.identity  # noqa: B018 - known before the pid can be reaped and reused
        if not _IS_POSIX:
            code = self._popen.poll()
            if code is not None:
                self._outcome = Outcome(code, self._peak_sampled or None, None)
            return self._outcome
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid == self._pid:
                code = os.waitstatus_to_exitcode(status)
                self._popen.returncode = code  # keep Popen consistent: we reaped it
                peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
                cpu = usage.ru_utime + usage.ru_stime
                self._outcome = Outcome(code, max(peak, self._peak_sampled), round(cpu, 3))
        return self._outcome

    def sample(self) -> None:
        """Peak RSS of the whole tree (wait4 only knows the largest single process)."""
        if self._outcome is not None:
            return
        import psutil

        total = 0
        try:
            root = psutil.Process(self._pid)
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_info().rss
        except psutil.Error:
            return
        self._peak_sampled = max(self._peak_sampled, total)


def reap_all() -> list[int]:
    """Reap every exited child of this process; their pids."""
    reaped: list[int] = []
    if _IS_POSIX:
        _reap_exited(reaped)
    return reaped


def _has_children() -> bool:
    """Does this process have a live child? Children that already ended are reaped."""
    return _reap_exited([])


def _reap_exited(reaped: list[int]) -> bool:
    """Reap the exited children into `reaped`; True if live children remain."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True
        reaped.append(pid)


class LocalEvents:
    """Inside a supervisor: wakes on child exits, on SIGTERM/SIGUSR1, and on watcher messages."""

    def __init__(self, control_fd: int | None, watcher_fd: int | None = None) -> None:
        self.control_fd = control_fd
        self.watcher_fd = watcher_fd  # where a watched supervisor says the end is recorded
        self._buffer = b""
        self._pending: list[str] = []
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, self._noted)
        signal.signal(signal.SIGTERM, self._noted)
        signal.signal(signal.SIGUSR1, self._noted)

    def _noted(self, signum: int, _frame: FrameType | None) -> None:
        if signum != signal.SIGCHLD:
            self._pending.append(signal.Signals(signum).name)

    def wait(self, timeout: float) -> list[str]:
        fds = [self.wake_r] + ([self.control_fd] if self.control_fd is not None else [])
        if not self._pending:
            with contextlib.suppress(InterruptedError):
                select.select(fds, [], [], max(timeout, 0.0))
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self.wake_r, 512):
                pass
        messages, self._pending = self._pending, []
        if self.control_fd is not None:
            messages += self._read_control()
        return messages

    def ended(self) -> None:
        if self.watcher_fd is not None:
            with contextlib.suppress(OSError):
                os.write(self.watcher_fd, ENDED)

    def _read_control(self) -> list[str]:
        assert self.control_fd is not None
        ready, _, _ = select.select([self.control_fd], [], [], 0)
        if not ready:
            return []
        try:
            data = os.read(self.control_fd, 4096)
        except OSError:
            data = b""
        if not data:
            os.close(self.control_fd)
            self.control_fd = None
            return ["EOF"]
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        return [line.decode("utf-8", "replace") for line in lines if line]


class LocalSupervisor:
    """A supervisor as seen by the `bt` process that forked it."""

    def __init__(self, pid: int, control_fd: int | None, done_fd: int) -> None:
        made = proctree.create_time(pid)
        self._identity = ProcessIdentity(pid, made if made is not None else 0.0)
        self.control_fd = control_fd
        self.done_fd = done_fd
        self.exited = False
        self.ended = False  # it said the run's end is recorded (it may still be finishing)

    @property
    def identity(self) -> ProcessIdentity:
        return self._identity

    def fileno(self) -> int:
        return self.done_fd

    def wait(self, timeout: float) -> bool:
        """True once the supervisor said the run's end is recorded, or has exited (its end of
        the pipe closes with it, and it is reaped here)."""
        if self.exited or self.ended:
            return True
        with contextlib.suppress(InterruptedError):
            ready, _, _ = select.select([self.done_fd], [], [], max(timeout, 0.0))
            if not ready:
                return False
        try:
            data = os.read(self.done_fd, 4096)
        except OSError:
            data = b""
        if data:
            self.ended = ENDED in data
            return self.ended
        self._reaped()
        return True

    def release(self) -> None:
        if self.exited:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self._identity.pid, 0)
        self._reaped(waited=True)

    def _reaped(self, waited: bool = False) -> None:
        os.close(self.done_fd)
        if self.control_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.control_fd)
            self.control_fd = None
        if not waited:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._identity.pid, 0)
        self.exited = True

    def send(self, message: str) -> None:
        if self.control_fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(self.control_fd, message.replace("\n", " ").encode() + b"\n")


def become_supervisor(log_path: Path | None) -> None:
    """In the forked child: own session, quiet standard streams, own signal handling."""
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)
    log_supervisor_to(log_path)
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGTSTP):
        signal.signal(sig, signal.SIG_IGN)
    global _subreaper
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            _subreaper = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def log_supervisor_to(log_path: Path | None) -> None:
    """What a supervisor writes goes to `log_path` (its standard output and error)."""
    if log_path is not None:
        with contextlib.suppress(OSError):
            target = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(target, 1)
            os.dup2(target, 2)
            os.close(target)
    # Python-level streams too: the forking process may have replaced them (a Rich console,
    # a test's capture), and what a supervisor says belongs in its log.
    sys.stdout = open(1, "w", closefd=False, buffering=1)  # noqa: SIM115 - process lifetime
    sys.stderr = open(2, "w", closefd=False, buffering=1)  # noqa: SIM115


class LocalBackend:
    def launch_supervisor(
        self, main: SupervisorMain, watched: bool, log_path: Path | None
    ) -> LocalSupervisor:
        if not _IS_POSIX:
            raise BtError("bt supervises runs with fork(), which this system does not have")
        if sys.platform.startswith("linux"):
            # The supervisor needs ctypes (prctl) before it starts the script. Imported after
            # the fork it costs twice as much: every page it touches is copied first.
            import ctypes  # noqa: F401
        control_r, control_w = os.pipe() if watched else (None, None)
        done_r, done_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's coverage is not collected
            code = SUPERVISOR_CRASHED
            try:
                os.close(done_r)
                if control_w is not None:
                    os.close(control_w)
                become_supervisor(log_path)
                code = main(LocalEvents(control_r, done_w if watched else None))
            except BaseException:
                with contextlib.suppress(BaseException):
                    traceback.print_exc()
                    sys.stderr.flush()
            finally:
                with contextlib.suppress(BaseException):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        os.close(done_w)
        if control_r is not None:
            os.close(control_r)
        return LocalSupervisor(pid, control_w, done_r)

    def start_script(self, spec: LaunchSpec) -> LocalScript:
        return LocalScript(spec)

    def reap_children(self) -> list[int]:
        return reap_all()

    def is_alive(self, process: ProcessIdentity) -> bool:
        return proctree.is_alive(process)

    def signal(self, process: ProcessIdentity, name: str) -> bool:
        sig = getattr(signal, name, None)
        if sig is None or not proctree.is_alive(process):
            return False
        try:
            os.kill(process.pid, sig)
        except OSError:
            return False
        return True

    def terminate(self, process: ProcessIdentity | None, run_id: str, grace: float) -> None:
        proctree.terminate_tree(process, run_id, grace)

    def leftovers_exist(self, root: ProcessIdentity, run_id: str) -> bool:
        if _subreaper:
            # Asked once the script is reaped. As the subreaper of its tree, this process
            # adopts every process the script left running (and their children stay theirs),
            # so a child is a leftover, and no child means none: no need to read /proc
            # (~2 ms on a quiet machine, tens of ms on a busy one).
            return _has_children()
        return proctree.leftovers_exist(root, run_id)

    def stopper(self, root: ProcessIdentity, run_id: str, grace: float) -> proctree.TreeStop:
        return proctree.TreeStop(root, run_id, grace, adopted=True)

    def current(self) -> ProcessIdentity:
        return proctree.current_identity()
