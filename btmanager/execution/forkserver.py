"""Run supervisors forked by a small server, for processes that must not fork themselves.

A Dask worker runs tasks in threads, and forking a multi-threaded process is unsafe (locks that
other threads hold are copied held); starting a fresh interpreter for every run costs tens of
milliseconds more than the trivial runs it supervises. So the process that executes runs starts
this server once (`python -m btmanager.execution.forkserver FD`): it is single-threaded and
forks one supervisor per run, as `bt` forks local ones.

Each run has a socket pair. One end stays with the caller; the other is passed to the server
(SCM_RIGHTS) and becomes the supervisor's control channel: `grace S`, `cancel REASON` and `kill`
go in, `started PID CREATE_TIME` comes out, and it closes when the supervisor exits (having
written the exit record into the run folder). If the caller's process dies (a Dask worker
killed), its end closes with it: the supervisor reads EOF and ends the run's whole tree, so
nothing of the run outlives the process that asked for it. The server exits when its own
socket closes.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from btmanager.errors import BtError
from btmanager.execution.base import Backend, Events, LaunchSpec, ScriptProcess
from btmanager.lifecycle.supervise import Supervision

_CRASHED = 70


@dataclass(frozen=True)
class SupervisedRun:
    """What a forked supervisor needs (written to a file: environments can be large)."""

    run_id: str
    argv: list[str]
    cwd: str
    env: dict[str, str]
    run_dir: str  # the script's --output_dir; the exit record goes into its .bt folder
    supervisor_log: str
    timeout: float | None
    grace: float
    nice: int | None
    watcher_gone: str  # the cancel reason when the caller's end of the channel closes

    def spec(self) -> LaunchSpec:
        return LaunchSpec(
            argv=self.argv,
            cwd=Path(self.cwd),
            env=self.env,
            log_path=Path(self.run_dir) / "execution.log",
            run_id=self.run_id,
            nice=self.nice,
        )


# --- the caller's side ------------------------------------------------------------------------


class ForkServer:
    """The caller's handle on its server, started on first use (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def _ensure(self) -> socket.socket:
        if self._sock is not None and self._proc is not None and self._proc.poll() is None:
            return self._sock
        self._discard()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "btmanager.execution.forkserver", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                close_fds=True,
                # Out of the caller's terminal: a Ctrl-C there is for `bt`, which decides.
                start_new_session=True,
            )
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        self._sock = mine
        return mine

    def _discard(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                self._proc.wait(0)
            self._proc = None

    def ready(self) -> None:
        """Start the server now rather than with the first run."""
        with self._lock:
            self._ensure()

    def start(self, run: SupervisedRun, request_file: Path) -> socket.socket:
        """Fork a supervisor for `run`; the caller's end of its control channel."""
        fd = os.open(request_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(asdict(run), handle)
        mine, theirs = socket.socketpair()
        try:
            with self._lock:
                for attempt in range(2):
                    server = self._ensure()
                    try:
                        socket.send_fds(server, [os.fsencode(request_file)], [theirs.fileno()])
                        break
                    except OSError:
                        self._discard()  # the server died: start another, once
                        if attempt:
                            raise
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        return mine


# --- the server ---------------------------------------------------------------------------------


def serve(fd: int) -> None:
    """Fork a supervisor for each request until the caller's socket closes."""
    from btmanager.execution.local import reap_all

    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGTSTP):
        signal.signal(sig, signal.SIG_IGN)
    server = socket.socket(fileno=fd)
    while True:
        reap_all()
        with contextlib.suppress(InterruptedError):
            ready, _, _ = select.select([server], [], [], 1.0)
            if not ready:
                continue
        try:
            data, fds, _flags, _addr = socket.recv_fds(server, 65536, 1)
        except OSError:
            return
        if not data:
            return
        if not fds:
            continue
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's coverage is not collected
            code = _CRASHED
            try:
                server.close()
                code = _supervise(Path(os.fsdecode(data)), fds[0])
            except BaseException:
                with contextlib.suppress(BaseException):
                    traceback.print_exc()
                    sys.stderr.flush()
            finally:
                os._exit(code)
        for received in fds:
            os.close(received)


def _supervise(request_file: Path, control_fd: int) -> int:
    """In a forked child: become the run's supervisor and run the script to its end."""
    from btmanager.execution.local import LocalBackend, LocalEvents, become_supervisor

    run = SupervisedRun(**json.loads(request_file.read_text(encoding="utf-8")))
    request_file.unlink()
    become_supervisor(Path(run.supervisor_log))
    ChannelSupervision(run, control_fd, LocalBackend(), LocalEvents(control_fd)).run_to_end()
    return 0


class ChannelSupervision(Supervision):
    """A supervisor whose watcher is the caller at the other end of its control channel."""

    def __init__(
        self, run: SupervisedRun, control_fd: int, backend: Backend, events: Events
    ) -> None:
        super().__init__(
            run.run_id,
            Path(run.run_dir),
            run.timeout,
            run.grace,
            backend,
            events,
            run.watcher_gone,
        )
        self.supervised_run = run
        self.control_fd = control_fd

    def _spec(self) -> LaunchSpec:
        return self.supervised_run.spec()

    def _script_started(self, script: ScriptProcess) -> None:
        identity = script.identity
        with contextlib.suppress(OSError):
            os.write(self.control_fd, f"started {identity.pid} {identity.create_time}\n".encode())


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        raise BtError("usage: python -m btmanager.execution.forkserver FD")
    serve(int(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
