"""A token bucket per client for submissions: `count` at once, refilled at count/period.

Unlike a fixed window (which lets twice the rate through across a window boundary) a bucket
never allows more than `count` plus what refilled meanwhile.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from btmanager.serve.config import Rate

# Buckets are forgotten once full again; this many clients at most are remembered at once.
MAX_CLIENTS = 10_000


class RateLimiter:
    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(rate.count)
        self.refill = rate.per_second
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """0.0 if the client may go ahead (one token taken), else seconds until it may."""
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - at) * self.refill)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                if len(self._buckets) > MAX_CLIENTS:
                    self._forget_full(now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.refill

    def _forget_full(self, now: float) -> None:
        for client, (tokens, at) in list(self._buckets.items()):
            if tokens + (now - at) * self.refill >= self.capacity:
                del self._buckets[client]
        while len(self._buckets) > MAX_CLIENTS:  # all busy: drop the oldest
            del self._buckets[next(iter(self._buckets))]


def retry_after(seconds: float) -> str:
    """A Retry-After header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
