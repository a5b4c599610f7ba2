"""`bt worker --dask`: the queue executed on a Dask cluster.

The registry and the run folders stay with this process. It claims queued runs with the same
claim as local workers (`RunStates.claim`: the stored limit, sweep caps, priorities, `--after`),
never more at once than the cluster has threads, and submits each as a Dask task
(`execution.dask_executor.execute`, `pure=False`: identical params are never merged). It is its
runs' supervisor as the registry sees it: it records where each script runs (host and pid, as
the remote side reports them) and how it ended (exit record into the run folder, outputs
unpacked there, validation, then `RunStates.end`). The log chunks the remote side ships are
written into the run folder as they come, so `bt logs -f` follows them; `bt cancel` requests
found in the registry go to the run's control queue, polled by the remote side.

Dask's own failure handling is not trusted with runs:
- a worker that dies takes its run with it (its supervisor ends the tree): the run is failed
  "dask worker lost", seen from the task's KilledWorker error, from the worker leaving the
  cluster, or from the remote side refusing a second start (each run has one start token);
  for `local:N` the scheduler is told `allowed-failures: 0`, so it never retries;
- each result is gathered and released at once, so a worker dying later has nothing Dask would
  recompute;
- if this process dies, the scheduler releases its tasks and their trees end on the remote side;
  the next `bt` command records its runs failed ("executor lost"), and the queue waits.

Single-threaded apart from the Dask client's own thread; it never forks.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from btmanager.errors import BtError, UsageError
from btmanager.lifecycle import exitrecord, serving
from btmanager.lifecycle.exitrecord import ExitRecord
from btmanager.lifecycle.queue import QueueLoop
from btmanager.logs import LOG_FILE
from btmanager.registry.model import ProcessIdentity, Run
from btmanager.settings import Settings
from btmanager.timeutil import now_iso

if TYPE_CHECKING:
    from btmanager.execution import Backend
    from btmanager.lifecycle.state import RunStates

TICK = 0.1
CANCEL_POLL = 0.25  # how often the registry is read for `bt cancel` requests of runs in flight
CLUSTER_POLL = 1.0  # how often the cluster's workers are listed (lost workers, health)
EVENTS_POLL = 0.2  # how often the remote side's messages are read (and before each end)
RESULT_TIMEOUT = 120.0
WARM_UP_TIMEOUT = 60.0
# Closing the client and the local cluster: a stopped worker must exit even if the cluster does
# not answer (LocalCluster.close waits without limit by default). Its runs are recorded by then.
CLOSE_TIMEOUT = 15.0
SCHEDULER_PATIENCE = 30.0  # a scheduler that does not answer for this long: give up
SCRIPT_TRAVELS_UP_TO = 32 << 20  # bigger scripts must exist on the workers
MAX_LOCAL_WORKERS = 256
EXTRA_MISSING = "bt worker --dask needs the extra dask: pip install 'btmanager[dask]'"


def parse_address(address: str) -> int | str:
    """`local:N` (a local cluster of N worker processes) or a scheduler address."""
    address = address.strip()
    if address.startswith("local:"):
        count = address[len("local:") :]
        if not count.isdigit() or not 1 <= int(count) <= MAX_LOCAL_WORKERS:
            raise UsageError(
                f"--dask local:N needs N from 1 to {MAX_LOCAL_WORKERS} worker processes, "
                f"not {count!r}"
            )
        return int(count)
    if not address:
        raise UsageError("--dask needs a scheduler address (tcp://HOST:8786) or local:N")
    return address


def connect(address: str) -> tuple[Any, Any]:
    """(client, local cluster or None) for a parsed --dask address."""
    target = parse_address(address)
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:
        raise UsageError(EXTRA_MISSING) from None
    if isinstance(target, int):
        # A task whose worker died must fail, not run again elsewhere: we record it.
        dask.config.set({"distributed.scheduler.allowed-failures": 0})
        cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=target, threads_per_worker=1, processes=True, dashboard_address=None
        )
        return Client(cluster), cluster  # type: ignore[no-untyped-call]
    try:
        return Client(target, timeout="20s"), None  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError, ValueError) as exc:
        raise BtError(f"Cannot reach the Dask scheduler at {target}: {exc}") from None


@dataclass
class InFlight:
    """A run submitted to the cluster and not yet recorded as ended."""

    run: Run
    future: Any  # distributed.Future
    control: Any  # distributed.Queue: the start token, then cancel requests
    worker: str | None = None  # the Dask worker it runs on, once it has said so
    cancel_sent: bool = False
    kill_sent: bool = False
    log_fd: int | None = None

    def write_log(self, offset: int, data: bytes) -> None:
        """Chunks carry their offsets: written in place, in whatever order they come."""
        if not data:
            return
        if self.log_fd is None:
            path = Path(self.run.output_dir) / LOG_FILE
            flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
            self.log_fd = os.open(path, flags, 0o600)
        os.pwrite(self.log_fd, data, offset)

    def close(self) -> None:
        if self.log_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.log_fd)
            self.log_fd = None
        with contextlib.suppress(Exception):
            self.control.close()


def _script_bytes(run: Run) -> bytes | None:
    try:
        path = Path(run.script_resolved)
        if path.stat().st_size > SCRIPT_TRAVELS_UP_TO:
            return None
        return path.read_bytes()
    except OSError:
        return None


def _unpack(tar_bytes: bytes, folder: Path) -> list[str]:
    """Extract the outputs into the run folder; what was refused (links out, devices...)."""
    import io
    import tarfile

    refused: list[str] = []
    if not tar_bytes:
        return refused
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r|") as tar:
            for member in tar:
                try:
                    tar.extract(member, folder, filter="data")
                except (tarfile.TarError, OSError) as exc:
                    refused.append(f"{member.name}: {exc}")
    except tarfile.TarError as exc:  # a damaged stream: what came before it is kept
        refused.append(f"the outputs' tar stream: {exc}")
    return refused


class DaskWorker(QueueLoop):
    """Claims queued runs and executes each on a Dask cluster (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        address: str,
        backend: Backend,
        idle_exit: float | None,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(settings, backend, idle_exit, on_event)
        self.address = address
        self.inflight: dict[str, InFlight] = {}
        # Ended, but the registry refused the end so far (retried; the exit record keeps it).
        self.unrecorded: dict[str, ExitRecord] = {}
        self.client: Any = None
        self.cluster: Any = None
        self.events: Any = None
        self.threads = 0
        self.workers: dict[str, int] = {}
        self._scheduler_ok = time.monotonic()
        self._since = now_iso()

    def _cluster_problem(self, problem: str) -> None:
        self._report(problem, "Dask problem")

    def _states_now(self) -> RunStates | None:
        registry = self._open()
        return None if registry is None else self._states(registry)

    # --- life --------------------------------------------------------------------------------

    def run(self) -> None:
        registry = self._open()
        if registry is None:
            raise BtError(self._problem or "the registry cannot be opened")
        other = serving.serving(registry)
        if other is not None and other.pid != self.identity.pid:
            raise UsageError(
                f"A bt worker --dask (pid {other.pid}, scheduler {other.scheduler}) already "
                "serves this registry"
            )
        self.client, self.cluster = connect(self.address)
        try:
            from distributed import Queue

            name = f"bt-events-{secrets.token_hex(8)}"
            self.events = Queue(name, client=self.client)  # type: ignore[no-untyped-call]
            self._warm_up()
            self._check_cluster(force_record=True)
            self.on_event(
                f"serving {self.settings.db_path} on Dask scheduler {self.client.scheduler.address}"
                f" ({len(self.workers)} workers, {self.threads} threads)"
            )
            self._loop()
        finally:
            self._shutdown()

    def _warm_up(self) -> None:
        """Ready the workers there are for runs before serving (best effort: a worker that is
        not ready pays on its first run)."""
        from distributed import wait

        from btmanager.execution.dask_executor import prepare

        try:
            futures = [
                self.client.submit(prepare, workers=[address], pure=False)
                for address in self.client.nthreads()
            ]
            wait(futures, timeout=WARM_UP_TIMEOUT)  # type: ignore[no-untyped-call]
            self.client.cancel(futures)
        except Exception as exc:
            self._cluster_problem(f"could not ready the workers: {exc}")

    def _loop(self) -> None:
        next_cluster = next_cancels = next_events = 0.0
        while True:
            now = time.monotonic()
            if now >= next_cluster:
                next_cluster = now + CLUSTER_POLL
                self._check_cluster()
            if now >= next_events or self._any_done():
                next_events = now + EVENTS_POLL
                self._drain_events()  # before the ends: a run's start comes before its end
            self._collect()
            self._stop_or_claim()
            if now >= next_cancels:
                next_cancels = now + CANCEL_POLL
                self._forward_cancels()
            if not self.inflight and self._done():
                return
            self._wait(TICK)

    def _shutdown(self) -> None:
        for flight in self.inflight.values():
            flight.close()
        with contextlib.suppress(Exception):
            if self.events is not None:
                self.events.close()
        registry = self._open()
        if registry is not None:
            with contextlib.suppress(BtError):
                serving.clear(registry, self.identity)
        self._close()
        for closing in (self.client, self.cluster):
            if closing is not None:
                with contextlib.suppress(Exception):
                    closing.close(timeout=CLOSE_TIMEOUT)

    def _any_done(self) -> bool:
        return any(flight.future.done() for flight in self.inflight.values())

    def _wait(self, timeout: float) -> None:
        if not self.inflight:
            self.stop.requested.wait(timeout)
            return
        from distributed import wait

        futures = [flight.future for flight in self.inflight.values()]
        with contextlib.suppress(Exception):  # TimeoutError: nothing finished meanwhile
            wait(futures, timeout=timeout, return_when="FIRST_COMPLETED")  # type: ignore[no-untyped-call]

    def _done(self) -> bool:
        if self.stop.requested.is_set():
            return True
        if self.unrecorded:
            return False
        return self._idle_long_enough()

    def _settle(self) -> None:
        super()._settle()
        for run_id, record in list(self.unrecorded.items()):
            self._record_end(run_id, record)

    # --- the cluster -------------------------------------------------------------------------

    def _check_cluster(self, force_record: bool = False) -> None:
        """List the cluster's workers: fail the runs of workers that left, keep health fresh."""
        try:
            workers = {str(k): int(v) for k, v in self.client.nthreads().items()}
        except Exception as exc:
            if time.monotonic() - self._scheduler_ok > SCHEDULER_PATIENCE:
                self._give_up(f"the Dask scheduler stopped answering ({exc})")
            return
        self._scheduler_ok = time.monotonic()
        changed = workers != self.workers
        self.workers, self.threads = workers, sum(workers.values())
        for flight in list(self.inflight.values()):
            if flight.worker is not None and flight.worker not in workers:
                self._lose(flight, f"{self._worker_lost(flight)} (left the cluster)")
        if changed or force_record:
            registry = self._open()
            if registry is None:
                return
            record = serving.DaskServing(
                pid=self.identity.pid,
                create_time=self.identity.create_time,
                host=serving.this_host(),
                scheduler=str(self.client.scheduler.address),
                workers=len(workers),
                threads=self.threads,
                since=self._since,
            )
            try:
                serving.record(registry, record)
            except BtError as exc:
                self._report(str(exc))

    def _give_up(self, reason: str) -> None:
        for flight in list(self.inflight.values()):
            self._lose(flight, f"{self._worker_lost(flight)}: {reason}")
        self.request_stop(reason)
        self.on_event(reason)

    @staticmethod
    def _worker_lost(flight: InFlight) -> str:
        from btmanager.execution.dask_executor import WORKER_LOST

        where = f" {flight.worker}" if flight.worker else ""
        return f"{WORKER_LOST}{where}"

    # --- claiming and submitting -------------------------------------------------------------

    def _claim_all(self) -> None:
        while not self.stop.requested.is_set() and len(self.inflight) < self.threads:
            run = self._claim_one(serving.DASK_EXECUTOR)
            if run is None:
                return
            try:
                self._submit(run)
                self.on_event(f"submitted {run.run_id}")
            except Exception as exc:  # the cluster refused it: the run must not stay running
                self.on_event(f"could not submit {run.run_id}: {exc}")
                record = ExitRecord(None, now_iso(), launch_error=f"Dask refused the task: {exc}")
                self._end_with(run, record)

    def _submit(self, run: Run) -> None:
        from distributed import Queue

        from btmanager.execution.dask_executor import RemoteJob, execute
        from btmanager.lifecycle.create import forget_environment

        # The submitter's environment stays here: the script runs with the Dask worker's own.
        forget_environment(Path(run.output_dir))
        exitrecord.reserve(Path(run.output_dir))
        token = secrets.token_hex(8)
        control = Queue(f"bt-control-{run.run_id}-{token}", client=self.client)  # type: ignore[no-untyped-call]
        control.put({"token": token})  # type: ignore[no-untyped-call]
        job = RemoteJob(
            run_id=run.run_id,
            script=run.script_resolved,
            script_name=Path(run.script_resolved).name,
            script_bytes=_script_bytes(run),
            params=dict(run.params),
            extra_args=list(run.extra_args),
            cwd=run.cwd,
            timeout=run.timeout_seconds,
            grace=run.grace_seconds,
            nice=run.nice,
            events=self.events.name,
            control=control.name,
            token=token,
        )
        future = self.client.submit(execute, job, key=f"bt-run-{run.run_id}-{token}", pure=False)
        self.inflight[run.run_id] = InFlight(run, future, control)
        self._last_busy = time.monotonic()

    # --- what the remote side says -----------------------------------------------------------

    def _drain_events(self) -> None:
        try:
            messages = self.events.get(batch=True)
        except Exception as exc:
            self._cluster_problem(f"cannot read the Dask events queue: {exc}")
            return
        for message in messages:
            if not isinstance(message, dict):
                continue
            flight = self.inflight.get(str(message.get("run_id")))
            if flight is None:
                continue  # a run already recorded as ended
            try:
                if message.get("kind") == "log":
                    flight.write_log(int(message["offset"]), bytes(message["data"]))
                elif message.get("kind") == "start":
                    self._started(flight, message)
            except (KeyError, ValueError, TypeError, OSError) as exc:
                self._cluster_problem(
                    f"bad message from the cluster for {flight.run.run_id}: {exc}"
                )

    def _started(self, flight: InFlight, message: dict[str, Any]) -> None:
        flight.worker = str(message["worker"])
        script = ProcessIdentity(int(message["pid"]), float(message["create_time"]))
        host = str(message["host"])
        states = self._states_now()
        if states is None:
            return
        try:
            states.script_started(flight.run.run_id, script, host=host)
        except BtError as exc:
            self._report(str(exc))
        self.on_event(f"started {flight.run.run_id} on {host} (pid {script.pid})")

    # --- cancelling --------------------------------------------------------------------------

    def _send(self, flight: InFlight, message: dict[str, Any]) -> None:
        try:
            flight.control.put(message)
        except Exception as exc:
            self._cluster_problem(f"cannot reach the Dask scheduler: {exc}")

    def _forward_cancels(self) -> None:
        waiting = [f for f in self.inflight.values() if not f.cancel_sent]
        if not waiting:
            return
        registry = self._open()
        if registry is None:
            return
        try:
            rows = registry.get_many([flight.run.run_id for flight in waiting])
        except BtError as exc:
            self._report(str(exc))
            return
        for row in rows:
            flight = self.inflight[row.run_id]
            if row.cancel_requested:
                flight.cancel_sent = True
                reason = row.error_message or "cancelled by user"
                self._send(flight, {"cancel": reason, "grace": row.cancel_grace})

    def _cancel_runs(self, reason: str) -> None:
        self._request_cancels(list(self.inflight), reason)  # forwarded like any `bt cancel`

    def _kill_runs(self) -> None:
        for flight in self.inflight.values():
            self._send(flight, {"kill": True})

    # --- the end -----------------------------------------------------------------------------

    def _collect(self) -> None:
        from distributed import KilledWorker

        for flight in list(self.inflight.values()):
            status = flight.future.status
            if status == "finished":
                try:
                    result = flight.future.result(timeout=RESULT_TIMEOUT)
                except Exception as exc:
                    self._lose(flight, f"{self._worker_lost(flight)}: result lost ({exc})")
                    continue
                finally:
                    flight.future.release()  # nothing left for Dask to recompute
                self._finish(flight, result)
            elif status == "error":
                error = flight.future.exception()
                flight.future.release()
                if isinstance(error, KilledWorker):
                    self._lose(flight, self._worker_lost(flight))
                else:
                    record = ExitRecord(
                        None, now_iso(), internal_error=f"the Dask task failed: {error!r}"
                    )
                    self._forget(flight)
                    self._end_with(flight.run, record)
            elif status in ("cancelled", "lost"):
                self._lose(flight, self._worker_lost(flight))

    def _forget(self, flight: InFlight) -> None:
        flight.close()
        self.inflight.pop(flight.run.run_id, None)
        self._last_busy = time.monotonic()

    def _lose(self, flight: InFlight, message: str) -> None:
        """The run's Dask worker is gone, and its tree with it: failed, never run again."""
        with contextlib.suppress(Exception):
            flight.future.cancel()
        self._forget(flight)
        states = self._states_now()
        if states is None:
            return
        try:
            states.lose(flight.run.run_id, message)
        except BtError as exc:
            self._report(str(exc))
        self.on_event(f"finished {flight.run.run_id} failed: {message}")

    def _finish(self, flight: InFlight, result: dict[str, Any]) -> None:
        if "refused" in result:
            self._lose(flight, str(result["refused"]))
            return
        folder = Path(flight.run.output_dir)
        try:
            flight.write_log(int(result["log_offset"]), bytes(result["log"]))
        except OSError as exc:
            self._cluster_problem(f"cannot write the log of {flight.run.run_id}: {exc}")
        self._forget(flight)
        record = ExitRecord.from_dict(dict(result["record"]))
        refused = _unpack(bytes(result["tar"]), folder)
        for problem in refused:
            self.on_event(f"{flight.run.run_id}: output not unpacked: {problem}")
        self._end_with(flight.run, record)

    def _end_with(self, run: Run, record: ExitRecord) -> None:
        """Keep the end in the run folder first: if this process dies now, the next `bt`
        command records it from there."""
        exitrecord.write(Path(run.output_dir), record)
        self._record_end(run.run_id, record)

    def _record_end(self, run_id: str, record: ExitRecord) -> None:
        """Validate and record the end (kept for a retry if the registry refuses it)."""
        from btmanager.lifecycle.settle import metrics_for, report_for

        self.unrecorded[run_id] = record
        states = self._states_now()
        if states is None:
            return
        try:
            run = states.registry.get(run_id)  # a cancel may have come in meanwhile
            report = report_for(run, record)
            final = states.end(run_id, record, report, metrics_for(run, report))
        except BtError as exc:
            self._report(str(exc))
            return
        del self.unrecorded[run_id]
        if final is not None:
            reason = f": {final.error_message}" if final.error_message else ""
            self.on_event(f"finished {run_id} {final.status}{reason}")
