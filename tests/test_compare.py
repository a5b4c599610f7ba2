"""`bt compare` against tables computed by hand from what tests/many_support.py's script writes.

One sweep (a = 1, 2, 3 by b = 0, 10, with a fixed c) is run once for the module; each test
reads it in its own way.
"""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.many_support import write_metrics_script
from tests.queue_support import QueueLab, lab_for

GRID = [(a, b) for a in (1, 2, 3) for b in (0, 10)]
METRICS = ["total_pnl", "sharpe_ratio", "max_drawdown", "win_rate", "num_trades"]


@dataclass
class World:
    lab: QueueLab
    sweep_id: str
    run_ids: list[str]  # in grid order
    no_sharpe: str  # a completed run without sharpe_ratio, outside the sweep
    no_summary: str  # a completed run (--no-validate) without summary.csv

    def compare(self, *args: str, code: int = 0) -> Any:
        result = self.lab.bt("compare", *args)
        assert result.code == code, result.stderr
        if code != 0:
            lines = result.stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith("Error: ") and result.stdout == ""
            return lines[0]
        return result.json() if "--json" in args else result.stdout


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with lab_for(tmp_path_factory.mktemp("compare")) as lab:
        write_metrics_script(lab.cwd)
        result = lab.bt(
            "sweep", "metrics.py", "-p", "a=1:3:1", "-p", "b=0,10", "-p", "c=same",
            "--label", "m-{a}-{b}", "--wait", "--json", timeout=180,
        )  # fmt: skip
        assert result.code == 0, result.stdout + result.stderr
        sweep = result.json()
        other = lab.bt("run", "metrics.py", "-p", "a=5", "-p", "no_sharpe=1", "--json")
        bare = lab.bt(
            "run", "metrics.py", "-p", "a=6", "-p", "no_summary=1", "--no-validate", "--json"
        )
        assert other.code == 0 and bare.code == 0, other.stderr + bare.stderr
        yield World(
            lab, sweep["sweep_id"], sweep["run_ids"], other.json()["run_id"], bare.json()["run_id"]
        )


def expected_metrics(a: float, b: float) -> dict[str, float]:
    return {
        "total_pnl": 100.0 * a + b,
        "sharpe_ratio": a + b / 10,
        "max_drawdown": -float(a),
        "win_rate": 0.5,
        "num_trades": 2.0,
    }


def test_the_table_has_varying_params_then_every_metric(world: World) -> None:
    document = world.compare("--sweep", world.sweep_id, "--json")
    assert document["params"] == ["a", "b"]  # c is the same everywhere
    assert document["metrics"] == METRICS
    assert [run["run_id"] for run in document["runs"]] == world.run_ids
    for run, (a, b) in zip(document["runs"], GRID, strict=True):
        assert set(run) == {
            "run_id", "label", "status", "sweep_id", "params", "metrics", "duration_seconds",
        }  # fmt: skip
        assert run["params"] == {"a": str(a), "b": str(b)}
        assert run["metrics"] == expected_metrics(a, b)
        assert run["label"] == f"m-{a}-{b}" and run["status"] == "completed"
        assert run["sweep_id"] == world.sweep_id and run["duration_seconds"] >= 0
    everything = world.compare("--sweep", world.sweep_id[:10], "--all-params", "--json")
    assert everything["params"] == ["a", "b", "c"]
    assert everything["runs"][0]["params"] == {"a": "1", "b": "0", "c": "same"}


def test_sort_descending_ties_in_order_and_top(world: World) -> None:
    document = world.compare("--sweep", world.sweep_id, "--sort", "-sharpe_ratio", "--json")
    order = [(run["params"]["a"], run["params"]["b"]) for run in document["runs"]]
    # sharpe = a + b/10: 4, 3 (2,10 before 3,0: submission order breaks ties), 3, 2, 2, 1
    assert order == [("3", "10"), ("2", "10"), ("3", "0"), ("1", "10"), ("2", "0"), ("1", "0")]
    top = world.compare("--sweep", world.sweep_id, "--sort=-total_pnl", "--top", "2", "--json")
    assert [run["metrics"]["total_pnl"] for run in top["runs"]] == [310.0, 300.0]
    ascending = world.compare("--sweep", world.sweep_id, "--sort", "max_drawdown", "--json")
    assert [run["metrics"]["max_drawdown"] for run in ascending["runs"]] == [-3, -3, -2, -2, -1, -1]


def test_runs_without_the_sort_metric_go_last(world: World) -> None:
    document = world.compare(
        world.no_sharpe, "--sweep", world.sweep_id, "--sort", "sharpe_ratio", "--json"
    )
    ids = [run["run_id"] for run in document["runs"]]
    assert len(ids) == 7 and ids[-1] == world.no_sharpe
    assert document["runs"][-1]["metrics"]["sharpe_ratio"] is None
    assert document["runs"][-1]["metrics"]["total_pnl"] == 500.0
    assert document["params"] == ["a", "b", "c", "no_sharpe"]  # absent counts as different


def test_a_run_without_summary_has_empty_metrics(world: World) -> None:
    document = world.compare(world.no_summary, world.run_ids[0], "--json")
    by_id = {run["run_id"]: run for run in document["runs"]}
    assert by_id[world.no_summary]["metrics"] == dict.fromkeys(METRICS)
    assert by_id[world.run_ids[0]]["metrics"] == expected_metrics(1, 0)
    alone = world.compare(world.no_summary, "--json")
    assert alone["metrics"] == [] and alone["runs"][0]["metrics"] == {}


