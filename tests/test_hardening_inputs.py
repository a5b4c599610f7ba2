"""Bad numbers, bad params files and params the OS cannot pass: refused before anything runs.

Each case goes through the real `bt`: exit 2, exactly one `Error:` line naming the problem, no
traceback, and nothing recorded (no run in the registry, no run folder).
"""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.conftest import BtRunner
from tests.helpers import BT, Result
from tests.scripts import NO_OUTPUTS, write

BIG = str(10**20)
HUGE = str(10**30)


def _runs_recorded(bt: BtRunner) -> int:
    """Runs in the registry plus run folders on disk (read directly: no bt of its own)."""
    folders = len(list(bt.results.glob("run_*"))) if bt.results.is_dir() else 0
    db = bt.results / "bt.sqlite3"
    if not db.exists():
        return folders
    with sqlite3.connect(db) as conn:
        rows: int = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    return rows + folders


def assert_refused(result: Result, *fragments: str) -> None:
    assert result.code == 2, (result.code, result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


def _nested_json(depth: int) -> str:
    return '{"a": ' + "[" * depth + "]" * depth + "}"


def _nested_toml(depth: int) -> str:
    return "a = " + "[" * depth + "]" * depth + "\n"


# (test id, bt arguments, fragments the one error line must hold)
NUMBER_CASES: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("list-limit-huge", ("list", "--limit", BIG), ("--limit",)),
    ("list-limit-negative", ("list", "--limit", "-1"), ("--limit",)),
    ("run-priority-huge", ("run", "-d", "s.py", "--priority", HUGE), ("--priority",)),
    (
        "run-priority-huge-negative",
        ("run", "-d", "s.py", "--priority", "-" + HUGE),
        ("--priority",),
    ),
    ("run-nice-high", ("run", "s.py", "--nice", "20"), ("--nice",)),
    ("run-nice-low", ("run", "-d", "s.py", "--nice", "-21"), ("--nice",)),
    ("run-timeout-nan", ("run", "s.py", "--timeout", "nan"), ("--timeout", "nan")),
    ("run-timeout-inf", ("run", "s.py", "--timeout", "inf"), ("--timeout", "inf")),
    ("run-timeout-overflow", ("run", "s.py", "--timeout", "1e400"), ("--timeout",)),
    ("run-timeout-11-years", ("run", "s.py", "--timeout", "346896000"), ("--timeout", "10 years")),
    ("run-timeout-zero", ("run", "s.py", "--timeout", "0"), ("--timeout",)),
    ("run-timeout-negative", ("run", "-d", "s.py", "--timeout", "-5"), ("--timeout",)),
    ("run-grace-nan", ("run", "s.py", "--grace", "nan"), ("--grace",)),
    ("run-grace-negative", ("run", "s.py", "--grace", "-1"), ("--grace",)),
    ("run-grace-inf", ("run", "-d", "s.py", "--grace", "inf"), ("--grace",)),
    ("cancel-grace-nan", ("cancel", "latest", "--grace", "nan"), ("--grace",)),
    ("cancel-grace-inf", ("cancel", "latest", "--grace", "inf"), ("--grace",)),
    ("wait-timeout-nan", ("wait", "latest", "--timeout", "nan"), ("--timeout",)),
    ("wait-timeout-negative", ("wait", "latest", "--timeout", "-1"), ("--timeout",)),
    ("worker-max-parallel-huge", ("worker", "--max-parallel", BIG), ("--max-parallel",)),
    ("worker-max-parallel-2000", ("worker", "--max-parallel", "2000"), ("--max-parallel",)),
    ("worker-max-parallel-zero", ("worker", "--max-parallel", "0"), ("--max-parallel",)),
    ("worker-idle-nan", ("worker", "--idle-exit", "nan"), ("--idle-exit",)),
    ("worker-idle-negative", ("worker", "--idle-exit", "-1"), ("--idle-exit",)),
    ("worker-idle-inf", ("worker", "--idle-exit", "inf"), ("--idle-exit",)),
    ("logs-lines-huge", ("logs", "latest", "-n", BIG), ("--lines",)),
    ("logs-lines-negative", ("logs", "latest", "--lines", "-3"), ("--lines",)),
]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [case[1:] for case in NUMBER_CASES],
    ids=[case[0] for case in NUMBER_CASES],
)
def test_bad_numbers_are_refused(
    bt: BtRunner, args: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    write(bt.cwd, "s.py", NO_OUTPUTS)
    # A hang (worker --idle-exit nan) or a slow start (2000 slots) fails here too.
    assert_refused(bt(*args, timeout=20), *fragments)
    assert _runs_recorded(bt) == 0


# (test id, params file, its content, fragments)
FILE_CASES: list[tuple[str, str, str | bytes, tuple[str, ...]]] = [
    ("deep-json", "p.json", _nested_json(100_000), ("p.json", "nested too deeply")),
    ("deep-toml", "p.toml", _nested_toml(100_000), ("p.toml", "nested too deeply")),
    ("deep-json-table", "t.json", '{"a": ' + '{"b": ' * 500 + "1" + "}" * 501, ("nested",)),
    ("too-large", "big.json", '{"a": "' + "x" * (1024 * 1024) + '"}', ("big.json", "too large")),
    ("huge-integer", "int.json", '{"a": ' + "1" * 5000 + "}", ("int.json", "not valid JSON")),
    ("nul-in-json-value", "nul.json", '{"a": "x\\u0000y"}', ("nul.json", "NUL byte")),
    ("nul-in-toml-value", "nul.toml", 'a = "x\\u0000y"\n', ("nul.toml", "NUL byte")),
    ("nul-in-key", "key.json", '{"a\\u0000b": "1"}', ("Invalid parameter key",)),
    ("device", "/dev/zero", "", ("/dev/zero", "too large")),
]


@pytest.mark.parametrize(
    ("name", "content", "fragments"),
    [case[1:] for case in FILE_CASES],
    ids=[case[0] for case in FILE_CASES],
)
def test_bad_params_files_are_refused(
    bt: BtRunner, name: str, content: str | bytes, fragments: tuple[str, ...]
) -> None:
    write(bt.cwd, "s.py", NO_OUTPUTS)
    if not name.startswith("/"):
        (bt.cwd / name).write_text(str(content), encoding="utf-8")
    assert_refused(bt("run", "s.py", "--params-file", name, "--no-validate"), *fragments)
    assert _runs_recorded(bt) == 0


def test_one_argument_over_the_kernel_limit_is_refused(bt: BtRunner) -> None:
    write(bt.cwd, "s.py", NO_OUTPUTS)
    (bt.cwd / "p.json").write_text(json.dumps({"big": "x" * 140_000}))
    assert_refused(bt("run", "s.py", "--params-file", "p.json"), "--big", "140000 bytes")
    assert _runs_recorded(bt) == 0
    (bt.cwd / "ok.json").write_text(json.dumps({"big": "x" * 100_000}))
    assert bt("run", "s.py", "--params-file", "ok.json", "--no-validate").code == 0


def _with_stack_limit(size: int) -> Callable[[], None]:
    def apply() -> None:
        hard = resource.getrlimit(resource.RLIMIT_STACK)[1]
        resource.setrlimit(resource.RLIMIT_STACK, (size, hard))

    return apply


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's execve limits")
def test_params_too_long_for_the_os_are_refused(bt: BtRunner) -> None:
    """A 1 MiB stack makes the OS take 256 KiB of arguments; 300 KB of params do not fit."""
    write(bt.cwd, "s.py", NO_OUTPUTS)
    (bt.cwd / "p.json").write_text(json.dumps({f"k{i}": "x" * 100_000 for i in range(3)}))
    proc = subprocess.run(
        [*BT, "run", "s.py", "--params-file", "p.json", "--no-validate"],
        cwd=bt.cwd,
        env=bt.env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_with_stack_limit(1024 * 1024),
    )
    assert_refused(Result(proc.returncode, proc.stdout, proc.stderr), "more than the OS accepts")
    assert _runs_recorded(bt) == 0


# Prints its argv as JSON into the run's log.
ARGV_SCRIPT = "import json, sys\nprint(json.dumps(sys.argv[1:]))\n"
ARGPARSE_SCRIPT = """
import argparse
parser = argparse.ArgumentParser()
for name in ("secs", "x", "y", "z", "w", "output_dir"):
    parser.add_argument("--" + name)
print(repr(vars(parser.parse_args())))
"""


def test_param_values_starting_with_a_dash(bt: BtRunner) -> None:
    write(bt.cwd, "argv.py", ARGV_SCRIPT)
    params = ("secs=--help", "x=-5", "y=-0.5", "z=-1e5", "w=-")
    args = [arg for param in params for arg in ("-p", param)]
    status = bt("run", "argv.py", *args, "--no-validate", "--json").json()
    assert status["status"] == "completed"
    log = bt("logs", status["run_id"], "--json").json()["lines"]
    argv = json.loads(log[0])
    assert argv[:-2] == ["--secs=--help", "--x", "-5", "--y", "-0.5", "--z=-1e5", "--w=-"]
    # And a script using argparse reads every value back as given.
    write(bt.cwd, "parse.py", ARGPARSE_SCRIPT)
    status = bt("run", "parse.py", *args, "--no-validate", "--json").json()
    assert status["status"] == "completed", bt("logs", "latest").stdout
    parsed = bt("logs", "latest").stdout
    for name, value in (p.split("=", 1) for p in params):
        assert f"'{name}': {value!r}" in parsed, parsed


def test_good_numbers_still_work(bt: BtRunner) -> None:
    write(bt.cwd, "s.py", NO_OUTPUTS)
    top = str(2**63 - 1)
    assert bt("run", "s.py", "--priority", top, "--nice", "19", "--timeout", "315360000",
              "--grace", "0", "--no-validate").code == 0  # fmt: skip
    assert bt("status", "latest", "--json").json()["priority"] == 2**63 - 1
    assert bt("list", "--limit", "1000000000", "--json").json()["total"] == 1
    assert bt("logs", "latest", "-n", "0", "--json").json()["lines"] == []
    assert bt("wait", "latest", "--timeout", "0").code == 0


def test_dev_null_params_file_is_an_empty_document(bt: BtRunner) -> None:
    """Not a crash: an empty JSON document is invalid, named as such."""
    write(bt.cwd, "s.py", NO_OUTPUTS)
    assert_refused(bt("run", "s.py", "--params-file", os.devnull), "not valid JSON")
    assert _runs_recorded(bt) == 0
