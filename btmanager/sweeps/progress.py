"""Following a sweep to its end (`bt sweep --wait`): counts by status, reported on change."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from btmanager.registry.model import Status

POLL = 0.2  # seconds between two counts (one indexed GROUP BY on the sweep's runs)
HOUSEKEEPING_EVERY = 2.0  # settle dead supervisors, start a worker if needed


@dataclass(frozen=True)
class Progress:
    """How far a sweep has got: its runs by status."""

    total: int
    completed: int
    failed: int
    cancelled: int
    running: int
    queued: int

    @classmethod
    def of(cls, by_status: Mapping[str, int]) -> Progress:
        return cls(
            total=sum(by_status.values()),
            completed=by_status.get(Status.COMPLETED, 0),
            failed=by_status.get(Status.FAILED, 0),
            cancelled=by_status.get(Status.CANCELLED, 0),
            running=by_status.get(Status.RUNNING, 0),
            queued=by_status.get(Status.QUEUED, 0),
        )

    @property
    def done(self) -> int:
        """Runs that are final, whatever their end."""
        return self.completed + self.failed + self.cancelled

    @property
    def finished(self) -> bool:
        return self.done >= self.total

    @property
    def all_completed(self) -> bool:
        return self.completed == self.total

    def by_status(self) -> dict[str, int]:
        return {
            str(Status.QUEUED): self.queued,
            str(Status.RUNNING): self.running,
            str(Status.COMPLETED): self.completed,
            str(Status.FAILED): self.failed,
            str(Status.CANCELLED): self.cancelled,
        }

    def line(self) -> str:
        cancelled = f", {self.cancelled} cancelled" if self.cancelled else ""
        return (
            f"{self.done}/{self.total} done, {self.failed} failed{cancelled}, "
            f"{self.running} running, {self.queued} queued"
        )


def follow(
    count: Callable[[], Mapping[str, int]],
    on_change: Callable[[Progress], None],
    housekeeping: Callable[[], None],
    poll: float = POLL,
) -> Progress:
    """Report the sweep's progress each time it changes, until every run is final."""
    last: Progress | None = None
    next_housekeeping = time.monotonic() + HOUSEKEEPING_EVERY
    while True:
        progress = Progress.of(count())
        if progress != last:
            on_change(progress)
            last = progress
        if progress.finished:
            return progress
        if time.monotonic() >= next_housekeeping:
            housekeeping()
            next_housekeeping = time.monotonic() + HOUSEKEEPING_EVERY
        time.sleep(poll)
