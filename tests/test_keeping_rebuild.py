"""`bt registry rebuild`: a lost or corrupt registry recorded again from the run folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import BtRunner
from tests.scripts import FAILING, VALID, write


def _setup(bt: BtRunner) -> tuple[dict[str, Any], dict[str, Any]]:
    write(bt.cwd, "ok.py", VALID)
    write(bt.cwd, "bad.py", FAILING)
    good = bt("run", "ok.py", "-p", "fast=5", "--label", "base", "--json").json()
    bad = bt("run", "bad.py", "--no-validate", "--json").json()
    assert bt("tag", good["run_id"], "best", "keep").code == 0
    assert bt("note", good["run_id"], "the reference run").code == 0
    return good, bad


def _strip(status: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in status.items() if key != "log_error"}


def test_rebuild_a_corrupt_registry(bt: BtRunner) -> None:
    good, bad = _setup(bt)
    before = {run["run_id"]: bt("status", run["run_id"], "--json").json() for run in (good, bad)}
    registry = bt.results / "bt.sqlite3"
    with open(registry, "r+b") as handle:
        handle.write(b"this is not a database at all" * 4)
    broken = bt("list")
    assert broken.code == 2 and "corrupt" in broken.stderr
    assert bt("health").code == 1

    result = bt("registry", "rebuild", "--json")
    assert result.code == 0, result.stderr
    document = result.json()
    assert document["recovered"] == 2 and document["skipped"] == []
    aside = Path(document["set_aside"])
    assert aside.parent == bt.results and aside.name.startswith("bt.sqlite3.corrupt-")
    assert aside.read_bytes().startswith(b"this is not a database")

    assert bt("health").code == 0
    listed = bt("list", "--json").json()
    assert [run["run_id"] for run in listed["runs"]] == [bad["run_id"], good["run_id"]]
    for run_id, status in before.items():
        after = bt("status", run_id, "--json").json()
        assert _strip(after) == _strip(status), run_id
    restored = bt("status", good["run_id"], "--json").json()
    assert restored["tags"] == ["best", "keep"]
    assert restored["note"] == "the reference run"
    assert restored["params"] == {"fast": "5"}
    assert restored["metrics"]["total_pnl"] == 265.5
    assert bt("status", bad["run_id"], "--json").json()["failure_kind"] == "exit_code"
    # The keep tag still protects it.
    assert bt("gc", "--keep-last", "0", "--json").json()["removed"] == [bad["run_id"]]


def test_rebuild_a_lost_registry_and_skip_broken_folders(bt: BtRunner) -> None:
    good, _bad = _setup(bt)
    for name in ("bt.sqlite3", "bt.sqlite3-wal", "bt.sqlite3-shm"):
        (bt.results / name).unlink(missing_ok=True)
    broken = bt.results / "run_20200101_000000_0badf00d"
    broken.mkdir()
    (broken / "run.json").write_text("{not json")
    (bt.results / "run_20200101_000000_00000000").mkdir()  # no run.json at all

    result = bt("registry", "rebuild", "--json")
    assert result.code == 0, result.stderr
    document = result.json()
    assert document["recovered"] == 2 and document["set_aside"] is None
    reasons = {item["folder"]: item["reason"] for item in document["skipped"]}
    assert reasons == {
        "run_20200101_000000_00000000": "no run.json",
        "run_20200101_000000_0badf00d": "run.json is not valid JSON",
    }
    assert bt("status", good["run_id"], "--json").json()["tags"] == ["best", "keep"]
    human = bt("registry", "rebuild")
    assert human.code == 0
    assert "Recovered 0 runs" in human.stdout and "(2 already recorded)" in human.stdout
    assert "Skipped run_20200101_000000_0badf00d: run.json is not valid JSON" in human.stdout
    assert len(bt("list", "--json").json()["runs"]) == 2


def test_rebuild_adds_only_missing_runs_to_a_healthy_registry(bt: BtRunner, tmp_path: Path) -> None:
    _setup(bt)
    # A run folder copied in from elsewhere (another results root) joins the registry.
    other = tmp_path / "other"
    write(bt.cwd, "ok.py", VALID)
    foreign = bt("--results-dir", str(other), "run", "ok.py", "--json").json()
    moved = bt.results / Path(foreign["output_dir"]).name
    Path(foreign["output_dir"]).rename(moved)
    document = bt("registry", "rebuild", "--json").json()
    assert document["recovered"] == 1 and document["already_recorded"] == 2
    assert document["set_aside"] is None
    status = bt("status", foreign["run_id"], "--json").json()
    assert status["output_dir"] == str(moved)
    assert status["status"] == "completed"
    assert json.loads((moved / "run.json").read_text())["run_id"] == foreign["run_id"]
    assert bt("registry", "rebuild", "--json").json()["recovered"] == 0


def test_rebuild_without_a_results_folder_is_exit_2(bt: BtRunner) -> None:
    result = bt("registry", "rebuild")
    assert result.code == 2
    assert result.stderr.startswith("Error: No results folder at ")
