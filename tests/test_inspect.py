"""`bt status`, `bt logs`, `bt results`, `bt list`, `bt health` against real runs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import BtRunner
from tests.helpers import BT, wait_for
from tests.scripts import FAILING, NO_OUTPUTS, write


def _run(bt: BtRunner, body: str = NO_OUTPUTS, *args: str) -> dict[str, object]:
    write(bt.cwd, "s.py", body)
    result = bt("run", "s.py", "--no-validate", "--json", *args)
    status: dict[str, object] = result.json()
    return status


def test_status_by_id_prefix_and_latest(bt: BtRunner) -> None:
    first = _run(bt)
    second = _run(bt)
    assert bt("status", str(first["run_id"]), "--json").json()["run_id"] == first["run_id"]
    assert bt("status", "latest", "--json").json()["run_id"] == second["run_id"]
    unique_prefix = str(second["run_id"])[:-4]
    assert bt("status", unique_prefix, "--json").json()["run_id"] == second["run_id"]
    human = bt("status", "latest")
    assert human.code == 0 and str(second["run_id"]) in human.stdout and "completed" in human.stdout


def test_logs_tail_and_total_lines(bt: BtRunner) -> None:
    body = "for i in range(1, 251):\n    print(f'line {i}')\n"
    status = _run(bt, body)
    tail = bt("logs", str(status["run_id"]), "-n", "3", "--json").json()
    assert tail == {"run_id": status["run_id"], "lines": ["line 248", "line 249", "line 250"],
                    "total_lines": 250}  # fmt: skip
    plain = bt("logs", "latest", "--lines", "2")
    assert plain.stdout == "line 249\nline 250\n"
    assert bt("logs", "latest", "--json").json()["lines"][0] == "line 151"  # default 100
    everything = bt("logs", "latest", "-n", "1000", "--json").json()
    assert len(everything["lines"]) == 250


def test_logs_count_stays_exact_as_the_log_grows(bt: BtRunner) -> None:
    status = _run(bt, "print('a')\nprint('b')\n")
    log = Path(str(status["output_dir"])) / "execution.log"
    assert bt("logs", "latest", "--json").json()["total_lines"] == 2
    with open(log, "a") as handle:
        handle.write("c\nd\npartial")
    tail = bt("logs", "latest", "-n", "2", "--json").json()
    assert tail["lines"] == ["d", "partial"] and tail["total_lines"] == 5
    log.write_text("rewritten\n")  # smaller than the cached size: counted afresh
    assert bt("logs", "latest", "--json").json()["total_lines"] == 1


def test_logs_follow_streams_until_the_run_ends(bt: BtRunner, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    body = (
        "import time, pathlib\nprint('first', flush=True)\n"
        f"while not pathlib.Path({str(gate)!r}).exists():\n    time.sleep(0.05)\n"
        "print('second', flush=True)\n"
    )
    write(bt.cwd, "slow.py", body)
    runner = subprocess.Popen(
        [*BT, "run", "slow.py", "--no-validate", "--json"],
        cwd=bt.cwd, env=bt.env, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for(lambda: list(bt.results.glob("run_*/execution.log")))
    follower = subprocess.Popen(
        [*BT, "logs", "latest", "--follow"],
        cwd=bt.cwd, env=bt.env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert follower.stdout is not None
    assert follower.stdout.readline() == "first\n"
    gate.touch()
    assert follower.stdout.readline() == "second\n"
    assert follower.wait(timeout=30) == 0  # exits by itself once the run has ended
    assert runner.wait(timeout=30) == 0


def test_results_listing_and_download(bt: BtRunner, tmp_path: Path) -> None:
    body = (
        "import sys, pathlib\nout = pathlib.Path(sys.argv[sys.argv.index('--output_dir') + 1])\n"
        "(out / 'trades.csv').write_text('a,b\\n1,2\\n')\n"
        "(out / 'charts').mkdir()\n(out / 'charts' / 'eq.txt').write_text('x')\n"
    )
    status = _run(bt, body)
    listing = bt("results", "latest", "--json").json()
    assert listing["run_id"] == status["run_id"] and listing["output_dir"] == status["output_dir"]
    names = [item["name"] for item in listing["files"]]
    assert names == ["charts/eq.txt", "execution.log", "run.json", "trades.csv"]
    trades = next(item for item in listing["files"] if item["name"] == "trades.csv")
    assert trades["size"] == 8 and trades["modified"].endswith("+00:00")
    assert bt("results", "latest", "trades.csv").stdout == "a,b\n1,2\n"
    target = tmp_path / "copy.csv"
    saved = bt("results", "latest", "trades.csv", "-o", str(target))
    assert saved.code == 0 and target.read_text() == "a,b\n1,2\n"
    assert bt("results", "latest", "charts/eq.txt").stdout == "x"


def test_results_refuses_paths_leaving_the_folder(bt: BtRunner, tmp_path: Path) -> None:
    status = _run(bt)
    folder = Path(str(status["output_dir"]))
    secret = tmp_path / "secret.txt"
    secret.write_text("do not leak")
    os.symlink(secret, folder / "link.csv")
    os.symlink(folder / "execution.log", folder / "inside-link.log")
    target = tmp_path / "out.txt"
    for name in ("../../secret.txt", str(secret), "link.csv", "nope.csv"):
        result = bt("results", "latest", name, "-o", str(target))
        assert result.code == 2, name
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
        assert result.stdout == ""
        assert not target.exists()
    names = [f["name"] for f in bt("results", "latest", "--json").json()["files"]]
    assert "link.csv" not in names and "inside-link.log" in names
    assert bt("results", "latest", "inside-link.log").code == 0


def test_reading_an_empty_results_folder_creates_nothing(bt: BtRunner) -> None:
    assert bt("list", "--json").json() == {"total": 0, "runs": []}
    health = bt("health", "--json").json()
    assert health["active_runs"] == 0 and health["queued_runs"] == 0
    assert not bt.results.exists()


def test_list_by_script_path(bt: BtRunner) -> None:
    _run(bt)
    for name in ("s.py", "./s.py", str(bt.cwd / "s.py")):
        assert bt("list", "--script", name, "--json").json()["total"] == 1, name
    assert bt("list", "--script", "other.py", "--json").json()["total"] == 0


def test_status_lists_validation_messages(bt: BtRunner) -> None:
    write(bt.cwd, "lazy.py", NO_OUTPUTS)
    bt("run", "lazy.py")
    text = bt("status", "latest").stdout
    assert "error: trades.csv: " in text and "error: pnl.csv: " in text


def test_list_filters_total_and_limit(bt: BtRunner) -> None:
    for _ in range(3):
        _run(bt)
    write(bt.cwd, "f.py", FAILING)
    bt("run", "f.py", "--no-validate")
    listing = bt("list", "--limit", "2", "--json").json()
    assert listing["total"] == 4 and len(listing["runs"]) == 2
    assert listing["runs"][0]["script_path"] == "f.py"  # newest first
    failed = bt("list", "--status", "failed", "--json").json()
    assert failed["total"] == 1 and failed["runs"][0]["status"] == "failed"
    assert bt("list", "--script", "s.py", "--json").json()["total"] == 3
    human = bt("list")
    assert human.code == 0 and "4 of 4 runs" in human.stdout


def test_health(bt: BtRunner) -> None:
    _run(bt)
    health = bt("health", "--json").json()
    assert health["status"] == "healthy"
    assert health["active_runs"] == 0 and health["queued_runs"] == 0
    assert health["timestamp"].endswith("+00:00")


def test_json_outputs_are_single_documents(bt: BtRunner) -> None:
    _run(bt)
    for args in (("status", "latest"), ("list",), ("logs", "latest"), ("results", "latest"),
                 ("health",)):  # fmt: skip
        result = bt(*args, "--json")
        assert result.code == 0
        json.loads(result.stdout)
