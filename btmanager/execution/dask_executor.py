"""The remote side of `bt worker --dask`: one run, executed inside a Dask task.

This machine has no registry and no run folder. The task makes a scratch folder (the script's
`--output_dir`), has the script supervised exactly as a local run is (a supervisor forked by
the worker's fork server: own session, whole-tree end, log capture, resources, time-out), and
meanwhile:
- takes the run's start token from the run's control queue first: a task Dask starts a second
  time (its first worker was lost and the scheduler's `allowed-failures` let it retry) finds no
  token and refuses, so a run never runs twice;
- tells `bt worker --dask` where the script runs (host, pid), then ships the log every second
  through the executor's events queue (chunks with their offsets);
- polls the control queue without blocking for cancel requests (`grace`, then `cancel`, or
  `kill`), which it passes to the supervisor;
- watches its own task: once the Dask scheduler has released it (`bt worker --dask` died or
  gave the run up), the run's tree is ended.
If this worker process dies, the supervisor's control channel closes and the tree ends with it.

The result, gathered at once by `bt worker --dask`, is the exit record, the log's last bytes
and the output files as a tar stream; the scratch folder is then removed.
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import shutil
import socket
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from btmanager.command import build_argv, build_env
from btmanager.execution.forkserver import ForkServer, SupervisedRun
from btmanager.lifecycle import exitrecord
from btmanager.lifecycle.exitrecord import ExitRecord
from btmanager.logs import LOG_FILE, LogReader
from btmanager.timeutil import now_iso

LOG_EVERY = 1.0  # how often the log is shipped while the script runs (the contract says 5 s)
CONTROL_EVERY = 0.25  # how often the control queue is polled for cancel requests
TICK = 0.1
RPC_TIMEOUT = 10.0  # a scheduler that does not answer is not waited for longer
LOG_CHUNK = 1 << 20
WORKER_LOST = "dask worker lost"
EXECUTOR_LOST = "executor lost (bt worker --dask went away)"
# States of a Dask task still wanted by the scheduler (otherwise it was released).
_WANTED = ("executing", "long-running")

# One per worker process, shared by its task threads (a run each).
_fork_server = ForkServer()


@dataclass(frozen=True)
class RemoteJob:
    """Everything the remote side needs (no registry row: nothing of the registry travels)."""

    run_id: str
    script: str  # its path where `bt` runs; used as it is where that path exists
    script_name: str
    script_bytes: bytes | None  # the script itself, for machines that do not have it
    params: dict[str, str]
    extra_args: list[str]
    cwd: str
    timeout: float | None
    grace: float
    nice: int | None
    events: str  # the executor's queue: starts and log chunks
    control: str  # the run's own queue: the start token, then cancel requests
    token: str


class _Scheduler:
    """Queue calls through this worker's client, never blocking on an empty queue."""

    def __init__(self) -> None:
        from distributed import get_client

        self.client = get_client()
        # The scheduler's queue handlers, called directly: a `distributed.Queue` object would
        # register this worker with the queue (one more call, and a reference that a worker
        # killed mid-run would never release).
        self.rpc: Any = self.client.scheduler

    def put(self, queue: str, message: dict[str, Any]) -> bool:
        try:
            self.client.sync(  # type: ignore[no-untyped-call]
                self.rpc.queue_put,
                name=queue,
                data=message,
                callback_timeout=RPC_TIMEOUT,
            )
        except Exception:  # the scheduler is gone or the queue released: nobody listens
            return False
        return True

    def take(self, queue: str) -> list[dict[str, Any]] | None:
        """Everything waiting in the queue (maybe nothing); None if it cannot be asked."""
        try:
            records = self.client.sync(  # type: ignore[no-untyped-call]
                self.rpc.queue_get,
                name=queue,
                batch=True,
                callback_timeout=RPC_TIMEOUT,
            )
        except Exception:
            return None
        return [r["value"] for r in records if isinstance(r.get("value"), dict)]


def _task_wanted() -> bool:
    """Is this task still wanted by the scheduler? Read from the worker's own state (no call)."""
    from distributed import get_worker

    try:
        worker = get_worker()
        state = worker.state.tasks.get(worker.get_current_task())
    except (ValueError, KeyError, AttributeError):
        return True
    return state is not None and state.state in _WANTED


def _script_path(job: RemoteJob, scratch: Path) -> Path:
    """The script where it is, else the copy that travelled with the run."""
    given = Path(job.script)
    if given.is_file() or job.script_bytes is None:
        return given
    folder = scratch / "script"
    folder.mkdir(mode=0o700)
    copy = folder / job.script_name
    copy.write_bytes(job.script_bytes)
    copy.chmod(0o700)
    return copy


def _outputs_tar(out: Path) -> bytes:
    """The script's output files as a tar stream (the log and bt's own files travel apart)."""
    skipped = {exitrecord.STATE_DIR, LOG_FILE}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w|") as tar:
        for entry in sorted(out.iterdir()):
            if entry.name not in skipped:
                tar.add(entry, arcname=entry.name)
    return buffer.getvalue()


