"""`bt logs` reads in bounded memory whatever the line lengths; long lines say they were cut.

The memory tests give one 200 MB line to `bt logs -n 5`, `--json` and `-f` (on a finished run,
and following a running one while the line is written) under a 100 MB peak RSS ceiling,
measured on the `bt` child of a fresh Python process.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from btmanager.logs import LineSplitter, tail_lines
from tests.conftest import BtRunner
from tests.helpers import BT, wait_for, write_script

LONG = 200 * 1024 * 1024
CEILING_KB = 100 * 1024
MARKER = f" … [line truncated, {LONG} bytes]"

# Runs one command and prints the peak RSS (KiB) of its process tree's largest process.
MEASURE = """
import resource, subprocess, sys
with open(sys.argv[1], "wb") as out:
    code = subprocess.run(sys.argv[2:], stdout=out).returncode
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _append_long_line(log: Path) -> None:
    block = b"x" * (1024 * 1024)
    with open(log, "ab") as handle:
        for _ in range(LONG // len(block)):
            handle.write(block)


def _start_measured(bt: BtRunner, out: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", MEASURE, str(out), *BT, *args],
        cwd=bt.cwd,
        env=bt.env,
        stdout=subprocess.PIPE,
        text=True,
    )


def _finish_measured(proc: subprocess.Popen[str]) -> tuple[int, int]:
    stdout, _ = proc.communicate(timeout=120)
    code, peak = stdout.split()
    return int(code), int(peak)


@pytest.fixture
def long_line_log(bt: BtRunner) -> Path:
    # A silent script: the registry caches the log's size and line count as the run ends, and
    # the log is only ever appended to; this one stays consistent with an empty cache.
    write_script(bt.cwd, "quiet.py", "")
    status = bt("run", "quiet.py", "--no-validate", "--json").json()
    log = Path(status["output_dir"]) / "execution.log"
    log.write_bytes(b"first\n")
    _append_long_line(log)
    with open(log, "ab") as handle:
        handle.write(b"\nend\n")
    return log


def test_long_line_in_bounded_memory(bt: BtRunner, long_line_log: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    for args in (("-n", "5"), ("-f", "-n", "5"), ("-n", "5", "--json")):
        code, peak = _finish_measured(_start_measured(bt, out, "logs", "latest", *args))
        assert code == 0, args
        assert peak < CEILING_KB, (args, peak)
        text = out.read_text(encoding="utf-8")
        if "--json" in args:
            document = json.loads(text)
            assert document["total_lines"] == 3
            lines = document["lines"]
        else:
            lines = text.splitlines()
        assert lines[0] == "first" and lines[2] == "end", args
        assert lines[1].endswith(MARKER) and len(lines[1]) == 64 * 1024 + len(MARKER), args
    long_line_log.unlink()


WAITS_FOR_GO = """
import pathlib, sys, time
print("started", flush=True)
go = pathlib.Path(sys.argv[0]).with_name("go")
while not go.exists():
    time.sleep(0.05)
"""


def test_follow_a_growing_long_line_in_bounded_memory(bt: BtRunner, tmp_path: Path) -> None:
    """-f holds at most one line's cap of a line still being written, not the whole line."""
    write_script(bt.cwd, "slow.py", WAITS_FOR_GO)
    runner = subprocess.Popen(
        [*BT, "run", "slow.py", "--no-validate", "--json"],
        cwd=bt.cwd,
        env=bt.env,
        stdout=subprocess.DEVNULL,
    )
    try:
        folder = wait_for(lambda: next(bt.results.glob("run_*"), None))
        log = folder / "execution.log"
        wait_for(lambda: log.exists() and b"started" in log.read_bytes())
        out = tmp_path / "out.txt"
        follower = _start_measured(bt, out, "logs", "latest", "-f")
        # Once the follower has printed the tail, whatever comes next is streamed.
        wait_for(lambda: out.exists() and "started" in out.read_text())
        _append_long_line(log)
        with open(log, "ab") as handle:
            handle.write(b"\nend\n")
        (bt.cwd / "go").touch()
        code, peak = _finish_measured(follower)
        assert code == 0 and peak < CEILING_KB, peak
        lines = out.read_text(encoding="utf-8").splitlines()
        assert lines[0] == "started" and lines[2] == "end"
        assert lines[1].endswith(MARKER)
        log.unlink()
    finally:
        (bt.cwd / "go").touch()
        runner.wait(timeout=60)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\n",
        b"a",
        b"x" * 16,
        b"x" * 17,
        b"a\n",
        b"a\nb",
        b"a\r\nb\r\n",
        b"\n\n\n",
        b"one\n\ntwo\n\n",
        b"x" * 50,
        b"short\n" + b"y" * 50 + b"\nz",
        "é€😀".encode() * 10 + b"\n",
    ],
)
def test_tail_matches_a_plain_split(data: bytes) -> None:
    """Across block boundaries and caps: the last n lines, each cut at the cap."""
    cap = 16

    def expected(n: int) -> list[str]:
        if not data:
            return []
        body = data[:-1] if data.endswith(b"\n") else data
        kept = body.split(b"\n")[-n:] if n else []
        out = []
        for line in kept:
            if len(line) > cap:
                text = line[:cap].decode("utf-8", errors="ignore")
                out.append(f"{text} … [line truncated, {len(line)} bytes]")
            else:
                out.append(line.decode("utf-8", errors="replace").rstrip("\r"))
        return out

    for n in (0, 1, 2, 3, 10):
        handle = io.BytesIO(data)
        assert tail_lines(handle, n, end=len(data), cap=cap, block=7) == expected(n), n


