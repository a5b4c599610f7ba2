"""Timestamps and run ids. All times are UTC; JSON carries ISO 8601 with the offset."""

from __future__ import annotations

import os
from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def now_iso() -> str:
    return iso(utcnow())


def parse_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def new_run_id(moment: datetime | None = None) -> str:
    """`YYYYMMDD_HHMMSS_xxxxxxxx`: UTC second plus 32 random bits (the registry enforces uniqueness)."""
    stamp = (moment or utcnow()).strftime("%Y%m%d_%H%M%S")
    # os.urandom is what secrets.token_hex uses; importing secrets loads hashlib (~3 ms).
    return f"{stamp}_{os.urandom(4).hex()}"


def seconds_between(start: str | None, end: str | None) -> float | None:
    begin, finish = parse_iso(start), parse_iso(end)
    if begin is None or finish is None:
        return None
    return round((finish - begin).total_seconds(), 3)


class Clock:
    """Where run state gets the time from; tests pass a fake one to step through a run's life."""

    def now(self) -> datetime:
        return utcnow()

    def now_iso(self) -> str:
        return iso(self.now())


SYSTEM_CLOCK = Clock()


def elapsed_since(iso_start: str | None) -> float:
    begin = parse_iso(iso_start)
    return (utcnow() - begin).total_seconds() if begin else 0.0
