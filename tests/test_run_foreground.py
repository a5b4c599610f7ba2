"""`bt run` in the foreground, driven as a real subprocess against real scripts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import BtRunner
from tests.helpers import BT, pid_alive, wait_for
from tests.scripts import ECHO, FAILING, INTERLEAVED, NO_OUTPUTS, SLEEPER, VALID, write


def test_run_passes_params_env_and_cwd(bt: BtRunner) -> None:
    write(bt.cwd, "echo.py", ECHO)
    (bt.cwd / "params.json").write_text(json.dumps({"strategy": "x", "capital": 100000}))
    result = bt(
        "run", "echo.py", "--params-file", "params.json", "-p", "start_date=2020-01-01",
        "-p", "strategy=short_straddle", "-p", "note=a=b c", "--label", "first",
        "--json", "--", "--flag", "two words", BT_TEST_CUSTOM="kept",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    status = result.json()
    assert status["status"] == "completed" and status["label"] == "first"
    assert list(status["params"]) == ["strategy", "capital", "start_date", "note"]
    out = Path(status["output_dir"])
    assert out == bt.results / f"run_{status['run_id']}"
    seen = json.loads((out / "seen.json").read_text())
    assert seen["argv"] == [
        "--strategy", "short_straddle", "--capital", "100000", "--start_date", "2020-01-01",
        "--note", "a=b c", "--flag", "two words", "--output_dir", str(out),
    ]  # fmt: skip
    assert seen["cwd"] == str(bt.cwd)
    assert seen["run_id"] == status["run_id"]
    assert seen["output_dir"] == str(out) and Path(seen["output_dir"]).is_absolute()
    assert seen["unbuffered"] == "1" and seen["custom"] == "kept"


def test_run_id_format_and_uniqueness(bt: BtRunner) -> None:
    write(bt.cwd, "ok.py", VALID)
    ids = [bt("run", "ok.py", "--json").json()["run_id"] for _ in range(3)]
    assert len(set(ids)) == 3
    for run_id in ids:
        date, time_, suffix = run_id.split("_")
        assert len(date) == 8 and len(time_) == 6 and len(suffix) == 8
        int(suffix, 16)


def test_output_is_interleaved_in_log_and_mirrored(bt: BtRunner) -> None:
    write(bt.cwd, "inter.py", INTERLEAVED)
    result = bt("run", "inter.py")
    assert result.code == 0, result.stderr
    expected = [line for i in range(5) for line in (f"out {i}", f"err {i}")]
    log = (next(bt.results.glob("run_*")) / "execution.log").read_text().splitlines()
    assert log == expected
    mirrored = [line for line in result.stdout.splitlines() if line in expected]
    assert mirrored == expected
    assert "\x1b[" not in result.stdout  # no colour or live line when not a terminal


def test_json_mode_prints_only_json(bt: BtRunner) -> None:
    write(bt.cwd, "inter.py", INTERLEAVED)
    result = bt("run", "inter.py", "--json")
    assert result.code == 0
    status = json.loads(result.stdout)  # the whole stdout is one document
    for key in (
        "run_id", "script_path", "params", "status", "created_at", "started_at",
        "completed_at", "output_dir", "exit_code", "error_message", "validation_results",
        "duration_seconds", "pid", "label", "priority", "peak_memory_bytes", "cpu_seconds",
    ):  # fmt: skip
        assert key in status
    assert status["created_at"].endswith("+00:00")
    assert status["validation_results"]["valid"] is True


def test_failing_script_exits_1_with_cause(bt: BtRunner) -> None:
    write(bt.cwd, "fail.py", FAILING)
    result = bt("run", "fail.py", "--json")
    assert result.code == 1
    status = result.json()
    assert status["status"] == "failed" and status["exit_code"] == 3
    assert status["error_message"] == "exit code 3"
    assert status["validation_results"]["valid"] is False  # validated whatever the exit code


def test_missing_outputs_fail_validation(bt: BtRunner) -> None:
    write(bt.cwd, "lazy.py", NO_OUTPUTS)
    result = bt("run", "lazy.py", "--json")
    assert result.code == 1
    status = result.json()
    assert status["exit_code"] == 0
    assert status["error_message"].startswith("validation errors: ")
    assert bt("run", "lazy.py", "--no-validate", "--json").code == 0


def test_timeout_fails_the_run_and_ends_the_tree(bt: BtRunner) -> None:
    write(bt.cwd, "sleep.py", SLEEPER)
    pid_file = bt.cwd / "pid"
    result = bt(
        "run", "sleep.py", "--timeout", "1", "--grace", "1", "--json",
        BT_TEST_PID_FILE=str(pid_file),
    )  # fmt: skip
    assert result.code == 1
    status = result.json()
    assert status["status"] == "failed"
    assert status["error_message"] == "timed out after 1 s"
    assert status["exit_code"] == -signal.SIGTERM
    assert not pid_alive(int(pid_file.read_text()))


def _start_foreground(bt: BtRunner, *args: str, **env: str) -> subprocess.Popen[str]:
    full_env = dict(bt.env)
    full_env.update(env)
    return subprocess.Popen(
        [*BT, "run", *args],
        cwd=bt.cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigterm_to_bt_cancels_the_run(bt: BtRunner) -> None:
    write(bt.cwd, "sleep.py", SLEEPER)
    pid_file = bt.cwd / "pid"
    proc = _start_foreground(bt, "sleep.py", "--json", BT_TEST_PID_FILE=str(pid_file))
    wait_for(pid_file.exists)
    script_pid = int(pid_file.read_text())
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130
    status = json.loads(out)
    assert status["status"] == "cancelled"
    assert status["error_message"] == "cancelled: received SIGTERM"
    assert not pid_alive(script_pid)


def test_ctrl_c_twice_kills_at_once(bt: BtRunner, tmp_path: Path) -> None:
    ignoring = "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + SLEEPER
    write(bt.cwd, "stubborn.py", ignoring)
    pid_file = bt.cwd / "pid"
    out_file = tmp_path / "stdout.txt"
    env = dict(bt.env, BT_TEST_PID_FILE=str(pid_file))
    with open(out_file, "w") as out:
        proc = subprocess.Popen(
            [*BT, "run", "stubborn.py", "--grace", "60"], cwd=bt.cwd, env=env, stdout=out
        )
        wait_for(pid_file.exists)
        script_pid = int(pid_file.read_text())
        proc.send_signal(signal.SIGINT)
        wait_for(lambda: "Stopping the run" in out_file.read_text())
        assert pid_alive(script_pid)  # it ignores SIGTERM and the grace is long
        proc.send_signal(signal.SIGINT)  # a second Ctrl-C kills at once
        assert proc.wait(timeout=20) == 130
    assert not pid_alive(script_pid)
    assert bt("status", "latest", "--json").json()["status"] == "cancelled"


def test_script_resolution_via_scripts_dir(bt: BtRunner, tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    write(scripts, "remote.py", VALID)
    other = tmp_path / "elsewhere"
    result = bt(
        "run", "remote.py", "--json",
        BACKTEST_SCRIPTS_DIR=os.pathsep.join([str(other), str(scripts)]),
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert result.json()["script_path"] == "remote.py"


def test_non_python_script_runs_directly(bt: BtRunner) -> None:
    script = bt.cwd / "run.sh"
    script.write_text('#!/bin/sh\necho "shell got: $*"\n')
    script.chmod(0o755)
    result = bt("run", "./run.sh", "-p", "a=1", "--no-validate", "--json")
    assert result.code == 0
    status = result.json()
    log = (Path(status["output_dir"]) / "execution.log").read_text()
    assert log.strip() == f"shell got: --a 1 --output_dir {status['output_dir']}"


def test_python_module_entry_point(bt: BtRunner) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "btmanager", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.startswith("bt ")


def test_run_json_in_folder_tells_the_story(bt: BtRunner) -> None:
    write(bt.cwd, "fail.py", FAILING)
    status = bt("run", "fail.py", "--json").json()
    folder = json.loads((Path(status["output_dir"]) / "run.json").read_text())
    assert folder["status"] == "failed" and folder["exit_code"] == 3
    assert folder["run_id"] == status["run_id"] and folder["command"][-2] == "--output_dir"


def test_processes_left_behind_end_with_the_run(bt: BtRunner, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    body = (
        "import subprocess, sys\n"
        "a = subprocess.Popen(['sleep', '60'])\n"
        "b = subprocess.Popen(['sleep', '61'], start_new_session=True)\n"
        # Orphaned at once: its parent (the shell) exits before the script does.
        "c = subprocess.run(['sh', '-c', 'sleep 62 >/dev/null 2>&1 & echo $!'], capture_output=True, text=True)\n"
        f"open({str(pids)!r}, 'w').write(f'{{a.pid}} {{b.pid}} {{c.stdout.strip()}}')\n"
        "print('leaving my children behind')\n"
    )
    write(bt.cwd, "leaves.py", body)
    status = bt("run", "leaves.py", "--no-validate", "--grace", "1", "--json").json()
    assert status["status"] == "completed" and status["exit_code"] == 0
    left = [int(pid) for pid in pids.read_text().split()]
    assert len(left) == 3
    for pid in left:
        assert not pid_alive(pid), pid


def test_results_root_defaults_and_overrides(bt: BtRunner, tmp_path: Path) -> None:
    write(bt.cwd, "ok.py", VALID)
    env = {key: value for key, value in bt.env.items() if key != "BT_RESULTS_DIR"}
    # Default: ./results in the current directory.
    default = subprocess.run([*BT, "run", "ok.py", "--json"], cwd=bt.cwd, env=env,
                             capture_output=True, text=True)  # fmt: skip
    assert default.returncode == 0, default.stderr
    assert Path(json.loads(default.stdout)["output_dir"]).parent == bt.cwd / "results"
    assert (bt.cwd / "results" / "bt.sqlite3").exists()
    # --results-dir wins over BT_RESULTS_DIR; BT_DB puts the registry elsewhere.
    elsewhere = tmp_path / "registry" / "runs.sqlite3"
    chosen = tmp_path / "chosen"
    result = bt("--results-dir", str(chosen), "run", "ok.py", "--json", BT_DB=str(elsewhere))
    assert result.code == 0, result.stderr
    assert Path(result.json()["output_dir"]).parent == chosen
    assert elsewhere.exists() and not (chosen / "bt.sqlite3").exists()
    listing = bt("--results-dir", str(chosen), "list", "--json", BT_DB=str(elsewhere))
    assert listing.json()["total"] == 1


def test_toml_params_file(bt: BtRunner) -> None:
    write(bt.cwd, "echo.py", ECHO)
    (bt.cwd / "params.toml").write_text(
        'strategy = "short_straddle"\nstart_date = 2020-01-01\ncapital = 100000\nlive = false\n'
    )
    status = bt("run", "echo.py", "--params-file", "params.toml", "-p", "capital=5", "--json")
    assert status.code == 0, status.stderr
    seen = json.loads((Path(status.json()["output_dir"]) / "seen.json").read_text())
    assert seen["argv"][:8] == [
        "--strategy", "short_straddle", "--start_date", "2020-01-01",
        "--capital", "5", "--live", "false",
    ]  # fmt: skip
