"""Detached runs: submitting, run.json, resources, CPU priority, survival, crash-proof status."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys

from tests.helpers import pid_alive, wait_for, write_script
from tests.queue_support import (
    HUNGRY,
    QueueLab,
    assert_tree_gone,
    kill_quietly,
    tree_pids,
)

RUN_ID = re.compile(r"^\d{8}_\d{6}_[0-9a-f]{8}$")


def test_submit_prints_only_the_run_id_and_returns_at_once(lab: QueueLab) -> None:
    gate = lab.gate("hold")
    result = lab.bt("run", "-d", "--no-validate", "job.py", "-p", f"gate={gate}")
    assert result.code == 0 and result.stderr == ""
    run_id = result.stdout.strip()
    assert result.stdout == run_id + "\n" and RUN_ID.match(run_id)
    # It returned while the script cannot have finished (it waits for the gate).
    assert lab.rows()[run_id]["status"] in ("queued", "running")
    as_json = lab.bt("run", "-d", "--no-validate", "--json", "job.py", "-p", f"gate={gate}")
    assert as_json.code == 0 and as_json.stderr == ""
    document = as_json.json()
    assert document == {
        "success": True,
        "run_id": document["run_id"],
        "status": "queued",
        "message": "Backtest queued for execution",
    }
    assert RUN_ID.match(document["run_id"]) and document["run_id"] != run_id
    gate.touch()
    code, runs = lab.wait(run_id, document["run_id"])
    assert code == 0 and [run["status"] for run in runs] == ["completed", "completed"]
    # The worker runs in the results folder; the script in the submitter's directory.
    assert f"cwd={lab.cwd} run={run_id}\n" in lab.log(run_id)


def test_detached_run_gets_its_submitters_environment(lab: QueueLab) -> None:
    lab.env["BT_MAX_PARALLEL"] = "1"
    gate = lab.gate("first")
    first = lab.job("first", "-p", f"gate={gate}", BT_TEST_FOO="one")
    lab.wait_running(first)
    second = lab.job("second", BT_TEST_FOO="two")  # runs in the worker started for `first`
    gate.touch()
    code, _ = lab.wait(first, second)
    assert code == 0
    assert "foo=one " in lab.log(first)
    assert "foo=two " in lab.log(second)


def test_completed_run_records_run_json_and_resource_usage(lab: QueueLab) -> None:
    write_script(lab.cwd, "hungry.py", HUNGRY)
    run_id = lab.submit("hungry.py", "-p", "size=50", "--label", "mem", "--timeout", "60")
    code, (run,) = lab.wait(run_id)
    assert code == 0, run["error_message"]
    assert run["status"] == "completed" and run["exit_code"] == 0
    assert run["error_message"] is None
    assert run["peak_memory_bytes"] >= 50 * 1024 * 1024
    assert run["cpu_seconds"] >= 0.25  # the child's busy loop counts: it is the run's tree
    assert run["duration_seconds"] >= 1.0

    document = lab.run_json(run_id)
    for key in (
        "run_id", "status", "exit_code", "pid", "started_at", "completed_at", "params",
        "peak_memory_bytes", "cpu_seconds", "command", "label", "timeout_seconds",
    ):  # fmt: skip
        assert document[key] == run[key], key
    assert document["detached"] is True and document["nice"] == 10
    assert document["params"] == {"size": "50"} and document["timeout_seconds"] == 60
    assert isinstance(document["supervisor_pid"], int)
    assert document["supervisor_pid"] not in (document["pid"], os.getpid())

    shown = lab.bt("status", run_id)
    assert shown.code == 0
    memory = re.search(r"Peak memory\s+([\d.]+) MB", shown.stdout)
    assert memory and float(memory.group(1)) >= 50, shown.stdout
    assert re.search(r"CPU time\s+\d+\.\d s", shown.stdout), shown.stdout


def test_detached_runs_get_a_lower_cpu_priority(lab: QueueLab) -> None:
    own = os.nice(0)
    default = lab.job("default")
    chosen = lab.job("chosen", "--nice", "15")
    code, _ = lab.wait(default, chosen)
    assert code == 0
    # Only root may lower a priority: an unprivileged bt already niced beyond 10 stays there.
    privileged = os.geteuid() == 0
    assert f"nice={10 if privileged else max(own, 10)} " in lab.log(default)
    assert f"nice={15 if privileged else max(own, 15)} " in lab.log(chosen)
    foreground = lab.bt("run", "--no-validate", "--json", "job.py")
    assert foreground.code == 0
    assert f"nice={own} " in lab.log(foreground.json()["run_id"])


def test_run_survives_the_submitters_process_group(lab: QueueLab) -> None:
    gate = lab.gate("open")
    pidfile = lab.cwd / "script.pid"
    shell = subprocess.Popen(
        [
            "bash", "-c",
            f'"$PY" -m btmanager run -d --no-validate job.py -p gate={gate} -p pidfile={pidfile}'
            " > submitted.txt; exec sleep 60",
        ],
        cwd=lab.cwd, env={**lab.env, "PY": sys.executable}, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text())
        run_id = (lab.cwd / "submitted.txt").read_text().strip()
        row = lab.wait_running(run_id)
        # The terminal closes: hang-up, then the whole process group is killed.
        os.killpg(shell.pid, signal.SIGHUP)
        os.killpg(shell.pid, signal.SIGKILL)
        shell.wait(10)
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait()
    assert pid_alive(row["pid"]) and pid_alive(row["supervisor_pid"])
    assert lab.rows()[run_id]["status"] == "running"
    gate.touch()
    code, (run,) = lab.wait(run_id)
    assert code == 0 and run["status"] == "completed"


def test_killed_supervisor_keeps_a_live_script_running_then_fails_it(lab: QueueLab) -> None:
    gate = lab.gate("finish")
    run_id = lab.job("orphaned", "-p", f"gate={gate}")
    row = lab.wait_running(run_id)
    # run.json is rewritten just after the registry commit: give it a moment
    wait_for(lambda: lab.run_json(run_id)["supervisor_pid"] == row["supervisor_pid"], timeout=10)
    os.kill(row["supervisor_pid"], signal.SIGKILL)
    wait_for(lambda: not pid_alive(row["supervisor_pid"]))
    # Every later command reconciles; the script lives on, so the run stays running.
    for _ in range(2):
        status = lab.status(run_id)
        assert status["status"] == "running" and status["error_message"] is None
    assert pid_alive(row["pid"])
    gate.touch()
    wait_for(lambda: not pid_alive(row["pid"]))
    code, (run,) = lab.wait(run_id)
    assert code == 1
    assert run["status"] == "failed"
    assert "supervisor died; exit status unknown" in run["error_message"]
    assert str(row["supervisor_pid"]) in run["error_message"]
    # run.json is rewritten just after the registry commit: give it a moment
    wait_for(lambda: lab.run_json(run_id)["status"] == "failed", timeout=10)
    assert "job orphaned done" in lab.log(run_id)  # the script itself did finish


def test_killed_supervisor_run_can_still_be_cancelled(lab: QueueLab) -> None:
    piddir = lab.piddir("tree")
    run_id = lab.submit("tree.py", "-p", f"piddir={piddir}")
    row = lab.wait_running(run_id)
    pids = tree_pids(piddir)
    os.kill(row["supervisor_pid"], signal.SIGKILL)
    wait_for(lambda: not pid_alive(row["supervisor_pid"]))
    assert lab.status(run_id)["status"] == "running"
    cancelled = lab.bt("cancel", run_id, "--grace", "1", "--json")
    assert cancelled.code == 0, cancelled.stderr
    assert cancelled.json() == {"success": True, "message": "Run cancelled"}
    assert_tree_gone(pids)
    status = lab.status(run_id)
    assert status["status"] == "cancelled"


def test_killed_script_fails_the_run_with_the_signal(lab: QueueLab) -> None:
    run_id = lab.job("victim", "-p", f"gate={lab.gate('never')}")
    row = lab.wait_running(run_id)
    os.kill(row["pid"], signal.SIGKILL)
    code, (run,) = lab.wait(run_id)
    assert code == 1
    assert run["status"] == "failed" and run["exit_code"] == -9
    assert run["error_message"] == "killed by signal 9 (SIGKILL)"
    # run.json is rewritten just after the registry commit: give it a moment
    wait_for(lambda: lab.run_json(run_id)["exit_code"] == -9, timeout=10)


def test_supervisor_and_script_both_killed_fail_on_the_next_command(lab: QueueLab) -> None:
    run_id = lab.job("both", "-p", f"gate={lab.gate('never')}")
    row = lab.wait_running(run_id)
    kill_quietly(row["supervisor_pid"])
    kill_quietly(row["pid"])
    wait_for(lambda: not pid_alive(row["supervisor_pid"]) and not pid_alive(row["pid"]))
    status = lab.status(run_id)
    assert status["status"] == "failed"
    assert "supervisor died; exit status unknown" in status["error_message"]
    assert f"script pid {row['pid']}" in status["error_message"]
    assert status["completed_at"] is not None
    # run.json is rewritten just after the registry commit: give it a moment
    wait_for(lambda: lab.run_json(run_id)["status"] == "failed", timeout=10)


NESTED = """
import os, subprocess, sys, time

