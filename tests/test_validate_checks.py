"""One small run folder per check, broken in exactly that way, and folders that must pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from btmanager.errors import NotFoundError
from btmanager.validation.engine import validate_dir
from btmanager.validation.report import Report
from tests.validation_fixtures import (
    csv_text,
    pnl_rows,
    summary_rows,
    trade_rows,
    weekdays,
    write_csv,
    write_metadata,
    write_valid_run,
)


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return write_valid_run(tmp_path / "run")


def only(
    report: Report, errors: list[str] | None = None, warnings: list[str] | None = None
) -> None:
    assert report.errors == (errors or [])
    assert report.warnings == (warnings or [])
    assert report.valid is (not errors)


def test_valid_run_passes_untouched(run: Path) -> None:
    report = validate_dir(run)
    only(report)
    assert report.file_checks["trades.csv"]["row_count"] == 12
    assert report.file_checks["pnl.csv"]["columns"] == ["date", "pnl", "cumulative_pnl"]


def test_missing_folder_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        validate_dir(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotFoundError):
        validate_dir(tmp_path / "file")


# --- presence and size -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["trades.csv", "summary.csv", "pnl.csv"])
def test_required_file_missing(run: Path, name: str) -> None:
    (run / name).unlink()
    report = validate_dir(run)
    assert f"{name}: required file is missing" in report.errors
    assert report.file_checks[name] == {
        "exists": False,
        "size": None,
        "errors": [f"{name}: required file is missing"],
        "warnings": [],
        "row_count": None,
        "columns": None,
    }


@pytest.mark.parametrize(
    ("name", "limit"), [("trades.csv", 100), ("summary.csv", 50), ("pnl.csv", 100)]
)
def test_file_too_small(run: Path, name: str, limit: int) -> None:
    text = (run / name).read_text()
    (run / name).write_text(text[:limit])
    report = validate_dir(run)
    hint = f'if that is right, set [min_bytes] "{name}" = {limit - 1} in bt.toml'
    assert f"{name}: too small: {limit} bytes (expected more than {limit}; {hint})" in report.errors


def test_directory_in_place_of_a_file(run: Path) -> None:
    (run / "pnl.csv").unlink()
    (run / "pnl.csv").mkdir()
    assert "pnl.csv: not a regular file" in validate_dir(run).errors


def test_empty_trades_file_gives_one_error(run: Path) -> None:
    (run / "trades.csv").write_bytes(b"")
    report = validate_dir(run)
    assert report.file_checks["trades.csv"]["errors"] == [
        "trades.csv: too small: 0 bytes (expected more than 100)"
    ]


# --- trades.csv ------------------------------------------------------------------------------


def test_trades_missing_required_column(run: Path) -> None:
    rows = [[c for i, c in enumerate(r) if i != 6] for r in trade_rows()]  # drop pnl
    write_csv(run / "trades.csv", rows)
    report = validate_dir(run)
    assert report.file_checks["trades.csv"]["errors"] == ["trades.csv: missing required column pnl"]


def test_trades_without_strike_and_option_type_warns(run: Path) -> None:
    rows = [r[:3] + r[5:] for r in trade_rows()]
    write_csv(run / "trades.csv", rows)
    only(
        validate_dir(run), warnings=["trades.csv: missing recommended columns strike, option_type"]
    )


def test_trades_without_data_rows(run: Path) -> None:
    (run / "trades.csv").write_text(csv_text(trade_rows()[:1]) + "\n" * 60)
    report = validate_dir(run)
    assert report.file_checks["trades.csv"]["errors"] == ["trades.csv: no data rows"]


def test_trades_null_values(run: Path) -> None:
    rows = trade_rows()
    for line in (4, 9, 12):
        rows[line - 1][6] = ""
    rows[5][0] = "NaN"
    write_csv(run / "trades.csv", rows)
    report = validate_dir(run)
    assert report.file_checks["trades.csv"]["errors"] == [
        "trades.csv: 1 null value in entry_time (line 6)",
        "trades.csv: 3 null values in pnl (lines 4, 9, 12)",
    ]


def test_trades_pnl_not_finite(run: Path) -> None:
    rows = trade_rows()
    rows[2][6] = "abc"
    rows[7][6] = "inf"
    write_csv(run / "trades.csv", rows)
    report = validate_dir(run)
    assert report.file_checks["trades.csv"]["errors"] == [
        "trades.csv: 2 values in pnl are not finite numbers (lines 3, 8), e.g. 'abc'"
    ]


def test_trades_unparseable_timestamps(run: Path) -> None:
    rows = trade_rows()
    rows[1][0] = "01/03/2024 09:20"
    rows[4][1] = "2024-02-30 10:00:00"
    write_csv(run / "trades.csv", rows)
    errors = validate_dir(run).file_checks["trades.csv"]["errors"]
    assert errors == [
        "trades.csv: 1 unparseable timestamp in entry_time (line 2), e.g. '01/03/2024 09:20'; "
        "expected ISO 8601, e.g. 2024-01-31 or 2024-01-31 09:30:00",
        "trades.csv: 1 unparseable timestamp in exit_time (line 5), e.g. '2024-02-30 10:00:00'; "
        "expected ISO 8601, e.g. 2024-01-31 or 2024-01-31 09:30:00",
    ]


def test_trades_exit_before_entry(run: Path) -> None:
    rows = trade_rows()
    rows[3][1] = rows[3][0].replace("09:20", "09:00")
    rows[10][1] = "2023-12-31 10:00:00+00:00"  # aware and naive compare without a crash
    write_csv(run / "trades.csv", rows)
    errors = validate_dir(run).file_checks["trades.csv"]["errors"]
    assert errors == ["trades.csv: 2 trades with exit_time before entry_time (lines 4, 11)"]


def test_trades_ragged_rows(run: Path) -> None:
    rows = trade_rows()
    rows[3].append("extra")
    rows[8] = rows[8][:3]
    write_csv(run / "trades.csv", rows)
    errors = validate_dir(run).file_checks["trades.csv"]["errors"]
    assert errors == [
        "trades.csv: 2 rows with the wrong number of fields, expected 7 (line 4 has 8, line 9 has 3)"
    ]


def test_many_positions_are_cut_with_a_count(run: Path) -> None:
    rows = trade_rows()
    for row in rows[1:]:
        row[6] = ""
    write_csv(run / "trades.csv", rows)
    errors = validate_dir(run).file_checks["trades.csv"]["errors"]
    assert errors == ["trades.csv: 12 null values in pnl (lines 2, 3, 4, 5, 6, ...)"]


def test_binary_garbage_is_an_error_not_a_crash(run: Path) -> None:
    (run / "trades.csv").write_bytes(bytes(range(256)) * 8)
    (run / "pnl.csv").write_bytes(csv_text(pnl_rows()).encode() + b"\x00\x00\x00\n")
    report = validate_dir(run)
    assert report.file_checks["trades.csv"]["errors"] == [
        "trades.csv: binary data, not CSV text: NUL bytes on 8 lines (lines 1, 3, 5, 7, 9, ...)"
    ]
    assert report.file_checks["pnl.csv"]["errors"] == [
        "pnl.csv: binary data, not CSV text: NUL bytes on 1 line (line 24)"
    ]


def test_unterminated_quote_is_a_parse_error(run: Path) -> None:
    text = csv_text(trade_rows()) + '2024-01-31 09:20:00,"2024-01-31 10:00:00' + "x" * 140_000
    (run / "trades.csv").write_text(text)
    errors = validate_dir(run).file_checks["trades.csv"]["errors"]
    assert len(errors) == 1
    assert errors[0].startswith(
        "trades.csv: cannot be parsed as CSV: field larger than field limit"
    )
    assert errors[0].endswith("(line 14)")


# --- summary.csv -----------------------------------------------------------------------------


def test_summary_missing_metrics(run: Path) -> None:
    rows = [r for r in summary_rows() if r[0] not in ("win_rate", "max_drawdown", "sharpe_ratio")]
    rows.append(["strategy", "short_straddle_with_a_long_name"])
    write_csv(run / "summary.csv", rows)
    only(
        validate_dir(run),
        errors=["summary.csv: missing required metrics win_rate, max_drawdown"],
        warnings=["summary.csv: missing recommended metric sharpe_ratio"],
    )


def test_summary_missing_columns(run: Path) -> None:
    rows = [["name", "value"], *summary_rows()[1:]]
    write_csv(run / "summary.csv", rows)
    report = validate_dir(run)
    assert report.file_checks["summary.csv"]["errors"] == [
        "summary.csv: missing required column metric"
    ]


def test_summary_repeated_metric(run: Path) -> None:
    write_csv(run / "summary.csv", [*summary_rows(), ["total_pnl", "1"]])
    only(
        validate_dir(run),
        warnings=[
            "summary.csv: metric total_pnl appears 2 times (line 7); the first (line 2) is used"
        ],
    )


def test_summary_total_differs_from_trades_and_pnl(run: Path) -> None:
    rows = summary_rows()
    rows[1][1] = "5000"
    write_csv(run / "summary.csv", rows)
    only(
        validate_dir(run),
        warnings=[
            "summary.csv: total_pnl 5000 differs from the sum of pnl in trades.csv (3820.75)",
            "summary.csv: total_pnl 5000 differs from the last cumulative_pnl in pnl.csv (3820.75)",
        ],
    )


def test_summary_total_not_a_number(run: Path) -> None:
    rows = summary_rows()
    rows[1][1] = "n/a?"
    write_csv(run / "summary.csv", rows)
    only(validate_dir(run), warnings=["summary.csv: total_pnl 'n/a?' is not a number (line 2)"])


@pytest.mark.parametrize("text", ["0.5833", "0.58", "58.33", "58%", "0.6667", "66.7"])
def test_summary_win_rate_fraction_or_percent_accepted(run: Path, text: str) -> None:
    rows = summary_rows()  # 7 of 12 trades won, plus one flat trade: 0.583 to 0.667
    rows[2][1] = text
    write_csv(run / "summary.csv", rows)
    only(validate_dir(run))


def test_summary_win_rate_mismatch(run: Path) -> None:
    rows = summary_rows()
    rows[2][1] = "0.8"
    write_csv(run / "summary.csv", rows)
    only(
        validate_dir(run),
        warnings=[
            "summary.csv: win_rate 0.8 does not match trades.csv: 7 of 12 trades have pnl > 0 "
            "(0.5833, i.e. 58.33%)"
        ],
    )


# --- pnl.csv ---------------------------------------------------------------------------------


def test_pnl_duplicate_and_backward_dates(run: Path) -> None:
    rows = pnl_rows()
    rows[5][0] = rows[4][0]
    rows[10][0], rows[11][0] = rows[11][0], rows[10][0]
    write_csv(run / "pnl.csv", rows)
    report = validate_dir(run)
    assert report.file_checks["pnl.csv"]["errors"] == [
        "pnl.csv: dates not strictly increasing: 1 duplicate (line 6)",
        "pnl.csv: dates not strictly increasing: 1 date earlier than the row before (line 12)",
    ]


def test_pnl_last_cumulative_not_a_number(run: Path) -> None:
    rows = pnl_rows()
    rows[-1][2] = "NaN"
    rows[3][2] = "x"  # earlier bad totals are a warning, the last one an error
    write_csv(run / "pnl.csv", rows)
    report = validate_dir(run)
    assert report.file_checks["pnl.csv"]["errors"] == [
        "pnl.csv: the last row's cumulative_pnl is not a number ('NaN', line 23)"
    ]
    assert report.file_checks["pnl.csv"]["warnings"] == [
        "pnl.csv: 1 value in cumulative_pnl is not a finite number (line 4), e.g. 'x'"
    ]


def test_pnl_bad_dates_are_errors(run: Path) -> None:
    rows = pnl_rows()
    rows[3][0] = ""
    rows[6][0] = "Jan 9"
    write_csv(run / "pnl.csv", rows)
    errors = validate_dir(run).file_checks["pnl.csv"]["errors"]
    assert errors == [
        "pnl.csv: 1 null value in date (line 4)",
        "pnl.csv: 1 unparseable timestamp in date (line 7), e.g. 'Jan 9'; "
        "expected ISO 8601, e.g. 2024-01-31 or 2024-01-31 09:30:00",
    ]


def test_pnl_cumulative_differs_from_running_sum(run: Path) -> None:
    rows = pnl_rows()
    rows[6][2] = repr(float(rows[6][2]) + 100)  # one wrong total: its row and the next differ
    write_csv(run / "pnl.csv", rows)
    only(
        validate_dir(run),
        warnings=[
            "pnl.csv: cumulative_pnl differs from the running sum of pnl at 2 rows (lines 7, 8)"
        ],
    )


def test_pnl_non_numeric_pnl_is_a_warning(run: Path) -> None:
    rows = pnl_rows()
    rows[3][1] = "-"
    write_csv(run / "pnl.csv", rows)
    only(
        validate_dir(run),
        warnings=["pnl.csv: 1 value in pnl is not a finite number (line 4), e.g. '-'"],
    )


def test_pnl_missing_weekdays_and_weekend_rows_warn(run: Path) -> None:
    days = weekdays()
    kept = [d for d in days if d.isoformat() not in ("2024-01-10", "2024-01-17")]
    from datetime import date

    rows = pnl_rows(sorted([*kept, date(2024, 1, 6)]))
    write_csv(run / "pnl.csv", rows)
    report = validate_dir(run)
    assert report.file_checks["pnl.csv"]["warnings"] == [
        "pnl.csv: 2 weekdays without a row (2024-01-10, 2024-01-17)",
        "pnl.csv: rows on 1 weekend day (2024-01-06)",
    ]


# --- metadata.json and execution.log ---------------------------------------------------------


def test_metadata_is_optional(run: Path) -> None:
    (run / "metadata.json").unlink()
    report = validate_dir(run)
    only(report)
    assert report.file_checks["metadata.json"]["exists"] is False


@pytest.mark.parametrize(
    ("content", "warnings"),
    [
        (
            "{not json",
            [
                "metadata.json: not valid JSON: Expecting property name enclosed in double quotes (line 1, column 2)"
            ],
        ),
        ("[1, 2]", ["metadata.json: not a JSON object (found an array)"]),
        (
            json.dumps({"other": 1}),
            [
                "metadata.json: no run parameters (expected key params or parameters)",
                "metadata.json: no execution timestamp (expected key timestamp, created_at, executed_at or start_time)",
            ],
        ),
        (
            json.dumps({"parameters": [1], "created_at": "x"}),
            ["metadata.json: parameters is not an object (found an array)"],
        ),
        ("", ["metadata.json: empty file"]),
    ],
)
def test_metadata_problems_warn(run: Path, content: str, warnings: list[str]) -> None:
    (run / "metadata.json").write_text(content)
    only(validate_dir(run), warnings=warnings)


def test_metadata_alternative_keys_pass(run: Path) -> None:
    write_metadata(run, {"parameters": {"a": 1}, "start_time": "2024-01-01T00:00:00Z"})
    only(validate_dir(run))


def test_execution_log_missing_and_empty_warn(run: Path) -> None:
    (run / "execution.log").unlink()
    only(validate_dir(run), warnings=["execution.log: recommended file is missing"])
    (run / "execution.log").write_bytes(b"")
    only(validate_dir(run), warnings=["execution.log: empty: the script wrote no output"])


def test_execution_log_critical_errors_warn(run: Path) -> None:
    (run / "execution.log").write_text(
        "start\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1\n'
        "ValueError: boom\n"
        "2024-01-01 10:00:00 CRITICAL data feed lost\n"
        "[FATAL] giving up; FATAL again on the same line\n"
        "CRITICAL_PATH and NONFATAL and a critical word are fine\n"
        "Fatal Python error: Segmentation fault\n"
    )
    only(
        validate_dir(run),
        warnings=[
            "execution.log: 1 Python traceback (line 2)",
            "execution.log: 3 CRITICAL/FATAL lines (lines 5, 6, 8)",
        ],
    )


# --- folders that must pass ------------------------------------------------------------------


def test_bom_and_crlf_pass(run: Path) -> None:
    for name, rows in (
        ("trades.csv", trade_rows()),
        ("pnl.csv", pnl_rows()),
        ("summary.csv", summary_rows()),
    ):
        write_csv(run / name, rows, newline="\r\n", bom=True)
    only(validate_dir(run))


def test_quoted_multiline_fields_pass_and_lines_stay_right(run: Path) -> None:
    rows = [
        [*r, "note"] if i == 0 else [*r, f"line one, with comma\nline {i}"]
        for i, r in enumerate(trade_rows())
    ]
    write_csv(run / "trades.csv", rows)
    only(validate_dir(run))
    rows[3][6] = ""  # record 3 starts on line 1 + 2 records x 2 lines + 1 = 6
    write_csv(run / "trades.csv", rows)
    assert validate_dir(run).errors == ["trades.csv: 1 null value in pnl (line 6)"]


def test_latin1_text_columns_pass_with_a_warning(run: Path) -> None:
    rows = [
        [*r, "comment"] if i == 0 else [*r, "Société Générale €"]
        for i, r in enumerate(trade_rows())
    ]
    write_csv(run / "trades.csv", rows[:3], encoding="cp1252")
    with (run / "trades.csv").open("ab") as f:
        f.write(csv_text(rows[3:]).encode("utf-8"))
    only(
        validate_dir(run),
        warnings=["trades.csv: 2 lines not valid UTF-8, read as cp1252/latin-1 (lines 2, 3)"],
    )


def test_latin1_header_is_decoded(run: Path) -> None:
    rows = trade_rows()
    rows[0].append("prix €")
    for row in rows[1:]:
        row.append("1")
    write_csv(run / "trades.csv", rows, encoding="cp1252")
    report = validate_dir(run)
    assert report.file_checks["trades.csv"]["columns"][-1] == "prix €"


def test_extra_columns_files_and_subfolders_pass(run: Path) -> None:
    rows = [[f" {c} " for c in r] if i == 0 else r for i, r in enumerate(trade_rows())]
    rows = [[*r, "x"] for r in rows]
    write_csv(run / "trades.csv", rows)
    (run / "run.json").write_text("{}")
    (run / "plots").mkdir()
    (run / "plots" / "equity.png").write_bytes(b"\x89PNG\x00\x00")
    (run / "notes.csv").write_bytes(b"\x00garbage")
    only(validate_dir(run))


def test_intraday_timestamps_pass(run: Path) -> None:
    rows = [["date", "pnl", "cumulative_pnl"]]
    total = 0.0
    for day in weekdays():
        for hour in (10, 12, 15):
            total += 10.0
            rows.append([f"{day.isoformat()} {hour}:30:00", "10.0", repr(total)])
    write_csv(run / "pnl.csv", rows)
    rows_summary = summary_rows()
    write_csv(run / "summary.csv", rows_summary)
    report = validate_dir(run)
    assert report.file_checks["pnl.csv"]["errors"] == []
    assert report.file_checks["pnl.csv"]["warnings"] == []
