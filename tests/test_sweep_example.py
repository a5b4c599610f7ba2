"""End to end: the moving-average example swept over a fast/slow grid, compared, plotted."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from tests.queue_support import QueueLab

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "ma_crossover.py"
RULES = ROOT / "examples" / "ma_crossover.toml"


def summary(folder: Path) -> dict[str, float]:
    with open(folder / "summary.csv", newline="") as handle:
        return {row["metric"]: float(row["value"]) for row in csv.DictReader(handle)}


def test_the_example_is_deterministic_and_its_files_agree(tmp_path: Path) -> None:
    outputs = []
    for name in ("one", "two"):
        done = subprocess.run(
            [sys.executable, str(EXAMPLE), "--fast", "10", "--slow", "40",
             "--output_dir", str(tmp_path / name)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        outputs.append(
            [
                (tmp_path / name / file).read_bytes()
                for file in ("trades.csv", "pnl.csv", "summary.csv")
            ]
        )
    assert outputs[0] == outputs[1]
    folder = tmp_path / "one"
    with open(folder / "trades.csv", newline="") as handle:
        trades = list(csv.DictReader(handle))
    with open(folder / "pnl.csv", newline="") as handle:
        days = list(csv.DictReader(handle))
    metrics = summary(folder)
    cents = round(metrics["total_pnl"] * 100)
    assert cents == sum(round(float(trade["pnl"]) * 100) for trade in trades)
    assert cents == round(float(days[-1]["cumulative_pnl"]) * 100)
    assert metrics["num_trades"] == len(trades) >= 3
    bad = subprocess.run(
        [sys.executable, str(EXAMPLE), "--fast", "50", "--slow", "20", "--output_dir", "x"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "--fast (50) must be shorter than --slow (20)" in bad.stderr


def test_sweep_compare_and_plot_the_example(lab: QueueLab) -> None:
    result = lab.bt(
        "sweep", str(EXAMPLE), "--rules", str(RULES), "-p", "fast=5:15:5", "-p", "slow=40,80",
        "-p", "end_date=2020-12-31", "--label", "ma-{fast}-{slow}", "--wait", "--json",
        timeout=240,
    )  # fmt: skip
    assert result.code == 0, result.stdout + result.stderr
    sweep = result.json()
    assert sweep["count"] == 6 and sweep["by_status"]["completed"] == 6
    statuses = [lab.status(run_id) for run_id in sweep["run_ids"]]
    for status in statuses:
        report = status["validation_results"]
        assert report["valid"] and report["warnings"] == [], report
    folders = {status["run_id"]: Path(status["output_dir"]) for status in statuses}
    labels = [status["label"] for status in statuses]
    assert labels == [f"ma-{fast}-{slow}" for fast in (5, 10, 15) for slow in (40, 80)]

    pivot = lab.bt(
        "compare", "--sweep", sweep["sweep_id"], "--pivot", "fast,slow", "--metric",
        "sharpe_ratio", "--json",
    )  # fmt: skip
    assert pivot.code == 0, pivot.stderr
    grid = pivot.json()
    assert grid["rows"] == ["5", "10", "15"] and grid["columns"] == ["40", "80"]
    by_label = {status["label"]: folders[status["run_id"]] for status in statuses}
    expected = [
        [summary(by_label[f"ma-{fast}-{slow}"])["sharpe_ratio"] for slow in (40, 80)]
        for fast in (5, 10, 15)
    ]
    assert grid["values"] == expected
    flat = [value for row in expected for value in row]
    best = flat.index(max(flat))
    assert grid["best"] == [best // 2, best % 2]

    ranked = lab.bt(
        "compare", "--sweep", sweep["sweep_id"], "--sort", "-total_pnl", "--top", "1", "--json"
    ).json()
    winner = ranked["runs"][0]
    totals = {label: summary(folder)["total_pnl"] for label, folder in by_label.items()}
    assert winner["metrics"]["total_pnl"] == max(totals.values())
    assert ranked["params"] == [] and winner["label"] == max(totals, key=lambda k: totals[k])

    plotted = lab.bt("plot", winner["run_id"], "--json")
    assert plotted.code == 0
    with open(folders[winner["run_id"]] / "pnl.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    curve = plotted.json()["runs"][0]
    assert curve["dates"] == [row["date"] for row in rows]
    assert curve["cumulative_pnl"] == [float(row["cumulative_pnl"]) for row in rows]
    drawn = lab.bt("plot", winner["run_id"], "--drawdown")
    assert drawn.code == 0 and "Drawdown" in drawn.stdout and winner["label"] in drawn.stdout
