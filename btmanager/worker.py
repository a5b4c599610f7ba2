"""Executing the queue: on-demand drain workers and the foreground `bt worker`.

No long-running command is asked of the user. Whenever a run is queued, or a slot frees up, and
a queued run could start, `ensure_worker` spawns a detached worker in its own session; the worker
claims runs one at a time (an atomic registry transaction, see `Registry.claim_next`) until none
can be claimed, then exits. Surplus workers find nothing to claim and exit at once; a run is
never stranded, because every worker re-claims after each run it finishes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING

from btmanager.reconcile import reconcile
from btmanager.runfile import write_run_file
from btmanager.settings import Settings
from btmanager.store import FAILED, Registry

if TYPE_CHECKING:
    # Every command calls `ensure_worker`; only a worker needs the runner (start-up time).
    from btmanager.execution import Backend
    from btmanager.runner import StopRequest

WORKER_LOG = ".bt-worker.log"
_IDLE_POLL = 0.5
_RECONCILE_EVERY = 5.0


def spawn_worker(settings: Settings) -> None:
    """Start a detached drain worker that outlives this process, its terminal and its group."""
    argv = [
        sys.executable,
        "-m",
        "btmanager",
        "--results-dir",
        str(settings.results_dir),
        "worker",
        "--drain",
        "--max-parallel",
        str(settings.max_parallel),
    ]
    env = dict(os.environ)
    env["BT_DB"] = str(settings.db_path)
    # A run's script may itself submit runs: the worker it spawns serves the whole queue and
    # must not carry that run's marker, or cancelling the run would end the worker too.
    env.pop("BACKTEST_RUN_ID", None)  # execution.proctree.MARKER_ENV (not imported: start-up)
    env.pop("BACKTEST_OUTPUT_DIR", None)
    kwargs: dict[str, object] = {}
    if os.name == "posix":
        kwargs["start_new_session"] = True
    else:
        flags = getattr(subprocess, "DETACHED_PROCESS", 0)
        kwargs["creationflags"] = flags | getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
    settings.results_dir.mkdir(parents=True, exist_ok=True)  # BT_DB may live elsewhere
    with open(settings.results_dir / WORKER_LOG, "ab") as log:
        subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            close_fds=True,
            cwd=str(settings.results_dir),
            env=env,
            **kwargs,  # type: ignore[call-overload]
        )


def ensure_worker(settings: Settings, registry: Registry) -> bool:
    """Spawn a drain worker if a queued run could start now. Returns whether one was spawned."""
    if registry.has_claimable(settings.max_parallel):
        spawn_worker(settings)
        return True
    return False


class Worker:
    """Claims and supervises queued runs in `slots` threads, each with its own connection."""

    def __init__(
        self,
        settings: Settings,
        backend: Backend,
        slots: int,
        limit: int,
        idle_exit: float | None,
        drain: bool,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.settings, self.backend = settings, backend
        self.on_event = on_event or (lambda _message: None)
        self.slots, self.limit = slots, limit
        self.idle_exit, self.drain = idle_exit, drain
        from btmanager.runner import StopRequest

        self.identity = backend.current()
        self.stop = StopRequest()
        self._stops: list[StopRequest] = []
        self._lock = threading.Lock()
        self._last_busy = time.monotonic()

    def request_stop(self, reason: str) -> None:
        """Stop claiming, and end the runs in progress (a second request forces them)."""
        self.stop.request(reason)
        with self._lock:
            for run_stop in self._stops:
                run_stop.request(reason)

    def run(self) -> None:
        threads = [
            threading.Thread(target=self._slot, name=f"slot-{n}", daemon=True)
            for n in range(self.slots)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)  # short joins keep the main thread responsive to signals

    def _slot(self) -> None:
        with Registry(self.settings.db_path) as registry:
            next_reconcile = 0.0
            while not self.stop.requested.is_set():
                now = time.monotonic()
                if now >= next_reconcile:
                    reconcile(registry, self.backend)
                    next_reconcile = now + _RECONCILE_EVERY
                run = registry.claim_next(self.limit, self.identity)
                if run is not None:
                    self._supervise(registry, run.run_id)
                    continue
                if self.drain or self._idle_for_long(registry):
                    return
                self.stop.requested.wait(_IDLE_POLL)

    def _supervise(self, registry: Registry, run_id: str) -> None:
        from btmanager.runner import StopRequest, supervise

        run_stop = StopRequest()
        with self._lock:
            self._stops.append(run_stop)
            if self.stop.requested.is_set():  # a stop that came between claim and here
                run_stop.request(self.stop.reason)
        try:
            self.on_event(f"started {run_id}")
            final = supervise(registry, registry.get(run_id), self.backend, stop=run_stop)
            outcome = final.status + (f": {final.error_message}" if final.error_message else "")
            self.on_event(f"finished {run_id} {outcome}")
        except Exception as exc:  # a bug in one run must not strand it or the slot
            self._fail_run(registry, run_id, exc)
        finally:
            with self._lock:
                self._stops.remove(run_stop)
                self._last_busy = time.monotonic()

    def _fail_run(self, registry: Registry, run_id: str, exc: Exception) -> None:
        """End what is left of the run's tree and fail it; the traceback goes to the worker's log
        (`.bt-worker.log` for drain workers). Without this the run would stay `running` for as
        long as this worker lives, since its supervisor is alive."""
        traceback.print_exc()
        sys.stderr.flush()
        try:
            run = registry.get(run_id)
            self.backend.terminate(run.script_identity, run_id, run.grace_seconds)
            message = f"internal error while supervising the run: {type(exc).__name__}: {exc}"
            if registry.finish(run_id, FAILED, message):
                write_run_file(registry.get(run_id))
        except Exception:  # e.g. the registry stayed locked; reconciliation settles it
            traceback.print_exc()

    def _idle_for_long(self, registry: Registry) -> bool:
        if self.idle_exit is None:
            return False
        counts = registry.count_by_status()
        with self._lock:
            if counts["queued"] or counts["running"] or self._stops:
                self._last_busy = time.monotonic()
                return False
            return time.monotonic() - self._last_busy >= self.idle_exit