def test_splitter_keeps_at_most_the_cap() -> None:
    splitter = LineSplitter(cap=10)
    assert splitter.feed(b"abc") == []
    for _ in range(1000):
        assert splitter.feed(b"y" * 1000) == []
        assert len(splitter._kept) <= 10
    assert splitter.feed(b"z\nnext") == [f"abcyyyyyyy … [line truncated, {3 + 10**6 + 1} bytes]"]
    assert splitter.finish() == "next"


# --- the line count of a log that is rewritten, not only appended to ----------------------------


def _total(bt: BtRunner) -> tuple[int, list[str]]:
    document = bt("logs", "latest", "-n", "2", "--json").json()
    return document["total_lines"], document["lines"]


def test_count_is_exact_after_the_log_is_rewritten(bt: BtRunner, tmp_path: Path) -> None:
    write_script(bt.cwd, "abc.py", "print('a')\nprint('b')\nprint('c')\n")
    status = bt("run", "abc.py", "--no-validate", "--json").json()
    folder = Path(status["output_dir"])
    log = folder / "execution.log"
    # Larger than the count the run's end recorded (6 bytes, 3 lines): counted afresh.
    log.write_text("x" * 100 + "\ny\n")
    assert _total(bt) == (2, ["x" * 100, "y"])
    # Larger than what the last `bt logs` counted, with other line lengths.
    log.write_text("p\n" * 60)
    assert _total(bt) == (60, ["p", "p"])
    # The same size, other lines.
    log.write_text("qqq\n" * 30)
    assert _total(bt) == (30, ["qqq", "qqq"])
    # Appending still counts only what is new, and exactly.
    with open(log, "a") as handle:
        handle.write("r\nlast")
    assert _total(bt) == (32, ["r", "last"])
    # A mark the script garbled, or made a symlink, is not trusted: the log is counted.
    mark = folder / ".bt" / "log-count"
    mark.write_text('{"size": 4, "newlines": 1, "digest": "x"}')
    assert _total(bt) == (32, ["r", "last"])
    mark.unlink()
    (tmp_path / "elsewhere.json").write_text('{"size": 4, "newlines": 4, "digest": "x"}')
    mark.symlink_to(tmp_path / "elsewhere.json")
    assert _total(bt) == (32, ["r", "last"])
    assert not mark.is_symlink()  # replaced by a mark of ours, the file it pointed to untouched
    assert (tmp_path / "elsewhere.json").read_text().startswith('{"size": 4,')
    # Nor is a state folder that leads out of the run folder written through.
    outside = tmp_path / "outside"
    outside.mkdir()
    (folder / ".bt").rename(tmp_path / "old-state")
    (folder / ".bt").symlink_to(outside)
    log.write_text("s\n" * 40)
    assert _total(bt) == (40, ["s", "s"])
    assert list(outside.iterdir()) == []


REWRITES_ITS_LOG = """
import os, pathlib, sys, time
here = pathlib.Path(sys.argv[0]).parent
log = pathlib.Path(os.environ["BACKTEST_OUTPUT_DIR"]) / "execution.log"
def wait(name):
    deadline = time.time() + 60
    while not (here / name).exists() and time.time() < deadline:
        time.sleep(0.02)
print("one\\ntwo\\nthree", flush=True)
wait("gate1")
log.write_text("z" * 300 + "\\n")  # the script starts its log afresh, longer than before
print("after", flush=True)
(here / "rewritten").touch()
wait("gate2")
"""


def test_count_is_exact_when_the_script_rewrites_its_log(bt: BtRunner) -> None:
    write_script(bt.cwd, "rewrite.py", REWRITES_ITS_LOG)
    runner = subprocess.Popen(
        [*BT, "run", "rewrite.py", "--no-validate", "--json"],
        cwd=bt.cwd,
        env=bt.env,
        stdout=subprocess.DEVNULL,
    )
    try:
        folder = wait_for(lambda: next(bt.results.glob("run_*"), None))
        log = folder / "execution.log"
        wait_for(lambda: log.exists() and log.read_bytes().endswith(b"three\n"))
        assert _total(bt) == (3, ["two", "three"])
        (bt.cwd / "gate1").touch()
        wait_for(lambda: (bt.cwd / "rewritten").exists())
        assert _total(bt) == (2, ["z" * 300, "after"])
    finally:
        (bt.cwd / "gate1").touch()
        (bt.cwd / "gate2").touch()
        runner.wait(timeout=60)
    assert bt("status", "latest", "--json").json()["status"] == "completed"
    assert _total(bt) == (2, ["z" * 300, "after"])