child = subprocess.run(
    [sys.executable, "-m", "btmanager", "run", "-d", "--no-validate", "job.py",
     "-p", "name=child", "-p", "gate=" + os.environ["BT_TEST_GATE"]],
    capture_output=True, text=True, check=True,
).stdout.strip()
with open("child.txt.tmp", "w") as handle:
    handle.write(child)
os.replace("child.txt.tmp", "child.txt")
time.sleep(120)
"""


def test_run_submitted_from_inside_a_run_is_not_part_of_its_tree(lab: QueueLab) -> None:
    gate = lab.gate("child")
    write_script(lab.cwd, "nested.py", NESTED)
    parent = lab.submit("nested.py", BT_TEST_GATE=str(gate))
    child_file = lab.cwd / "child.txt"
    child = wait_for(lambda: child_file.exists() and child_file.read_text())
    child_row = lab.wait_running(child)
    cancelled = lab.bt("cancel", parent, "--grace", "1")
    assert cancelled.code == 0, cancelled.stderr
    assert pid_alive(child_row["supervisor_pid"]) and pid_alive(child_row["pid"])
    gate.touch()
    _code, runs = lab.wait(parent, child)
    assert [run["status"] for run in runs] == ["cancelled", "completed"], runs[1]["error_message"]


def test_timeout_still_applies_after_the_supervisor_died(lab: QueueLab) -> None:
    piddir = lab.piddir("tree")
    run_id = lab.submit("tree.py", "-p", f"piddir={piddir}", "--timeout", "2", "--grace", "1")
    row = lab.wait_running(run_id)
    pids = tree_pids(piddir)
    os.kill(row["supervisor_pid"], signal.SIGKILL)
    wait_for(lambda: not pid_alive(row["supervisor_pid"]))
    # Whichever bt command comes along once the time is up ends the tree and fails the run.
    wait_for(lambda: lab.status(run_id)["status"] != "running", timeout=30, interval=0.3)
    status = lab.status(run_id)
    assert status["status"] == "failed"
    assert status["error_message"] == "timed out after 2 s (supervisor had died)"
    assert_tree_gone(pids)
    # run.json is rewritten just after the registry commit: give it a moment
    wait_for(lambda: lab.run_json(run_id)["status"] == "failed", timeout=10)


def test_supervisor_that_died_before_starting_the_script(lab: QueueLab) -> None:
    """A worker killed between claiming a run and starting its script (white-box: the claim is
    written into the registry by hand, naming a supervisor that has exited)."""
    lab.env["BT_MAX_PARALLEL"] = "1"
    blocker = lab.job("blocker", "-p", f"gate={lab.gate('hold')}")
    lab.wait_running(blocker)
    claimed = lab.job("claimed")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    from btmanager.execution.proctree import create_time

    made = create_time(gone.pid)
    gone.wait()
    db = sqlite3.connect(lab.results / "bt.sqlite3", timeout=30)
    with db:
        db.execute(
            "UPDATE runs SET status = 'running', started_at = created_at, supervisor_pid = ?,"
            " supervisor_create_time = ? WHERE run_id = ?",
            (gone.pid, made, claimed),
        )
    db.close()
    # The script may have been started in the instant before the supervisor died, too early for
    # its pid to be recorded: it is found by its marker, and ended rather than left untracked.
    unrecorded = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={**lab.env, "BACKTEST_RUN_ID": claimed},
        start_new_session=True,
        text=True,
    )
    lab.popens.append(unrecorded)
    status = lab.status(claimed)
    assert status["status"] == "failed"
    assert status["error_message"] == (
        f"supervisor (pid {gone.pid}) died before the script started"
    )
    assert unrecorded.wait(10) == -signal.SIGTERM
    lab.gate("hold").touch()
    code, _ = lab.wait(blocker)
    assert code == 0
