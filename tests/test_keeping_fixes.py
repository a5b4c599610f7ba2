"""Daily-use fixes: finding the results folder, options after the command, id tails, why a
run failed, the foreground summary, small outputs, named checks, validating many folders,
shell completion, and the worker's event lines."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BtRunner
from tests.helpers import pid_alive, run_bt, wait_for
from tests.queue_support import QueueLab, kill_quietly, wait_until_gone
from tests.scripts import NO_OUTPUTS, VALID, WRITE_VALID_OUTPUTS, write

KEY_ERROR = """
print("loading", flush=True)
settings = {}
settings["x"]
"""


def _plain_env(bt: BtRunner) -> dict[str, str]:
    """The runner's environment without BT_RESULTS_DIR: bt finds its results folder itself."""
    env = dict(bt.env)
    env.pop("BT_RESULTS_DIR")
    return env


# --- where the results are --------------------------------------------------------------------


def test_results_found_from_a_subfolder(bt: BtRunner) -> None:
    project = bt.cwd / "project"
    deep = project / "src" / "strategies"
    deep.mkdir(parents=True)
    write(project, "s.py", VALID)
    env = _plain_env(bt)
    made = run_bt("run", "s.py", "--json", env=env, cwd=project).json()
    assert made["output_dir"].startswith(str(project / "results"))
    listed = run_bt("list", "--json", env=env, cwd=deep)
    assert [run["run_id"] for run in listed.json()["runs"]] == [made["run_id"]]
    health = run_bt("health", "--json", env=env, cwd=deep).json()
    assert health["registry"] == str(project / "results" / "bt.sqlite3")
    # ./results wins when it exists, even without a registry in it yet.
    (deep / "results").mkdir()
    empty = run_bt("list", env=env, cwd=deep)
    assert empty.code == 0
    assert str(deep / "results" / "bt.sqlite3") in empty.stdout
    # Nothing anywhere: ./results, named by the listing.
    elsewhere = bt.cwd / "elsewhere"
    elsewhere.mkdir()
    nothing = run_bt("list", env=env, cwd=elsewhere)
    assert str(elsewhere / "results" / "bt.sqlite3") in nothing.stdout
    assert "registry" in run_bt("health", env=env, cwd=elsewhere).stdout


def test_results_dir_after_the_command(bt: BtRunner, tmp_path: Path) -> None:
    other = tmp_path / "other"
    write(bt.cwd, "s.py", WRITE_VALID_OUTPUTS + "write_valid_outputs(output_dir())\n"
          "import json, sys\nprint(json.dumps(sys.argv[1:]))\n")  # fmt: skip
    made = bt("run", "s.py", "--json", "--results-dir", str(other), "--", "--results-dir", "kept")
    assert made.code == 0, made.stderr
    status = made.json()
    assert status["output_dir"].startswith(str(other))
    assert status["extra_args"] == ["--results-dir", "kept"]  # after --: the script's own
    assert "--results-dir" in bt("logs", "latest", f"--results-dir={other}").stdout
    listed = bt("list", "--results-dir", str(other), "--json").json()
    assert [run["run_id"] for run in listed["runs"]] == [status["run_id"]]
    assert bt("list", "--json").json()["total"] == 0  # BT_RESULTS_DIR is another folder
    assert bt("status", status["run_id"], "--results-dir", str(other)).code == 0


# --- run ids by their tail ----------------------------------------------------------------------


def test_runs_match_by_a_prefix_of_their_tail(bt: BtRunner) -> None:
    write(bt.cwd, "s.py", NO_OUTPUTS)
    ids = [bt("run", "s.py", "--no-validate", "--json").json()["run_id"] for _ in range(3)]
    for run_id in ids:
        tail = run_id[-8:]
        assert bt("status", tail, "--json").json()["run_id"] == run_id
        assert bt("logs", tail[:6].upper(), "--json").json()["run_id"] == run_id
        assert bt("status", run_id, "--json").json()["run_id"] == run_id
    date_prefix = bt("status", ids[0][:8])  # a prefix of the date: all of them
    assert date_prefix.code == 2 and "ambiguous" in date_prefix.stderr
    assert bt("status", "zz").code == 2


# --- why a run failed ---------------------------------------------------------------------------


