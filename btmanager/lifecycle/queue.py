"""Executing the queue: on-demand drain workers and the foreground `bt worker`.

No long-running command is asked of the user. Whenever a run is queued, or a slot frees up, and
a queued run could start, `ensure_worker` spawns a detached worker in its own session. A worker
claims runs (an atomic registry transaction that enforces the stored parallel limit, see
`RunStates.claim`) and starts a supervisor process for each; the supervisors, not the worker,
run the scripts and record their ends, so a worker that dies leaves its runs untouched. A drain
worker exits once it has nothing to watch and nothing can be claimed; surplus workers find
nothing to claim and exit at once.

The worker is single-threaded (it forks its supervisors, and fork needs that) and closes its
registry connection around each fork.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from btmanager.errors import BtError, NoRegistry
from btmanager.registry.db import Registry
from btmanager.registry.model import Run, Status
from btmanager.settings import Settings

# Every command may call `ensure_worker`; only a worker needs the rest (start-up time).
if TYPE_CHECKING:
    from btmanager.execution import Backend
    from btmanager.execution.base import SupervisorHandle
    from btmanager.lifecycle.state import RunStates

_IDLE_POLL = 0.5
_BUSY_POLL = 0.2
_SETTLE_EVERY = 5.0
_REGISTRY_RETRY = 2.0


def ensure_worker(settings: Settings, registry: Registry, limit: int) -> bool:
    """Spawn a drain worker if a queued run could start now. Returns whether one was spawned.

    Never while a `bt worker --dask` serves the registry: the queue is the cluster's."""
    if registry.has_claimable(limit) and not _dask_serves(registry):
        from btmanager.execution.spawn import spawn_worker

        spawn_worker(settings)
        return True
    return False


def _dask_serves(registry: Registry) -> bool:
    from btmanager.lifecycle.serving import serving

    return serving(registry) is not None


