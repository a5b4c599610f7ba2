"""Measuring commands: wall time and peak RSS of each child, repeated and summarised.

Every measured command runs in its own process, started and reaped (`os.wait4`) by a small
wrapper process, so its resource usage (`ru_maxrss`: the peak RSS of that process or of any
descendant it waited for) is its own: neither the harness's nor other commands'. Output goes to
temporary files, never to pipes, so a chatty command can neither block nor be slowed by the
harness reading it.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


class CommandFailed(Exception):
    """A measured command exited with an unexpected code (or timed out)."""


@dataclass(frozen=True)
class Sample:
    seconds: float
    max_rss_bytes: int
    returncode: int
    stdout: bytes = b""
    cpu_seconds: float = 0.0  # user + system time of the command and what it waited for


def _rss_bytes(usage_maxrss: int) -> int:
    # Linux reports kilobytes, macOS bytes.
    return usage_maxrss if sys.platform == "darwin" else usage_maxrss * 1024


# Linux keeps a process's peak RSS across exec, and a child spawned with fork/vfork starts out
# with its parent's pages: a command started straight from this (possibly big) harness would
# report the harness's peak as its own. So each measured command is started by this tiny
# wrapper (`python -I`, ~10 MB), which times it and reads its rusage with os.wait4.
_WRAPPER = """\
import os, sys, time
result, argv = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
try:
    pid = os.posix_spawnp(argv[0], argv, os.environ)
except OSError as exc:
    sys.stderr.write(f"cannot start {argv[0]}: {exc}\\n")
    sys.exit(127)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
with open(result, "w") as handle:
    cpu = usage.ru_utime + usage.ru_stime
    handle.write(f"{seconds!r} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)} {cpu!r}")
