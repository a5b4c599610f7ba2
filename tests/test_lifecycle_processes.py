"""The per-run supervisor, with real processes: the `bt` that started a run (a foreground `bt`
in a terminal, a worker) may hang up or be killed at any moment; the run's supervisor alone ends
its tree and records its true end. And each process of a tree gets one SIGTERM per cancel.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import subprocess
import termios
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.helpers import BT, pid_alive, wait_for, write_script
from tests.lifecycle_support import final_row
from tests.queue_support import (
    QueueLab,
    assert_each_started_once,
    assert_tree_gone,
    kill_quietly,
    tree_pids,
    wait_until_gone,
)

# Counts the SIGTERMs it receives, one by one: Python runs a handler once for signals that
# arrive close together, but writes one byte per delivery to the wakeup fd. It installs a
# handler (so SIGTERM does not end it), starts two children that do the same, one in its process
# group and one in a session of its own (so each is reached a different way), writes
# <countdir>/<role>.ready, and once the first SIGTERM came, keeps counting for 1 s, writes the
# count to <countdir>/<role> and exits 0 (the script after its children).
SIGTERM_COUNTER = """
import os, select, signal, subprocess, sys, time


def arg(name, default=None):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


role = arg("--role", "script")
countdir = arg("--countdir")


def put(name, text):
    with open(f"{countdir}/.{name}.tmp", "w") as handle:
        handle.write(text)
    os.replace(f"{countdir}/.{name}.tmp", f"{countdir}/{name}")


wake_r, wake_w = os.pipe()
os.set_blocking(wake_r, False)
os.set_blocking(wake_w, False)
signal.set_wakeup_fd(wake_w)
signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
if role == "loner":
    os.setsid()
children = []
if role == "script":
    children = [
        subprocess.Popen([sys.executable, __file__, "--role", name, "--countdir", countdir])
        for name in ("child", "loner")
    ]
put(f"{role}.ready", str(os.getpid()))
print(f"{role} {os.getpid()} ready", flush=True)
count, first = 0, None
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    select.select([wake_r], [], [], 0.05)
    try:
        data = os.read(wake_r, 512)
    except BlockingIOError:
        data = b""
    count += data.count(bytes([signal.SIGTERM]))
    if count and first is None:
        first = time.monotonic()
    if first is not None and time.monotonic() - first >= 1.0:
        break
put(role, str(count))
for child in children:
    child.wait()
sys.exit(0)
"""


# --- a terminal for a foreground `bt` -----------------------------------------------------------


def _take_terminal() -> None:
    """In the child, after setsid: make the pty on stdin its controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class _Terminal:
    """`bt ARGS...` as the session leader of a pty that is its controlling terminal, as a shell
    in a terminal window starts it."""

    def __init__(self, lab: QueueLab, *args: str) -> None:
        self.master, slave = os.openpty()
        env = {**lab.env, "TERM": "xterm-256color"}
        env.pop("COLUMNS", None)
        self.proc = subprocess.Popen(
            [*BT, *args],
            cwd=lab.cwd,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=_take_terminal,
        )
        os.close(slave)
        self.open = True

    def hang_up(self) -> None:
        """The window closes: the kernel hangs up the pty and sends SIGHUP to `bt`."""
        if self.open:
            self.open = False
            os.close(self.master)

    def close(self) -> None:
        self.hang_up()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@contextlib.contextmanager
def _in_terminal(lab: QueueLab, *args: str) -> Iterator[_Terminal]:
    terminal = _Terminal(lab, *args)
    try:
        yield terminal
    finally:
        terminal.close()


def _read_while(
    master: int, condition: Callable[[], Any], timeout: float = 30, shown: bytes = b""
) -> bytes:
    """Keep reading the terminal (a full pty would block `bt`) until `condition` holds and
    `shown` is on it (`bt` mirrors the log every 0.1 s: it may lag the script's files)."""
    seen = b""

    def drained() -> Any:
        nonlocal seen
        while select.select([master], [], [], 0)[0]:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            seen += data
        return shown in seen and condition()

    wait_for(drained, timeout)
    return seen


def _only_run(lab: QueueLab) -> str:
    run_id: str = wait_for(lambda: next(iter(lab.rows()), None))
    return run_id


# --- the `bt` that watches a foreground run goes away -------------------------------------------


