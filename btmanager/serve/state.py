"""What the app keeps between requests: its config, the rate limiter, the stream slots, the
shutdown flag, and a short-lived copy of the health check."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from btmanager.errors import BtError
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


class Services:
    """A Service per worker thread, kept between the requests that thread serves.

    Opening the registry costs ~2-3 ms (connection, schema, the housekeeping query), several
    times a whole status request; a thread keeps its Service, and so its connections, which
    never cross threads. Reads see every commit (autocommit: each query is its own read). A
    registry file replaced meanwhile (`bt registry rebuild`) is noticed by its identity and
    opened anew; a request that failed drops its thread's Service. The housekeeping a `bt`
    command does when it opens the registry is done by `ServeState.housekeeping` instead.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._local = threading.local()

    def _identity(self) -> tuple[int, int] | None:
        try:
            info = os.stat(self.settings.db_path)
        except OSError:
            return None
        return info.st_dev, info.st_ino

    def get(self) -> Service:
        identity = self._identity()
        current: Service | None = getattr(self._local, "service", None)
        if current is not None and getattr(self._local, "identity", None) == identity:
            return current
        self.discard()
        current = Service(self.settings, spawn_workers=False)
        self._local.service, self._local.identity = current, identity
        return current

    def discard(self) -> None:
        current: Service | None = getattr(self._local, "service", None)
        self._local.service = None
        if current is not None:
            current.close()


class ServeState:
    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.limiter = RateLimiter(config.rate)
        self.slots = StreamSlots(config.max_streams)
        self.shutdown = threading.Event()
        self.services = Services(config.settings)
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
