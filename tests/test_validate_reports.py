"""The report in its three forms (JSON, Rich, JUnit XML) and the execution.log scanner."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console

from btmanager.errors import StorageError
from btmanager.junit import write_junit
from btmanager.render.validation import render_report
from btmanager.validation.checks.execution_log import scan_log
from btmanager.validation.engine import validate_dir
from btmanager.validation.report import Report
from tests.validation_fixtures import write_valid_run


@pytest.fixture
def report(tmp_path: Path) -> Report:
    run = write_valid_run(tmp_path / "run")
    (run / "pnl.csv").unlink()
    (run / "metadata.json").unlink()
    (run / "execution.log").write_text("ok\nCRITICAL: disk full\n")
    return validate_dir(run)


def test_json_shape(report: Report) -> None:
    data = report.to_dict()
    assert list(data) == ["valid", "errors", "warnings", "file_checks"]
    assert data["valid"] is False
    assert data["errors"] == ["pnl.csv: required file is missing"]
    assert data["warnings"] == ["execution.log: 1 CRITICAL/FATAL line (line 2)"]
    assert list(data["file_checks"]) == [
        "trades.csv",
        "summary.csv",
        "pnl.csv",
        "metadata.json",
        "execution.log",
    ]
    for check in data["file_checks"].values():
        assert list(check) == ["exists", "size", "errors", "warnings", "row_count", "columns"]
    assert Report.from_dict(data) == report


def test_junit_xml(report: Report, tmp_path: Path) -> None:
    target = tmp_path / "junit.xml"
    write_junit(report, target, "run_x")
    root = ET.parse(target).getroot()
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("5", "1", "1")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert list(cases) == ["trades.csv", "summary.csv", "pnl.csv", "metadata.json", "execution.log"]
    failure = cases["pnl.csv"].find("failure")
    assert failure is not None and failure.get("message") == "pnl.csv: required file is missing"
    assert cases["metadata.json"].find("skipped") is not None
    out = cases["execution.log"].find("system-out")
    assert out is not None and out.text == "warning: execution.log: 1 CRITICAL/FATAL line (line 2)"
    assert cases["trades.csv"].find("failure") is None
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".junit")] == []


def test_junit_unwritable_is_storage_error(report: Report, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="Cannot write JUnit report"):
        write_junit(report, tmp_path / "missing" / "junit.xml", "x")


def test_rich_report_without_colour(report: Report) -> None:
    out = io.StringIO()
    render_report(
        report, Console(file=out, width=120, no_color=True, force_terminal=False), title="run_x"
    )
    text = out.getvalue()
    assert "\x1b[" not in text
    assert "run_x" in text
    assert "pnl.csv" in text and "required file is missing" in text
    assert "Errors" in text and "Warnings" in text and "Invalid: 1 error, 1 warning" in text
    for line in text.splitlines():
        if "trades.csv" in line and "B" in line:
            assert "12" in line and "7" in line


def test_rich_report_on_an_ascii_terminal(report: Report) -> None:
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="ascii")
    render_report(report, Console(file=out, width=100, no_color=True))
    out.flush()
    text = raw.getvalue().decode("ascii")
    assert "ERR" in text and "WARN" in text and "ok" in text


def test_log_scan_overlapping_chunks_find_every_match(tmp_path: Path) -> None:
    lines = []
    for i in range(200):
        if i % 7 == 0:
            lines.append("Traceback (most recent call last):")
        elif i % 11 == 0:
            lines.append(f"{i} CRITICAL boom")
        elif i % 13 == 0:
            lines.append("xFATAL is not a level, FATALITY neither")
        else:
            lines.append(f"line {i} " + "x" * (i % 40))
    log = tmp_path / "execution.log"
    log.write_text("\n".join(lines))
    whole = scan_log(log, chunk_size=1 << 20)
    assert whole[0].count == 29 and whole[1].count == 16
    assert whole[0].first == [1, 8, 15, 22, 29]
    for size in (1, 2, 5, 17, 33, 34, 35, 36, 64, 100, 1000):
        parts = scan_log(log, chunk_size=size)
        for a, b in zip(parts, whole, strict=True):
            assert (a.count, a.first) == (b.count, b.first), size
