"""Support for the detached-run and queue tests: scripts, a per-test lab, timelines (no tests).

Every test gets its own `QueueLab`: a private results root (so its workers never share a
registry with another test's), a working directory for scripts and marker files, and a
teardown that kills whatever the test left running (found by the test's folder in a command
line, its BT_RESULTS_DIR, or one of its runs' BACKTEST_RUN_IDs in the environment).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import psutil

from tests.helpers import BT, Result, bt_env, pid_alive, run_bt, wait_for, write_script

# Records `start <name> <t>` / `end <name> <t>` (time.time()) in a shared timeline file,
# optionally waits for a gate file, sleeps, and exits with the code asked for.
JOB = """
import argparse, os, sys, time

parser = argparse.ArgumentParser()
parser.add_argument("--name", default="job")
parser.add_argument("--timeline", default="")
parser.add_argument("--sleep", type=float, default=0.0)
parser.add_argument("--gate", default="")
parser.add_argument("--exit", type=int, default=0)
parser.add_argument("--pidfile", default="")
parser.add_argument("--output_dir", required=True)
args, _ = parser.parse_known_args()


def note(event):
    if args.timeline:
        fd = os.open(args.timeline, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, f"{event} {args.name} {time.time():.6f}\\n".encode())
        os.close(fd)


if args.pidfile:
    with open(args.pidfile + ".tmp", "w") as handle:
        handle.write(str(os.getpid()))
    os.replace(args.pidfile + ".tmp", args.pidfile)
note("start")
print(
    f"job {args.name} started nice={os.nice(0)} foo={os.environ.get('BT_TEST_FOO')}"
    f" cwd={os.getcwd()} run={os.environ.get('BACKTEST_RUN_ID')}",
    flush=True,
)
deadline = time.time() + 120
while args.gate and not os.path.exists(args.gate) and time.time() < deadline:
    time.sleep(0.02)
time.sleep(args.sleep)
note("end")
print(f"job {args.name} done", flush=True)
sys.exit(args.exit)
"""

# A process tree that is hard to end: a child with its own grandchildren, one of which ignores
# SIGTERM and one of which starts its own session, and an orphan (its parent exits at once) that
# both starts its own session and ignores SIGTERM. Each process writes its pid to <piddir>/<role>.
TREE = """
import os, signal, subprocess, sys, time


def arg(name, default=None):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