def test_status_shows_the_last_error_line_of_the_log(bt: BtRunner) -> None:
    write(bt.cwd, "bad.py", KEY_ERROR)
    failed = bt("run", "bad.py", "--no-validate", "--json")
    assert failed.code == 1
    assert failed.json()["log_error"] == "KeyError: 'x'"
    human = bt("status", "latest")
    assert "Log says     KeyError: 'x'" in human.stdout
    assert bt("status", "latest", "--json").json()["log_error"] == "KeyError: 'x'"
    assert "exit code 1" in bt("list").stdout
    write(bt.cwd, "ok.py", VALID)
    assert bt("run", "ok.py", "--json").json()["log_error"] is None


def test_log_error_is_read_from_the_end_only(bt: BtRunner) -> None:
    # An error line followed by more output than the window: bounded reads find nothing.
    body = "import sys\nprint('ValueError: early', flush=True)\n"
    body += "sys.stdout.write('ok\\n' * 40000)\nsys.exit(2)\n"
    write(bt.cwd, "long.py", body)
    status = bt("run", "long.py", "--no-validate", "--json").json()
    assert status["status"] == "failed" and status["log_error"] is None
    write(bt.cwd, "late.py", "import sys\nsys.stdout.write('ok\\n' * 40000)\n"
          "print('ERROR could not reach the data server')\nsys.exit(2)\n")  # fmt: skip
    late = bt("run", "late.py", "--no-validate", "--json").json()
    assert late["log_error"] == "ERROR could not reach the data server"


def test_log_error_never_reads_outside_the_run_folder(bt: BtRunner, tmp_path: Path) -> None:
    write(bt.cwd, "bad.py", KEY_ERROR)
    status = bt("run", "bad.py", "--no-validate", "--json").json()
    secret = tmp_path / "secret.txt"
    secret.write_text("SecretError: the password is hunter2\n")
    log = Path(status["output_dir"]) / "execution.log"
    log.unlink()
    log.symlink_to(secret)
    assert bt("status", "latest", "--json").json()["log_error"] is None
    log.unlink()
    os.link(secret, log)  # a hard link is a file from elsewhere too
    assert bt("status", "latest", "--json").json()["log_error"] is None
    assert "hunter2" not in bt("status", "latest").stdout


# --- the foreground summary ---------------------------------------------------------------------


def test_foreground_summary_shows_metrics_and_each_message_once(bt: BtRunner) -> None:
    write(bt.cwd, "s.py", VALID.replace("print(\"backtest done\", flush=True)",
                                        "print('Traceback (most recent call last)')"))  # fmt: skip
    result = bt("run", "s.py")
    assert result.code == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.count("1 Python traceback") == 1  # the report's line, not the status' too
    assert "Validation   valid (0 errors, 1 warning)" in out
    assert "Metrics      total_pnl=265.5 win_rate=0.6 max_drawdown=-50 sharpe_ratio=1.2" in out
    assert "Valid: 0 errors, 1 warning" in out
    # `bt status` alone (no report after it) lists the messages.
    assert bt("status", "latest").stdout.count("1 Python traceback") == 1


# --- small outputs and named checks -------------------------------------------------------------

ONE_TRADE = """
import json, sys
from pathlib import Path
out = Path(sys.argv[sys.argv.index("--output_dir") + 1])
(out / "trades.csv").write_text("entry_time,exit_time,pnl\\n2024-01-02,2024-01-02,5\\n")
(out / "pnl.csv").write_text("date,pnl,cumulative_pnl\\n2024-01-02,5,5\\n")
(out / "summary.csv").write_text("metric,value\\ntotal_pnl,5\\nwin_rate,1\\nmax_drawdown,0\\n")
(out / "metadata.json").write_text(json.dumps({"strategy": "tiny"}))
print("one trade")
"""


def test_small_outputs_and_the_min_bytes_setting(bt: BtRunner) -> None:
    write(bt.cwd, "tiny.py", ONE_TRADE)
    failed = bt("run", "tiny.py", "--json").json()
    assert failed["status"] == "failed"
    errors = failed["validation_results"]["errors"]
    hint = '; if that is right, set [min_bytes] "trades.csv" = 48 in bt.toml)'
    assert "trades.csv: too small: 49 bytes (expected more than 100" + hint in errors
    (bt.cwd / "bt.toml").write_text(
        '[min_bytes]\n"trades.csv" = 40\n"pnl.csv" = 0\n"summary.csv" = 10\n'
    )
    passed = bt("run", "tiny.py", "--json").json()
    assert passed["status"] == "completed", passed["validation_results"]["errors"]
    warnings = passed["validation_results"]["warnings"]
    assert any(message.startswith("metadata.json: no run parameters") for message in warnings)
    (bt.cwd / "bt.toml").write_text(
        '[min_bytes]\n"trades.csv" = 40\n"pnl.csv" = 0\n"summary.csv" = 10\n'
        '[checks]\ndisable = ["metadata"]\n'
    )
    quiet = bt("run", "tiny.py", "--json").json()
    assert not any(m.startswith("metadata.json") for m in quiet["validation_results"]["warnings"])
    (bt.cwd / "bt.toml").write_text('[checks]\ndisable = ["everything"]\n')
    bad = bt("validate", quiet["output_dir"])
    assert bad.code == 2 and "unknown check 'everything'" in bad.stderr
    (bt.cwd / "bt.toml").write_text('[min_bytes]\n"trades.csv" = -1\n')
    assert bt("validate", quiet["output_dir"]).code == 2


