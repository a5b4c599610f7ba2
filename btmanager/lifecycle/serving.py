"""Which `bt worker --dask` serves a registry, recorded in its settings table.

While one serves (its process alive), the queue is the cluster's: commands that queue work start
no local drain worker, and drain workers already running claim nothing more and exit once their
runs have ended. `bt health` shows the cluster it serves. Cheap to read (one settings row and a
/proc look-up): every command's housekeeping may ask.
"""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple

from btmanager.errors import BtError
from btmanager.registry.db import Registry
from btmanager.registry.model import ProcessIdentity

DASK_WORKER_KEY = "dask_worker"
DASK_EXECUTOR = "dask"  # the `executor` of runs executed on a Dask cluster


class DaskServing(NamedTuple):
    """A `bt worker --dask` process and the cluster it uses."""

    pid: int
    create_time: float
    host: str
    scheduler: str
    workers: int
    threads: int
    since: str

    @property
    def identity(self) -> ProcessIdentity:
        return ProcessIdentity(self.pid, self.create_time)

    def health(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler, "workers": self.workers, "threads": self.threads}


def this_host() -> str:
    """This machine's name (gethostname), without importing socket where uname has it."""
    if hasattr(os, "uname"):
        return os.uname().nodename
    import socket

    return socket.gethostname()


def _read(registry: Registry) -> DaskServing | None:
    raw = registry.setting(DASK_WORKER_KEY)
    if not raw:
        return None
    try:
        data = json.loads(raw)
        return DaskServing(**data) if isinstance(data, dict) else None
    except (ValueError, TypeError):
        return None


def serving(registry: Registry) -> DaskServing | None:
    """The `bt worker --dask` serving the registry now (its process alive), or None."""
    try:
        found = _read(registry)
    except BtError:
        return None
    if found is None:
        return None
    # The registry lives on one machine, and so does the `bt worker --dask` that serves it;
    # a record from another host cannot be checked and does not count.
    if found.host != this_host():
        return None
    from btmanager.execution.proctree import is_alive

    return found if is_alive(found.identity) else None


def record(registry: Registry, serving_now: DaskServing) -> None:
    registry.set_setting(DASK_WORKER_KEY, json.dumps(serving_now._asdict()))


def clear(registry: Registry, mine: ProcessIdentity) -> None:
    """Forget the record if it is still this process's own."""
    with registry.write() as db:
        row = db.execute("SELECT value FROM settings WHERE key = ?", (DASK_WORKER_KEY,)).fetchone()
        if row is None:
            return
        try:
            data = json.loads(row[0])
        except ValueError:
            data = {}
        if data.get("pid") == mine.pid:
            db.execute("DELETE FROM settings WHERE key = ?", (DASK_WORKER_KEY,))
