"""Process identity and whole-tree termination.

A pid alone is not an identity: pids are reused. Every check pairs the pid with the process create
time. On Linux both are read from /proc (no psutil import on the hot path of `bt run`); elsewhere
psutil provides them. The formula matches psutil's, so values stored by either agree.

A run's tree is found three ways, because each misses something: the recorded root's descendants
(misses children re-parented after their parent died), the root's process group/session (misses
children that started their own session), and the `BACKTEST_RUN_ID` marker every descendant
inherits in its environment (misses only processes that scrub their environment).

A supervisor is its run's subreaper, so it also adopts every orphan below it, among them a
drain worker that the run's script started by submitting runs (`bt run -d` inside a backtest).
That worker serves the whole queue, not the run: it carries `QUEUE_WORKER_ENV` instead of the
marker, and it and everything below it (other runs' supervisors) are left alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from btmanager.registry.model import ProcessIdentity

if TYPE_CHECKING:
    import psutil

MARKER_ENV = "BACKTEST_RUN_ID"
QUEUE_WORKER_ENV = "BT_QUEUE_WORKER"  # set by execution.spawn on the drain workers it starts
_IS_LINUX = sys.platform.startswith("linux")
_IS_POSIX = os.name == "posix"
# Seconds. Linux create times are start ticks plus /proc/stat's btime, which the kernel recomputes
# from the wall clock on every read: a clock step (NTP, VM resume) moves it by whole seconds, so
# two processes can compute create times 1 s apart for the same process (psutil #2526, #1724).
# Only a pid reused within this window of the original's start could be confused with it.
_TOLERANCE = 1.5


def _linux_boot_time() -> float:
    with open("/proc/stat", "rb") as stat:
        for line in stat:
            if line.startswith(b"btime"):
                return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


_boot_time: float | None = None


def _linux_stat(pid: int) -> tuple[str, float] | None:
    """(state letter, create time) of a pid from /proc, or None if there is no such process."""
    global _boot_time
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = raw[raw.rindex(b")") + 2 :].split()
    state, start_ticks = rest[0].decode(), int(rest[19])
    if _boot_time is None:
        _boot_time = _linux_boot_time()
    return state, start_ticks / os.sysconf("SC_CLK_TCK") + _boot_time


def create_time(pid: int) -> float | None:
    """The create time of a live (or zombie) process, None if there is none."""
    if _IS_LINUX:
        try:
            stat = _linux_stat(pid)
        except OSError:
            stat = None
        return stat[1] if stat else None
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def current_identity() -> ProcessIdentity:
    pid = os.getpid()
    made = create_time(pid)
    return ProcessIdentity(pid, made if made is not None else time.time())


def is_alive(process: ProcessIdentity) -> bool:
    """True if the very process (same pid *and* create time) still runs (zombies are dead)."""
    if _IS_LINUX:
        try:
            stat = _linux_stat(process.pid)
        except OSError:
            return False
        return (
            stat is not None
            and stat[0] not in ("Z", "X")
            and abs(stat[1] - process.create_time) < _TOLERANCE
        )
    import psutil

    try:
        proc = psutil.Process(process.pid)
        return (
            abs(proc.create_time() - process.create_time) < _TOLERANCE
            and proc.status() != psutil.STATUS_ZOMBIE
        )
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _pid_unreused(process: ProcessIdentity) -> bool:
    """True if the pid is free or still (maybe as a zombie) the very process recorded."""
    made = create_time(process.pid)
    return made is None or abs(made - process.create_time) < _TOLERANCE


def leftovers_exist(root: ProcessIdentity, run_id: str) -> bool:
    """Does anything of a run outlive its main process (same group, or the run's marker)?

    Asked after every run, so on Linux it reads /proc directly (about 2 ms for 100 processes)
    instead of importing psutil; elsewhere it asks `collect_tree`.
    """
    if not _IS_LINUX:
        return bool(collect_tree(root, run_id))
    marker = f"\0{MARKER_ENV}={run_id}\0".encode()
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                raw = handle.read()
            fields = raw[raw.rindex(b")") + 2 :].split()
            if fields[0] in (b"Z", b"X"):
                continue
            if int(fields[2]) == root.pid and _pid_unreused(root):  # fields[2] is the pgid
                return True
            with open(f"/proc/{entry.name}/environ", "rb") as handle:
                if marker in b"\0" + handle.read() + b"\0":
                    return True
        except (OSError, ValueError, IndexError):
            continue
    return False


def _live(proc: psutil.Process) -> bool:
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def collect_tree(
    root: ProcessIdentity | None, run_id: str, adopted: bool = False
) -> list[psutil.Process]:
    """Every live process that belongs to a run (see the module docstring), never ourselves.

    `adopted`: also our own descendants (a run's supervisor is the subreaper of its tree, so
    what the script orphans becomes the supervisor's child).
    """
    import psutil

    found: dict[int, psutil.Process] = {}
    me = os.getpid()
    group = _group_of(root)
    tops: list[psutil.Process] = []
    if root is not None and is_alive(root):
        with contextlib.suppress(psutil.Error):
            tops.append(psutil.Process(root.pid))
    if adopted:
        with contextlib.suppress(psutil.Error):
            tops += psutil.Process(me).children()
    for top in tops:
        _add_descendants(top, found)
    for proc in psutil.process_iter():
        if proc.pid in found or proc.pid == me:
            continue
        try:
            if group is not None and os.getpgid(proc.pid) == group:
                found[proc.pid] = proc
                continue
            if proc.environ().get(MARKER_ENV) == run_id:
                found[proc.pid] = proc
        except (psutil.Error, OSError):
            continue
    found.pop(me, None)
    return [proc for proc in found.values() if _live(proc)]


def _add_descendants(top: psutil.Process, found: dict[int, psutil.Process]) -> None:
    """`top` and its descendants into `found`, but no queue worker nor anything below one."""
    import psutil

    pending = [top]
    while pending:
        proc = pending.pop()
        if proc.pid in found or _queue_worker(proc):
            continue
        found[proc.pid] = proc
        with contextlib.suppress(psutil.Error):
            pending += proc.children()


def _queue_worker(proc: psutil.Process) -> bool:
    """A drain worker adopted by this supervisor, not a process of its run (module docstring)."""
    import psutil

    try:
        return proc.environ().get(QUEUE_WORKER_ENV) == "1"
    except psutil.Error:
        return False


def _group_of(root: ProcessIdentity | None) -> int | None:
    """The root's process group id, while it is the run's: a pid is never reused while a group
    of that id has members, but once it has been reused, a group with that id may be a
    stranger's (a stale recorded pid must not reach it)."""
    if root is None or not _IS_POSIX or not _pid_unreused(root):
        return None
    return root.pid


def _key(proc: psutil.Process) -> tuple[int, float]:
    try:
        return proc.pid, round(proc.create_time(), 2)
    except Exception:
        return proc.pid, 0.0


def _pgid(pid: int) -> int | None:
    if not _IS_POSIX:
        return None
    try:
        return os.getpgid(pid)
    except OSError:
        return None


class TreeStop:
    """Ends a run's process tree: each process gets SIGTERM once, then SIGKILL after the grace.

    The group is signalled once with killpg; only processes outside it (children that started
    their own session, orphans found by marker) are signalled one by one, so no member receives
    SIGTERM twice. `step()` does not block, so a supervisor can go on reaping and recording.
    Elsewhere than POSIX, psutil's terminate()/kill() stand in for the signals.
    """

    def __init__(
        self, root: ProcessIdentity | None, run_id: str, grace: float, adopted: bool = False
    ) -> None:
        self.root, self.run_id, self.grace, self.adopted = root, run_id, grace, adopted
        self.termed: set[tuple[int, float]] = set()
        self.group_termed = False
        self.deadline: float | None = None
        self.killed = False

    def _tree(self) -> list[psutil.Process]:
        return collect_tree(self.root, self.run_id, self.adopted)

    def begin(self) -> None:
        """Send SIGTERM to every member that has not had one (idempotent)."""
        if self.deadline is None:
            self.deadline = time.monotonic() + self.grace
        self._term(self._tree())

    def _term(self, procs: list[psutil.Process]) -> None:
        group = _group_of(self.root)
        if (
            group is not None
            and not self.group_termed
            and self.root is not None
            and (is_alive(self.root) or any(_pgid(p.pid) == group for p in procs))
        ):
            members = [p for p in procs if _pgid(p.pid) == group]
            _signal_group(group, signal.SIGTERM)
            self.group_termed = True
            self.termed.update(_key(p) for p in members)
        for proc in procs:
            key = _key(proc)
            if key in self.termed:
                continue
            # Outside the group, or joined it after the killpg: it has had no SIGTERM yet.
            _signal_all([proc], signal.SIGTERM)
            self.termed.add(key)

    def force(self) -> None:
        """Skip the rest of the grace: the next step kills."""
        self.deadline = time.monotonic()

    def step(self) -> bool:
        """Progress the stop; True once no process of the tree is left."""
        if self.deadline is None:
            self.begin()
        procs = self._tree()
        if not procs:
            return True
        assert self.deadline is not None
        if time.monotonic() >= self.deadline:
            kill_tree(procs, self.root)
            self.killed = True
        else:
            self._term(procs)  # processes forked since get their one SIGTERM
        return False


def _signal_all(procs: Iterable[psutil.Process], sig: int) -> None:
    import psutil

    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.Error:
            pass


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Poll until every process has ended (zombies count as ended); return the survivors.

    Polling rather than psutil.wait_procs: that would reap our own child, which belongs to the
    code that waits for it with wait4.
    """
    deadline = time.monotonic() + timeout
    alive = [proc for proc in procs if _live(proc)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [proc for proc in alive if _live(proc)]
    return alive


def _signal_group(group: int | None, sig: int) -> None:
    if group is None or not _IS_POSIX:
        return
    try:
        os.killpg(group, sig)
    except (ProcessLookupError, PermissionError):
        pass


def terminate_tree(root: ProcessIdentity | None, run_id: str, grace: float) -> None:
    """End a run's whole tree from any process, blocking until it is gone (or killed)."""
    stop = TreeStop(root, run_id, grace)
    stop.begin()
    deadline = time.monotonic() + grace + 10.0
    while not stop.step() and time.monotonic() < deadline:
        time.sleep(0.05)


def kill_tree(procs: list[psutil.Process], root: ProcessIdentity | None) -> None:
    """SIGKILL the tree; the group only if the root's pid still names the run's group (checked
    again now: it may have been reused during the grace period)."""
    kill_signal = getattr(signal, "SIGKILL", signal.SIGTERM)
    _signal_group(_group_of(root), kill_signal)
    _signal_all(procs, kill_signal)
    _wait_gone(procs, 5.0)
