"""`bt plot` (JSON against pnl.csv, plain and terminal drawings, PNG) and the equity sparkline
with key metrics in `bt status` and the foreground run summary."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from btmanager.plot import PnlError, drawdown, read_pnl, sparkline
from tests.helpers import BT
from tests.many_support import expected_pnl, run_in_terminal, write_metrics_script
from tests.queue_support import QueueLab, lab_for

ESCAPE = re.compile(r"\x1b\[")
BRAILLE = re.compile("[\u2800-\u28ff]")


@dataclass
class Runs:
    lab: QueueLab
    small: str  # a=2, b=10, label "small"
    big: str  # a=5, b=0, no label
    no_pnl: str  # a run that wrote no pnl.csv


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    with lab_for(tmp_path_factory.mktemp("plot")) as lab:
        write_metrics_script(lab.cwd)
        small = lab.bt("run", "metrics.py", "-p", "a=2", "-p", "b=10", "--label", "small", "--json")
        big = lab.bt("run", "metrics.py", "-p", "a=5", "-p", "b=0", "--json")
        bare = lab.bt("run", "job.py", "--no-validate", "--json")
        assert small.code == big.code == bare.code == 0, small.stderr + big.stderr + bare.stderr
        yield Runs(lab, small.json()["run_id"], big.json()["run_id"], bare.json()["run_id"])


def test_json_is_pnl_csv_with_its_drawdown(runs: Runs) -> None:
    result = runs.lab.bt("plot", runs.small, runs.big[:-2], "--json")
    assert result.code == 0, result.stderr
    document = result.json()
    assert [run["run_id"] for run in document["runs"]] == [runs.small, runs.big]
    small = document["runs"][0]
    assert set(small) == {"run_id", "dates", "cumulative_pnl", "drawdown"}
    dates, cumulative = expected_pnl(2, 10)
    assert small["dates"] == dates
    assert (
        small["cumulative_pnl"] == cumulative == [107, 107, 105, 105, 210, 210, 210, 210, 210, 210]
    )
    assert small["drawdown"] == [0, 0, -2, -2, 0, 0, 0, 0, 0, 0]
    big = document["runs"][1]
    assert big["cumulative_pnl"] == expected_pnl(5, 0)[1]
    assert big["drawdown"][2] == -5


def test_plain_plot_is_ascii_with_a_legend(runs: Runs) -> None:
    result = runs.lab.bt("plot", runs.small, runs.big, env={"COLUMNS": "90"})
    assert result.code == 0, result.stderr
    text = result.stdout
    assert text.isascii() and not ESCAPE.search(text)
    assert "Equity (cumulative pnl)" in text
    assert "small" in text and runs.big in text  # legend: label, else run id
    assert "2024-01-01" in text and "Drawdown" not in text
    assert max(len(line) for line in text.splitlines()) <= 90
    with_drawdown = runs.lab.bt("plot", runs.small, "--drawdown", env={"COLUMNS": "90"})
    assert with_drawdown.code == 0 and "Drawdown" in with_drawdown.stdout
    assert with_drawdown.stdout.isascii()
    assert len(with_drawdown.stdout.splitlines()) > len(text.splitlines())


def test_terminal_plot_has_colour_and_fine_dots(runs: Runs) -> None:
    code, screen = run_in_terminal([*BT, "plot", runs.small, runs.big], runs.lab.cwd, runs.lab.env)
    assert code == 0, screen
    assert ESCAPE.search(screen) and BRAILLE.search(screen)
    assert "small" in screen


def test_a_run_without_pnl_csv_is_exit_2_naming_it(runs: Runs) -> None:
    for args in ((runs.no_pnl,), (runs.small, runs.no_pnl), (runs.no_pnl, "--json")):
        result = runs.lab.bt("plot", *args)
        assert result.code == 2 and result.stdout == ""
        assert result.stderr == (
            f"Error: Run {runs.no_pnl} has no readable pnl.csv: pnl.csv is missing\n"
        )


def test_png(runs: Runs, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "curve.png"
    result = runs.lab.bt("plot", runs.small, runs.big, "--drawdown", "--png", str(out))
    assert result.code == 0, result.stderr
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
    link = tmp_path / "link.png"
    link.symlink_to(tmp_path / "target.png")
    refused = runs.lab.bt("plot", runs.small, "--png", str(link))
    assert refused.code == 2 and not (tmp_path / "target.png").exists()


def test_status_and_run_summary_show_the_curve_and_key_metrics(runs: Runs) -> None:
    status = runs.lab.bt("status", runs.small)
    assert status.code == 0
    lines = {
        line.split(None, 1)[0]: line.split(None, 1)[1]
        for line in status.stdout.splitlines()
        if line.strip() and not line.startswith(" ")
    }
    spark, _, span = lines["Equity"].partition("  ")
    assert len(spark) == 10 and set(spark) <= set("▁▂▃▄▅▆▇█")
    assert spark == sparkline(expected_pnl(2, 10)[1])
    assert span == "2024-01-01 .. 2024-01-12, last 210"
    # Every metric the registry stored for the run, in summary.csv's order.
    assert (
        lines["Metrics"] == "total_pnl=210 win_rate=0.5 max_drawdown=-2 sharpe_ratio=3 num_trades=2"
    )
    assert "Equity" not in runs.lab.bt("status", runs.no_pnl).stdout
    # The foreground run's summary says the same, and so does a terminal (with Rich).
    foreground = runs.lab.bt("run", "metrics.py", "-p", "a=2", "-p", "b=10")
    assert foreground.code == 0
    assert f"Equity       {spark}" in foreground.stdout
    code, screen = run_in_terminal([*BT, "status", runs.small], runs.lab.cwd, runs.lab.env)
    assert code == 0 and spark in screen and "sharpe_ratio=3" in screen


def test_reading_pnl_csv(tmp_path: Path) -> None:
    (tmp_path / "pnl.csv").write_text("\ufeffDate , pnl\r\n2024-01-01,5\r\n2024-01-02,-7\r\n\r\n")
    assert read_pnl(tmp_path) == (["2024-01-01", "2024-01-02"], [5.0, -2.0])  # summed
    (tmp_path / "pnl.csv").write_text("date,cumulative_pnl\n2024-01-01,abc\n")
    with pytest.raises(PnlError, match="line 2: 'abc' is not a number"):
        read_pnl(tmp_path)
    (tmp_path / "pnl.csv").unlink()
    (tmp_path / "pnl.csv").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PnlError):
        read_pnl(tmp_path)
    assert drawdown([1.0, 3.0, 2.0, 5.0, -1.0]) == [0.0, 0.0, -1.0, 0.0, -6.0]
    assert sparkline([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]) == "▁▂▃▄▅▆▇█"
    assert sparkline([1.0] * 100, width=5) == "▅▅▅▅▅"
    assert len(sparkline(list(map(float, range(1000))), width=40)) == 40
