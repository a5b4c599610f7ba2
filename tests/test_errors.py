"""Every user mistake ends in one `Error:` line on stderr and exit 2, nothing on stdout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import BtRunner
from tests.scripts import NO_OUTPUTS, write


def assert_user_error(result: object, *fragments: str) -> None:
    code, stdout, stderr = result.code, result.stdout, result.stderr  # type: ignore[attr-defined]
    assert code == 2, (code, stdout, stderr)
    assert stdout == ""
    assert stderr.startswith("Error: ") and stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in stderr, (fragment, stderr)


def _runs_recorded(bt: BtRunner) -> int:
    result = bt("list", "--json")
    total: int = result.json()["total"]
    return total


def test_unknown_run(bt: BtRunner) -> None:
    for command in ("status", "logs", "results", "cancel", "validate", "wait"):
        assert_user_error(bt(command, "20990101_nope", "--json"), "20990101_nope")  # no registry
    write(bt.cwd, "s.py", NO_OUTPUTS)
    bt("run", "s.py", "--no-validate")
    for command in ("status", "logs", "results", "cancel", "validate", "wait"):
        assert_user_error(bt(command, "20990101_nope", "--json"), "20990101_nope")


def test_latest_without_runs(bt: BtRunner) -> None:
    assert_user_error(bt("status", "latest"), "nothing is recorded under")
    assert not bt.results.exists()  # reading never creates a registry


def test_corrupt_registry_row(bt: BtRunner) -> None:
    import sqlite3

    write(bt.cwd, "s.py", NO_OUTPUTS)
    bt("run", "s.py", "--no-validate")
    for column, value in (("params", "{bad"), ("created_at", "garbage")):
        db = sqlite3.connect(bt.results / "bt.sqlite3")
        good = db.execute(f"SELECT {column} FROM runs").fetchone()[0]
        db.execute(f"UPDATE runs SET {column} = ?", (value,))
        db.commit()
        for args in (("list",), ("status", "latest", "--json")):
            assert_user_error(bt(*args), "corrupt", column)
        db.execute(f"UPDATE runs SET {column} = ?", (good,))
        db.commit()
        db.close()


def test_registry_from_a_newer_bt_is_refused(bt: BtRunner) -> None:
    import sqlite3

    write(bt.cwd, "s.py", NO_OUTPUTS)
    bt("run", "s.py", "--no-validate")
    db = sqlite3.connect(bt.results / "bt.sqlite3")
    db.execute("PRAGMA user_version = 99")
    db.close()
    assert_user_error(bt("list"), "newer bt", "upgrade")


def test_script_that_cannot_be_executed(bt: BtRunner) -> None:
    (bt.cwd / "job.sh").write_text("#!/bin/sh\necho hi\n")
    assert_user_error(bt("run", "job.sh"), "not executable")
    assert _runs_recorded(bt) == 0


def test_validate_target_that_is_neither_run_nor_folder(bt: BtRunner, tmp_path: Path) -> None:
    assert_user_error(bt("validate", str(tmp_path / "nowhere")), "No such directory or run")
    (bt.cwd / "file.txt").write_text("x")
    assert_user_error(bt("validate", "file.txt"), "not a directory")


def test_logs_of_a_run_whose_folder_is_gone(bt: BtRunner) -> None:
    import shutil

    write(bt.cwd, "s.py", NO_OUTPUTS)
    status = bt("run", "s.py", "--no-validate", "--json").json()
    shutil.rmtree(status["output_dir"])
    for args in (("logs", "latest"), ("logs", "latest", "--follow")):
        assert_user_error(bt(*args), "Run folder not found")


def test_no_arguments_shows_help(bt: BtRunner) -> None:
    result = bt()
    assert result.code == 0 and "Usage: bt" in result.stdout and result.stderr == ""


def test_ambiguous_prefix_lists_candidates(bt: BtRunner) -> None:
    write(bt.cwd, "s.py", NO_OUTPUTS)
    ids = [bt("run", "s.py", "--no-validate", "--json").json()["run_id"] for _ in range(2)]
    common = os.path.commonprefix(ids)  # noqa: RUF071 - a string prefix is meant
    result = bt("status", common)
    assert_user_error(result, "ambiguous", ids[0], ids[1])


@pytest.mark.parametrize("bad", ["novalue", "=1", "-x=1", "--x=1", "a b=1", "1a=2", ""])
def test_bad_param_keys(bt: BtRunner, bad: str) -> None:
    write(bt.cwd, "s.py", NO_OUTPUTS)
    assert_user_error(bt("run", "s.py", "-p", bad))
    assert _runs_recorded(bt) == 0


def test_missing_script_names_places_searched(bt: BtRunner, tmp_path: Path) -> None:
    result = bt("run", "ghost.py", "--json", BACKTEST_SCRIPTS_DIR=str(tmp_path / "lib"))
    assert_user_error(result, "Script not found: ghost.py", str(tmp_path / "lib"))
    assert _runs_recorded(bt) == 0
    assert not list(bt.results.glob("run_*"))


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("missing.json", None, "not found"),
        ("bad.json", "{not json", "not valid JSON"),
        ("bad.toml", "a = [", "not valid TOML"),
        ("list.json", "[1, 2]", "one object"),
        ("nested.json", '{"a": {"b": 1}}', "flat table"),
        ("badkey.json", '{"bad key": 1}', "Invalid parameter key"),
        ("binary.json", b"\xff\xfe\x00garbage", "not UTF-8"),
    ],
)
def test_unreadable_params_file(
    bt: BtRunner, name: str, content: str | bytes | None, fragment: str
) -> None:
    write(bt.cwd, "s.py", NO_OUTPUTS)
    if isinstance(content, bytes):
        (bt.cwd / name).write_bytes(content)
    elif content is not None:
        (bt.cwd / name).write_text(content)
    assert_user_error(bt("run", "s.py", "--params-file", name), fragment)


def test_params_file_is_a_directory(bt: BtRunner) -> None:
    write(bt.cwd, "s.py", NO_OUTPUTS)
    (bt.cwd / "dir.json").mkdir()
    assert_user_error(bt("run", "s.py", "--params-file", "dir.json"), "dir.json")


def test_corrupt_registry(bt: BtRunner) -> None:
    bt.results.mkdir()
    (bt.results / "bt.sqlite3").write_bytes(b"garbage" * 1000)
    for args in (("list",), ("status", "latest"), ("run", "x.py")):
        assert_user_error(bt(*args), "corrupt")
    # `bt health` is the one command whose job is to say so: unhealthy, with the reason.
    health = bt("health", "--json")
    assert health.code == 1 and health.stderr == ""
    assert health.json()["status"] == "unhealthy" and "corrupt" in health.json()["reason"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_results_folder(bt: BtRunner) -> None:
    bt.results.mkdir()
    bt.results.chmod(0o555)
    write(bt.cwd, "s.py", NO_OUTPUTS)
    try:
        assert_user_error(bt("run", "s.py"))
    finally:
        bt.results.chmod(0o755)


def test_results_folder_is_a_file(bt: BtRunner) -> None:
    bt.results.write_text("not a folder")
    write(bt.cwd, "s.py", NO_OUTPUTS)
    assert_user_error(bt("run", "s.py", "--no-validate"))


def test_usage_errors_are_one_line(bt: BtRunner) -> None:
    assert_user_error(bt("status"), "Missing argument")
    assert_user_error(bt("list", "--limit", "many"), "many")
    assert_user_error(bt("frobnicate"), "frobnicate")
    assert_user_error(bt("list", "--status", "sleeping"), "Unknown status")
    assert_user_error(bt("run", "s.py", "--timeout", "0"), "--timeout")


def test_results_download_needs_file_for_output(bt: BtRunner) -> None:
    write(bt.cwd, "s.py", NO_OUTPUTS)
    bt("run", "s.py", "--no-validate")
    assert_user_error(bt("results", "latest", "-o", "x"), "--output needs a FILE")


def test_argument_that_cannot_be_passed_is_refused(bt: BtRunner) -> None:
    write(bt.cwd, "s.py", NO_OUTPUTS)
    (bt.cwd / "p.json").write_text('{"a": "x\\u0000y"}')
    result = bt("run", "s.py", "--params-file", "p.json", "--json")
    assert_user_error(result, "NUL byte")
    assert _runs_recorded(bt) == 0