def test_validate_several_folders_and_strict(bt: BtRunner) -> None:
    write(bt.cwd, "ok.py", VALID)
    write(bt.cwd, "tiny.py", ONE_TRADE)
    good = bt("run", "ok.py", "--json").json()["output_dir"]
    tiny = bt("run", "tiny.py", "--json").json()["output_dir"]
    both = bt("validate", good, tiny, "--json")
    assert both.code == 1
    document = both.json()
    assert document["valid"] is False
    assert [report["target"] for report in document["reports"]] == [good, tiny]
    assert [report["valid"] for report in document["reports"]] == [True, False]
    assert bt("validate", good, good).code == 0
    # A warning fails the check only with --strict.
    Path(good, "metadata.json").write_text("{}")
    assert bt("validate", good).code == 0
    strict = bt("validate", good, "--strict")
    assert strict.code == 1
    assert "--strict" in strict.stdout
    junit = bt.cwd / "report.xml"
    assert bt("validate", good, tiny, "--junit", str(junit)).code == 1
    xml = junit.read_text()
    assert f'name="{good}/trades.csv"' in xml and f'name="{tiny}/trades.csv"' in xml


# --- shell completion, worker lines -------------------------------------------------------------


def _from_bash(bt: BtRunner, args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """`bt ARGS` started by bash, the shell Typer's completion detects from the parent."""
    command = f'"{sys.executable}" -m btmanager {args}; exit $?'  # no exec: bash stays parent
    return subprocess.run(
        ["bash", "-c", command], env={**bt.env, **extra_env}, cwd=bt.cwd,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.skipif(shutil.which("bash") is None, reason="completion is tested for bash")
def test_shell_completion(bt: BtRunner, tmp_path: Path) -> None:
    shown = _from_bash(bt, "--show-completion")
    assert shown.returncode == 0, shown.stderr
    assert "_BT_COMPLETE=complete_bash" in shown.stdout
    home = tmp_path / "home"
    home.mkdir()
    installed = _from_bash(bt, "--install-completion", HOME=str(home))
    assert installed.returncode == 0, installed.stderr
    assert "_BT_COMPLETE" in (home / ".bash_completions" / "bt.sh").read_text()
    assert "bt.sh" in (home / ".bashrc").read_text()
    completed = bt(_BT_COMPLETE="complete_bash", COMP_WORDS="bt reru", COMP_CWORD="1")
    assert completed.code == 0 and completed.stdout.split() == ["rerun"]
    options = bt(_BT_COMPLETE="complete_bash", COMP_WORDS="bt gc --keep", COMP_CWORD="2")
    assert options.stdout.split() == ["--keep-last"]


def test_worker_prints_one_line_per_start_and_end(lab: QueueLab) -> None:
    # One slot, held by a run whose supervisor and script are then killed: the queued run
    # waits for the foreground worker below (which also settles the killed one).
    blocker = lab.submit(
        "job.py", "-p", "name=blocker", "-p", f"gate={lab.gate('never')}", BT_MAX_PARALLEL="1"
    )
    row = lab.wait_running(blocker)
    queued = lab.job("queued", BT_MAX_PARALLEL="1")
    kill_quietly(row["supervisor_pid"])
    kill_quietly(row["pid"])
    wait_for(lambda: not pid_alive(row["supervisor_pid"]) and not pid_alive(row["pid"]))
    assert lab.rows()[queued]["status"] == "queued"
    worker = lab.popen_bt("worker", "--idle-exit", "1")
    out, err = wait_until_gone(worker, timeout=90)
    assert worker.returncode == 0, err
    lines = out.splitlines()
    started = [line for line in lines if f"started {queued}" in line]
    finished = [line for line in lines if f"finished {queued}" in line]
    assert len(started) == 1 and len(finished) == 1, out
    assert f"bt worker[{worker.pid}]: started {queued}" in started[0]
    assert finished[0].endswith(f"finished {queued} completed")
