#!/usr/bin/env python3
"""Benchmark `bt` against baselines measured side by side in the same run (issue 5).

    python bench/run.py                  # full sizes (1 GB files, 200 runs, 100 000 runs)
    python bench/run.py --quick          # smoke run with small sizes, well under a minute
    python bench/run.py --markdown bench/RESULTS.md --only 1,5,7

It measures the `bt` console script next to the interpreter running this file (override with
--bt), in a private temporary directory that is removed at the end, also on failure or Ctrl-C.
It prints one table (medians, min-max spreads, ratios pair by pair, goal met or not).
Exit status: 0 when every measured command worked (missed speed goals do not fail it), 1 when
a measured command failed, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent))

import goals
from harness import CommandFailed, Row

REPO = Path(__file__).resolve().parent.parent


def _interpreter_of(script: Path) -> Path:
    """The Python that runs a console script (its shebang), else this one."""
    try:
        first = script.read_bytes().split(b"\n", 1)[0]
    except OSError:
        return Path(sys.executable)
    if first.startswith(b"#!"):
        candidate = Path(first[2:].decode().strip().split()[0])
        if candidate.name.startswith("python") and candidate.exists():
            return candidate
    return Path(sys.executable)


def _default_bt() -> Path | None:
    beside = Path(sys.executable).parent / "bt"
    if beside.exists():
        return beside
    found = shutil.which("bt")
    return Path(found) if found else None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _probe(python: Path) -> dict[str, str]:
    code = (
        "import sys, json, importlib.metadata as m\n"
        "def v(n):\n"
        "    try: return m.version(n)\n"
        "    except Exception: return '-'\n"
        "import site, btmanager\n"
        "e = not any(btmanager.__file__.startswith(p) for p in site.getsitepackages())\n"
        "print(json.dumps({'python': sys.version.split()[0], 'typer': v('typer'),"
        " 'rich': v('rich'), 'polars': v('polars'),"
        " 'install': 'editable install, from ' + btmanager.__file__.rsplit('/', 2)[0]"
        " if e else 'regular install'}))\n"
    )
    import json

    done = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=False, cwd="/"
    )
    try:
        data = json.loads(done.stdout)
        return {str(k): str(v) for k, v in data.items()}
    except ValueError:
        return {}


def _git_revision() -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "-"


def machine_description(bt: Path, python: Path) -> list[str]:
    info = _probe(python)
    tsp = shutil.which("tsp")
    return [
        f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; btmanager {_git_revision()}",
        f"machine: {os.cpu_count()} CPUs (nproc), {_cpu_model()}; {platform.system()} "
        f"{platform.release()}",
        f"python {info.get('python', '?')} ({python}); typer {info.get('typer', '?')}, "
        f"rich {info.get('rich', '?')}, polars {info.get('polars', '-')}; "
        f"tsp {'yes' if tsp else 'not installed'}",
        f"bt: {bt} (btmanager: {info.get('install', '?')})",
    ]


def regular_install(root: Path, python: Path, log: Callable[[str], None]) -> Path:
    """A regular (non-editable) install of this checkout, as `pip install .` gives users.

    A temporary venv gets btmanager built from a copy of the sources; its dependencies (typer,
    rich, pandas, psutil, and polars for goal 6) come from `python`'s environment through a .pth
    file, so nothing but the build backend is downloaded. Returns the venv's `bt`.
    """
    log("building a regular install of btmanager in a temporary venv")
    source = root / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(
        REPO / "btmanager", source / "btmanager", ignore=shutil.ignore_patterns("__pycache__")
    )
    venv = root / "venv"
    subprocess.run([str(python), "-m", "venv", str(venv)], check=True)
    dirs = subprocess.run(
        [str(python), "-c", "import site; print('\\n'.join(site.getsitepackages()))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    new_python = venv / "bin" / "python"
    site_dir = subprocess.run(
        [str(new_python), "-c", "import site; print(site.getsitepackages()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site_dir) / "zz_bench_dependencies.pth").write_text("\n".join(dirs) + "\n")
    subprocess.run(
        [
            str(new_python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--disable-pip-version-check",
            str(source),
        ],
        check=True,
    )
    return venv / "bin" / "bt"


HEADER = (
    "Goal",
    "Measured",
    "Baseline",
    "bt: median (min-max)",
    "baseline: median (min-max)",
    "Ratio",
    "Target",
    "Result",
    "Notes",
)


def _cells(row: Row) -> tuple[str, ...]:
    return (
        row.goal,
        row.measured,
        row.baseline,
        row.measured_value,
        row.baseline_value,
        row.ratio,
        row.target,
        row.verdict,
        row.note,
    )


def text_table(rows: list[Row]) -> str:
    """A plain table for the terminal: one block per row, aligned labels."""
    out = []
    for row in rows:
        out.append(f"[{row.goal}] {row.measured}  ->  {row.verdict}")
        out.append(f"      bt:        {row.measured_value}")
        out.append(f"      baseline:  {row.baseline}: {row.baseline_value}")
        out.append(f"      ratio:     {row.ratio}   (target {row.target})")
        if row.note:
            out.append(f"      note:      {row.note}")
    return "\n".join(out)


def markdown_table(rows: list[Row], machine: list[str], mode: str, repeats: str) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [
        f"### Benchmark results ({mode})",
        "",
        *[f"- {line}" for line in machine],
        f"- {repeats}",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join("---" for _ in HEADER) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(esc(cell) for cell in _cells(row)) + " |")
    return "\n".join(lines) + "\n"


def _on_term(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _stop_leftovers(root: Path) -> None:
    """End what `bt` started inside our temporary directory (drain workers), by pid."""
    for _ in range(50):
        pids = goals.processes_in(root)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM if _ < 25 else signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run for CI")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="also write the table here")
    parser.add_argument("--only", default="", help="comma-separated goals, e.g. 1,5,7")
    parser.add_argument("--repeats", type=int, help="recorded rounds of the quick commands")
    parser.add_argument("--bt", type=Path, help="the bt command (default: beside this python)")
    parser.add_argument("--tmp", type=Path, help="parent of the temporary directory")
    parser.add_argument(
        "--regular-install",
        action="store_true",
        help="measure a regular (non-editable) install of this checkout, built in a temporary "
        "venv (what `pip install .` gives users; needs the build backend from the index)",
    )
    args = parser.parse_args(argv)

    bt = args.bt or _default_bt()
    if bt is None or not bt.exists():
        parser.error("no `bt` found beside this python nor on PATH; pass --bt")
    bt = bt.absolute()
    wanted = [g.strip() for g in args.only.split(",") if g.strip()] or list(goals.GOALS)
    unknown = [g for g in wanted if g not in goals.GOALS]
    if unknown:
        parser.error(f"unknown goal(s): {', '.join(unknown)}")
    sizes = goals.QUICK if args.quick else goals.FULL
    if args.repeats:
        sizes = goals.Sizes(**{**sizes.__dict__, "repeats": args.repeats})

    def log(message: str) -> None:
        print(f"  .. {message}", file=sys.stderr, flush=True)

    signal.signal(signal.SIGTERM, _on_term)
    rows: list[Row] = []
    failures: list[str] = []
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="bt-bench-", dir=args.tmp))
    try:
        if args.regular_install:
            bt = regular_install(root, _interpreter_of(bt), log)
        python = _interpreter_of(bt)
        machine = machine_description(bt, python)
        for line in machine:
            print(line, flush=True)
        ctx = goals.Context(bt=bt, python=python, root=root, sizes=sizes, log=log)
        for goal in wanted:
            try:
                rows += goals.GOALS[goal](ctx)
            except (
                CommandFailed,
                OSError,
                ValueError,
                KeyError,
                subprocess.CalledProcessError,
            ) as exc:
                failures.append(f"goal {goal}: {exc}")
                rows.append(
                    Row(
                        goal,
                        f"goal {goal}",
                        "-",
                        "-",
                        "-",
                        "-",
                        "-",
                        False,
                        f"FAILED: {str(exc)[:300]}",
                    )
                )
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        _stop_leftovers(root)
        shutil.rmtree(root, ignore_errors=True)
    elapsed = time.monotonic() - started
    repeats = (
        f"{sizes.repeats} recorded rounds after {sizes.warmup} warm-up(s) for short commands, "
        f"{sizes.heavy_repeats} for long ones; commands of a goal interleaved; "
        f"whole benchmark {elapsed:.0f} s"
    )
    print(repeats)
    print()
    print(text_table(rows))
    if args.markdown:
        mode = "quick smoke sizes" if args.quick else "full sizes"
        args.markdown.write_text(markdown_table(rows, machine, mode, repeats), encoding="utf-8")
        print(f"\nwrote {args.markdown}")
    if failures:
        print("\nFAILED commands:", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        return 1
    missed = sum(1 for row in rows if row.met is False)
    met = sum(1 for row in rows if row.met)
    skipped = sum(1 for row in rows if row.verdict == "skipped")
    print(f"\ngoal rows: {met} met, {missed} missed, {skipped} skipped")
    if args.quick:
        print("(smoke sizes: the verdicts mean nothing here; run without --quick to measure)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