class QueueLoop:
    """What a process executing the queue has, whatever executes the runs: the registry (busy,
    full or broken: one line in the log, never a crash), settling, a stop request, idling."""

    def __init__(
        self,
        settings: Settings,
        backend: Backend,
        idle_exit: float | None,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        from btmanager.lifecycle.watch import StopRequest

        self.settings, self.backend = settings, backend
        self.on_event = on_event or (lambda _message: None)
        self.idle_exit = idle_exit
        self.identity = backend.current()
        self.stop = StopRequest()
        self._registry: Registry | None = None
        self._last_busy = time.monotonic()
        self._problem: str | None = None
        self._next_settle = 0.0
        self._cancel_sent = self._kill_sent = False

    def request_stop(self, reason: str) -> None:
        """Stop claiming and cancel the runs this worker started (a second request forces)."""
        self.stop.request(reason)

    # --- the registry, which may be busy, full or broken: one line in the log, never a crash --

    def _open(self) -> Registry | None:
        if self._registry is None:
            try:
                # Never create it: the runs this worker serves are recorded in it, so a missing
                # registry was moved or deleted, and an empty new one would hide that.
                self._registry = Registry(self.settings.db_path, create=False)
            except NoRegistry:
                self._report(f"the registry {self.settings.db_path} is missing (moved or deleted?)")
                return None
            except BtError as exc:
                self._report(str(exc))
                return None
        return self._registry

    def _close(self) -> None:
        if self._registry is not None:
            self._registry.close()
            self._registry = None

    def _report(self, problem: str, kind: str = "registry problem") -> None:
        """Say each distinct problem once (the log must not fill with the same line)."""
        if problem != self._problem:
            self._problem = problem
            self.on_event(f"{kind}: {problem}")

    def _states(self, registry: Registry) -> RunStates:
        from btmanager.lifecycle.state import RunStates

        return RunStates(registry)

    def _settle(self) -> None:
        from btmanager.lifecycle.settle import settle

        registry = self._open()
        if registry is None:
            return
        try:
            for run_id in settle(registry, self.backend):
                self.on_event(f"settled {run_id} (its supervisor had died)")
        except BtError as exc:
            self._report(str(exc))

    # --- what a loop does each round, and what its kind of worker supplies -------------------

    def _stop_or_claim(self) -> None:
        """Once a stop is requested, cancel this worker's runs (a second request kills them);
        until then, settle now and then and claim what can start."""
        if self.stop.requested.is_set():
            if not self._cancel_sent:
                self._cancel_sent = True
                self._cancel_runs(self.stop.reason)
            if self.stop.forced.is_set() and not self._kill_sent:
                self._kill_sent = True
                self._kill_runs()
            return
        now = time.monotonic()
        if now >= self._next_settle:
            self._next_settle = now + _SETTLE_EVERY
            self._settle()
        self._claim_all()

    def _claim_all(self) -> None:
        raise NotImplementedError

    def _claim_one(self, executor: str | None = None) -> Run | None:
        """The next run this worker may start (see `RunStates.claim`), or None."""
        registry = self._open()
        if registry is None:
            return None
        try:
            run = self._states(registry).claim(self.identity, executor)
        except BtError as exc:
            self._report(str(exc))
            return None
        if run is not None:
            self._problem = None
        return run

    def _cancel_runs(self, reason: str) -> None:
        raise NotImplementedError

    def _kill_runs(self) -> None:
        raise NotImplementedError

    def _request_cancels(self, run_ids: list[str], reason: str) -> None:
        """Record a cancel request for each run (their supervisors act on it)."""
        registry = self._open()
        if registry is None:
            return
        for run_id in run_ids:
            try:
                self._states(registry).request_cancel(run_id, f"cancelled: {reason}")
            except BtError as exc:
                self._report(str(exc))

    def _idle_long_enough(self) -> bool:
        """With --idle-exit: nothing was queued or running for that long."""
        if self.idle_exit is None:
            return False
        registry = self._open()
        if registry is None:
            return False
        try:
            counts = registry.count_by_status()
        except BtError as exc:
            self._report(str(exc))
            return False
        if counts[Status.QUEUED] or counts[Status.RUNNING]:
            self._last_busy = time.monotonic()
            return False
        return time.monotonic() - self._last_busy >= self.idle_exit


class Worker(QueueLoop):
    """Claims queued runs and starts a supervisor for each, within the stored limit."""

    def __init__(
        self,
        settings: Settings,
        backend: Backend,
        idle_exit: float | None,
        drain: bool,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(settings, backend, idle_exit, on_event)
        self.drain = drain
        self.children: dict[str, SupervisorHandle] = {}

    # --- the loop ----------------------------------------------------------------------------

    def run(self) -> None:
        try:
            while True:
                self._stop_or_claim()
                self._reap()
                if not self.children and self._done():
                    return
                self._wait(_BUSY_POLL if self.children else _IDLE_POLL)
        finally:
            self._close()

    def _claim_all(self) -> None:
        from btmanager.lifecycle.supervise import SupervisorJob, prepare_end, start_supervisor

        while not self.stop.requested.is_set() and not self._dask_serves():
            run = self._claim_one()
            if run is None:
                return
            job = SupervisorJob(self.settings.db_path, run, watched=False)
            # What a run's end needs, imported once here: every supervisor forked from now on
            # inherits it instead of importing it again (~15 ms of CPU per run of a sweep).
            prepare_end(run)
            self._close()  # no registry connection may cross a fork
            try:
                self.children[run.run_id] = start_supervisor(job, self.backend)
                self.on_event(f"started {run.run_id}")
            except (OSError, BtError) as exc:
                self._fail_start(run.run_id, exc)

    def _dask_serves(self) -> bool:
        """While a `bt worker --dask` serves the registry, the queue is the cluster's."""
        registry = self._open()
        return registry is not None and _dask_serves(registry)

    def _fail_start(self, run_id: str, exc: Exception) -> None:
        from btmanager.lifecycle.exitrecord import ExitRecord

        self.on_event(f"could not start a supervisor for {run_id}: {exc}")
        registry = self._open()
        if registry is None:
            return
        try:
            record = ExitRecord(None, self._states(registry).clock.now_iso(), launch_error=str(exc))
            self._states(registry).end(run_id, record, None)
        except BtError as exc2:
            self._report(str(exc2))

    def _reap(self) -> None:
        for run_id, handle in list(self.children.items()):
            if handle.wait(0):
                del self.children[run_id]
                self._last_busy = time.monotonic()
                self.on_event(f"finished {run_id} {self._outcome(run_id)}")

    def _outcome(self, run_id: str) -> str:
        registry = self._open()
        if registry is None:
            return "(registry unavailable)"
        try:
            final = registry.get(run_id)
        except BtError:
            return "(registry unavailable)"
        if final.status == Status.RUNNING:
            return "(end not recorded yet; the next bt command records it)"
        return final.status + (f": {final.error_message}" if final.error_message else "")

    def _wait(self, timeout: float) -> None:
        if not self.children:
            self.stop.requested.wait(timeout)
            return
        import select

        try:
            select.select(list(self.children.values()), [], [], timeout)
        except (OSError, ValueError):
            time.sleep(timeout)

    def _done(self) -> bool:
        if self.stop.requested.is_set():
            return True
        if not self.drain:
            return self._idle_long_enough()
        registry = self._open()
        if registry is None:
            return True
        try:
            limit = self._states(registry).limit()
            return _dask_serves(registry) or not registry.has_claimable(limit)
        except BtError as exc:
            self._report(str(exc))
            return True

    def _cancel_runs(self, reason: str) -> None:
        self._request_cancels(list(self.children), reason)
        self._signal_children("SIGTERM")

    def _kill_runs(self) -> None:
        self._signal_children("SIGUSR1")

    def _signal_children(self, name: str) -> None:
        for handle in self.children.values():
            self.backend.signal(handle.identity, name)
