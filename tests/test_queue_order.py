"""The queue: parallel limit, submission order, priorities, concurrent submitters and workers."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import pid_alive, wait_for
from tests.queue_support import (
    QueueLab,
    assert_each_started_once,
    kill_quietly,
    max_overlap,
    start_order,
    wait_until_gone,
)


def test_parallel_limit_is_never_exceeded(lab: QueueLab) -> None:
    names = [f"r{i}" for i in range(6)]
    ids = [lab.job(name, sleep=1.0) for name in names]
    code, runs = lab.wait(*ids)
    assert code == 0, [(run["status"], run["error_message"]) for run in runs]
    assert all(run["status"] == "completed" for run in runs)
    assert_each_started_once(lab.timeline, names)
    # At most BT_MAX_PARALLEL=2 at once, and the limit is used (the scripts sleep 1 s each).
    assert max_overlap(lab.timeline) == 2


def test_fifo_order_with_one_slot(lab: QueueLab) -> None:
    lab.env["BT_MAX_PARALLEL"] = "1"
    names = [f"r{i}" for i in range(5)]
    ids = [lab.job(name, sleep=0.2) for name in names]
    code, _ = lab.wait(*ids)
    assert code == 0
    assert start_order(lab.timeline) == names
    assert max_overlap(lab.timeline) == 1


def test_priority_then_submission_order(lab: QueueLab) -> None:
    lab.env["BT_MAX_PARALLEL"] = "1"
    gate = lab.gate("blocker")
    blocker = lab.job("blocker", "-p", f"gate={gate}")
    lab.wait_running(blocker)  # everything below queues behind it
    plan = [("a", 0), ("b", 5), ("c", 0), ("d", 5), ("e", -1), ("f", 9)]
    ids = [lab.job(name, "--priority", str(priority)) for name, priority in plan]
    rows = lab.rows()
    assert [rows[run_id]["status"] for run_id in ids] == ["queued"] * len(ids)
    assert lab.status(ids[1])["priority"] == 5
    gate.touch()
    code, _ = lab.wait(blocker, *ids)
    assert code == 0
    assert start_order(lab.timeline) == ["blocker", "f", "b", "d", "a", "c", "e"]


def test_concurrent_submitters_all_complete_without_lock_errors(lab: QueueLab) -> None:
    submitters, per_submitter = 8, 5
    loop = (
        'for i in $(seq 1 {n}); do "$PY" -m btmanager run -d --no-validate job.py'
        ' -p name=s{k}_$i -p timeline="$TIMELINE" -p sleep=0.05 || exit 1; done'
    )
    env = {**lab.env, "PY": sys.executable, "TIMELINE": str(lab.timeline)}
    procs = [
        subprocess.Popen(
            ["bash", "-c", loop.format(n=per_submitter, k=k)],
            cwd=lab.cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(submitters)
    ]
    lab.popens += procs
    ids: list[str] = []
    for proc in procs:
        out, err = wait_until_gone(proc, timeout=120)
        assert proc.returncode == 0, err
        assert err == "", err  # no "database is locked", no warning of any kind
        printed = out.split()
        assert len(printed) == per_submitter
        ids += printed
    assert len(set(ids)) == submitters * per_submitter
    code, runs = lab.wait(*ids, timeout=120)
    assert code == 0, [run["error_message"] for run in runs if run["status"] != "completed"]
    names = [f"s{k}_{i}" for k in range(submitters) for i in range(1, per_submitter + 1)]
    assert_each_started_once(lab.timeline, names)
    assert max_overlap(lab.timeline) <= 2
    log = lab.worker_log()
    assert "locked" not in log.lower() and "Traceback" not in log and "Error" not in log, log
    for run_id in ids:  # the workers say what they did, one line per event
        assert f": started {run_id}\n" in log and f": finished {run_id} completed\n" in log


def _strand_queue(lab: QueueLab, names: list[str], sleep: float) -> list[str]:
    """Queue runs behind a blocker, then kill -9 the blocker's worker and script: the queued runs
    are left as bare rows with nothing executing them (as after a reboot)."""
    lab.env["BT_MAX_PARALLEL"] = "1"
    # The blocker keeps off the timeline: it is killed, so it never logs its end.
    blocker = lab.submit("job.py", "-p", "name=blocker", "-p", f"gate={lab.gate('never')}")
    row = lab.wait_running(blocker)
    ids = [lab.job(name, sleep=sleep) for name in names]
    kill_quietly(row["supervisor_pid"])
    kill_quietly(row["pid"])
    wait_for(lambda: not pid_alive(row["supervisor_pid"]) and not pid_alive(row["pid"]))
    rows = lab.rows()
    assert rows[blocker]["status"] == "running"  # nobody has looked yet
    assert [rows[run_id]["status"] for run_id in ids] == ["queued"] * len(ids)
    return [blocker, *ids]


def test_foreground_worker_drains_the_queue_and_exits_when_idle(lab: QueueLab) -> None:
    names = ["w1", "w2", "w3", "w4"]
    blocker, *ids = _strand_queue(lab, names, sleep=1.0)
    worker = lab.popen_bt("worker", "--max-parallel", "2", "--idle-exit", "1")
    _out, err = wait_until_gone(worker, timeout=60)
    assert worker.returncode == 0, err
    rows = lab.rows()
    assert rows[blocker]["status"] == "failed"
    assert "supervisor" in rows[blocker]["error_message"]
    assert [rows[run_id]["status"] for run_id in ids] == ["completed"] * len(ids)
    # The foreground worker ran them all (no drain worker was started), two at a time.
    assert {lab.run_json(run_id)["worker_pid"] for run_id in ids} == {worker.pid}
    assert_each_started_once(lab.timeline, names)
    assert max_overlap(lab.timeline) == 2


def test_stranded_queue_starts_when_any_bt_command_runs(lab: QueueLab) -> None:
    blocker, *ids = _strand_queue(lab, ["q1", "q2"], sleep=0.1)
    listed = lab.bt("list", "--json")  # reconciles, and starts a worker for the queue
    assert listed.code == 0
    code, _runs = lab.wait(*ids)
    assert code == 0
    blocked = lab.status(blocker)
    assert blocked["status"] == "failed"
    assert "supervisor died; exit status unknown" in blocked["error_message"]
    assert lab.run_json(blocker)["status"] == "failed"
    assert start_order(lab.timeline) == ["q1", "q2"]


def test_concurrent_workers_never_start_a_run_twice(lab: QueueLab) -> None:
    names = [f"c{i}" for i in range(8)]
    _blocker, *ids = _strand_queue(lab, names, sleep=0.3)
    workers = [lab.popen_bt("worker", "--max-parallel", "2", "--idle-exit", "1") for _ in range(3)]
    for worker in workers:
        _out, err = wait_until_gone(worker, timeout=90)
        assert worker.returncode == 0, err
    rows = lab.rows()
    assert [rows[run_id]["status"] for run_id in ids] == ["completed"] * len(ids)
    assert_each_started_once(lab.timeline, names)
    assert max_overlap(lab.timeline) <= 2