role = arg("--role", "root")
piddir = arg("--piddir")
children = {"root": ["mid", "launcher"], "mid": ["stubborn", "setsid"], "launcher": ["orphan"]}
if role in ("stubborn", "orphan"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if role in ("setsid", "orphan"):
    os.setsid()
kept = [
    subprocess.Popen([sys.executable, __file__, "--role", child, "--piddir", piddir])
    for child in children.get(role, [])
]
with open(f"{piddir}/.{role}.tmp", "w") as handle:
    handle.write(str(os.getpid()))
os.replace(f"{piddir}/.{role}.tmp", f"{piddir}/{role}")
print(f"{role} {os.getpid()} up", flush=True)
if role == "launcher":
    sys.exit(0)
deadline = time.time() + 120
while time.time() < deadline:
    time.sleep(0.05)
"""
TREE_ROLES = ("root", "mid", "stubborn", "setsid", "launcher", "orphan")
LIVE_TREE_ROLES = ("root", "mid", "stubborn", "setsid", "orphan")  # the launcher exits at once

# Allocates ~50 MB for a second in the script itself and burns ~0.3 s of CPU in a child.
HUNGRY = """
import subprocess, sys, time

if "--child" in sys.argv:
    began = time.process_time()
    while time.process_time() - began < 0.3:
        pass
    sys.exit(0)
subprocess.run([sys.executable, __file__, "--child"], check=True)
block = b"x" * (50 * 1024 * 1024)
time.sleep(1.0)
print(len(block), flush=True)
"""


class QueueLab:
    """One test's private bt world: results root, working directory, env, and cleanup."""

    def __init__(self, tmp_path: Path, max_parallel: int = 2) -> None:
        self.root = tmp_path
        self.cwd = tmp_path / "work"
        self.cwd.mkdir()
        self.results = tmp_path / "results"
        self.env = bt_env(self.results, BT_MAX_PARALLEL=str(max_parallel))
        self.env.pop("BACKTEST_RUN_ID", None)
        self.env.pop("BACKTEST_OUTPUT_DIR", None)
        self.timeline = self.cwd / "timeline.txt"
        self.popens: list[subprocess.Popen[str]] = []
        write_script(self.cwd, "job.py", JOB)
        write_script(self.cwd, "tree.py", TREE)

    # --- running bt -------------------------------------------------------------------------

    def bt(self, *args: str, timeout: float = 60, env: Mapping[str, str] | None = None) -> Result:
        """`bt ARGS...` in the lab (with `env` added to the lab's environment)."""
        return run_bt(*args, env={**self.env, **(env or {})}, cwd=self.cwd, timeout=timeout)

    def popen_bt(self, *args: str, **extra_env: str) -> subprocess.Popen[str]:
        """`bt ARGS...` started in the background (killed at teardown if still running)."""
        proc = subprocess.Popen(
            [*BT, *args],
            env={**self.env, **extra_env},
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.popens.append(proc)
        return proc

    def submit(self, script: str = "job.py", *args: str, **extra_env: str) -> str:
        """`bt run -d --no-validate SCRIPT ARGS...`; the run id it printed."""
        result = self.bt("run", "-d", "--no-validate", script, *args, env=extra_env)
        assert result.code == 0, result.stderr
        assert result.stderr == ""
        return result.stdout.strip()

    def job(self, name: str, *options: str, sleep: float = 0.0, **extra_env: str) -> str:
        """Submit job.py named `name`, logging to the shared timeline."""
        return self.submit(
            "job.py", "-p", f"name={name}", "-p", f"timeline={self.timeline}",
            "-p", f"sleep={sleep}", *options, **extra_env,
        )  # fmt: skip

    def status(self, run_id: str) -> dict[str, Any]:
        result = self.bt("status", run_id, "--json")
        assert result.code == 0, result.stderr
        document: dict[str, Any] = result.json()
        return document

    def wait(self, *run_ids: str, timeout: float = 90) -> tuple[int, list[dict[str, Any]]]:
        result = self.bt(
            "wait", *run_ids, "--json", "--timeout", str(timeout), timeout=timeout + 30
        )
        assert result.code in (0, 1), f"bt wait exited {result.code}: {result.stderr}"
        return result.code, result.json()["runs"]

    # --- looking without `bt` (which would reconcile and maybe start a worker) ----------------

    def rows(self) -> dict[str, dict[str, Any]]:
        """The registry's rows by run id, read directly."""
        db_path = self.results / "bt.sqlite3"
        if not db_path.exists():
            return {}
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
        try:
            db.row_factory = sqlite3.Row
            return {row["run_id"]: dict(row) for row in db.execute("SELECT * FROM runs")}
        finally:
            db.close()

    def run_dir(self, run_id: str) -> Path:
        return self.results / f"run_{run_id}"

    def run_json(self, run_id: str) -> dict[str, Any]:
        document: dict[str, Any] = json.loads((self.run_dir(run_id) / "run.json").read_text())
        return document

    def log(self, run_id: str) -> str:
        path = self.run_dir(run_id) / "execution.log"
        return path.read_text() if path.exists() else ""

    def worker_log(self) -> str:
        path = self.results / ".bt-worker.log"
        return path.read_text() if path.exists() else ""

    def gate(self, name: str) -> Path:
        return self.cwd / f"gate-{name}"

    def piddir(self, name: str) -> Path:
        folder = self.cwd / f"pids-{name}"
        folder.mkdir()
        return folder

    def wait_running(self, run_id: str, timeout: float = 30) -> dict[str, Any]:
        """Until the registry shows the run running with its script's pid recorded."""

        def started() -> dict[str, Any] | None:
            row = self.rows().get(run_id)
            return row if row and row["status"] == "running" and row["pid"] else None

        row: dict[str, Any] = wait_for(started, timeout)
        return row

    # --- teardown ---------------------------------------------------------------------------

    def _ours(self, proc: psutil.Process, run_ids: set[str]) -> bool:
        try:
            if str(self.root) in " ".join(proc.cmdline()):
                return True
            environ = proc.environ()
        except psutil.Error:
            return False
        return (
            environ.get("BT_RESULTS_DIR") == str(self.results)
            or environ.get("BACKTEST_RUN_ID") in run_ids
        )

    def leftovers(self) -> list[psutil.Process]:
        try:
            run_ids = set(self.rows())
        except sqlite3.Error:
            run_ids = set()
        me = os.getpid()
        return [
            proc for proc in psutil.process_iter() if proc.pid != me and self._ours(proc, run_ids)
        ]

    def cleanup(self) -> None:
        for child in self.popens:
            if child.poll() is None:
                child.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.communicate(timeout=10)
        for _ in range(3):
            procs = self.leftovers()
            if not procs:
                return
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    proc.send_signal(signal.SIGKILL)
            psutil.wait_procs(procs, timeout=5)


@contextlib.contextmanager
def lab_for(tmp_path: Path, max_parallel: int = 2) -> Iterator[QueueLab]:
    lab = QueueLab(tmp_path, max_parallel)
    try:
        yield lab
    finally:
        lab.cleanup()


# --- process trees ------------------------------------------------------------------------------


def tree_pids(piddir: Path, timeout: float = 30) -> dict[str, int]:
    """Wait until every process of the TREE script has written its pid; role -> pid."""
    wait_for(lambda: all((piddir / role).exists() for role in TREE_ROLES), timeout)
    pids = {role: int((piddir / role).read_text()) for role in TREE_ROLES}
    wait_for(lambda: not pid_alive(pids["launcher"]), timeout)
    return pids


def alive(pids: Iterable[int]) -> list[int]:
    return [pid for pid in pids if pid_alive(pid)]


def assert_tree_gone(pids: dict[str, int], timeout: float = 0.0) -> None:
    """No process of the tree survives (optionally after waiting up to `timeout`)."""
    live = [pids[role] for role in LIVE_TREE_ROLES]
    if timeout:
        with contextlib.suppress(AssertionError):
            wait_for(lambda: not alive(live), timeout)
    survivors = {role: pid for role, pid in pids.items() if pid_alive(pid)}
    assert not survivors, f"processes of the run's tree survived: {survivors}"


def kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# --- timelines ----------------------------------------------------------------------------------


def read_timeline(path: Path) -> list[tuple[str, str, float]]:
    """[(event, name, t)] sorted by time."""
    events = []
    for line in path.read_text().splitlines():
        event, name, moment = line.split()
        events.append((event, name, float(moment)))
    return sorted(events, key=lambda item: item[2])


def start_order(path: Path) -> list[str]:
    return [name for event, name, _ in read_timeline(path) if event == "start"]


def max_overlap(path: Path) -> int:
    """The most scripts that were running at the same moment."""
    running, peak = 0, 0
    # At equal times, count ends before starts: touching intervals do not overlap.
    for event, _name, _t in sorted(read_timeline(path), key=lambda e: (e[2], e[0] == "start")):
        running += 1 if event == "start" else -1
        peak = max(peak, running)
    return peak


def assert_each_started_once(path: Path, names: Iterable[str]) -> None:
    starts = start_order(path)
    ends = [name for event, name, _ in read_timeline(path) if event == "end"]
    expected = sorted(names)
    assert sorted(starts) == expected, f"starts {sorted(starts)} != {expected}"
    assert sorted(ends) == expected


def wait_until_gone(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"process still running after {timeout} s: {out} {err}") from None
