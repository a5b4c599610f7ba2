"""From a user's `bt run` request to the exact argv, environment and folder of a run."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from btmanager.errors import NotFoundError, UsageError

# What argparse takes for a negative number rather than an option (its own pattern).
_NEGATIVE_NUMBER = re.compile(r"-\d+|-\d*\.\d+")
# Linux: the longest single argument or environment string execve() takes, NUL included
# (MAX_ARG_STRLEN, 32 pages), and the cap on all of them together whatever the stack limit.
MAX_ARG_STRLEN = 131072
_LINUX_ARGS_CAP = 6 * 1024 * 1024
# Left free below the OS limit: what we cannot count exactly (the auxiliary vector, the
# program name the kernel adds, a slightly different environment in a worker).
_ARGS_MARGIN = 16 * 1024
# A run id's length (YYYYMMDD_HHMMSS_xxxxxxxx), to size the command before the id exists.
RUN_ID_SAMPLE = "00000000_000000_00000000"


def resolve_script(script: str, cwd: Path, environ: Mapping[str, str]) -> Path:
    """SCRIPT as given (relative to cwd), else inside each folder of BACKTEST_SCRIPTS_DIR."""
    given = Path(script).expanduser()
    candidate = Path(os.path.normpath(given if given.is_absolute() else cwd / given))
    searched = [str(candidate)]
    if candidate.is_file():
        return candidate
    if not given.is_absolute():
        for folder in filter(None, environ.get("BACKTEST_SCRIPTS_DIR", "").split(os.pathsep)):
            candidate = Path(folder).expanduser() / given
            candidate = Path(os.path.normpath(cwd / candidate))
            searched.append(str(candidate))
            if candidate.is_file():
                return candidate
    raise NotFoundError(f"Script not found: {script} (searched: {', '.join(searched)})")


def check_runnable(script: Path) -> None:
    """A script run directly (not through Python) must be executable: say so before recording
    a run that could only fail."""
    if script.suffix.lower() != ".py" and os.name == "posix" and not os.access(script, os.X_OK):
        raise UsageError(
            f"Script is not executable: {script} (chmod +x it, or give it a .py name to run it "
            "with Python)"
        )


def build_argv(
    script: Path,
    params: Mapping[str, str],
    extra_args: Sequence[str],
    output_dir: Path,
    environ: Mapping[str, str],
) -> list[str]:
    """`<python> SCRIPT --KEY VALUE ... [EXTRA...] --output_dir <outdir>`; non-.py run directly.

    A value that begins with '-' and is not a plain decimal number is passed as `--KEY=VALUE`.
    """
    argv: list[str] = []
    if script.suffix.lower() == ".py":
        argv.append(environ.get("BT_PYTHON") or sys.executable)
    argv.append(str(script))
    for key, value in params.items():
        # `-p secs=--help` must not become an option of its own: one `--secs=--help` argument.
        # Negative numbers stay separate, as argparse reads them (`--x -5`).
        if value.startswith("-") and not _NEGATIVE_NUMBER.fullmatch(value):
            argv.append(f"--{key}={value}")
        else:
            argv += [f"--{key}", value]
    argv += list(extra_args)
    argv += ["--output_dir", str(output_dir)]
    return argv


def build_env(base: Mapping[str, str], run_id: str, output_dir: Path) -> dict[str, str]:
    env = dict(base)
    env["BACKTEST_RUN_ID"] = run_id
    env["BACKTEST_OUTPUT_DIR"] = str(output_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def check_text(text: str, what: str) -> None:
    """Refuse a NUL byte: argv and environment strings end at the first one."""
    if "\x00" in text:
        raise UsageError(f"{what} holds a NUL byte, which cannot be passed to a program")


def args_limit() -> int:
    """The bytes execve() accepts for argv and environment together (strings and pointers)."""
    try:
        limit = os.sysconf("SC_ARG_MAX")
    except (ValueError, OSError, AttributeError):
        limit = -1
    if limit <= 0:
        limit = MAX_ARG_STRLEN  # POSIX's minimum guarantee is far lower; this is Linux's floor
    if sys.platform.startswith("linux"):
        limit = min(limit, _LINUX_ARGS_CAP)
    return limit


def check_launchable(argv: Sequence[str], env: Mapping[str, str]) -> None:
    """Refuse a command the OS would reject with E2BIG ("Argument list too long").

    Linux counts each string with its NUL plus a pointer for it; one string may not exceed
    MAX_ARG_STRLEN. Checked before a run is recorded, so it is refused rather than failed.
    """
    named = [
        (
            f"value of {argv[i - 1]}"
            if i > 0 and argv[i - 1].startswith("--") and not arg.startswith("-")
            else f"argument {arg[:40]!r}",
            os.fsencode(arg),
        )
        for i, arg in enumerate(argv)
    ]
    named += [(f"environment variable {k!r}", os.fsencode(f"{k}={v}")) for k, v in env.items()]
    for what, data in named:
        if len(data) + 1 > MAX_ARG_STRLEN:
            raise UsageError(
                f"The {what} is {len(data)} bytes; the OS passes at most {MAX_ARG_STRLEN - 1} "
                "bytes in one argument (pass large values in a file instead)"
            )
    strings = [data for _what, data in named]
    pointer = 8 if sys.maxsize > 2**32 else 4
    total = sum(len(data) + 1 + pointer for data in strings) + pointer
    limit = args_limit() - _ARGS_MARGIN
    if total > limit:
        raise UsageError(
            f"The script's arguments and environment come to {total} bytes, more than the OS "
            f"accepts ({limit} bytes here); pass large values in a file instead"
        )


def check_request(
    script: str,
    params: Mapping[str, str],
    extra_args: Sequence[str],
    label: str | None,
    cwd: Path,
    run_dir: Path,
    environ: Mapping[str, str],
) -> None:
    """Everything about a `bt run` request that would only fail once started, refused now.

    NUL bytes in params, extra arguments or the label, and a command line the OS cannot take.
    `run_dir` is where a run folder would be (e.g. with RUN_ID_SAMPLE: ids have one length).
    """
    for key, value in params.items():
        check_text(key, f"Parameter key {key!r}")
        check_text(value, f"Parameter {key!r}")
    for arg in extra_args:
        check_text(arg, f"Extra argument {arg!r}")
    if label is not None:
        check_text(label, "--label")
    check_text(script, "SCRIPT")
    resolved = resolve_script(script, cwd, environ)
    argv = build_argv(resolved, params, extra_args, run_dir, environ)
    check_launchable(argv, build_env(environ, RUN_ID_SAMPLE, run_dir))