class _Run:
    """One run on this worker, from its scratch folder to its result."""

    def __init__(self, job: RemoteJob, scheduler: _Scheduler, scratch: Path) -> None:
        self.job, self.scheduler, self.scratch = job, scheduler, scratch
        self.out = scratch / "out"
        self.out.mkdir(mode=0o700)
        self.log = LogReader(self.out / LOG_FILE)
        self.channel: socket.socket | None = None
        self.buffer = b""
        self.gone = False  # executor lost: cancel sent, queues no longer used

    def start(self) -> None:
        job = self.job
        script = _script_path(job, self.scratch)
        env = build_env(os.environ, job.run_id, self.out)
        cwd = job.cwd if Path(job.cwd).is_dir() else str(self.scratch)
        run = SupervisedRun(
            run_id=job.run_id,
            argv=build_argv(script, job.params, job.extra_args, self.out, os.environ),
            cwd=cwd,
            env=env,
            run_dir=str(self.out),
            supervisor_log=str(self.scratch / "supervisor.log"),
            timeout=job.timeout,
            grace=job.grace,
            nice=job.nice,
            watcher_gone=WORKER_LOST,
        )
        self.channel = _fork_server.start(run, self.scratch / "request.json")

    def send(self, *lines: str) -> None:
        if self.channel is None:
            return
        with contextlib.suppress(OSError):
            self.channel.sendall("".join(line.replace("\n", " ") + "\n" for line in lines).encode())

    def _messages(self, timeout: float) -> list[str] | None:
        """The supervisor's messages; None once it has exited (its end closed)."""
        assert self.channel is not None
        ready, _, _ = select.select([self.channel], [], [], timeout)
        if not ready:
            return []
        try:
            data = self.channel.recv(4096)
        except OSError:
            data = b""
        if not data:
            return None
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        return [line.decode("utf-8", "replace") for line in lines]

    def _ship_log(self) -> None:
        offset = self.log.offset
        for chunk in self.log.read_new(LOG_CHUNK):
            message = {"kind": "log", "run_id": self.job.run_id, "offset": offset, "data": chunk}
            if not self.scheduler.put(self.job.events, message):
                self.log.offset = offset  # sent with the result instead
                return
            offset += len(chunk)

    def _control(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            if message.get("kill"):
                self.send("kill")
            elif "cancel" in message:
                grace = message.get("grace")
                self.send(*([f"grace {grace}"] if grace is not None else []))
                self.send(f"cancel {message['cancel']}")

    def watch(self) -> None:
        """Until the supervisor exits: relay its start, the log and cancel requests."""
        now = time.monotonic()
        next_log, next_control = now + LOG_EVERY, now + CONTROL_EVERY
        while True:
            messages = self._messages(TICK)
            if messages is None:
                return
            for line in messages:
                if line.startswith("started ") and not self.gone:
                    _, pid, made = line.split()
                    self.scheduler.put(
                        self.job.events,
                        {
                            "kind": "start",
                            "run_id": self.job.run_id,
                            "host": socket.gethostname(),
                            "pid": int(pid),
                            "create_time": float(made),
                            "worker": _worker_address(),
                        },
                    )
            if self.gone:
                continue
            if not _task_wanted():
                self.gone = True
                self.send(f"cancel {EXECUTOR_LOST}")
                continue
            now = time.monotonic()
            if now >= next_log:
                next_log = now + LOG_EVERY
                self._ship_log()
            if now >= next_control:
                next_control = now + CONTROL_EVERY
                self._control(self.scheduler.take(self.job.control) or [])

    def result(self) -> dict[str, Any]:
        record = exitrecord.read(self.out) or ExitRecord(
            None, now_iso(), internal_error="the remote supervisor ended without an exit record"
        )
        offset = self.log.offset
        tail = b"".join(self.log.read_new(LOG_CHUNK))
        return {
            "record": record.to_dict(),
            "log_offset": offset,
            "log": tail,
            "tar": _outputs_tar(self.out) if self.out.is_dir() else b"",
        }

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()  # a supervisor still running ends the run's tree on EOF
            self.channel = None


def _worker_address() -> str:
    from distributed import get_worker

    try:
        return str(get_worker().address)
    except ValueError:
        return ""


def _scratch_root() -> str:
    from distributed import get_worker

    try:
        return str(get_worker().local_directory)
    except (ValueError, AttributeError):
        return tempfile.gettempdir()


def prepare() -> str:
    """A Dask task that readies its worker for runs (its client, its fork server), so that the
    first run does not pay for them; the worker's address."""
    _Scheduler()
    _fork_server.ready()
    return _worker_address()


def execute(job: RemoteJob) -> dict[str, Any]:
    """The Dask task of one run: its result for `bt worker --dask` (see the module docstring)."""
    scheduler = _Scheduler()
    first = scheduler.take(job.control)
    if first is None:
        # The executor released the queue (it gave the run up), or the scheduler is gone.
        return {"refused": f"{WORKER_LOST}: the run's control queue is gone; not started"}
    if not any(m.get("token") == job.token for m in first):
        return {"refused": f"{WORKER_LOST}: Dask started the run a second time; refused"}
    cancels = [m for m in first if "cancel" in m]
    if cancels:  # cancelled while the task waited for a worker: never started
        record = ExitRecord(None, now_iso(), cancelled=str(cancels[0]["cancel"]))
        return {"record": record.to_dict(), "log_offset": 0, "log": b"", "tar": b""}
    scratch = Path(tempfile.mkdtemp(prefix=f"bt-{job.run_id}-", dir=_scratch_root()))
    run = _Run(job, scheduler, scratch)
    try:
        run.start()
        run.watch()
        return run.result()
    finally:
        run.close()
        # Off the result's way: this worker's next run may start meanwhile.
        threading.Thread(target=shutil.rmtree, args=(scratch, True), daemon=True).start()


__all__ = ["EXECUTOR_LOST", "WORKER_LOST", "RemoteJob", "execute", "prepare"]
