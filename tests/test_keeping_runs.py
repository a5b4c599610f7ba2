"""`bt rerun`, `bt tag`, `bt note`, `--after`, `--flag` and typed params, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import BtRunner
from tests.helpers import wait_for
from tests.queue_support import QueueLab
from tests.scripts import ECHO, write

# Records its argv and a version marker, and writes valid outputs.
VERSIONED = (
    ECHO
    + """
(out / "version.txt").write_text(VERSION)
"""
)


def _seen(status: dict[str, Any]) -> dict[str, Any]:
    seen: dict[str, Any] = json.loads((Path(status["output_dir"]) / "seen.json").read_text())
    return seen


def _versioned(bt: BtRunner, version: str) -> None:
    write(bt.cwd, "echo.py", f"VERSION = {version!r}\n" + VERSIONED)


def test_rerun_copies_the_run_and_overrides_params(bt: BtRunner) -> None:
    _versioned(bt, "v1")
    (bt.cwd / "bt.toml").write_text('[rules."trades.csv"]\nmin_trades = 3\n')
    first = bt(
        "run", "echo.py", "-p", "alpha=1", "-p", "beta=two", "--label", "base",
        "--timeout", "120", "--priority", "3", "--json", "--", "--extra", "x",
    ).json()  # fmt: skip
    assert first["status"] == "completed"
    (bt.cwd / "bt.toml").unlink()  # the rerun keeps the rules recorded with the run
    result = bt("rerun", first["run_id"], "-p", "beta=three", "-p", "gamma=4", "--json")
    assert result.code == 0, result.stderr
    again = result.json()
    assert again["run_id"] != first["run_id"]
    assert again["rerun_of"] == first["run_id"]
    assert again["params"] == {"alpha": "1", "beta": "three", "gamma": "4"}
    assert again["label"] == "base"
    assert again["timeout_seconds"] == 120
    assert again["priority"] == 3
    assert again["extra_args"] == ["--extra", "x"]
    argv = _seen(again)["argv"]
    assert argv[:8] == ["--alpha", "1", "--beta", "three", "--gamma", "4", "--extra", "x"]
    stored = json.loads((Path(again["output_dir"]) / "run.json").read_text())
    assert stored["rules"]["rules"]["trades.csv"]["min_trades"] == 3
    assert bt("status", again["run_id"], "--json").json()["rerun_of"] == first["run_id"]
    labelled = bt("rerun", first["run_id"], "--label", "other", "--json").json()
    assert labelled["label"] == "other"


def test_rerun_exact_runs_the_saved_copy(bt: BtRunner) -> None:
    _versioned(bt, "v1")
    first = bt("run", "echo.py", "--json").json()
    _versioned(bt, "v2")  # the script changed since
    plain = bt("rerun", first["run_id"], "--json").json()
    exact = bt("rerun", first["run_id"], "--exact", "--json").json()
    assert (Path(plain["output_dir"]) / "version.txt").read_text() == "v2"
    assert (Path(exact["output_dir"]) / "version.txt").read_text() == "v1"
    assert exact["status"] == "completed"
    assert exact["rerun_of"] == first["run_id"]
    assert exact["provenance"]["script_sha256"] == first["provenance"]["script_sha256"]
    assert plain["provenance"]["script_sha256"] != first["provenance"]["script_sha256"]


def test_rerun_of_an_unknown_run_is_exit_2(bt: BtRunner) -> None:
    _versioned(bt, "v1")
    bt("run", "echo.py", "--json")
    result = bt("rerun", "ffffffff")
    assert result.code == 2
    assert result.stderr.startswith("Error: No run matches 'ffffffff'")


def test_tags_and_notes(bt: BtRunner) -> None:
    _versioned(bt, "v1")
    first = bt("run", "echo.py", "--json").json()
    second = bt("run", "echo.py", "--json").json()
    assert first["tags"] == [] and first["note"] is None
    tagged = bt("tag", first["run_id"], "best", "keep", "best", "--json")
    assert tagged.code == 0, tagged.stderr
    assert tagged.json() == {"run_id": first["run_id"], "tags": ["best", "keep"]}
    bt("tag", second["run_id"], "best")
    status = bt("status", first["run_id"], "--json").json()
    assert status["tags"] == ["best", "keep"]
    listed = bt("list", "--tag", "best", "--json").json()
    assert [run["run_id"] for run in listed["runs"]] == [second["run_id"], first["run_id"]]
    both = bt("list", "--tag", "best", "--tag", "keep", "--json").json()
    assert [run["run_id"] for run in both["runs"]] == [first["run_id"]]
    removed = bt("tag", first["run_id"], "keep", "--remove", "--json").json()
    assert removed["tags"] == ["best"]
    assert bt("list", "--tag", "keep", "--json").json()["total"] == 0

    assert bt("note", first["run_id"], "baseline for Q3").code == 0
    appended = bt("note", first["run_id"], "checked by Ann", "--append", "--json").json()
    assert appended["note"] == "baseline for Q3\nchecked by Ann"
    human = bt("status", first["run_id"])
    assert "baseline for Q3" in human.stdout and "Tags         best" in human.stdout
    replaced = bt("note", first["run_id"], "new", "--json").json()
    assert replaced["note"] == "new"
    # The folder tells the story too (and a registry rebuild gets them back from it).
    run_file = json.loads((Path(first["output_dir"]) / "run.json").read_text())
    assert run_file["tags"] == ["best"] and run_file["note"] == "new"


def test_bad_tags_are_refused(bt: BtRunner) -> None:
    _versioned(bt, "v1")
    bt("run", "echo.py", "--json")
    for bad in ("", "two words", "-dash", "x" * 65):
        result = bt("tag", "latest", bad)
        assert result.code == 2, bad
        assert result.stderr.startswith("Error: "), bad
    assert bt("status", "latest", "--json").json()["tags"] == []


def test_params_file_numbers_and_booleans_keep_their_type(bt: BtRunner) -> None:
    _versioned(bt, "v1")
    params = {"fast": 5, "ratio": 0.25, "live": True, "dry": False, "name": "x"}
    (bt.cwd / "p.json").write_text(json.dumps(params))
    status = bt("run", "echo.py", "--params-file", "p.json", "-p", "slow=20", "--json").json()
    assert status["params"] == {**params, "slow": "20"}
    assert bt("status", "latest", "--json").json()["params"] == {**params, "slow": "20"}
    argv = _seen(status)["argv"]
    assert argv[:12] == [
        "--fast", "5", "--ratio", "0.25", "--live", "true", "--dry", "false",
        "--name", "x", "--slow", "20",
    ]  # fmt: skip
    again = bt("rerun", "latest", "--json").json()
    assert again["params"] == status["params"]


def test_flag_passes_the_option_alone(bt: BtRunner) -> None:
    _versioned(bt, "v1")
    status = bt("run", "echo.py", "-p", "a=1", "--flag", "verbose", "--json").json()
    assert status["params"] == {"a": "1", "verbose": None}
    assert _seen(status)["argv"][:3] == ["--a", "1", "--verbose"]
    assert "Params       a=1 verbose\n" in bt("status", "latest").stdout
    again = bt("rerun", "latest", "--flag", "fast", "--json").json()
    assert _seen(again)["argv"][:4] == ["--a", "1", "--verbose", "--fast"]
    assert bt("run", "echo.py", "--flag", "no good").code == 2


def test_after_needs_detach(bt: BtRunner) -> None:
    _versioned(bt, "v1")
    first = bt("run", "echo.py", "--json").json()
    result = bt("run", "echo.py", "--after", first["run_id"])
    assert result.code == 2
    assert "--after needs --detach" in result.stderr
    assert bt("run", "echo.py", "-d", "--after", "ffffffff").code == 2


def test_after_waits_for_its_runs_and_rerun_d(lab: QueueLab) -> None:
    gate = lab.gate("first")
    first = lab.submit("job.py", "-p", "name=first", "-p", f"gate={gate}")
    lab.wait_running(first)
    result = lab.bt("rerun", first, "-d", "-p", "name=second", "-p", "gate=", "--after", first)
    assert result.code == 0, result.stderr
    second = result.stdout.strip()
    third = lab.submit("job.py", "-p", "name=third", "--after", second)
    assert lab.status(second)["rerun_of"] == first
    assert lab.status(second)["status"] == "queued"
    gate.touch()
    code, runs = lab.wait(second, third)
    assert code == 0
    assert [run["status"] for run in runs] == ["completed", "completed"]
    starts = {run["run_id"]: run["started_at"] for run in runs}
    first_end = lab.status(first)["completed_at"]
    assert first_end <= starts[second] <= starts[third]


def test_failed_dependency_cancels_the_rerun(lab: QueueLab) -> None:
    failing = lab.submit("job.py", "-p", "name=bad", "-p", "exit=3")
    result = lab.bt("rerun", failing, "-d", "-p", "exit=0", "--after", failing)
    assert result.code == 0, result.stderr
    code, runs = lab.wait(result.stdout.strip())
    assert code == 1
    assert runs[0]["status"] == "cancelled"
    assert runs[0]["error_message"] == f"dependency {failing} failed"
    wait_for(lambda: lab.status(failing)["status"] == "failed")
