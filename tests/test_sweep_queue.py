"""`bt sweep` with real processes: one command queues them all, a sweep's own cap holds with
several workers, `--after` orders and propagates failure, `--wait` follows to the end."""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from tests.helpers import BT, wait_for
from tests.many_support import run_in_terminal
from tests.queue_support import (
    QueueLab,
    assert_each_started_once,
    max_overlap,
    read_timeline,
    wait_until_gone,
)

RUN_ID = re.compile(r"\d{8}_\d{6}_[0-9a-f]{8}")


def sweep_json(lab: QueueLab, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = lab.bt("sweep", "job.py", "--no-validate", "--json", *args, env=env)
    assert result.code == 0, result.stderr
    assert result.stderr == ""
    document: dict[str, Any] = result.json()
    return document


def timeline_args(lab: QueueLab, sleep: float) -> list[str]:
    return ["-p", f"timeline={lab.timeline}", "-p", f"sleep={sleep}"]


def by_status(lab: QueueLab, run_ids: list[str]) -> dict[str, str]:
    rows = lab.rows()
    return {run_id: rows[run_id]["status"] for run_id in run_ids}


def test_sweep_queues_every_run_with_its_params_label_and_environment(lab: QueueLab) -> None:
    document = sweep_json(
        lab, "-p", "name=a,b", "-p", "k=1:3:1", "--label", "job-{name}-{k}",
        "--priority", "3", "--nice", "5", "--timeout", "60", "--grace", "2",
        *timeline_args(lab, 0.0), "--", "--extra", env={"BT_TEST_FOO": "from-submitter"},
    )  # fmt: skip
    assert set(document) == {"success", "sweep_id", "count", "run_ids"}
    assert document["success"] is True and document["count"] == 6
    assert re.fullmatch(r"sweep_[0-9a-f]{8}", document["sweep_id"])
    ids = document["run_ids"]
    assert len(ids) == 6 == len(set(ids)) and all(RUN_ID.fullmatch(run_id) for run_id in ids)
    code, runs = lab.wait(*ids)
    assert code == 0
    expected = [(name, str(n)) for name in "ab" for n in (1, 2, 3)]
    assert [(run["params"]["name"], run["params"]["k"]) for run in runs] == expected
    assert [run["label"] for run in runs] == [f"job-{a}-{b}" for a, b in expected]
    assert {run["sweep_id"] for run in runs} == {document["sweep_id"]}
    for run in runs:
        assert (run["priority"], run["timeout_seconds"], run["grace_seconds"]) == (3, 60, 2)
        assert run["extra_args"] == ["--extra"] and run["command"][-3:] == [
            "--extra", "--output_dir", run["output_dir"],
        ]  # fmt: skip
        assert run["command"][2:6] == ["--name", run["params"]["name"], "--k", run["params"]["k"]]
        assert "nice=5" in lab.log(run["run_id"])
    for run in runs:
        # The environment stored once with the sweep reached each run's script, and the run
        # folder and its run.json were made when the run started.
        assert "foo=from-submitter" in lab.log(run["run_id"])
        assert lab.run_json(run["run_id"])["status"] == "completed"
    assert_each_started_once(lab.timeline, ["a", "a", "a", "b", "b", "b"])
    listed = lab.bt("sweeps", "--json").json()["sweeps"]
    assert listed == [
        {
            "sweep_id": document["sweep_id"],
            "script_path": "job.py",
            "created_at": listed[0]["created_at"],
            "count": 6,
            "max_parallel": None,
            "by_status": {"queued": 0, "running": 0, "completed": 6, "failed": 0, "cancelled": 0},
        }
    ]
    selected = lab.bt("list", "--sweep", document["sweep_id"][6:10], "--json").json()
    assert selected["total"] == 6


def test_the_sweep_cap_holds_with_two_workers(lab: QueueLab) -> None:
    lab.env["BT_MAX_PARALLEL"] = "4"
    workers = [lab.popen_bt("worker", "--idle-exit", "2") for _ in range(2)]
    document = sweep_json(lab, "-p", "name=1:8:1", "--max-parallel", "2", *timeline_args(lab, 0.6))
    code, runs = lab.wait(*document["run_ids"], timeout=120)
    assert code == 0, [run["error_message"] for run in runs]
    assert_each_started_once(lab.timeline, [str(n) for n in range(1, 9)])
    assert max_overlap(lab.timeline) == 2  # capped, and the cap was used
    for worker in workers:
        wait_until_gone(worker)
    assert lab.bt("sweeps", "--json").json()["sweeps"][0]["max_parallel"] == 2


def test_after_waits_for_its_run_and_queued_runs_have_no_folder_yet(lab: QueueLab) -> None:
    gate = lab.gate("first")
    first = lab.job("first", "-p", f"gate={gate}")
    lab.wait_running(first)
    document = sweep_json(lab, "-p", "name=x,y", "--after", first[:-2], *timeline_args(lab, 0))
    ids = document["run_ids"]
    assert by_status(lab, ids) == dict.fromkeys(ids, "queued")
    # A queued sweep run has no folder until it starts; looking at it is not an error.
    assert not lab.run_dir(ids[0]).exists()
    logs = lab.bt("logs", ids[0], "--json")
    assert logs.code == 0 and logs.json()["lines"] == []
    files = lab.bt("results", ids[0], "--json")
    assert files.code == 0 and files.json()["files"] == []
    gate.touch()
    code, _runs = lab.wait(first, *ids)
    assert code == 0
    events = read_timeline(lab.timeline)
    first_end = next(t for event, name, t in events if (event, name) == ("end", "first"))
    starts = [t for event, name, t in events if event == "start" and name in ("x", "y")]
    assert len(starts) == 2 and min(starts) >= first_end


def test_a_failed_dependency_cancels_the_whole_sweep(lab: QueueLab) -> None:
    first = lab.job("first", "-p", "exit=3", sleep=0.3)
    result = lab.bt(
        "sweep", "job.py", "--no-validate", "-p", "name=1:40:1", "--after", first,
        "--wait", "--json", timeout=120,
    )  # fmt: skip
    assert result.code == 1, result.stderr
    document = result.json()
    assert document["by_status"] == {
        "queued": 0, "running": 0, "completed": 0, "failed": 0, "cancelled": 40,
    }  # fmt: skip
    rows = lab.rows()
    for run_id in document["run_ids"]:
        assert rows[run_id]["failure_kind"] == "dependency"
        assert rows[run_id]["error_message"] == f"dependency {first} failed"
    assert rows[first]["status"] == "failed"


def test_wait_shows_progress_lines_and_exits_like_bt_wait(lab: QueueLab) -> None:
    result = lab.bt(
        "sweep", "job.py", "--no-validate", "-p", "name=ok,bad", "-p", "exit=0,3",
        "--wait", timeout=120,
    )  # fmt: skip
    assert result.code == 1, result.stderr
    lines = result.stdout.splitlines()
    sweep_id = lines[0]
    assert re.fullmatch(r"sweep_[0-9a-f]{8}", sweep_id)
    progress = [line for line in lines[1:] if line.startswith(f"{sweep_id}: ")]
    assert progress == lines[1:] and len(progress) >= 2
    assert len(set(progress)) == len(progress)  # one line per change
    assert (
        progress[0].endswith("0/4 done, 0 failed, 0 running, 4 queued") or "/4 done" in progress[0]
    )
    assert progress[-1] == f"{sweep_id}: 4/4 done, 2 failed, 0 running, 0 queued"
    ok = lab.bt("sweep", "job.py", "--no-validate", "-p", "name=p,q", "--wait", timeout=120)
    assert ok.code == 0 and ok.stdout.splitlines()[-1].endswith(
        "2/2 done, 0 failed, 0 running, 0 queued"
    )


def test_thousands_of_runs_queue_in_one_command_without_folders(lab: QueueLab) -> None:
    gate = lab.gate("blocker")
    blocker = lab.job("blocker", "-p", f"gate={gate}", "-p", "exit=1")
    lab.wait_running(blocker)
    document = sweep_json(lab, "-p", "name=1:3000:1", "--after", blocker, "--max-runs", "3000")
    assert document["count"] == 3000
    db = sqlite3.connect(f"file:{lab.results / 'bt.sqlite3'}?mode=ro", uri=True)
    try:
        queued = db.execute(
            "SELECT COUNT(*) FROM runs WHERE sweep_id = ? AND status = 'queued'",
            (document["sweep_id"],),
        ).fetchone()[0]
        after = db.execute("SELECT COUNT(*) FROM run_after WHERE after_run_id = ?", (blocker,))
        waiting = after.fetchone()[0]
    finally:
        db.close()
    assert queued == 3000 and waiting == 3000
    folders = [path for path in lab.results.iterdir() if path.name.startswith("run_")]
    assert len(folders) == 1  # the blocker's: the sweep's runs get theirs when they start
    gate.touch()  # the blocker fails: every run of the sweep is cancelled

    def all_cancelled() -> bool:
        counts = lab.bt("sweeps", "--json").json()["sweeps"][0]["by_status"]
        return bool(counts["cancelled"] == 3000)

    wait_for(all_cancelled, timeout=120, interval=0.5)


def test_wait_on_a_terminal_draws_a_progress_bar(lab: QueueLab) -> None:
    code, screen = run_in_terminal(
        [*BT, "sweep", "job.py", "--no-validate", "-p", "name=u,v,w", "--wait"], lab.cwd, lab.env
    )
    assert code == 0, screen
    sweep_id = re.search(r"sweep_[0-9a-f]{8}", screen)
    assert sweep_id is not None
    assert "3/3" in screen and "0 failed" in screen and "━" in screen  # Rich's bar
