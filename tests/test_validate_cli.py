"""`bt validate` and validation inside `bt run`, through the real CLI."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.conftest import BtRunner
from tests.scripts import NO_OUTPUTS, VALID, write
from tests.validation_fixtures import write_valid_run

RULES_MIN_TRADES = '[rules."trades.csv"]\nmin_trades = 50\n'


def test_validate_any_directory(bt: BtRunner, tmp_path: Path) -> None:
    folder = write_valid_run(tmp_path / "out")
    result = bt("validate", str(folder), "--json")
    assert result.code == 0, result.stderr
    report = result.json()
    assert report["valid"] is True
    assert set(report) == {"valid", "errors", "warnings", "file_checks"}
    for name in ("trades.csv", "summary.csv", "pnl.csv"):
        check = report["file_checks"][name]
        assert set(check) >= {"exists", "size", "errors", "warnings", "row_count", "columns"}
    (folder / "trades.csv").unlink()
    broken = bt("validate", str(folder), "--json")
    assert broken.code == 1
    assert any(e.startswith("trades.csv: ") for e in broken.json()["errors"])
    human = bt("validate", str(folder))
    assert human.code == 1 and "trades.csv" in human.stdout


def test_revalidation_updates_results_and_status(bt: BtRunner) -> None:
    write(bt.cwd, "lazy.py", NO_OUTPUTS)
    first = bt("run", "lazy.py", "--json").json()
    assert first["status"] == "failed" and first["exit_code"] == 0
    write_valid_run(Path(first["output_dir"]))  # the files appear after the fact
    result = bt("validate", "latest", "--json")
    assert result.code == 0
    status = bt("status", "latest", "--json").json()
    assert status["status"] == "completed" and status["error_message"] is None
    assert status["validation_results"]["valid"] is True
    folder = json.loads((Path(first["output_dir"]) / "run.json").read_text())
    assert folder["status"] == "completed"
    (Path(first["output_dir"]) / "pnl.csv").unlink()
    assert bt("validate", "latest").code == 1
    status = bt("status", "latest", "--json").json()
    assert status["status"] == "failed"
    assert status["error_message"].startswith("validation errors: pnl.csv")


def test_revalidation_keeps_other_failures(bt: BtRunner) -> None:
    write(bt.cwd, "crash.py", "import sys\nsys.exit(4)\n")
    run = bt("run", "crash.py", "--json").json()
    write_valid_run(Path(run["output_dir"]))
    assert bt("validate", "latest").code == 0
    status = bt("status", "latest", "--json").json()
    assert status["status"] == "failed" and status["error_message"] == "exit code 4"
    assert status["validation_results"]["valid"] is True


def test_bt_toml_in_cwd_is_used_by_run_and_kept(bt: BtRunner) -> None:
    write(bt.cwd, "ok.py", VALID)
    (bt.cwd / "bt.toml").write_text(RULES_MIN_TRADES)
    status = bt("run", "ok.py", "--json").json()
    assert status["status"] == "completed"  # rule breaches are warnings by default
    warnings = status["validation_results"]["warnings"]
    assert any(w.startswith("trades.csv: ") and "50" in w for w in warnings)
    (bt.cwd / "bt.toml").unlink()
    # Re-validating without a rules file uses the rules recorded with the run.
    again = bt("validate", "latest", "--json").json()
    assert any("50" in w for w in again["warnings"])


def test_rules_severity_error_fails_the_run(bt: BtRunner) -> None:
    write(bt.cwd, "ok.py", VALID)
    (bt.cwd / "strict.toml").write_text(RULES_MIN_TRADES + 'severity = "error"\n')
    result = bt("run", "ok.py", "--rules", "strict.toml", "--json")
    assert result.code == 1
    assert result.json()["error_message"].startswith("validation errors: trades.csv")


def test_bad_rules_file_is_a_user_error(bt: BtRunner, tmp_path: Path) -> None:
    write(bt.cwd, "ok.py", VALID)
    folder = write_valid_run(tmp_path / "out")
    (bt.cwd / "bad.toml").write_text('[rules."trades.csv"]\nmax_profit = 5\n')
    for args in (("run", "ok.py"), ("validate", str(folder))):
        result = bt(*args, "--rules", "bad.toml")
        assert result.code == 2 and result.stdout == ""
        assert result.stderr.startswith("Error: ") and "bad.toml" in result.stderr
        assert result.stderr.count("\n") == 1
    missing = bt("validate", str(folder), "--rules", "nope.toml")
    assert missing.code == 2 and "nope.toml" in missing.stderr
    assert bt("list", "--json").json()["total"] == 0  # nothing was recorded


def test_junit_report(bt: BtRunner, tmp_path: Path) -> None:
    folder = write_valid_run(tmp_path / "out")
    (folder / "summary.csv").write_text("metric,value\ntotal_pnl,1\n" + "x" * 60 + ",1\n")
    junit = tmp_path / "report.xml"
    result = bt("validate", str(folder), "--junit", str(junit))
    assert result.code == 1
    root = ET.parse(junit).getroot()
    cases = {case.get("name"): case for case in root.iter("testcase")}
    assert {"trades.csv", "summary.csv", "pnl.csv"} <= set(cases)
    assert cases["summary.csv"].find("failure") is not None
    assert cases["trades.csv"].find("failure") is None


def test_validate_unknown_target(bt: BtRunner, tmp_path: Path) -> None:
    result = bt("validate", str(tmp_path / "no-such-dir"))
    assert result.code == 2 and result.stderr.startswith("Error: ")


def test_stored_results_in_run_json(bt: BtRunner) -> None:
    write(bt.cwd, "ok.py", VALID)
    status = bt("run", "ok.py", "--json").json()
    folder = json.loads((Path(status["output_dir"]) / "run.json").read_text())
    assert folder["validation_results"]["valid"] is True
