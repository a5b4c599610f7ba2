#!/usr/bin/env python3
"""Evidence for a missed goal: where does a `bt` command spend its time?

    python bench/profile_bt.py imports -- status latest --json
    python bench/profile_bt.py spy -- run script.py      # needs py-spy (bench/requirements.txt)

`imports` runs the command with `-X importtime` (PYTHONPROFILEIMPORTTIME) and the goal-1
baseline `python -c "import typer, rich"` the same way, and lists only what the command imports
beyond the baseline: per package and the slowest modules (self time).

`spy` samples the command with py-spy (1 kHz, native frames off) and prints, per function, the
share of samples that had it on the stack (inclusive) and at the top (self), limited to
btmanager, typer, rich, importlib and sqlite3 frames.

The command runs in the current directory and environment (set BT_RESULTS_DIR as you like).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import import_times, py_spy
from run import _default_bt, _interpreter_of


def _import_times(argv: list[str]) -> dict[str, tuple[int, int]]:
    """module -> (self us, 0) of one run of argv."""
    times = import_times(argv, cwd=Path.cwd(), env=os.environ)
    return {name: (us, 0) for name, us in times.items()}


def imports(bt: Path, python: Path, args: list[str], runs: int) -> None:
    base: set[str] = set()
    for _ in range(2):  # warm the caches, then keep the last
        base = set(_import_times([str(python), "-c", "import typer, rich"]))
    samples = [_import_times([str(bt), *args]) for _ in range(runs)]
    names = set(samples[-1]) - base
    # Median self time per module over the runs.
    self_us = {
        name: sorted(s.get(name, (0, 0))[0] for s in samples)[len(samples) // 2] for name in names
    }
    total = sum(self_us.values())
    per_package: dict[str, int] = defaultdict(int)
    for name, value in self_us.items():
        parts = name.split(".")
        key = ".".join(parts[:2]) if parts[0] == "btmanager" else parts[0]
        per_package[key] += value
    print(
        f"bt {' '.join(args)}: {len(names)} modules beyond `import typer, rich`, "
        f"{total / 1000:.1f} ms of import time (median self time of {runs} runs)"
    )
    print("\nper package:")
    for key, value in sorted(per_package.items(), key=lambda item: -item[1])[:20]:
        print(f"  {value / 1000:6.2f} ms  {key}")
    print("\nslowest modules (self):")
    for name, value in sorted(self_us.items(), key=lambda item: -item[1])[:20]:
        print(f"  {value / 1000:6.2f} ms  {name}")


_KEEP = ("btmanager", "typer", "rich", "importlib", "sqlite3", "json", "subprocess", "threading")


def spy(bt: Path, args: list[str]) -> None:
    command = py_spy()
    if command is None:
        sys.exit("py-spy is not installed (pip install -r bench/requirements.txt)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "stacks.txt"
        subprocess.run(
            [
                command,
                "record",
                "--rate",
                "1000",
                "--format",
                "raw",
                "--threads",
                "--subprocesses",
                "-o",
                str(out),
                "--",
                str(bt),
                *args,
            ],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not out.exists():
            sys.exit("py-spy recorded nothing (is ptrace allowed here?)")
        inclusive: Counter[str] = Counter()
        leaf: Counter[str] = Counter()
        total = 0
        for line in out.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not count_text.isdigit():
                continue
            count = int(count_text)
            total += count
            # "function (path:line)" -> "function (path)": lines would split one function.
            frames = [
                frame.rsplit(":", 1)[0] + ")"
                for frame in stack.split(";")
                if any(k in frame for k in _KEEP) and "importlib._bootstrap" not in frame
            ]
            for frame in set(frames):
                inclusive[frame] += count
            if frames:
                leaf[frames[-1]] += count
    print(f"bt {' '.join(args)}: {total} samples at 1 kHz (~{total} ms of thread time)")
    print("\ninclusive (on the stack):")
    for frame, count in inclusive.most_common(25):
        print(f"  {100 * count / total:5.1f}%  {frame}")
    print("\nself (innermost kept frame):")
    for frame, count in leaf.most_common(15):
        print(f"  {100 * count / total:5.1f}%  {frame}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description="where a bt command spends its time", usage="%(prog)s MODE [options] -- ARGS"
    )
    parser.add_argument("mode", choices=("imports", "spy"))
    parser.add_argument("--bt", type=Path, help="the bt command (default: beside this python)")
    parser.add_argument("--runs", type=int, default=5, help="runs to take medians over")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    options = parser.parse_args(argv[:split])
    args = argv[split + 1 :]
    if not args:
        parser.error("give bt's arguments after --")
    bt = options.bt or _default_bt()
    if bt is None:
        parser.error("no bt found; pass --bt")
    if options.mode == "imports":
        imports(bt, _interpreter_of(bt), args, options.runs)
    else:
        spy(bt, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
