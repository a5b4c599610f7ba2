"""The registry under pressure, with real processes: a full or read-only disk, a lock held by
someone else, and the parallel limit that only `bt run -d`, `bt worker` and `bt parallel N` set.

A run's end that cannot be written is kept in its exit record (<run>/.bt/exit.json) and recorded
by the supervisor's retries or by the next `bt` command that can; reads open the registry
read-only and work meanwhile. The disk tests mount small tmpfs file systems, which needs root;
elsewhere they are skipped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.helpers import Result, pid_alive, wait_for, write_script
from tests.lifecycle_support import exit_record, final_row
from tests.queue_support import QueueLab, assert_each_started_once, lab_for, max_overlap

# Waits for its gate, then fills the disk its output folder is on (until ENOSPC, down to the
# last byte) and exits 0 without writing anything else.
FILLER = """
import os, sys, time


def arg(name):
    return sys.argv[sys.argv.index(name) + 1]


print("filler started", flush=True)
deadline = time.time() + 60
while not os.path.exists(arg("--gate")) and time.time() < deadline:
    time.sleep(0.02)
fd = os.open(os.path.join(arg("--output_dir"), "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
for size in (1 << 16, 1 << 12, 1):
    try:
        while True:
            os.write(fd, b"\\0" * size)
    except OSError:
        pass
os.close(fd)
sys.exit(0)
"""

# Shortens the registry's busy timeout in every bt process of a test (bt has no setting for it,
# and waiting out the real 30 s would make the test far too slow).
SHORT_BUSY_TIMEOUT = """
import os

if os.environ.get("BT_TEST_BUSY_TIMEOUT_MS"):
    import btmanager.registry.db

    btmanager.registry.db.BUSY_TIMEOUT_MS = int(os.environ["BT_TEST_BUSY_TIMEOUT_MS"])
"""


# --- helpers --------------------------------------------------------------------------------


def _mount_tmpfs(point: Path, size: str) -> None:
    point.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


@pytest.fixture
def disk_lab(tmp_path: Path) -> Iterator[QueueLab]:
    """A lab whose results root is a 2 MB tmpfs of its own."""
    with lab_for(tmp_path) as lab:
        _mount_tmpfs(lab.results, "2m")
        try:
            yield lab
        finally:
            lab.cleanup()  # nothing may keep the mount busy
            subprocess.run(["umount", "-l", str(lab.results)], capture_output=True)


def _assert_clean_read(result: Result, *args: str) -> None:
    assert result.code == 0, (args, result.code, result.stdout, result.stderr)
    assert result.stderr == "", (args, result.stderr)


def _reads_work(lab: QueueLab, run_id: str, logged: str) -> dict[str, Any]:
    """`bt list`, `status`, `logs`, `health` all answer, with no error and no warning on
    stderr; the run's status as `bt status` shows it."""
    _assert_clean_read(lab.bt("list"), "list")
    listed = lab.bt("list", "--json")
    _assert_clean_read(listed, "list")
    assert run_id in [run["run_id"] for run in listed.json()["runs"]]
    logs = lab.bt("logs", run_id)
    _assert_clean_read(logs, "logs")
    assert logged in logs.stdout
    health = lab.bt("health", "--json")
    _assert_clean_read(health, "health")
    assert health.json()["status"] == "healthy"
    status = lab.bt("status", run_id, "--json")
    _assert_clean_read(status, "status")
    document: dict[str, Any] = status.json()
    return document


def _fill_the_disk(lab: QueueLab) -> tuple[str, dict[str, Any]]:
    """A detached run whose script fills the disk and exits 0; (run id, its running row) once
    the script has ended and its supervisor wrote the exit record."""
    write_script(lab.cwd, "filler.py", FILLER)
    gate = lab.gate("fill")
    run_id = lab.submit("filler.py", "-p", f"gate={gate}")
    row = lab.wait_running(run_id)
    wait_for(lambda: "filler started" in lab.log(run_id))
    gate.touch()
    record = wait_for(lambda: exit_record(lab, run_id), timeout=15)
    assert record["exit_code"] == 0 and record["cancelled"] is None, record
    wait_for(lambda: not pid_alive(row["pid"]))
    assert os.statvfs(lab.results).f_bavail == 0, "the disk should be full"
    return run_id, row


# --- a full disk ----------------------------------------------------------------------------


def test_full_disk_reads_work_and_the_end_is_recorded_once_space_returns(
    disk_lab: QueueLab,
) -> None:
    lab = disk_lab
    run_id, row = _fill_the_disk(lab)
    # The supervisor could not record the end (the registry cannot grow); it keeps trying.
    assert lab.rows()[run_id]["status"] == "running"
    assert pid_alive(row["supervisor_pid"])
    status = _reads_work(lab, run_id, "filler started")
    assert status["status"] == "running"
    assert lab.bt("health", "--json").json()["active_runs"] == 1
    (lab.run_dir(run_id) / "filler").unlink()
    final = final_row(lab, run_id, timeout=15)  # its next retry, within 2 s
    assert (final["status"], final["exit_code"], final["failure_kind"]) == ("completed", 0, None)
    assert final["error_message"] is None
    wait_for(lambda: not pid_alive(row["supervisor_pid"]), 10)
    status = lab.status(run_id)
    assert status["status"] == "completed" and status["exit_code"] == 0
    wait_for(lambda: lab.run_json(run_id)["status"] == "completed", timeout=10)
    assert not [r for r in lab.rows().values() if r["status"] in ("queued", "running")]
    wait_for(lambda: not lab.leftovers(), 15)


def test_full_disk_end_kept_in_the_exit_record_is_recorded_by_the_next_command(
    disk_lab: QueueLab,
) -> None:
    lab = disk_lab
    run_id, row = _fill_the_disk(lab)
    # The supervisor dies before it could write the end: only the exit record knows it.
    os.kill(row["supervisor_pid"], signal.SIGKILL)
    wait_for(lambda: not pid_alive(row["supervisor_pid"]))
    (lab.run_dir(run_id) / "filler").unlink()
    # The first `bt` command that can write (or the drain worker, when it settles) records the
    # true end from the exit record, not "supervisor died; exit status unknown".
    status = lab.status(run_id)
    assert (status["status"], status["exit_code"], status["failure_kind"]) == (
        "completed", 0, None,
    )  # fmt: skip
    assert status["error_message"] is None
    assert lab.rows()[run_id]["status"] == "completed"
    wait_for(lambda: lab.run_json(run_id)["status"] == "completed", timeout=10)
    wait_for(lambda: not lab.leftovers(), 15)


def _top_up(folder: Path) -> Path:
    """Fill the disk `folder` is on, down to the last byte; the file that did it."""
    path = folder / "topup"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    assert os.statvfs(folder).f_bavail == 0
    return path


def _finished_runs(lab: QueueLab) -> list[str]:
    """A foreground and a detached run, both completed, and no bt process left running."""
    foreground = lab.bt("run", "--no-validate", "--json", "job.py", "-p", "name=fg")
    assert foreground.code == 0, foreground.stderr
    detached = lab.job("bg")
    code, _runs = lab.wait(detached)
    assert code == 0
    wait_for(lambda: not lab.leftovers(), 15)  # the drain worker has exited
    return [foreground.json()["run_id"], detached]


def _registry_companions(lab: QueueLab) -> list[str]:
    return sorted(name for name in os.listdir(lab.results) if name.startswith("bt.sqlite3-"))


def _close_last_as(lab: QueueLab, last: str) -> None:
    """Leave the registry as its last user leaves it. A writer (`bt parallel N`, `bt run`...)
    folds the -wal file into the registry and removes it and the -shm file; a reader leaves
    them."""
    assert lab.bt("parallel", "2").code == 0
    if last == "writer":
        assert _registry_companions(lab) == []
    else:
        assert lab.bt("list").code == 0
        assert _registry_companions(lab) == ["bt.sqlite3-shm", "bt.sqlite3-wal"]


@pytest.mark.parametrize("last", ["reader", "writer"])
def test_reads_work_on_a_full_disk_when_no_bt_process_has_the_registry_open(
    disk_lab: QueueLab, last: str
) -> None:
    """The everyday case of a full disk: the runs are over, so no bt process keeps the registry
    open. Reads must still answer: they open the registry read-only, having nothing to write."""
    lab = disk_lab
    run_ids = _finished_runs(lab)
    _close_last_as(lab, last)
    topup = _top_up(lab.results)
    try:
        status = _reads_work(lab, run_ids[-1], "done")
        assert status["status"] == "completed"
    finally:
        topup.unlink()
    assert lab.bt("list", "--json").json()["total"] == 2  # and nothing was damaged


# --- a read-only disk -----------------------------------------------------------------------


@pytest.mark.parametrize("last", ["reader", "writer"])
def test_reads_work_on_a_read_only_results_root(disk_lab: QueueLab, last: str) -> None:
    lab = disk_lab
    run_ids = _finished_runs(lab)
    _close_last_as(lab, last)
    subprocess.run(["mount", "-o", "remount,ro", str(lab.results)], check=True)
    status = _reads_work(lab, run_ids[-1], "done")
    assert status["status"] == "completed"
    for args in (("wait", run_ids[1], "--json"), ("parallel", "--json")):
        _assert_clean_read(lab.bt(*args), *args)


# --- a registry locked by someone else ------------------------------------------------------


@contextlib.contextmanager
def _held_lock(lab: QueueLab) -> Iterator[sqlite3.Connection]:
    """Another program holds the registry's write lock (an open exclusive transaction)."""
    db = sqlite3.connect(lab.results / "bt.sqlite3", timeout=30, isolation_level=None)
    try:
        db.execute("BEGIN EXCLUSIVE")
        yield db
    finally:
        if db.in_transaction:
            db.execute("ROLLBACK")
        db.close()


def _end_under_a_held_lock(lab: QueueLab, hold: float) -> tuple[str, dict[str, Any]]:
    """A detached run whose script exits 0 while another process holds the write lock, which is
    released `hold` s after the script ended; (run id, its running row)."""
    gate = lab.gate("end")
    run_id = lab.job("locked", "-p", f"gate={gate}")
    row = lab.wait_running(run_id)
    with _held_lock(lab):
        gate.touch()
        record = wait_for(lambda: exit_record(lab, run_id), timeout=15)
        ended = time.monotonic()
        assert record["exit_code"] == 0, record
        wait_for(lambda: not pid_alive(row["pid"]))
        # Reads go on while the lock is held (and they see the run still running).
        during = lab.bt("status", run_id, "--json")
        _assert_clean_read(during, "status")
        assert during.json()["status"] == "running"
        _assert_clean_read(lab.bt("list", "--json"), "list")
        _assert_clean_read(lab.bt("health", "--json"), "health")
        time.sleep(max(0.0, hold - (time.monotonic() - ended)))  # the lock's holder is slow
        assert lab.rows()[run_id]["status"] == "running"
        assert pid_alive(row["supervisor_pid"])
    return run_id, row


def _assert_completed_despite_the_lock(lab: QueueLab, run_id: str, row: dict[str, Any]) -> None:
    final = final_row(lab, run_id, timeout=20)
    assert (final["status"], final["exit_code"], final["failure_kind"]) == ("completed", 0, None)
    assert final["error_message"] is None
    wait_for(lambda: not pid_alive(row["supervisor_pid"]), 10)
    status = lab.status(run_id)
    assert status["status"] == "completed" and status["exit_code"] == 0
    wait_for(lambda: lab.run_json(run_id)["status"] == "completed", timeout=10)


def test_run_ending_while_another_process_holds_the_registry_lock(lab: QueueLab) -> None:
    run_id, row = _end_under_a_held_lock(lab, hold=5.0)
    _assert_completed_despite_the_lock(lab, run_id, row)


def test_run_ending_while_the_lock_is_held_past_the_busy_timeout(lab: QueueLab) -> None:
    """The busy timeout (30 s) is shortened to 1 s in every bt process of this test, so holding
    the lock 5 s makes each of the supervisor's attempts to record the end fail: it must retry
    (every 2 s) and record the true end once the lock is released."""
    site = lab.root / "site"
    site.mkdir()
    write_script(site, "sitecustomize.py", SHORT_BUSY_TIMEOUT)
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    lab.env.update(PYTHONPATH=path, BT_TEST_BUSY_TIMEOUT_MS="1000")
    patched = subprocess.run(
        [sys.executable, "-c", "import btmanager.registry.db as d; print(d.BUSY_TIMEOUT_MS)"],
        env=lab.env,
        capture_output=True,
        text=True,
    )
    assert patched.stdout.strip() == "1000", patched.stderr
    run_id, row = _end_under_a_held_lock(lab, hold=5.0)
    _assert_completed_despite_the_lock(lab, run_id, row)


# --- the parallel limit lives in the registry -----------------------------------------------


def _workers(lab: QueueLab) -> list[int]:
    """The pids of this lab's `bt worker` processes (not the supervisors they forked, which
    have the same command line)."""
    supervisors = {row["supervisor_pid"] for row in lab.rows().values()}
    found = []
    for proc in lab.leftovers():
        with contextlib.suppress(psutil.Error):
            if "worker" in proc.cmdline() and proc.pid not in supervisors:
                found.append(proc.pid)
    return found


def test_bt_max_parallel_of_other_commands_never_changes_the_stored_limit(lab: QueueLab) -> None:
    lab.env["BT_MAX_PARALLEL"] = "1"
    gate = lab.gate("first")
    names = [f"p{i}" for i in range(6)]
    ids = [lab.job(names[0], "-p", f"gate={gate}", sleep=0.5)]
    ids += [lab.job(name, sleep=0.5) for name in names[1:]]
    assert lab.bt("parallel", "--json").json() == {"max_parallel": 1}
    six, five = {"BT_MAX_PARALLEL": "6"}, {"BT_MAX_PARALLEL": "5"}

    def reads(*more: tuple[str, ...]) -> None:
        for args, env in (
            (("status", ids[-1], "--json"), six),
            (("list", "--json"), five),
            *((args, six) for args in more),
        ):
            result = lab.bt(*args, env=env)
            assert result.code in (0, 124), (args, result.stderr)
        assert lab.bt("health", "--json", env=six).json()["max_parallel"] == 1

    def running() -> int:
        return sum(row["status"] == "running" for row in lab.rows().values())

    first = lab.wait_running(ids[0])
    reads(("logs", ids[0]), ("parallel", "--json"), ("wait", ids[0], "--timeout", "0.1"))
    assert running() == 1
    # Strand the queue (kill its worker, let the first run end), so that the next command,
    # whose environment says 6, is the one that starts the worker that drains it.
    os.kill(first["worker_pid"], signal.SIGKILL)
    wait_for(lambda: not _workers(lab))
    gate.touch()
    assert final_row(lab, ids[0])["status"] == "completed"
    assert running() == 0
    while any(row["status"] == "queued" for row in lab.rows().values()):
        reads()
    code, runs = lab.wait(*ids, timeout=60)
    assert code == 0, [run["error_message"] for run in runs]
    assert_each_started_once(lab.timeline, names)
    assert max_overlap(lab.timeline) == 1
    assert lab.bt("parallel", "--json", env=six).json() == {"max_parallel": 1}
    changed = lab.bt("parallel", "3", env=six)
    assert changed.code == 0 and changed.stdout == "3\n", changed.stderr
    assert lab.bt("health", "--json", env=six).json()["max_parallel"] == 3
    assert lab.bt("parallel", "--json", env=five).json() == {"max_parallel": 3}


def test_worker_max_parallel_sets_the_limit_that_drain_workers_honour(lab: QueueLab) -> None:
    lab.env.pop("BT_MAX_PARALLEL")  # submissions must not set the limit themselves

    def set_by_worker(limit: int) -> None:
        worker = lab.popen_bt("worker", "--max-parallel", str(limit), "--idle-exit", "0.3")
        _out, err = worker.communicate(timeout=30)
        assert worker.returncode == 0, err
        assert lab.bt("parallel", "--json").json() == {"max_parallel": limit}
        assert lab.bt("health", "--json").json()["max_parallel"] == limit

    set_by_worker(1)
    first = [f"one{i}" for i in range(3)]
    ids = [lab.job(name, sleep=0.3) for name in first]
    code, _runs = lab.wait(*ids)
    assert code == 0
    assert max_overlap(lab.timeline) == 1
    lab.timeline.unlink()

    set_by_worker(3)
    gate = lab.gate("three")
    second = [f"three{i}" for i in range(6)]
    ids = [lab.job(name, "-p", f"gate={gate}") for name in second]

    def running() -> int:
        return sum(row["status"] == "running" for row in lab.rows().values())

    wait_for(lambda: running() == 3)
    time.sleep(0.5)  # room to start a fourth, were the limit not honoured
    assert running() == 3
    gate.touch()
    code, _runs = lab.wait(*ids)
    assert code == 0
    assert_each_started_once(lab.timeline, second)
    assert max_overlap(lab.timeline) == 3
    assert lab.bt("parallel", "--json").json() == {"max_parallel": 3}
