"""The bundled example script, run as a real subprocess."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "strategy_analyzer.py"
YEAR_ARGS = [
    "--strategy",
    "short_straddle",
    "--start_date",
    "2020-01-01",
    "--end_date",
    "2020-12-31",
]
CSV_FILES = ("trades.csv", "pnl.csv", "summary.csv")


def clean_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("BACKTEST_OUTPUT_DIR", None)
    env.pop("BACKTEST_RUN_ID", None)
    return env


def run_script(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=cwd,
        env=clean_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


@pytest.fixture(scope="module")
def year_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("year")
    proc = run_script([*YEAR_ARGS, "--output_dir", str(out)], cwd=out)
    assert proc.returncode == 0, proc.stderr
    assert "Loading data from 2020-01-01 to 2020-12-31" in proc.stdout
    assert "Processing 262 trading days" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    return out


def test_files_and_columns(year_run: Path) -> None:
    for name in (*CSV_FILES, "metadata.json"):
        assert (year_run / name).is_file(), name

    columns, trades = read_rows(year_run / "trades.csv")
    assert {"entry_time", "exit_time", "pnl", "strike", "option_type"} <= set(columns)
    assert len(trades) == 2 * 262
    assert {t["option_type"] for t in trades} == {"CE", "PE"}
    for t in trades:
        assert len(t["entry_time"]) == 19 and len(t["exit_time"]) == 19
        assert t["entry_time"].endswith(" 09:20:00") and t["exit_time"].endswith(" 15:15:00")
        assert t["exit_time"] >= t["entry_time"]
        assert math.isfinite(float(t["pnl"]))
        assert float(t["strike"]) % 50 == 0
        assert float(t["premium_in"]) > 0 and float(t["premium_out"]) > 0

    columns, days = read_rows(year_run / "pnl.csv")
    assert columns == ["date", "pnl", "cumulative_pnl"]
    dates = [d["date"] for d in days]
    assert dates == sorted(set(dates)) and len(dates) == 262
    assert dates[0] == "2020-01-01" and dates[-1] == "2020-12-31"
    running = Decimal(0)
    for d in days:
        running += Decimal(d["pnl"])
        assert Decimal(d["cumulative_pnl"]) == running

    columns, summary_rows = read_rows(year_run / "summary.csv")
    assert columns == ["metric", "value"]
    summary = {r["metric"]: r["value"] for r in summary_rows}
    for metric in (
        "total_pnl",
        "win_rate",
        "max_drawdown",
        "max_drawdown_pct",
        "sharpe_ratio",
        "num_trades",
        "capital",
        "final_equity",
        "return_pct",
    ):
        assert metric in summary, metric
        assert math.isfinite(float(summary[metric])), metric
    assert 0.0 <= float(summary["win_rate"]) <= 1.0
    assert float(summary["max_drawdown"]) <= 0.0
    assert float(summary["max_drawdown_pct"]) <= 0.0
    assert int(summary["num_trades"]) == len(trades)
    assert Decimal(summary["capital"]) == Decimal("100000.00")

    metadata = json.loads((year_run / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["params"]["strategy"] == "short_straddle"
    assert metadata["params"]["capital"] == 100000.0
    assert "+00:00" in metadata["timestamp"]
    assert metadata["run_id"] is None
    assert metadata["strategy_version"]


def test_totals_agree_to_the_cent(year_run: Path) -> None:
    _, trades = read_rows(year_run / "trades.csv")
    _, days = read_rows(year_run / "pnl.csv")
    _, summary_rows = read_rows(year_run / "summary.csv")
    summary = {r["metric"]: r["value"] for r in summary_rows}
    total = Decimal(summary["total_pnl"])
    assert total == sum(Decimal(t["pnl"]) for t in trades)
    assert total == Decimal(days[-1]["cumulative_pnl"])
    assert Decimal(summary["final_equity"]) == Decimal(summary["capital"]) + total
    wins = sum(1 for t in trades if Decimal(t["pnl"]) > 0)
    assert float(summary["win_rate"]) == pytest.approx(wins / len(trades), abs=1e-4)


def test_deterministic(tmp_path: Path, year_run: Path) -> None:
    out = tmp_path / "again"
    env = clean_env()
    env["BACKTEST_RUN_ID"] = "20200101_000000_deadbeef"
    proc = run_script([*YEAR_ARGS, "--output_dir", str(out)], cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    for name in CSV_FILES:
        assert (out / name).read_bytes() == (year_run / name).read_bytes(), name
    metadata = json.loads((out / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["run_id"] == "20200101_000000_deadbeef"


def test_other_seed_differs(tmp_path: Path, year_run: Path) -> None:
    proc = run_script([*YEAR_ARGS, "--seed", "7", "--output_dir", str(tmp_path)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "pnl.csv").read_bytes() != (year_run / "pnl.csv").read_bytes()


def test_strangle_uses_otm_strikes(tmp_path: Path) -> None:
    args = ["--strategy", "short_strangle", "--start_date", "2020-03-02"]
    args += ["--end_date", "2020-03-06", "--strike_selection", "otm2"]
    proc = run_script([*args, "--output_dir", str(tmp_path)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    _, trades = read_rows(tmp_path / "trades.csv")
    assert len(trades) == 10
    for call, put in zip(trades[::2], trades[1::2], strict=True):
        assert (call["option_type"], put["option_type"]) == ("CE", "PE")
        assert float(call["strike"]) - float(put["strike"]) == 200


@pytest.mark.parametrize(
    "extra",
    [
        ["--start_date", "2020-12-31", "--end_date", "2020-01-01"],
        ["--start_date", "2020-13-01", "--end_date", "2020-12-31"],
        ["--start_date", "2020/01/01", "--end_date", "2020-12-31"],
        ["--start_date", "2020-01-01", "--end_date", "yesterday"],
    ],
)
def test_bad_dates_exit_2(tmp_path: Path, extra: list[str]) -> None:
    proc = run_script(["--strategy", "short_straddle", *extra, "--output_dir", "out"], tmp_path)
    assert proc.returncode == 2
    assert "date" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "extra",
    [
        ["--strategy", "long_straddle"],
        ["--strategy", "short_straddle", "--bogus", "1"],
        ["--strategy", "short_straddle", "--strike_selection", "itm1"],
        ["--strategy", "short_straddle", "--strike_selection", "otm1"],
        ["--strategy", "short_straddle", "--entry_time", "15:20", "--exit_time", "09:30"],
    ],
)
def test_bad_arguments_exit_2(tmp_path: Path, extra: list[str]) -> None:
    dates = ["--start_date", "2020-01-01", "--end_date", "2020-01-31"]
    proc = run_script([*extra, *dates, "--output_dir", "out"], tmp_path)
    assert proc.returncode == 2
    assert "error" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_no_trading_days_exit_1(tmp_path: Path) -> None:
    # 2020-01-04 and 2020-01-05 are a Saturday and a Sunday.
    args = ["--strategy", "short_straddle", "--start_date", "2020-01-04"]
    proc = run_script([*args, "--end_date", "2020-01-05", "--output_dir", "out"], tmp_path)
    assert proc.returncode == 1
    assert "no trading days" in proc.stderr
    assert not (tmp_path / "out" / "trades.csv").exists()


def test_output_dir_from_environment(tmp_path: Path) -> None:
    target = tmp_path / "from_env"
    env = clean_env()
    env["BACKTEST_OUTPUT_DIR"] = str(target)
    args = ["--strategy", "short_straddle", "--start_date", "2020-01-01"]
    proc = run_script([*args, "--end_date", "2020-01-31"], cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    for name in (*CSV_FILES, "metadata.json"):
        assert (target / name).is_file(), name
    assert not (tmp_path / "results").exists()
    metadata = json.loads((target / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["params"]["output_dir"] == str(target)
