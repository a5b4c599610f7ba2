"""What people see: the live line on a terminal, and no colour or live line without one."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
from pathlib import Path

from tests.conftest import BtRunner
from tests.helpers import BT
from tests.scripts import write

SLOW_PRINTER = (
    "import time\nfor i in range(4):\n    print(f'tick {i}', flush=True)\n    time.sleep(0.4)\n"
)
COLOUR = re.compile(r"\x1b\[[0-9;]*(3[0-9]|9[0-7]|38;)[0-9;]*m")


def _run_in_terminal(bt: BtRunner, *args: str, **env: str) -> str:
    master, slave = pty.openpty()
    full_env = dict(bt.env, TERM="xterm-256color", **env)
    full_env.pop("COLUMNS", None)
    proc = subprocess.Popen(
        [*BT, *args], cwd=bt.cwd, env=full_env, stdin=slave, stdout=slave, stderr=slave
    )
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([master], [], [], 30)
        if not ready:
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the terminal closed
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=30)
    os.close(master)
    return b"".join(chunks).decode("utf-8", errors="replace")


def test_terminal_gets_live_elapsed_line_and_colour(bt: BtRunner) -> None:
    write(bt.cwd, "slow.py", SLOW_PRINTER)
    screen = _run_in_terminal(bt, "run", "slow.py", "--no-validate")
    assert "running" in screen and "⏱" in screen  # the live elapsed-time line
    assert "tick 3" in screen
    assert COLOUR.search(screen)  # the status is coloured on a terminal


def test_no_color_means_no_colour_and_no_live_line(bt: BtRunner) -> None:
    write(bt.cwd, "slow.py", SLOW_PRINTER)
    screen = _run_in_terminal(bt, "run", "slow.py", "--no-validate", NO_COLOR="1")
    assert "tick 3" in screen and "completed" in screen
    assert "⏱" not in screen
    assert not COLOUR.search(screen)


def test_pipe_gets_plain_text(bt: BtRunner) -> None:
    write(bt.cwd, "slow.py", SLOW_PRINTER)
    result = bt("run", "slow.py", "--no-validate")
    assert "\x1b" not in result.stdout
    assert "tick 0\ntick 1\ntick 2\ntick 3\n" in result.stdout
    listing = bt("list")
    assert "\x1b" not in listing.stdout and "completed" in listing.stdout


def test_status_humanises_duration(bt: BtRunner, tmp_path: Path) -> None:
    write(bt.cwd, "slow.py", SLOW_PRINTER)
    bt("run", "slow.py", "--no-validate")
    text = bt("status", "latest").stdout
    assert re.search(r"Duration\s+1\.\d s", text)
    assert re.search(r"Peak memory\s+[\d.]+ MB", text)


def test_piped_output_is_plain_text_without_rich(bt: BtRunner, tmp_path: Path) -> None:
    from tests.scripts import NO_OUTPUTS, VALID

    write(bt.cwd, "ok.py", VALID)
    # PYTHONPROFILEIMPORTTIME lists every module imported on stderr: Rich must not be one of
    # them when nobody sees colours (it costs a quarter of a small run's overhead).
    result = bt("run", "ok.py", PYTHONPROFILEIMPORTTIME="1")
    assert result.code == 0
    assert not re.search(r"\| +rich(\.|$)", result.stderr, re.M)
    assert "pandas" not in result.stderr and "pyarrow" not in result.stderr
    out = result.stdout
    assert re.search(r"^Status +completed$", out, re.M)
    assert "Output files" in out and "Valid: 0 errors, 0 warnings" in out
    assert re.search(r"✓ +trades\.csv", out)
    write(bt.cwd, "lazy.py", NO_OUTPUTS)
    failed = bt("run", "lazy.py")
    assert failed.code == 1
    assert "Errors\n  trades.csv\n    - " in failed.stdout
    assert re.search(r"^  error: trades\.csv: ", bt("status", "latest").stdout, re.M)
    validated = bt("validate", "latest", PYTHONPROFILEIMPORTTIME="1")
    assert validated.code == 1 and "Invalid: " in validated.stdout
    assert not re.search(r"\| +rich(\.|$)", validated.stderr, re.M)


def test_terminal_report_says_the_same_as_the_plain_one(bt: BtRunner) -> None:
    from tests.scripts import NO_OUTPUTS

    write(bt.cwd, "lazy.py", NO_OUTPUTS)
    bt("run", "lazy.py")
    plain = bt("validate", "latest").stdout
    screen = _run_in_terminal(bt, "validate", "latest", NO_COLOR="1")
    for line in plain.splitlines()[1:]:
        words = line.split()
        if words and words[0] in ("-", "✓", "✗", "!"):
            words = words[1:]  # the status symbol column is drawn by both
        assert all(word in screen for word in words), line