def test_closing_the_terminal_cancels_a_foreground_run_and_ends_its_tree(lab: QueueLab) -> None:
    piddir = lab.piddir("tree")
    args = ("run", "--no-validate", "--grace", "1", "tree.py", "-p", f"piddir={piddir}")
    with _in_terminal(lab, *args) as terminal:
        ready = [piddir / role for role in ("root", "stubborn", "orphan")]
        screen = _read_while(
            terminal.master, lambda: all(path.exists() for path in ready), shown=b" up"
        )
        pids = tree_pids(piddir)
        run_id = _only_run(lab)
        row = lab.wait_running(run_id)
        # `bt` shows the run on the pty (its header, and the script's output mirrored).
        assert run_id.encode() in screen and b" up" in screen, screen
        assert row["worker_pid"] == terminal.proc.pid
        assert row["supervisor_pid"] not in (None, terminal.proc.pid)
        terminal.hang_up()
        terminal.proc.wait(30)
        assert terminal.proc.returncode == 130  # cancelled
    final = final_row(lab, run_id)
    assert final["status"] == "cancelled", final
    assert final["error_message"] == "cancelled: terminal closed (SIGHUP)"
    assert final["failure_kind"] == "cancelled"
    assert_tree_gone(pids)
    assert not pid_alive(row["supervisor_pid"])
    status = lab.status(run_id)
    assert status["status"] == "cancelled"
    assert status["error_message"] == "cancelled: terminal closed (SIGHUP)"
    wait_for(lambda: not lab.leftovers(), 10)


def test_kill_9_of_a_foreground_bt_cancels_the_run_and_ends_its_tree(lab: QueueLab) -> None:
    piddir = lab.piddir("tree")
    foreground = lab.popen_bt("run", "--no-validate", "--grace", "1", "tree.py", "-p",
                              f"piddir={piddir}")  # fmt: skip
    pids = tree_pids(piddir)
    run_id = _only_run(lab)
    row = lab.wait_running(run_id)
    assert row["worker_pid"] == foreground.pid
    supervisor = row["supervisor_pid"]
    assert supervisor not in (None, foreground.pid)
    foreground.kill()  # SIGKILL: `bt` cannot say anything to its supervisor
    wait_until_gone(foreground, timeout=10)
    # The supervisor sees its pipe from `bt` close, ends the tree (SIGTERM, 1 s grace for the
    # grandchild that ignores it, SIGKILL) and records the cancel itself: no other `bt` runs.
    final = final_row(lab, run_id, timeout=10)
    assert final["status"] == "cancelled", final
    assert final["error_message"] == "cancelled: bt was killed"
    assert final["failure_kind"] == "cancelled"
    assert final["completed_at"] is not None
    assert_tree_gone(pids)
    wait_for(lambda: not pid_alive(supervisor), 10)
    wait_for(lambda: lab.run_json(run_id)["status"] == "cancelled", timeout=10)
    wait_for(lambda: not lab.leftovers(), 10)


# --- a worker dies while its runs go on ---------------------------------------------------------


