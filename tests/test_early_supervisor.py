"""A foreground `bt run` forks its supervisor as it starts (btmanager.execution.early).

The early supervisor records the run it is handed and supervises it; one that gets no run is
killed and reaped, and one whose `bt` dies exits. Each case runs in a process of its own (a
helper script), as `bt` itself does: never a fork of the test process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from btmanager.cmdline import foreground_run, global_value, hoist_globals, validates
from tests.conftest import BtRunner
from tests.helpers import pid_alive
from tests.scripts import VALID, write

pytestmark = pytest.mark.skipif(os.name != "posix", reason="fork() is POSIX")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "s.py"], True),
        (["--results-dir", "r", "run", "s.py", "-p", "a=1"], True),
        (["--results-dir=r", "run", "s.py", "--json"], True),
        (["run", "s.py", "--", "-d", "--help"], True),  # the script's own arguments
        (["run", "-d", "s.py"], False),
        (["run", "s.py", "--detach"], False),
        (["run", "--help"], False),
        (["run", "-h"], False),
        (["status", "run"], False),
        (["--json", "run", "s.py"], False),  # not a global option of bt's: a usage error
        ([], False),
    ],
)
def test_a_foreground_run_is_told_from_its_words(args: list[str], expected: bool) -> None:
    assert foreground_run(args) is expected


def test_command_line_readers() -> None:
    assert validates(["run", "s.py"]) and not validates(["run", "s.py", "--no-validate"])
    assert validates(["run", "s.py", "--", "--no-validate"])  # the script's
    assert global_value(["--results-dir", "a", "run", "--results-dir=b"], "--results-dir") == "b"
    assert global_value(["run", "s.py", "--", "--results-dir", "x"], "--results-dir") is None
    assert hoist_globals(["list", "--results-dir", "x", "--json"]) == [
        "--results-dir", "x", "list", "--json",
    ]  # fmt: skip


# What each helper does first: fork the early supervisor as `bt` would, then act as `bt`.
PRELUDE = """
import json, os, sys, time
from pathlib import Path
from btmanager.execution import early
early.fork(validate=True)
from btmanager.errors import BtError
from btmanager.lifecycle.request import RunRequest
from btmanager.lifecycle.watch import QuietObserver, StopRequest
from btmanager.service import Service
from btmanager.settings import Settings

def reaped(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False

def run(script):
    handle = early._early
    service = Service(Settings.resolve())
    try:
        final = service.run_foreground(RunRequest(script), QuietObserver(), StopRequest())
    except BtError as exc:
        return {"error": str(exc), "code": exc.exit_code, "early": handle.pid,
                "reaped": reaped(handle.pid)}
    service.close()  # reaps the supervisor, which may still be finishing the run folder
    return {"early": handle.pid, "supervisor": final.supervisor_pid, "status": final.status,
            "reaped": reaped(handle.pid)}
"""


def _helper(bt: BtRunner, body: str, show: bool = True) -> dict[str, Any]:
    code = PRELUDE + body + ("\nprint(json.dumps(result))\n" if show else "")
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=bt.cwd,
        env=bt.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_early_supervisor_records_and_supervises_the_run(bt: BtRunner) -> None:
    write(bt.cwd, "ok.py", VALID)
    result = _helper(bt, "result = run('ok.py')")
    assert result["status"] == "completed", result
    # The process forked before anything was parsed is the run's supervisor, and was reaped.
    assert result["supervisor"] == result["early"]
    assert result["reaped"]
    status = bt("status", "latest", "--json").json()
    assert status["status"] == "completed" and status["validation_results"]["valid"]


def test_a_run_it_cannot_record_is_recorded_and_reported_as_usual(bt: BtRunner) -> None:
    result = _helper(bt, "result = run('missing.py')")
    # `bt` recorded nothing through it and said why, as without an early supervisor.
    assert result["error"].startswith("Script not found: missing.py"), result
    assert result["code"] == 2
    assert result["reaped"]
    assert bt("list", "--json").json()["total"] == 0


def test_an_unused_early_supervisor_is_killed_and_reaped(bt: BtRunner) -> None:
    body = "pid = early._early.pid\nearly.discard()\nresult = {'reaped': reaped(pid), 'pid': pid}"
    result = _helper(bt, body)
    assert result["reaped"]
    assert not pid_alive(result["pid"])


def test_an_early_supervisor_whose_bt_goes_away_exits(bt: BtRunner) -> None:
    # `bt` closes its ends without a word (as its death does): the supervisor exits, 0.
    body = """
handle = early.take()
os.close(handle.control_fd)
os.close(handle.done_fd)
_, status = os.waitpid(handle.pid, 0)
result = {"exit": os.waitstatus_to_exitcode(status)}
"""
    assert _helper(bt, body) == {"exit": 0}


@pytest.mark.parametrize("argv", [["run", "missing.py"], ["run", "ok.py", "--no-such-option"]])
def test_bt_reaps_an_unused_early_supervisor_before_it_exits(bt: BtRunner, argv: list[str]) -> None:
    write(bt.cwd, "ok.py", VALID)
    body = f"""
pid = early._early.pid
exit_now = os._exit
def exiting(code):
    print(json.dumps({{"reaped": reaped(pid), "code": code}}), flush=True)
    exit_now(0)
os._exit = exiting
sys.argv = ["bt", *{argv!r}]
from btmanager.cli import main
main()
"""
    assert _helper(bt, body, show=False) == {"reaped": True, "code": 2}


def _processes_with(token: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if f"BT_TEST_TOKEN={token}".encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize(
    "args",
    [
        ("run", "missing.py"),  # an error of bt's: exit 2
        ("run", "ok.py", "--timeout", "-1"),  # an option's value refused
        ("run", "ok.py", "--no-such-option"),  # Click refuses it
    ],
)
def test_bt_leaves_no_early_supervisor_behind(bt: BtRunner, args: tuple[str, ...]) -> None:
    write(bt.cwd, "ok.py", VALID)
    token = uuid.uuid4().hex
    result = bt(*args, BT_TEST_TOKEN=token)
    assert result.code == 2, result.stderr
    assert result.stderr.startswith("Error: ") and len(result.stderr.splitlines()) == 1
    # Killed and reaped before `bt` exited: nothing of it is left running.
    assert _processes_with(token) == []
