"""What the app keeps between requests: its config, the rate limiter, the stream slots, the
shutdown flag, and a short-lived copy of the health check."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from btmanager.errors import AmbiguousRunError, BtError, NoRegistry, NotFoundError, UsageError
from btmanager.registry.db import Registry
from btmanager.serve.config import ServeConfig
from btmanager.serve.ratelimit import RateLimiter
from btmanager.serve.streams import StreamSlots
from btmanager.service import Service
from btmanager.settings import Settings

# `/api/health` needs no token and runs SQLite's quick_check: answer from a copy this fresh,
# so a flood of health checks costs one check per second.
HEALTH_TTL = 1.0
# How often the server itself looks after the queue (settles runs whose supervisor died, starts
# a worker for queued runs nobody executes), as any `bt` command does when it starts.
HOUSEKEEPING_SECONDS = 5.0

T = TypeVar("T")


def registry_identity(db_path: Path) -> tuple[int, int] | None:
    """The registry file's (device, inode): a file replaced meanwhile (`bt registry rebuild`)
    has another, and connections to the old one must be opened anew."""
    try:
        info = os.stat(db_path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


class Services:
    """A Service per worker thread, kept between the requests that thread serves.

    Opening the registry costs ~2-3 ms (connection, schema, the housekeeping query), several
    times a whole status request; a thread keeps its Service, and so its connections, which
    never cross threads. Reads see every commit (autocommit: each query is its own read). A
    registry file replaced meanwhile (`bt registry rebuild`) is noticed by its identity and
    opened anew; a request that failed drops its thread's Service. The housekeeping a `bt`
    command does when it opens the registry is done by `ServeState.housekeeping` instead.
    """

    def __init__(self, settings: Settings, busy_ms: int | None = None) -> None:
        self.settings = settings
        # With `busy_ms`, each Service reads through a registry that waits no longer than that
        # for a lock, opened without a command's housekeeping (which may write and wait).
        self.busy_ms = busy_ms
        self._local = threading.local()

    def get(self) -> Service:
        identity = registry_identity(self.settings.db_path)
        current: Service | None = getattr(self._local, "service", None)
        if current is not None and getattr(self._local, "identity", None) == identity:
            return current
        self.discard()
        current = self._open()
        self._local.service, self._local.identity = current, identity
        return current

    def _open(self) -> Service:
        if self.busy_ms is None:
            return Service(self.settings, spawn_workers=False)
        reader = Registry(self.settings.db_path, create=False, readonly=True, busy_ms=self.busy_ms)
        return Service(self.settings, spawn_workers=False, reader=reader)

    def discard(self) -> None:
        current: Service | None = getattr(self._local, "service", None)
        self._local.service = None
        if current is not None:
            current.close()


class LoopReads:
    """Short reads answered on the event loop itself, without a hop to the thread pool.

    The hop (to a pool thread and back, and the GIL passed among up to 40 threads) costs several
    times a status read (~0.2 ms): under 20 polling clients it halved the server's throughput.
    The loop's connection never waits for a lock (busy timeout 0), so the loop cannot stall:
    whatever it cannot answer at once (a busy, missing or replaced registry, any storage
    trouble) gives None, and the caller asks the thread pool, whose Services wait and report
    errors as every command does. Used by the event loop's thread only.
    """

    def __init__(self, settings: Settings) -> None:
        self.services = Services(settings, busy_ms=0)

    def answer(self, read: Callable[[Service], T]) -> T | None:
        try:
            return read(self.services.get())
        except NoRegistry:
            return None  # not there (yet): the thread pool says so in the commands' words
        except (UsageError, NotFoundError, AmbiguousRunError):
            raise  # the request's own fault: the thread pool would say the same
        except (BtError, OSError):
            self.services.discard()
            return None

    def close(self) -> None:
        self.services.discard()


class ServeState:
    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.limiter = RateLimiter(config.rate)
        self.slots = StreamSlots(config.max_streams)
        self.shutdown = threading.Event()
        self.services = Services(config.settings)
        self.loop_reads = LoopReads(config.settings)
        self._health: tuple[float, dict[str, Any]] | None = None
        self._health_lock = threading.Lock()

    def health(self) -> dict[str, Any]:
        with self._health_lock:
            now = time.monotonic()
            if self._health is None or now - self._health[0] > HEALTH_TTL:
                svc = Service(self.config.settings, spawn_workers=False)
                try:
                    self._health = (now, svc.health())
                finally:
                    svc.close()
            return dict(self._health[1])

    def housekeeping(self) -> None:
        """Until shutdown: open the registry now and then as a `bt` command would."""
        while not self.shutdown.wait(HOUSEKEEPING_SECONDS):
            svc = Service(self.config.settings)
            try:
                svc.registry  # noqa: B018 - opening it does the housekeeping
            except (BtError, OSError):
                pass  # no registry yet, or busy: next time
            finally:
                svc.close()
