"""Ending runs: cancel (queued, running, foreground), Ctrl-C, time-outs, `bt wait` exit codes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import pytest

from tests.helpers import Result, pid_alive, wait_for, write_script
from tests.queue_support import (
    QueueLab,
    assert_tree_gone,
    tree_pids,
    wait_until_gone,
)


def test_cancel_queued_run_never_starts(lab: QueueLab) -> None:
    lab.env["BT_MAX_PARALLEL"] = "1"
    gate = lab.gate("blocker")
    blocker = lab.job("blocker", "-p", f"gate={gate}")
    lab.wait_running(blocker)
    queued = lab.job("queued")
    assert lab.rows()[queued]["status"] == "queued"
    result = lab.bt("cancel", queued, "--json")
    assert result.code == 0 and result.json() == {"success": True, "message": "Run cancelled"}
    status = lab.status(queued)
    assert status["status"] == "cancelled" and status["started_at"] is None
    again = lab.bt("cancel", queued, "--json")
    assert again.code == 1
    assert again.json() == {"success": False, "message": "Run already cancelled"}
    gate.touch()
    code, runs = lab.wait(blocker, queued)
    assert code == 1  # one of them was cancelled
    assert [run["status"] for run in runs] == ["completed", "cancelled"]
    # The slot came free and the blocker's worker looked for more: the cancelled run stayed put.
    assert lab.status(queued)["started_at"] is None
    assert not (lab.run_dir(queued) / "execution.log").exists()
    assert "job queued" not in lab.timeline.read_text()


def test_cancel_updates_run_json_when_no_supervisor_will(lab: QueueLab) -> None:
    lab.env["BT_MAX_PARALLEL"] = "1"
    blocker = lab.job("blocker", "-p", f"gate={lab.gate('never')}")
    row = lab.wait_running(blocker)
    queued = lab.job("queued")
    os.kill(row["supervisor_pid"], signal.SIGKILL)
    wait_for(lambda: not pid_alive(row["supervisor_pid"]))
    assert lab.bt("cancel", queued).code == 0
    assert lab.bt("cancel", blocker, "--grace", "1").code == 0
    assert lab.status(blocker)["status"] == "cancelled"
    assert lab.run_json(queued)["status"] == "cancelled"
    assert lab.run_json(blocker)["status"] == "cancelled"


def test_cancel_running_detached_tree(lab: QueueLab) -> None:
    piddir = lab.piddir("tree")
    run_id = lab.submit("tree.py", "-p", f"piddir={piddir}")
    lab.wait_running(run_id)
    pids = tree_pids(piddir)
    result = lab.bt("cancel", run_id[:17], "--grace", "1", "--json")
    assert result.code == 0, result.stderr
    assert result.json() == {"success": True, "message": "Run cancelled"}
    # When `bt cancel` returns, the whole tree is gone: the grandchild that ignores SIGTERM and
    # the ones in their own sessions (one of them orphaned) too.
    assert_tree_gone(pids)
    status = lab.status(run_id)
    assert status["status"] == "cancelled"
    code, (run,) = lab.wait(run_id)
    assert code == 1 and run["status"] == "cancelled"
    # The run's supervisor records the final facts and run.json.
    wait_for(lambda: lab.run_json(run_id)["status"] == "cancelled")
    wait_for(lambda: lab.status(run_id)["exit_code"] is not None)


def test_timeout_ends_the_tree_and_fails_the_run(lab: QueueLab) -> None:
    piddir = lab.piddir("tree")
    run_id = lab.submit("tree.py", "-p", f"piddir={piddir}", "--timeout", "1.5", "--grace", "1")
    pids = tree_pids(piddir)
    code, (run,) = lab.wait(run_id)
    assert code == 1
    assert run["status"] == "failed"
    assert run["error_message"] == "timed out after 1.5 s"
    assert 1.5 <= run["duration_seconds"] < 30
    assert_tree_gone(pids)
    # run.json is rewritten just after the registry commit: give it a moment
    wait_for(lambda: lab.run_json(run_id)["error_message"] == "timed out after 1.5 s", timeout=10)


def test_foreground_run_cancelled_from_another_process(lab: QueueLab) -> None:
    piddir = lab.piddir("tree")
    foreground = lab.popen_bt("run", "--no-validate", "--grace", "1", "tree.py", "-p",
                              f"piddir={piddir}")  # fmt: skip
    pids = tree_pids(piddir)
    run_id = wait_for(lambda: next(iter(lab.rows()), None))
    result = lab.bt("cancel", "latest", "--grace", "1", "--json")
    assert result.code == 0, result.stderr
    assert result.json()["success"] is True
    out, err = wait_until_gone(foreground, timeout=30)
    assert foreground.returncode == 130, (out, err)
    assert_tree_gone(pids)
    status = lab.status(run_id)
    assert status["status"] == "cancelled"
    # run.json is rewritten just after the registry commit: give it a moment
    wait_for(lambda: lab.run_json(run_id)["status"] == "cancelled", timeout=10)


def test_ctrl_c_cancels_a_foreground_run_and_its_tree(lab: QueueLab) -> None:
    piddir = lab.piddir("tree")
    foreground = lab.popen_bt("run", "--no-validate", "--grace", "1", "tree.py", "-p",
                              f"piddir={piddir}")  # fmt: skip
    pids = tree_pids(piddir)
    foreground.send_signal(signal.SIGINT)
    out, err = wait_until_gone(foreground, timeout=30)
    assert foreground.returncode == 130, (out, err)
    assert "Traceback" not in err
    assert_tree_gone(pids)
    (run_id,) = lab.rows()
    status = lab.status(run_id)
    assert (
        status["status"] == "cancelled" and status["error_message"] == "cancelled: received SIGINT"
    )


def test_wait_exit_codes(lab: QueueLab) -> None:
    ok = lab.job("ok")
    bad = lab.job("bad", "-p", "exit=3")
    gate = lab.gate("slow")
    slow = lab.job("slow", "-p", f"gate={gate}")
    code, runs = lab.wait(ok)
    assert code == 0 and runs[0]["status"] == "completed"
    failed = lab.bt("wait", ok, bad, "--json")
    assert failed.code == 1
    assert [run["status"] for run in failed.json()["runs"]] == ["completed", "failed"]
    assert failed.json()["runs"][1]["error_message"] == "exit code 3"
    timed_out = lab.bt("wait", ok, slow, "--timeout", "0.5", "--json")
    assert timed_out.code == 124
    assert timed_out.json()["runs"][0]["status"] == "completed"
    assert timed_out.json()["runs"][1]["status"] in ("queued", "running")
    plain = lab.bt("wait", slow, "--timeout", "0.2")
    assert plain.code == 124 and plain.stderr == ""
    gate.touch()
    code, _ = lab.wait(slow, ok)
    assert code == 0
    missing = lab.bt("wait", "20000101_000000_00000000")
    assert missing.code == 2 and missing.stderr.startswith("Error:")


def test_wait_on_a_cancelled_run_exits_1(lab: QueueLab) -> None:
    gate = lab.gate("never")
    run_id = lab.job("doomed", "-p", f"gate={gate}")
    lab.wait_running(run_id)
    waiter = lab.popen_bt("wait", run_id)
    assert lab.bt("cancel", run_id, "--grace", "1").code == 0
    wait_until_gone(waiter, timeout=30)
    assert waiter.returncode == 1


def test_cancel_racing_the_end_of_a_run_gives_one_consistent_final_state(lab: QueueLab) -> None:
    lab.env["BT_MAX_PARALLEL"] = "3"
    gate = lab.gate("all")
    ids = [lab.job(f"race{i}", "-p", f"gate={gate}") for i in range(3)]
    for run_id in ids:
        lab.wait_running(run_id)
    replies: dict[str, Result] = {}

    def cancel(run_id: str) -> None:
        replies[run_id] = lab.bt("cancel", run_id, "--grace", "1", "--json")

    threads = [threading.Thread(target=cancel, args=(run_id,)) for run_id in ids]
    gate.touch()  # the scripts end now, while the cancels arrive
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    _code, runs = lab.wait(*ids)
    for run in runs:
        reply = replies[run["run_id"]]
        if reply.json()["success"]:
            assert reply.code == 0 and run["status"] == "cancelled"
        else:
            assert reply.code == 1 and run["status"] == "completed"
            assert reply.json()["message"] == "Run already completed"
        assert run["completed_at"] is not None
        # The registry and the folder agree, once the supervisor has written its last word.
        wait_for(partial(_run_json_says, lab, run["run_id"], run["status"]))
        assert lab.status(run["run_id"])["status"] == run["status"]


def _run_json_says(lab: QueueLab, run_id: str, status: str) -> bool:
    return bool(lab.run_json(run_id)["status"] == status)


def test_supervisor_exit_code_lands_in_run_json_for_failed_runs(lab: QueueLab) -> None:
    write_script(lab.cwd, "fail.py", "import sys\nprint('failing', flush=True)\nsys.exit(7)\n")
    run_id = lab.submit("fail.py")
    code, (run,) = lab.wait(run_id)
    assert code == 1 and run["exit_code"] == 7 and run["error_message"] == "exit code 7"
    document = lab.run_json(run_id)
    assert document["status"] == "failed" and document["exit_code"] == 7
    assert not pid_alive(document["pid"])


def test_a_stale_script_pid_never_reaches_another_process_group(tmp_path: Path) -> None:
    """A run's recorded script pid may name another process by now (pid reuse): ending that
    run must not signal the process group that now carries that number."""
    from btmanager.execution import proctree
    from btmanager.registry.model import ProcessIdentity

    stranger = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        made = proctree.create_time(stranger.pid)
        assert made is not None
        stale = ProcessIdentity(stranger.pid, made - 1000.0)  # same pid, another process
        assert proctree.collect_tree(stale, "20000101_000000_deadbeef") == []
        proctree.terminate_tree(stale, "20000101_000000_deadbeef", 0.1)
        assert stranger.poll() is None
        # The very process, by contrast, is found with its group.
        same = ProcessIdentity(stranger.pid, made)
        assert [proc.pid for proc in proctree.collect_tree(same, "x")] == [stranger.pid]
    finally:
        stranger.kill()
        stranger.wait()


def test_a_queue_worker_adopted_by_a_supervisor_is_not_part_of_its_run(tmp_path: Path) -> None:
    """A run's script that submits runs starts a drain worker, which its supervisor (the
    subreaper) adopts: that worker and the runs it supervises must survive the run's end."""
    from btmanager.execution import proctree

    pids = tmp_path / "grandchild.pid"
    spawn_grandchild = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pids)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    worker_env = {**os.environ, proctree.QUEUE_WORKER_ENV: "1"}
    worker = subprocess.Popen([sys.executable, "-c", spawn_grandchild], env=worker_env)
    leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        grandchild = int(wait_for(lambda: pids.exists() and pids.read_text()))
        # This process stands for the supervisor: both are its children, as adopted ones are.
        found = {proc.pid for proc in proctree.collect_tree(None, "x", adopted=True)}
        assert leftover.pid in found
        assert worker.pid not in found and grandchild not in found
    finally:
        for proc in (worker, leftover):
            proc.kill()
            proc.wait()
        if pids.exists():
            with contextlib.suppress(OSError):
                os.kill(int(pids.read_text()), signal.SIGKILL)


def test_identity_survives_a_one_second_boot_time_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that read btime after a wall-clock step computes create times 1 s off: the run's
    supervisor must still be recognised as alive (else reconciliation would fail a live run)."""
    from btmanager.execution import proctree

    me = proctree.current_identity()  # as recorded by the supervisor itself
    assert proctree.is_alive(me)
    if proctree._boot_time is not None:
        monkeypatch.setattr(proctree, "_boot_time", proctree._boot_time + 1.0)
        assert proctree.is_alive(me)
        assert proctree._pid_unreused(me)
