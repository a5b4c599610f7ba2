"""The big-file path (a fast pyarrow or pandas scan) must report exactly what the stdlib path does.

Every test forces the fast path on a small file with `fast_bytes=0` and compares the whole
report with the one of the stdlib reader (`fast_bytes` larger than any file).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from btmanager.validation.checks.pnl import PnlCheck
from btmanager.validation.checks.trades import TradesCheck
from btmanager.validation.engine import validate_dir
from btmanager.validation.readers.table import scan_table
from btmanager.validation.rules import Rules
from tests.validation_fixtures import csv_text, pnl_rows, trade_rows, write_csv, write_valid_run

ENGINES = ["arrow", "pandas"]
SLOW = 1 << 40
Rows = list[list[str]]


def same_reports(folder: Path, rules: Rules | None = None) -> dict[str, Any]:
    slow = validate_dir(folder, rules, fast_bytes=SLOW).to_dict()
    for engine in ENGINES:
        assert validate_dir(folder, rules, fast_bytes=0, engine=engine).to_dict() == slow, engine
    return slow


def set_cell(rows: Rows, line: int, column: int, value: str) -> Rows:
    rows[line - 1][column] = value
    return rows


TRADE_BREAKS: dict[str, Callable[[], Rows]] = {
    "null pnl": lambda: set_cell(trade_rows(), 4, 6, ""),
    "null token pnl": lambda: set_cell(trade_rows(), 4, 6, "NA"),
    "spaced null": lambda: set_cell(trade_rows(), 4, 6, "  "),
    "text pnl": lambda: set_cell(trade_rows(), 5, 6, "abc"),
    "inf pnl": lambda: set_cell(trade_rows(), 5, 6, "-inf"),
    "NAN pnl": lambda: set_cell(trade_rows(), 5, 6, "NAN"),
    "underscore pnl": lambda: set_cell(trade_rows(), 5, 6, "1_000"),
    "bad time": lambda: set_cell(trade_rows(), 3, 0, "2024-13-01 09:00:00"),
    "slash time": lambda: set_cell(trade_rows(), 3, 0, "2024/01/03"),
    "short time": lambda: set_cell(trade_rows(), 3, 1, "2024-1-3"),
    "exit before entry": lambda: set_cell(trade_rows(), 6, 1, "2024-01-01 00:00:00"),
    "aware times": lambda: set_cell(trade_rows(), 6, 1, "2024-01-10T23:00:00+05:30"),
    "ragged long": lambda: [
        *trade_rows(),
        ["2024-02-01", "2024-02-01", "X", "1", "CE", "1", "1", "x"],
    ],
    "ragged short": lambda: [*trade_rows(), ["2024-02-01", "2024-02-01"]],
    "blank lines": lambda: [*trade_rows()[:5], [], *trade_rows()[5:]],
    "duplicate column": lambda: [[*r, r[6]] for r in trade_rows()],
    "spaced header": lambda: [[f" {c} " for c in trade_rows()[0]], *trade_rows()[1:]],
}


@pytest.mark.parametrize("name", sorted(TRADE_BREAKS))
def test_broken_trades_same_report(tmp_path: Path, name: str) -> None:
    run = write_valid_run(tmp_path / "run")
    write_csv(run / "trades.csv", TRADE_BREAKS[name]())
    same_reports(run)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_rule_breaches_use_lines_from_the_fast_scan(tmp_path: Path, newline: str) -> None:
    run = write_valid_run(tmp_path / "run")
    write_csv(run / "trades.csv", trade_rows(), newline=newline, bom=True)
    rows = set_cell(pnl_rows(), 7, 2, "999")  # a running-sum mismatch at lines 7 and 8
    write_csv(run / "pnl.csv", rows, newline=newline)
    rules = Rules.from_dict(
        {
            "rules": {
                "trades.csv": {"max_loss_per_trade": -400},
                "pnl.csv": {"max_drawdown_pct": -5, "capital": 10000},
            }
        }
    )
    report = same_reports(run, rules)
    assert (
        "trades.csv: 2 trades with pnl below max_loss_per_trade = -400 (lines 3, 5)"
        in report["warnings"]
    )


def test_quoted_fields_with_newlines_same_report(tmp_path: Path) -> None:
    run = write_valid_run(tmp_path / "run")
    rows = [
        [*r, "note"] if i == 0 else [*r, f'say "hi",\nline {i}'] for i, r in enumerate(trade_rows())
    ]
    write_csv(run / "trades.csv", set_cell(rows, 4, 6, "-5000"))
    rules = Rules.from_dict({"rules": {"trades.csv": {"max_loss_per_trade": -400}}})
    same_reports(run, rules)


def test_encoding_and_binary_same_report(tmp_path: Path) -> None:
    run = write_valid_run(tmp_path / "run")
    rows = [[*r, "c"] if i == 0 else [*r, "Société"] for i, r in enumerate(trade_rows())]
    write_csv(run / "trades.csv", rows, encoding="cp1252")
    (run / "pnl.csv").write_bytes(csv_text(pnl_rows()).encode() + b"2024-02-01,\x00,1\n")
    same_reports(run)


PNL_BREAKS: dict[str, Callable[[], Rows]] = {
    "duplicate date": lambda: set_cell(pnl_rows(), 6, 0, pnl_rows()[4][0]),
    "backwards date": lambda: set_cell(pnl_rows(), 6, 0, "2023-12-01"),
    "bad last total": lambda: set_cell(pnl_rows(), 23, 2, ""),
    "missing weekday": lambda: [r for r in pnl_rows() if r[0] != "2024-01-10"],
    "intraday": lambda: [
        pnl_rows()[0],
        *[[f"{r[0]} 1{h}:00:00", *r[1:]] for r in pnl_rows()[1:] for h in (0, 5)],
    ],
}


@pytest.mark.parametrize("name", sorted(PNL_BREAKS))
def test_broken_pnl_same_report(tmp_path: Path, name: str) -> None:
    run = write_valid_run(tmp_path / "run")
    write_csv(run / "pnl.csv", PNL_BREAKS[name]())
    same_reports(run)


TIMESTAMPS = [
    "2024-01-03",
    "2024-01-03 09:30:00",
    "2024-01-03T09:30",
    "2024-01-03T09",
    "2024-01-03 9:30",
    "2024-1-3",
    "20240103",
    "2024-01-03T09:30:00.123456",
    "2024-01-03T09:30:00,5",
    "2024-01-03T09:30:00Z",
    "2024-01-03T09:30:00+05:30",
    " 2024-01-03",
    "2024-01-03 ",
    "2024-01-03 09:30:00.123456789",
    "2024-W01-3",
    "2024/01/03",
    "now",
    "2024-01",
    "NaT",
]


@pytest.mark.parametrize("stamp", TIMESTAMPS)
def test_timestamp_forms_same_verdict(tmp_path: Path, stamp: str) -> None:
    run = write_valid_run(tmp_path / "run")
    write_csv(run / "trades.csv", set_cell(trade_rows(), 2, 0, stamp))
    same_reports(run)


@pytest.mark.parametrize("engine", ENGINES)
def test_clean_files_are_confirmed_by_the_fast_scan(tmp_path: Path, engine: str) -> None:
    trades = write_csv(tmp_path / "trades.csv", trade_rows(), newline="\r\n", bom=True)
    scan, check = scan_table(trades, lambda h: TradesCheck(h, None), fast=True, engine=engine)
    assert scan.fast and scan.rows == 12 and check is not None
    slow_scan, slow = scan_table(trades, lambda h: TradesCheck(h, None), fast=False)
    assert not slow_scan.fast and slow is not None
    assert (check.pnl_count, check.wins, check.non_losses) == (
        slow.pnl_count,
        slow.wins,
        slow.non_losses,
    )
    assert check.pnl_sum == pytest.approx(slow.pnl_sum)
    pnl = write_csv(tmp_path / "pnl.csv", pnl_rows())
    scan, pnl_check = scan_table(pnl, lambda h: PnlCheck(h, 1000.0, -1.0), fast=True, engine=engine)
    assert scan.fast and pnl_check is not None and pnl_check.breach is not None
    assert (pnl_check.breach.line, pnl_check.last_line, pnl_check.last_cum) == (5, 23, 3820.75)


def test_broken_file_falls_back_to_the_stdlib_reader(tmp_path: Path) -> None:
    trades = write_csv(tmp_path / "trades.csv", set_cell(trade_rows(), 4, 6, ""))
    scan, _ = scan_table(trades, lambda h: TradesCheck(h, None), fast=True, engine="arrow")
    assert not scan.fast


def test_env_sets_the_fast_threshold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = write_valid_run(tmp_path / "run")
    write_csv(run / "trades.csv", TRADE_BREAKS["null pnl"]())
    monkeypatch.setenv("BT_VALIDATE_FAST_BYTES", "0")
    assert validate_dir(run).to_dict() == validate_dir(run, fast_bytes=SLOW).to_dict()


def test_small_folder_imports_neither_pandas_nor_pyarrow(tmp_path: Path) -> None:
    run = write_valid_run(tmp_path / "run")
    code = (
        "import sys; from pathlib import Path; from btmanager.validation.engine import validate_dir;"
        f"r = validate_dir(Path({str(run)!r})); assert r.valid, r.errors;"
        "print(sorted(m for m in ('pandas', 'pyarrow', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


LAYOUTS: dict[str, Callable[[str], str]] = {
    "blank line inside": lambda text: text.replace("\n", "\n\n", 3),
    "trailing blank lines": lambda text: text + "\n\n",
    "no final newline": lambda text: text.rstrip("\n"),
    "lone CR line ends": lambda text: text.replace("\n", "\r"),
    "CRLF": lambda text: text.replace("\n", "\r\n"),
    "blank lines before header": lambda text: "\n\n" + text,
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_line_numbers_of_findings_in_any_layout(tmp_path: Path, layout: str) -> None:
    run = write_valid_run(tmp_path / "run")
    (run / "trades.csv").write_text(LAYOUTS[layout](csv_text(trade_rows())), newline="")
    rules = Rules.from_dict({"rules": {"trades.csv": {"max_loss_per_trade": -400}}})
    report = same_reports(run, rules)
    assert any("max_loss_per_trade" in w for w in report["warnings"])
