"""The foreground `bt run`: start a run's supervisor, mirror its log, relay stop requests.

The foreground `bt` only watches: the supervisor records the run's end. If `bt` dies, the
supervisor sees its end of the pipe close, ends the run's tree and records it `cancelled`, so a
run never goes on unwatched.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from btmanager.logs import LOG_FILE, LogReader
from btmanager.registry.model import Run

if TYPE_CHECKING:
    from btmanager.execution.base import SupervisorHandle

_TICK = 0.1  # how often new output is mirrored; the supervisor's exit wakes the watcher at once


class RunObserver(Protocol):
    """Receives what happens during a run (the CLI renders it)."""

    def started(self, run: Run) -> None: ...

    def output(self, data: bytes) -> None: ...

    def tick(self, elapsed: float) -> None: ...

    def stopping(self, reason: str) -> None: ...

    def finished(self) -> None: ...


class QuietObserver:
    def started(self, run: Run) -> None:
        pass

    def output(self, data: bytes) -> None:
        pass

    def tick(self, elapsed: float) -> None:
        pass

    def stopping(self, reason: str) -> None:
        pass

    def finished(self) -> None:
        pass


class StopRequest:
    """A request to stop a run from inside the watching process (a signal to `bt`).

    The first request ends the tree politely (SIGTERM, grace, SIGKILL); a second one forces it.
    """

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.forced = threading.Event()
        self.reason = ""

    def request(self, reason: str) -> None:
        if self.requested.is_set():
            self.forced.set()
        else:
            self.reason = reason
            self.requested.set()


class _Guarded:
    """An observer whose output may fail (the terminal closed: EIO): the run goes on unseen."""

    def __init__(self, observer: RunObserver) -> None:
        self.observer: RunObserver | None = observer

    def call(self, name: str, *args: object) -> None:
        if self.observer is None:
            return
        try:
            getattr(self.observer, name)(*args)
        except OSError:
            self.observer = None


def watch(
    run: Run,
    supervisor: SupervisorHandle,
    observer: RunObserver,
    stop: StopRequest,
    meanwhile: Callable[[], None] | None = None,
) -> None:
    """Mirror the run's log until its supervisor exits, relaying stop requests to it.

    `meanwhile` is called once, at the start: work the end needs that can be done while the
    script runs (on a core it leaves idle) rather than after it.
    """
    import time

    shown = _Guarded(observer)
    shown.call("started", run)
    if meanwhile is not None:
        meanwhile()
    log = LogReader(Path(run.output_dir) / LOG_FILE)
    begin = time.monotonic()
    sent_cancel = sent_kill = False
    while True:
        ended = supervisor.wait(_TICK)
        for chunk in log.read_new():
            shown.call("output", chunk)
        if ended:
            break
        shown.call("tick", time.monotonic() - begin)
        if stop.requested.is_set() and not sent_cancel:
            sent_cancel = True
            shown.call("stopping", stop.reason)
            supervisor.send(f"cancel cancelled: {stop.reason}")
        if stop.forced.is_set() and not sent_kill:
            sent_kill = True
            shown.call("stopping", "killing at once")
            supervisor.send("kill")
    shown.call("finished")
