"""The live log as server-sent events: one event per line, its id the line's number.

Each stream reads the log in a thread of its own (the registry connection it polls must stay in
one thread), handing batches of lines to the event loop through a small queue; the number of
streams open at once is bounded. A stream ends after the run's last line once the run is
final, when the client goes away, or when the server shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import AsyncIterator

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from btmanager.errors import BtError
from btmanager.service import LogLine, Service
from btmanager.settings import Settings

log = logging.getLogger("btmanager.serve")

BATCH_LINES = 500  # lines per hand-over from the reading thread
QUEUE_BATCHES = 16  # batches waiting at most: a slow client slows the reader, not memory
KEEPALIVE_SECONDS = 10.0  # a comment when idle, so dead clients are noticed
POLL_SECONDS = 0.5  # how often an idle stream looks at the shutdown flag


class _End:
    """The stream's last word: the run's final status, or what went wrong."""

    def __init__(self, status: str | None = None, error: str | None = None) -> None:
        self.status = status
        self.error = error


class StreamSlots:
    """At most `limit` open streams; a stream holds its slot until its response is done."""

    def __init__(self, limit: int) -> None:
        self._free = threading.BoundedSemaphore(limit)

    def try_take(self) -> bool:
        return self._free.acquire(blocking=False)

    def give_back(self) -> None:
        self._free.release()


def format_event(line: LogLine) -> str:
    # A bare CR also ends a line in the event-stream format: each CR-separated piece becomes a
    # data field of its own, which clients join with a newline.
    pieces = line.text.split("\r")
    return f"id: {line.number}\n" + "".join(f"data: {piece}\n" for piece in pieces) + "\n"


async def log_events(
    settings: Settings,
    run_id: str,
    after: int | None,
    last: int | None,
    shutdown: threading.Event,
) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    handover: queue.Queue[list[LogLine] | _End] = queue.Queue(QUEUE_BATCHES)
    wake = asyncio.Event()
    gone = threading.Event()

    def stopping() -> bool:
        return gone.is_set() or shutdown.is_set()

    def hand(item: list[LogLine] | _End) -> bool:
        while not stopping():
            try:
                handover.put(item, timeout=POLL_SECONDS)
            except queue.Full:
                continue
            with contextlib.suppress(RuntimeError):  # the loop is closing: nobody listens
                loop.call_soon_threadsafe(wake.set)
            return True
        return False

    def read() -> None:
        svc = Service(settings, spawn_workers=False)
        lines = svc.follow_numbered(run_id, after=after, last=last)
        end = _End()
        try:
            batch: list[LogLine] = []
            for line in lines:
                if line is not None:
                    batch.append(line)
                    if len(batch) < BATCH_LINES:
                        continue
                # Caught up with the log (None), or a full batch: hand it over now.
                if batch and not hand(batch):
                    return
                batch = []
                if stopping():
                    return
            if batch and not hand(batch):
                return
            end = _End(status=svc.status(run_id).status)
        except BtError as exc:
            end = _End(error=str(exc))
        except Exception:
            log.exception("log stream of %s failed", run_id)
            end = _End(error="internal error")
        finally:
            lines.close()
            svc.close()
        hand(end)

    reader = threading.Thread(target=read, name=f"bt-log-{run_id}", daemon=True)
    reader.start()
    idle = 0.0
    try:
        while True:
            try:
                item = handover.get_nowait()
            except queue.Empty:
                wake.clear()
                try:
                    item = handover.get_nowait()
                except queue.Empty:
                    if shutdown.is_set():
                        return
                    try:
                        async with asyncio.timeout(POLL_SECONDS):
                            await wake.wait()
                    except TimeoutError:
                        idle += POLL_SECONDS
                        if idle >= KEEPALIVE_SECONDS:
                            idle = 0.0
                            yield ": keepalive\n\n"
                    continue
            idle = 0.0
            if isinstance(item, _End):
                if item.error is not None:
                    text = " ".join(item.error.splitlines())
                    yield f"event: error\ndata: {text}\n\n"
                else:
                    # Not a line: tells clients the run is final, so there is nothing to resume.
                    yield f"event: end\ndata: {item.status}\n\n"
                return
            yield "".join(format_event(line) for line in item)
    finally:
        gone.set()


class EventStream(StreamingResponse):
    """An event-stream response that gives its slot back however it ends."""

    def __init__(self, events: AsyncIterator[str], slots: StreamSlots) -> None:
        super().__init__(
            events,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
        self.slots = slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slots.give_back()