def test_kill_9_of_a_worker_leaves_its_runs_to_end_with_their_true_exit_codes(
    lab: QueueLab,
) -> None:
    # Queue two runs with nothing to execute them: behind a one-slot blocker whose drain worker
    # is killed (the blocker itself goes on and completes: a worker's death does not touch it).
    lab.env["BT_MAX_PARALLEL"] = "1"
    blocker = lab.submit("job.py", "-p", "name=blocker", "-p", f"gate={lab.gate('blocker')}")
    blocker_row = lab.wait_running(blocker)
    gate = lab.gate("both")
    ok = lab.job("ok", "-p", f"gate={gate}")
    bad = lab.job("bad", "-p", f"gate={gate}", "-p", "exit=3")
    kill_quietly(blocker_row["worker_pid"])
    wait_for(lambda: not pid_alive(blocker_row["worker_pid"]))
    lab.gate("blocker").touch()
    assert final_row(lab, blocker)["status"] == "completed"
    rows = lab.rows()
    assert [rows[ok]["status"], rows[bad]["status"]] == ["queued", "queued"]

    worker = lab.popen_bt("worker", "--max-parallel", "2", BT_MAX_PARALLEL="2")
    ok_row, bad_row = lab.wait_running(ok), lab.wait_running(bad)
    wait_for(lambda: lab.timeline.exists() and lab.timeline.read_text().count("start ") == 2)
    for row in (ok_row, bad_row):
        assert row["worker_pid"] == worker.pid, "the foreground worker should have claimed both"
        assert row["supervisor_pid"] not in (None, worker.pid)
    worker.kill()
    wait_until_gone(worker, timeout=10)
    for row in (ok_row, bad_row):
        assert pid_alive(row["supervisor_pid"]) and pid_alive(row["pid"])
    assert {row["status"] for row in lab.rows().values()} == {"completed", "running"}
    gate.touch()
    # No `bt` process is involved from here on: each supervisor records its own run's end.
    final_ok, final_bad = final_row(lab, ok), final_row(lab, bad)
    assert (final_ok["status"], final_ok["exit_code"], final_ok["failure_kind"]) == (
        "completed", 0, None,
    )  # fmt: skip
    assert (final_bad["status"], final_bad["exit_code"], final_bad["failure_kind"]) == (
        "failed", 3, "exit_code",
    )  # fmt: skip
    assert final_bad["error_message"] == "exit code 3"
    for run_id, row in ((ok, ok_row), (bad, bad_row)):
        status = lab.status(run_id)
        assert status["worker_pid"] == worker.pid
        assert status["supervisor_pid"] == row["supervisor_pid"] != status["worker_pid"]
        wait_for(lambda: not pid_alive(row["supervisor_pid"]), 10)  # noqa: B023
    assert_each_started_once(lab.timeline, ["ok", "bad"])
    assert "job ok done" in lab.log(ok) and "job bad done" in lab.log(bad)


# --- one SIGTERM per process per cancel ---------------------------------------------------------


COUNTER_ROLES = ("script", "child", "loner")


def _counter(lab: QueueLab) -> Path:
    write_script(lab.cwd, "sigterm_counter.py", SIGTERM_COUNTER)
    return lab.piddir("counts")


def _counters_ready(countdir: Path) -> list[int]:
    """The pids of the counting processes, once all of them are up."""
    wait_for(lambda: all((countdir / f"{role}.ready").exists() for role in COUNTER_ROLES))
    return [int((countdir / f"{role}.ready").read_text()) for role in COUNTER_ROLES]


def _assert_one_sigterm_each(countdir: Path, pids: list[int]) -> None:
    wait_for(lambda: all((countdir / role).exists() for role in COUNTER_ROLES), 10)
    counts = {role: int((countdir / role).read_text()) for role in COUNTER_ROLES}
    assert counts == dict.fromkeys(COUNTER_ROLES, 1), f"SIGTERMs received: {counts}"
    wait_for(lambda: not any(pid_alive(pid) for pid in pids), 10)


def test_bt_cancel_sends_each_process_one_sigterm_and_keeps_the_exit_code(lab: QueueLab) -> None:
    countdir = _counter(lab)
    run_id = lab.submit("sigterm_counter.py", "-p", f"countdir={countdir}")
    lab.wait_running(run_id)
    pids = _counters_ready(countdir)
    result = lab.bt("cancel", run_id, "--grace", "3", "--json")
    assert result.code == 0, result.stderr
    assert result.json() == {"success": True, "message": "Run cancelled"}
    _assert_one_sigterm_each(countdir, pids)
    status = lab.status(run_id)
    assert status["status"] == "cancelled" and status["failure_kind"] == "cancelled"
    assert status["error_message"] == "cancelled by user"
    assert status["exit_code"] == 0  # what the script returned (it was not killed)


def test_ctrl_c_sends_each_process_one_sigterm_and_keeps_the_exit_code(lab: QueueLab) -> None:
    countdir = _counter(lab)
    foreground = lab.popen_bt("run", "--no-validate", "--grace", "3", "sigterm_counter.py",
                              "-p", f"countdir={countdir}")  # fmt: skip
    pids = _counters_ready(countdir)
    run_id = _only_run(lab)
    foreground.send_signal(signal.SIGINT)
    out, err = wait_until_gone(foreground, timeout=20)
    assert foreground.returncode == 130, (out, err)
    _assert_one_sigterm_each(countdir, pids)
    status = lab.status(run_id)
    assert status["status"] == "cancelled" and status["failure_kind"] == "cancelled"
    assert status["error_message"] == "cancelled: received SIGINT"
    assert status["exit_code"] == 0
