"""`bt rm` and `bt gc`: what goes, what never goes, and the bytes freed."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from btmanager.lifecycle.exitrecord import ExitRecord
from btmanager.lifecycle.state import RunStates
from btmanager.registry.db import Registry
from btmanager.registry.model import ProcessIdentity
from tests.conftest import BtRunner
from tests.helpers import pid_alive, wait_for
from tests.queue_support import QueueLab
from tests.scripts import VALID, write


def _runs(bt: BtRunner, count: int, body: str = VALID) -> list[dict[str, Any]]:
    write(bt.cwd, "s.py", body)
    runs = [bt("run", "s.py", "--json").json() for _ in range(count)]
    assert all(run["status"] == "completed" for run in runs)
    return runs


def _folder_bytes(folder: Path) -> int:
    total = 0
    for directory, _dirs, files in os.walk(folder):
        for name in files:
            info = os.lstat(os.path.join(directory, name))
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
    return total


def _age(results: Path, run_id: str, days: float) -> None:
    """Make a run look `days` old (created, started and ended then)."""
    moment = (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="milliseconds")
    db = sqlite3.connect(results / "bt.sqlite3")
    with db:
        db.execute(
            "UPDATE runs SET created_at = ?, started_at = ?, completed_at = ? WHERE run_id = ?",
            (moment, moment, moment, run_id),
        )
    db.close()


def test_rm_removes_rows_and_folders_and_counts_bytes(bt: BtRunner) -> None:
    first, second, third = _runs(bt, 3)
    folders = [Path(run["output_dir"]) for run in (first, second)]
    expected = sum(_folder_bytes(folder) for folder in folders)
    result = bt("rm", first["run_id"], second["run_id"][-8:], "--json")
    assert result.code == 0, result.stderr
    document = result.json()
    assert document["removed"] == [first["run_id"], second["run_id"]]
    assert document["bytes_freed"] == expected > 0
    assert not any(folder.exists() for folder in folders)
    listed = bt("list", "--json").json()
    assert [run["run_id"] for run in listed["runs"]] == [third["run_id"]]
    assert bt("status", first["run_id"]).code == 2
    human = bt("rm", "latest")
    assert human.code == 0
    assert f"Removed {third['run_id']}" in human.stdout
    assert "Removed 1 run, freed" in human.stdout
    assert not Path(third["output_dir"]).exists()


def test_rm_by_selection_and_tags(bt: BtRunner) -> None:
    runs = _runs(bt, 3)
    bt("tag", runs[0]["run_id"], "scratch")
    bt("tag", runs[2]["run_id"], "scratch")
    document = bt("rm", "--tag", "scratch", "--json").json()
    assert sorted(document["removed"]) == sorted([runs[0]["run_id"], runs[2]["run_id"]])
    assert [run["run_id"] for run in bt("list", "--json").json()["runs"]] == [runs[1]["run_id"]]
    assert bt("rm", "--tag", "scratch").code == 2  # the selection matches nothing now
    assert bt("rm").code == 2


def test_rm_refuses_queued_and_running_runs_unless_cancel(lab: QueueLab) -> None:
    gate = lab.gate("never")
    running = lab.submit("job.py", "-p", "name=long", "-p", f"gate={gate}")
    row = lab.wait_running(running)
    queued = lab.submit("job.py", "-p", "name=later", "--after", running)
    done = lab.submit("job.py", "-p", "name=done")
    lab.wait(done)
    refused = lab.bt("rm", running, queued, done, "--json")
    assert refused.code == 1
    assert refused.stdout == ""
    assert "queued or running" in refused.stderr and "--cancel" in refused.stderr
    rows = lab.rows()
    assert {running, queued, done} <= set(rows)
    assert lab.run_dir(done).is_dir() and lab.run_dir(running).is_dir()

    removed = lab.bt("rm", running, queued, "--cancel", "--json")
    assert removed.code == 0, removed.stderr
    assert sorted(removed.json()["removed"]) == sorted([running, queued])
    assert not lab.run_dir(running).exists() and not lab.run_dir(queued).exists()
    assert set(lab.rows()) == {done}
    wait_for(lambda: not pid_alive(row["pid"]))


def test_a_symlinked_run_folder_pointing_outside_survives(bt: BtRunner, tmp_path: Path) -> None:
    (victim,) = _runs(bt, 1)
    folder = Path(victim["output_dir"])
    elsewhere = tmp_path / "precious" / folder.name
    elsewhere.parent.mkdir()
    shutil.move(folder, elsewhere)
    folder.symlink_to(elsewhere, target_is_directory=True)
    files = sorted(path.name for path in elsewhere.iterdir())
    for command in (["rm", victim["run_id"]], ["gc", "--keep-last", "0"]):
        result = bt(*command, "--json")
        assert result.code == 1, command
        document = result.json()
        assert document["removed"] == []
        assert document["skipped"][0]["run_id"] == victim["run_id"]
        assert "symlink" in document["skipped"][0]["reason"]
        assert sorted(path.name for path in elsewhere.iterdir()) == files
        assert folder.is_symlink()
        assert bt("status", victim["run_id"], "--json").code == 0


def test_rm_never_deletes_outside_the_results_root(bt: BtRunner, tmp_path: Path) -> None:
    # One registry shared by two results roots: a run of one is outside the other.
    shared = str(tmp_path / "shared.sqlite3")
    write(bt.cwd, "s.py", VALID)
    made = bt("--results-dir", str(tmp_path / "a"), "run", "s.py", "--json", BT_DB=shared)
    run = made.json()
    result = bt("--results-dir", str(tmp_path / "b"), "rm", run["run_id"], "--json", BT_DB=shared)
    assert result.code == 1
    assert "outside the results root" in result.json()["skipped"][0]["reason"]
    assert Path(run["output_dir"]).is_dir()
    again = bt("--results-dir", str(tmp_path / "a"), "rm", run["run_id"], "--json", BT_DB=shared)
    assert again.code == 0 and again.json()["removed"] == [run["run_id"]]


def test_gc_filters_and_protects_keep(bt: BtRunner) -> None:
    write(bt.cwd, "bad.py", "import sys\nsys.exit(3)\n")
    old_done, old_kept, new_done = _runs(bt, 3)
    old_failed = bt("run", "bad.py", "--no-validate", "--json").json()
    new_failed = bt("run", "bad.py", "--no-validate", "--json").json()
    for run in (old_done, old_kept, old_failed):
        _age(bt.results, run["run_id"], 40)
    bt("tag", old_kept["run_id"], "keep")

    assert bt("gc").code == 2  # at least one filter
    assert bt("gc", "--older-than", "soon").code == 2
    assert bt("gc", "--status", "running").code == 2
    assert bt("gc", "--keep-last", "-1").code == 2

    dry = bt("gc", "--older-than", "30d", "--dry-run", "--json").json()
    assert dry["dry_run"] is True
    assert sorted(dry["removed"]) == sorted([old_done["run_id"], old_failed["run_id"]])
    assert len(bt("list", "--json").json()["runs"]) == 5  # nothing removed

    failed = bt("gc", "--status", "failed", "--older-than", "30d", "--json").json()
    assert failed["removed"] == [old_failed["run_id"]]
    human = bt("gc", "--older-than", "720h")
    assert human.code == 0
    assert f"Removed {old_done['run_id']}" in human.stdout
    assert "freed" in human.stdout
    left = {run["run_id"] for run in bt("list", "--json").json()["runs"]}
    assert left == {old_kept["run_id"], new_done["run_id"], new_failed["run_id"]}
    assert Path(old_kept["output_dir"]).is_dir()
    # Everything finished but the newest one (and the kept one).
    last = bt("gc", "--keep-last", "1", "--json").json()
    assert last["removed"] == [new_done["run_id"]]
    assert {run["run_id"] for run in bt("list", "--json").json()["runs"]} == {
        old_kept["run_id"],
        new_failed["run_id"],
    }


def test_gc_never_touches_queued_or_running_runs(lab: QueueLab) -> None:
    gate = lab.gate("never")
    running = lab.submit("job.py", "-p", "name=long", "-p", f"gate={gate}")
    lab.wait_running(running)
    queued = lab.submit("job.py", "-p", "name=later", "--after", running)
    done = lab.submit("job.py", "-p", "name=done")
    lab.wait(done)
    result = lab.bt("gc", "--keep-last", "0", "--json")
    assert result.code == 0, result.stderr
    assert result.json()["removed"] == [done]
    rows = lab.rows()
    assert rows[running]["status"] == "running" and rows[queued]["status"] == "queued"
    assert lab.run_dir(running).is_dir() and lab.run_dir(queued).is_dir()
    gate.touch()


# --- the guarded deletion, in-process ----------------------------------------------------------


@pytest.fixture
def states(tmp_path: Path) -> Any:
    registry = Registry(tmp_path / "bt.sqlite3")
    yield RunStates(registry, write_files=False)
    registry.close()


def _row(run_id: str) -> dict[str, Any]:
    return {
        "run_id": run_id, "script_path": "s.py", "script_resolved": "/s.py", "params": {},
        "extra_args": [], "command": ["s.py"], "cwd": "/", "output_dir": f"/r/run_{run_id}",
    }  # fmt: skip


def test_delete_takes_only_runs_final_under_the_lock(states: RunStates) -> None:
    running = states.create(_row("20260101_000000_00000001"), running=True)
    assert states.delete(running.run_id) is None  # it is running: it stays
    assert states.registry.get(running.run_id).status == "running"
    record = ExitRecord(exit_code=0, ended_at="2026-01-01T00:00:01.000+00:00")
    states.end(running.run_id, record, None)
    states.registry.change_tags(running.run_id, ["keep"], [])
    assert states.delete(running.run_id, unless_tagged="keep") is None  # tagged meanwhile
    removed = states.delete(running.run_id)
    assert removed is not None and removed.status == "completed"
    assert states.registry.get_many([running.run_id]) == []
    assert states.registry.tags_of([running.run_id]) == {running.run_id: []}
    assert states.delete(running.run_id) is None  # already gone


def test_delete_of_a_failed_dependency_cancels_its_dependents(states: RunStates) -> None:
    first = states.create(_row("20260101_000000_00000002"), running=True)
    waiting = states.create(_row("20260101_000000_00000003"), running=False, after=[first.run_id])
    record = ExitRecord(exit_code=1, ended_at="2026-01-01T00:00:01.000+00:00")
    states.end(first.run_id, record, None)
    assert states.delete(first.run_id) is not None
    after = states.registry.get(waiting.run_id)
    assert after.status == "cancelled"
    assert after.error_message == f"dependency {first.run_id} failed"
    assert states.claim(ProcessIdentity(1, 1.0)) is None  # it can never start