def test_unknown_metrics_and_pivot_mistakes_exit_2(world: World) -> None:
    sweep = ("--sweep", world.sweep_id)
    assert "no run here has the metric 'nope'" in world.compare(*sweep, "--sort", "-nope", code=2)
    assert "sharpe_ratio" in world.compare(*sweep, "--sort", "nope", code=2)  # lists them
    world.compare(*sweep, "--pivot", "a,b", "--metric", "nope", code=2)
    assert "'c' does not vary" in world.compare(
        *sweep, "--pivot", "a,c", "--metric", "total_pnl", code=2
    )
    world.compare(*sweep, "--pivot", "a,zz", "--metric", "total_pnl", code=2)
    world.compare(*sweep, "--pivot", "a", "--metric", "total_pnl", code=2)
    world.compare(*sweep, "--pivot", "a,b", code=2)
    world.compare(*sweep, "--metric", "total_pnl", code=2)
    world.compare("--sweep", "sweep_ffffffff", code=2)


def test_pivot_table_with_the_best_cell(world: World) -> None:
    document = world.compare(
        "--sweep", world.sweep_id, "--pivot", "a,b", "--metric", "total_pnl", "--json"
    )
    assert document["rows"] == ["1", "2", "3"] and document["columns"] == ["0", "10"]
    assert document["values"] == [[100.0, 110.0], [200.0, 210.0], [300.0, 310.0]]
    assert document["best"] == [2, 1]
    # Numeric order, not text order, and the lowest drawdown (highest value) is best.
    flipped = world.compare(
        "--sweep", world.sweep_id, "--pivot", "b,a", "--metric", "max_drawdown", "--json"
    )
    assert flipped["rows"] == ["0", "10"] and flipped["columns"] == ["1", "2", "3"]
    assert flipped["values"] == [[-1.0, -2.0, -3.0], [-1.0, -2.0, -3.0]]
    assert flipped["best"] == [0, 0]
    text = world.compare("--sweep", world.sweep_id, "--pivot", "a,b", "--metric", "total_pnl")
    lines = text.splitlines()
    assert lines[0] == "total_pnl by a (rows) and b (columns)"
    assert lines[1].split() == ["a", "\\", "b", "0", "10"]
    assert lines[4].split() == ["3", "300", "310*"]


def test_plain_table_and_csv(world: World, tmp_path: Path) -> None:
    text = world.compare("--sweep", world.sweep_id, "--sort", "-total_pnl", "--top", "3")
    lines = text.splitlines()
    assert lines[0] == "3 runs"
    assert lines[1].split() == ["Run", "Label", "a", "b", "Status", "Duration", *METRICS]
    assert lines[2].split()[1:5] == ["m-3-10", "3", "10", "completed"]
    assert lines[2].split()[-5:] == ["310", "4", "-3", "0.5", "2"]
    out = tmp_path / "table.csv"
    world.compare("--sweep", world.sweep_id, "--csv", str(out), "--json")
    with open(out, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["run_id", "label", "a", "b", "status", "duration_seconds", *METRICS]
    assert [row[0] for row in rows[1:]] == world.run_ids
    assert rows[1][2:5] == ["1", "0", "completed"] and rows[1][6:] == [
        "100.0", "1.0", "-1.0", "0.5", "2.0",
    ]  # fmt: skip
    link = tmp_path / "link.csv"
    link.symlink_to(tmp_path / "elsewhere.csv")
    world.compare("--sweep", world.sweep_id, "--csv", str(link), code=2)
    assert not (tmp_path / "elsewhere.csv").exists()


def test_metrics_come_from_the_registry_and_missing_ones_are_read_once(world: World) -> None:
    lab = world.lab
    first = world.run_ids[0]
    # Files are not read for runs whose metrics are stored ...
    summary = lab.run_dir(first) / "summary.csv"
    saved = summary.read_bytes()
    summary.unlink()
    try:
        document = world.compare(first, "--json")
        assert document["runs"][0]["metrics"] == expected_metrics(1, 0)
    finally:
        summary.write_bytes(saved)
    # ... and a run validated before metrics were stored gets them from its summary.csv.
    db = sqlite3.connect(lab.results / "bt.sqlite3")
    try:
        db.execute("DELETE FROM metrics WHERE run_id = ?", (first,))
        db.commit()
    finally:
        db.close()
    document = world.compare("--sweep", world.sweep_id, "--sort", "sharpe_ratio", "--json")
    assert document["runs"][0]["run_id"] == first
    assert document["runs"][0]["metrics"] == expected_metrics(1, 0)
    db = sqlite3.connect(lab.results / "bt.sqlite3")
    try:
        stored = db.execute("SELECT COUNT(*) FROM metrics WHERE run_id = ?", (first,))
        assert stored.fetchone()[0] == 5
    finally:
        db.close()


def test_default_is_completed_runs_and_status_chooses(world: World) -> None:
    """(Last: it adds a run to the module's registry.)"""
    lab = world.lab
    broken = lab.bt("run", "job.py", "-p", "exit=4", "-p", "name=x", "--no-validate", "--json")
    assert broken.code == 1
    everything = world.compare("--json")
    assert broken.json()["run_id"] not in {run["run_id"] for run in everything["runs"]}
    failures = world.compare("--status", "failed", "--json")
    assert [run["run_id"] for run in failures["runs"]] == [broken.json()["run_id"]]
