"""`bt serve` answers status on its event loop (`LoopReads`): never waiting for a lock, and
always reading the registry file that is there now."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

import pytest

from btmanager.errors import AmbiguousRunError, NotFoundError
from btmanager.keeping.rebuild import set_aside
from btmanager.registry.model import Run
from btmanager.serve.state import LoopReads
from btmanager.service import Service
from btmanager.settings import Settings
from btmanager.timeutil import SYSTEM_CLOCK
from tests.conftest import BtRunner
from tests.helpers import write_script

SCRIPT = "print('done')\n"


def finished_run(bt: BtRunner, label: str = "x") -> str:
    script = write_script(bt.cwd, "job.py", SCRIPT)
    return str(bt("run", str(script), "--no-validate", "--label", label, "--json").json()["run_id"])


def status_of(run_id: str) -> Callable[[Service], Run]:
    return lambda svc: svc.status(run_id)


def test_a_locked_registry_is_left_to_the_thread_pool_at_once(bt: BtRunner) -> None:
    run_id = finished_run(bt)
    reads = LoopReads(Settings.resolve(str(bt.results)))
    holder = sqlite3.connect(bt.results / "bt.sqlite3", timeout=30, isolation_level=None)
    try:
        # Exclusive locking mode shuts readers out too, even of a WAL database.
        holder.execute("PRAGMA locking_mode = EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        assert reads.answer(status_of(run_id)) is None
        # A waiting reader would have stalled the event loop for the 30 s busy timeout.
        assert time.monotonic() - started < 2
    finally:
        holder.close()
    answered = reads.answer(status_of(run_id))
    assert answered is not None and answered.run_id == run_id
    reads.close()


def test_the_request_s_own_faults_are_raised_as_the_pool_would(bt: BtRunner) -> None:
    run_id = finished_run(bt)
    finished_run(bt)
    reads = LoopReads(Settings.resolve(str(bt.results)))
    with pytest.raises(NotFoundError):
        reads.answer(status_of("19990101_000000_00000000"))
    with pytest.raises(AmbiguousRunError):
        reads.answer(status_of(run_id[:9]))
    answered = reads.answer(status_of(run_id))
    assert answered is not None and answered.run_id == run_id
    reads.close()


def test_a_missing_or_replaced_registry(bt: BtRunner) -> None:
    settings = Settings.resolve(str(bt.results))
    reads = LoopReads(settings)

    def labels(svc: Service) -> list[str | None]:
        return [run.label for run in svc.list_runs(svc.selection(), None)[1]]

    assert reads.answer(labels) is None  # no registry yet: the pool says so
    finished_run(bt, "first")
    assert reads.answer(labels) == ["first"]
    # The registry set aside and a new one made in its place (as `bt registry rebuild` does):
    # the new file is read, not the one the loop's connection still holds open.
    set_aside(settings.db_path, SYSTEM_CLOCK)
    finished_run(bt, "second")
    assert reads.answer(labels) == ["second"]
    reads.close()