"""


def run_measured(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path,
    env: Mapping[str, str],
    ok_codes: Sequence[int] = (0,),
    capture: bool = False,
    stdout_file: Path | None = None,
    timeout: float = 600.0,
    rss: bool = True,
) -> Sample:
    """Run `argv` once: wall time from spawn to reap, and (with `rss`) its own peak RSS.

    stdout is discarded, kept (`capture`) or written to `stdout_file`. With `rss` the command
    is started by a small wrapper process (see `_WRAPPER`), which adds ~10 ms to the caller's
    clock but not to the time measured; without it (`max_rss_bytes` is then 0) it is started
    directly, for loops whose total time the caller measures itself.
    """
    args = [os.fspath(arg) for arg in argv]
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryDirectory() as scratch,
    ):
        result = Path(scratch) / "result"
        sink: int | IO[bytes] = out if capture else subprocess.DEVNULL
        if stdout_file is not None:
            sink = open(stdout_file, "wb")  # noqa: SIM115 - closed right after the spawn
        command = [sys.executable, "-I", "-c", _WRAPPER, str(result), *args] if rss else args
        start = time.perf_counter()
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=err,
            start_new_session=rss,  # so a time-out can end the wrapper and the command
        )
        if stdout_file is not None and not isinstance(sink, int):
            sink.close()
        timer = threading.Timer(timeout, _kill, args=(proc.pid, rss))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        proc.returncode = code  # reaped by wait4: keep Popen from waiting again
        peak, cpu = 0, usage.ru_utime + usage.ru_stime
        if rss and code == 0 and result.exists():
            text_seconds, maxrss, text_code, text_cpu = result.read_text().split()
            seconds, peak, code = float(text_seconds), _rss_bytes(int(maxrss)), int(text_code)
            cpu = float(text_cpu)
        elif rss and code == 0:
            code = 127
        if code not in ok_codes:
            err.seek(0)
            tail = err.read()[-2000:].decode("utf-8", errors="replace").strip()
            raise CommandFailed(
                f"{' '.join(args)} exited {code} (expected {', '.join(map(str, ok_codes))}): {tail}"
            )
        data = b""
        if capture:
            out.seek(0)
            data = out.read()
    return Sample(seconds, peak, code, data, cpu)


def py_spy() -> str | None:
    """The py-spy command (bench/requirements.txt): on PATH or beside this interpreter."""
    return shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


def _kill(pid: int, group: bool) -> None:
    try:
        if group:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def import_times(
    argv: Sequence[str | os.PathLike[str]], *, cwd: Path, env: Mapping[str, str]
) -> dict[str, int]:
    """module -> self time in microseconds, from one run under `-X importtime`."""
    done = subprocess.run(
        [os.fspath(arg) for arg in argv],
        cwd=cwd,
        env={**env, "PYTHONPROFILEIMPORTTIME": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    times: dict[str, int] = {}
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            self_us, _, name = (part.strip() for part in line[12:].split("|"))
            times[name] = int(self_us)
    return times


def import_summary(command: Mapping[str, int], baseline: Mapping[str, int]) -> str:
    """`31 modules beyond the baseline, 7.2 ms (btmanager 4.1, json 1.0, sqlite3 0.9)`."""
    extra = {name: us for name, us in command.items() if name not in baseline}
    packages: dict[str, int] = {}
    for name, us in extra.items():
        top = name.split(".")[0].lstrip("_")
        packages[top] = packages.get(top, 0) + us
    biggest = sorted(packages.items(), key=lambda item: -item[1])[:4]
    parts = ", ".join(f"{name} {us / 1000:.1f}" for name, us in biggest)
    return (
        f"{len(extra)} modules beyond the baseline's, {sum(extra.values()) / 1000:.1f} ms of "
        f"import self time ({parts})"
    )


@dataclass
class Series:
    """Repeated samples of one measured thing."""

    label: str
    samples: list[Sample] = field(default_factory=list)

    @property
    def times(self) -> list[float]:
        return [sample.seconds for sample in self.samples]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def low(self) -> float:
        return min(self.times)

    @property
    def high(self) -> float:
        return max(self.times)

    @property
    def cpu_median(self) -> float:
        return statistics.median(sample.cpu_seconds for sample in self.samples)

    @property
    def peak_rss(self) -> int:
        return max(sample.max_rss_bytes for sample in self.samples)

    def time_text(self) -> str:
        """`62.1 ms (60.3-66.0)`: median and the min-max spread."""
        return (
            f"{fmt_seconds(self.median)} ({fmt_seconds(self.low, unit=False)}"
            f"-{fmt_seconds(self.high, unit=False, like=self.median)})"
        )


def fmt_seconds(value: float, unit: bool = True, like: float | None = None) -> str:
    """Milliseconds below 10 s, seconds above (`like` picks the unit of another value)."""
    ref = value if like is None else like
    if abs(ref) < 10:
        text = f"{value * 1000:.1f}"
        return f"{text} ms" if unit else text
    text = f"{value:.2f}"
    return f"{text} s" if unit else text


def fmt_bytes(value: float) -> str:
    for suffix in ("B", "KB", "MB", "GB"):
        if abs(value) < 1024 or suffix == "GB":
            return f"{value:.0f} {suffix}" if suffix == "B" else f"{value:.1f} {suffix}"
        value /= 1024
    return f"{value:.1f} TB"


Measure = Callable[[], Sample]


def interleaved(measures: Mapping[str, Measure], repeats: int, warmup: int) -> dict[str, Series]:
    """Run every measure `warmup` times unrecorded, then `repeats` rounds, one of each per
    round, so all series see the same machine state (caches, frequency, background load)."""
    for _ in range(warmup):
        for measure in measures.values():
            measure()
    series = {name: Series(name) for name in measures}
    for _ in range(repeats):
        for name, measure in measures.items():
            series[name].samples.append(measure())
    return series


@dataclass
class Row:
    """One line of the results table."""

    goal: str
    measured: str
    baseline: str
    measured_value: str
    baseline_value: str
    ratio: str
    target: str
    met: bool | None  # None: not applicable (skipped, or information only)
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.met is None:
            return "skipped" if self.ratio == "-" and "skipped" in self.note else "info"
        return "met" if self.met else "**MISSED**"


def ratio_row(
    goal: str,
    measured: str,
    baseline: str,
    value: Series,
    base: Series,
    limit: float,
    note: str = "",
) -> Row:
    """A row whose goal is `median(value) / median(base) <= limit`."""
    ratio = value.median / base.median
    return Row(
        goal,
        measured,
        baseline,
        value.time_text(),
        base.time_text(),
        f"{ratio:.2f}x",
        f"<= {limit:g}x",
        ratio <= limit,
        note,
    )


def skipped_row(goal: str, measured: str, baseline: str, target: str, why: str) -> Row:
    return Row(goal, measured, baseline, "-", "-", "-", target, None, f"skipped: {why}")
