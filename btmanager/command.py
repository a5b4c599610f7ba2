"""From a user's `bt run` request to the exact argv, environment and folder of a run."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from btmanager.errors import NotFoundError


def resolve_script(script: str, cwd: Path, environ: Mapping[str, str]) -> Path:
    """SCRIPT as given (relative to cwd), else inside each folder of BACKTEST_SCRIPTS_DIR."""
    given = Path(script).expanduser()
    candidate = given if given.is_absolute() else cwd / given
    searched = [str(candidate)]
    if candidate.is_file():
        return candidate.absolute()
    if not given.is_absolute():
        for folder in filter(None, environ.get("BACKTEST_SCRIPTS_DIR", "").split(os.pathsep)):
            candidate = Path(folder).expanduser() / given
            if not candidate.is_absolute():
                candidate = cwd / candidate
            searched.append(str(candidate))
            if candidate.is_file():
                return candidate.absolute()
    raise NotFoundError(f"Script not found: {script} (searched: {', '.join(searched)})")


def build_argv(
    script: Path,
    params: Mapping[str, str],
    extra_args: Sequence[str],
    output_dir: Path,
    environ: Mapping[str, str],
) -> list[str]:
    """`<python> SCRIPT --KEY VALUE ... [EXTRA...] --output_dir <outdir>`; non-.py run directly."""
    argv: list[str] = []
    if script.suffix.lower() == ".py":
        argv.append(environ.get("BT_PYTHON") or sys.executable)
    argv.append(str(script))
    for key, value in params.items():
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
