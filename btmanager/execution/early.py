"""A foreground run's supervisor, forked as `bt` starts (POSIX).

Forked when the run is known, a supervisor costs a foreground `bt run` a fork of a grown
interpreter (Typer, Click, the registry: every page either process then writes is copied), its
own imports and registry open, and the close of the parent's registry connection (none may cross
a fork), all while the user waits. Forked instead before Typer is imported, from an interpreter
that holds almost nothing, it does that preparation on another core while `bt` imports Typer and
parses its command line. `bt` then hands it the request; it records the run (answering with the
run, or with nothing when that failed: `bt` then does it the usual way and reports the error as
always) and supervises it exactly as a supervisor forked later would.

An early supervisor is only a head start: one `bt` does not use (a usage error, `--help`, a
command that turned out not to be a foreground run) holds nothing yet and is killed and reaped
before `bt` exits. If `bt` dies first, it reads the end of its request pipe and exits.

Two pipes, as for any watched supervisor: `bt` -> supervisor carries the request (one frame),
then `cancel`/`kill` lines; supervisor -> `bt` carries the reply (one frame), then closes when
the supervisor exits. A frame is an 8-byte length and that many bytes of `marshal` data: it
needs no import on either side.
"""

from __future__ import annotations

import os
import sys

# Not `typing.TYPE_CHECKING`: nothing may be imported before the fork (see above).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_LENGTH = 8
# Exit code of an early supervisor that crashed before it had a run (a bug).
_CRASHED = 70
_early: EarlySupervisor | None = None


class EarlySupervisor:
    """An early supervisor seen from the `bt` that forked it."""

    def __init__(self, pid: int, control_fd: int, done_fd: int) -> None:
        self.pid = pid
        self.control_fd = control_fd
        self.done_fd = done_fd
        self.reaped = False  # its pid may be another process's by now

    def send(self, job: Any) -> bool:
        """Hand over the job (marshal-able data); False if it could not be (the supervisor is
        then gone, and reaped here). ValueError: the job is not marshal-able, nothing sent."""
        import marshal

        frame = marshal.dumps(job)
        try:
            _write_frame(self.control_fd, frame)
        except OSError:
            self._close_and_reap()
            return False
        return True

    def reply(self) -> Any:
        """The supervisor's reply to the job, or None if it sent none (it then exits on its
        own and is reaped here). The pipes are the caller's from then on."""
        import marshal

        try:
            data = _read_frame(self.done_fd)
        except OSError:
            data = None
        answer = marshal.loads(data) if data else None
        if answer is None:
            self._close_and_reap()
        return answer

    def discard(self) -> None:
        """End an early supervisor that was never given a job (it holds nothing yet)."""
        import signal

        if self.reaped:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except OSError:
            pass
        self._close_and_reap()

    def _close_and_reap(self) -> None:
        if self.reaped:
            return
        self.reaped = True
        for fd in (self.control_fd, self.done_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


class EarlyChannel:
    """An early supervisor's side of its pipes."""

    def __init__(self, control_fd: int, done_fd: int, watcher: int) -> None:
        self.control_fd = control_fd
        self.done_fd = done_fd
        self.watcher = watcher  # the pid of the `bt` that forked it

    def pending(self) -> bool:
        """Has `bt` sent something (or gone away)?"""
        import select

        ready, _, _ = select.select([self.control_fd], [], [], 0)
        return bool(ready)

    def receive(self) -> Any:
        """The job, or None when `bt` went away without sending one."""
        import marshal

        data = _read_frame(self.control_fd)
        return marshal.loads(data) if data else None

    def reply(self, answer: Any) -> None:
        """Answer `bt` (None: nothing was recorded, it must do that itself). A `bt` that died
        meanwhile is not an error here: the closed control pipe tells the supervisor so."""
        import marshal

        try:
            _write_frame(self.done_fd, marshal.dumps(answer))
        except OSError:
            pass


def fork(validate: bool) -> None:
    """Fork this `bt`'s early supervisor (nothing where fork() does not exist)."""
    global _early
    if os.name != "posix" or _early is not None:
        return
    control_r, control_w = os.pipe()
    done_r, done_w = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        _child(control_r, control_w, done_r, done_w, validate)
    os.close(control_r)
    os.close(done_w)
    _early = EarlySupervisor(pid, control_w, done_r)


def take() -> EarlySupervisor | None:
    """This process's early supervisor, handed out once (None if there is none)."""
    global _early
    early, _early = _early, None
    return early


def discard() -> None:
    """End the early supervisor if nobody took it (called as `bt` exits)."""
    early = take()
    if early is not None:
        early.discard()


def _child(control_r: int, control_w: int, done_r: int, done_w: int, validate: bool) -> None:
    code = _CRASHED
    watcher = os.getppid()  # the `bt` that forked it, which will watch its run
    try:
        os.close(control_w)
        os.close(done_r)
        from btmanager.execution.local import become_supervisor

        become_supervisor(None)  # its log is known once the run is
        from btmanager.lifecycle.supervise import serve_early

        code = serve_early(EarlyChannel(control_r, done_w, watcher), validate)
    except BaseException:
        try:
            import traceback

            traceback.print_exc()
        except BaseException:
            pass
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        os._exit(code)


def _write_frame(fd: int, data: bytes) -> None:
    view = memoryview(len(data).to_bytes(_LENGTH, "big") + data)
    while view:
        view = view[os.write(fd, view) :]


def _read_frame(fd: int) -> bytes | None:
    """One frame, or None at the end of the pipe."""
    header = _read_exactly(fd, _LENGTH)
    if header is None:
        return None
    return _read_exactly(fd, int.from_bytes(header, "big"))


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks: list[bytes] = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
