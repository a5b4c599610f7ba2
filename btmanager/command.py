"""From a user's `bt run` request to the exact argv, environment and folder of a run."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from btmanager.errors import NotFoundError, UsageError


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
    params: Mapping[str, str | None],
    extra_args: Sequence[str],
    output_dir: Path,
    environ: Mapping[str, str],
) -> list[str]:
    """`<python> SCRIPT --KEY VALUE ... [EXTRA...] --output_dir <outdir>`; non-.py run directly.

    A param whose value is None is a flag: `--KEY` alone."""
    argv: list[str] = []
    if script.suffix.lower() == ".py":
        argv.append(environ.get("BT_PYTHON") or sys.executable)
    argv.append(str(script))
    for key, value in params.items():
        if value is None:  # a flag (`--flag NAME`): the option alone
            argv.append(f"--{key}")
            continue
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
