"""Real processes meeting a hostile world: a run folder deleted under a running script, and drain
workers meeting a busy, a corrupt and a missing registry.

A run whose folder disappears ends `failed` (failure_kind `folder_lost`), foreground or detached,
validated or not, and its script does not run on. A drain worker says each registry problem in
one line of `<results>/.bt-worker.log`, never a traceback, and gets on with its runs once it can.
`bt health` calls a corrupt registry, and a results path that is a file, unhealthy.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import pid_alive, wait_for, write_script
from tests.queue_support import QueueLab, wait_until_gone

# Notes its pid beside itself once it runs, then lingers (well past any test's patience).
LINGERS = """
import os, pathlib, sys, time
here = pathlib.Path(sys.argv[0]).parent
marker = here / ("started-" + os.environ["BACKTEST_RUN_ID"])
marker.with_suffix(".tmp").write_text(str(os.getpid()))
marker.with_suffix(".tmp").replace(marker)
print("started", flush=True)
deadline = time.time() + 120
while time.time() < deadline:
    time.sleep(0.05)
"""
LOST = "run folder disappeared while the script ran"


def _started(lab: QueueLab) -> tuple[str, int]:
    """(run id, script pid) of the one lingering script, once it runs."""
    marker: Path = wait_for(lambda: next(lab.cwd.glob("started-*"), None), timeout=60)
    return marker.name.removeprefix("started-"), int(marker.read_text())


def _assert_lost(lab: QueueLab, run_id: str, script_pid: int) -> None:
    status = lab.status(run_id)
    assert status["status"] == "failed", status
    assert status["failure_kind"] == "folder_lost", status
    assert status["error_message"] == LOST, status
    assert status["validation_results"] is None  # nothing left to validate
    wait_for(lambda: not pid_alive(script_pid), timeout=30)  # it did not run on


@pytest.mark.parametrize("validate", [True, False], ids=["validated", "no-validate"])
def test_folder_deleted_under_a_foreground_run(lab: QueueLab, validate: bool) -> None:
    write_script(lab.cwd, "linger.py", LINGERS)
    extra = () if validate else ("--no-validate",)
    proc = lab.popen_bt("run", "linger.py", "--grace", "1", "--json", *extra)
    run_id, pid = _started(lab)
    shutil.rmtree(lab.run_dir(run_id))
    out, err = wait_until_gone(proc, timeout=90)
    assert proc.returncode == 1, (out, err)
    assert "Traceback" not in err
    assert '"folder_lost"' in out
    _assert_lost(lab, run_id, pid)


@pytest.mark.parametrize("validate", [True, False], ids=["validated", "no-validate"])
def test_folder_deleted_under_a_detached_run(lab: QueueLab, validate: bool) -> None:
    write_script(lab.cwd, "linger.py", LINGERS)
    extra = () if validate else ("--no-validate",)
    submitted = lab.bt("run", "-d", "linger.py", "--grace", "1", *extra)
    assert submitted.code == 0, submitted.stderr
    run_id, pid = _started(lab)
    assert run_id == submitted.stdout.strip()
    shutil.rmtree(lab.run_dir(run_id))
    code, runs = lab.wait(run_id, timeout=90)
    assert code == 1 and runs[0]["failure_kind"] == "folder_lost", runs
    _assert_lost(lab, run_id, pid)
    log = lab.worker_log()
    assert "Traceback" not in log and f"finished {run_id} failed: {LOST}" in log, log


# --- drain workers and a registry that is busy, corrupt or gone ----------------------------------


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def _problem_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "registry problem" in line]


def _block_then_queue(lab: QueueLab) -> tuple[str, str]:
    """A blocker run holding the only slot (its drain worker watching it), and a run queued
    behind it: once the blocker's gate opens, its worker claims the next."""
    lab.env["BT_MAX_PARALLEL"] = "1"
    blocker = lab.job("blocker", "-p", f"gate={lab.gate('blocker')}")
    lab.wait_running(blocker)
    queued = lab.job("queued")
    return blocker, queued


def test_worker_waits_out_a_busy_registry(lab: QueueLab) -> None:
    blocker, queued = _block_then_queue(lab)
    holder = sqlite3.connect(lab.results / "bt.sqlite3", timeout=30, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # the write lock, as a long transaction would hold it
        lab.gate("blocker").touch()
        # The blocker ends while the lock is held: its supervisor cannot record the end and
        # the worker cannot claim the queued run, for a few seconds.
        wait_for(lambda: "end blocker" in _text(lab.timeline), timeout=60)
        time.sleep(3.0)
        assert lab.rows()[queued]["status"] == "queued"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    code, runs = lab.wait(blocker, queued, timeout=90)
    assert code == 0, runs
    log = lab.worker_log()
    assert "Traceback" not in log, log
    # A lock held for less than the busy timeout is waited out, not a problem; held longer (a
    # very slow machine), it is said once.
    problems = _problem_lines(log)
    assert len(problems) <= 1 and all("locked" in line for line in problems), log


def test_worker_meets_a_corrupt_registry(lab: QueueLab) -> None:
    _block_then_queue(lab)
    db = lab.results / "bt.sqlite3"
    garbage = lab.results / "garbage"
    garbage.write_bytes(b"this is not a database " * 4096)
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    garbage.replace(db)  # new connections (the worker reopens after each fork) see garbage
    lab.gate("blocker").touch()
    _wait_for_worker_exit(lab)
    log = lab.worker_log()
    assert "Traceback" not in log, log
    problems = _problem_lines(log)
    assert len(problems) == 1 and "corrupt" in problems[0], log
    health = lab.bt("health", "--json")
    assert health.code == 1 and health.stderr == ""
    assert health.json()["status"] == "unhealthy" and "corrupt" in health.json()["reason"]


def test_worker_meets_a_missing_registry(lab: QueueLab) -> None:
    _block_then_queue(lab)
    db = lab.results / "bt.sqlite3"
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        path.unlink(missing_ok=True)
    lab.gate("blocker").touch()
    _wait_for_worker_exit(lab)
    log = lab.worker_log()
    assert "Traceback" not in log, log
    problems = _problem_lines(log)
    assert len(problems) == 1 and "is missing" in problems[0], log
    assert not db.exists()  # a worker does not make a new, empty registry in its place


def _wait_for_worker_exit(lab: QueueLab) -> None:
    """Until no drain worker of this lab runs (they exit when nothing is left to watch)."""

    def is_worker(proc: psutil.Process) -> bool:
        try:
            return "worker" in proc.cmdline()
        except psutil.Error:
            return False

    wait_for(lambda: not [proc for proc in lab.leftovers() if is_worker(proc)], timeout=90)


def test_health_names_a_results_path_that_is_a_file(lab: QueueLab) -> None:
    lab.results.write_text("not a folder")
    health = lab.bt("health", "--json")
    assert health.code == 1 and health.stderr == "", health
    document = health.json()
    assert document["status"] == "unhealthy"
    assert "is a file" in document["reason"] and str(lab.results) in document["reason"]
    assert os.path.isfile(lab.results)
