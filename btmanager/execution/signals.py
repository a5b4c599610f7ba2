"""Turning Ctrl-C and SIGTERM sent to `bt` itself into a stop request for the run it watches."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def stop_on_signals(on_signal: Callable[[str], None]) -> Iterator[None]:
    """While inside, SIGINT/SIGTERM (and SIGHUP where it exists) call `on_signal(name)`
    instead of killing `bt`. Must be entered from the main thread."""
    names = ["SIGINT", "SIGTERM", "SIGHUP"]
    wanted = [getattr(signal, name) for name in names if hasattr(signal, name)]

    def handler(signum: int, _frame: FrameType | None) -> None:
        on_signal(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in wanted}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
