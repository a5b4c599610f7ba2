"""`bt rerun`: a new run request made from a recorded run."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from btmanager.errors import NotFoundError, UsageError
from btmanager.lifecycle.exitrecord import STATE_DIR
from btmanager.lifecycle.request import RunRequest
from btmanager.provenance import DIFF_FILE, SOURCE_DIR, SavedSource
from btmanager.registry.model import Run


def rerun_request(
    run: Run,
    assignments: Sequence[str],
    flags: Sequence[str],
    label: str | None,
    exact: bool,
    environ: Mapping[str, str],
) -> RunRequest:
    """The run's script, params (`-p` and `--flag` override them), extra arguments, rules,
    time-out, grace and priority, in its working directory; labelled as it was unless
    `label` is given. With `exact`, the copy of the script saved with the run is run."""
    from btmanager.params import merge_params

    cwd = Path(run.cwd)
    if not cwd.is_dir():
        raise UsageError(
            f"Run {run.run_id} ran in {cwd}, which no longer exists; it cannot be rerun there"
        )
    saved = None
    if exact:
        script, saved = _saved_copy(run)
    else:
        script = _script_of(run, cwd, environ)
    return RunRequest(
        script=script,
        params=merge_params(run.params, assignments, flags),
        extra_args=list(run.extra_args),
        cwd=cwd,
        label=run.label if label is None else label,
        validate=run.validate,
        rules=run.rules,
        timeout=run.timeout_seconds,
        grace=run.grace_seconds,
        priority=run.priority,
        rerun_of=run.run_id,
        saved_source=saved,
    )


def _script_of(run: Run, cwd: Path, environ: Mapping[str, str]) -> str:
    """The script as it was given, if it still resolves so from the run's folder; else the
    file it resolved to then (found through a BACKTEST_SCRIPTS_DIR that is not set now)."""
    from btmanager.command import resolve_script

    try:
        resolve_script(run.script_path, cwd, environ)
    except NotFoundError:
        return run.script_resolved
    return run.script_path


def _saved_copy(run: Run) -> tuple[str, SavedSource]:
    source = Path(run.output_dir) / STATE_DIR / SOURCE_DIR
    copy = source / Path(run.script_resolved).name
    if not copy.is_file():
        raise NotFoundError(
            f"Run {run.run_id} has no saved copy of its script ({copy} is missing: the run was "
            "recorded before bt kept one, or the script was too large to copy)"
        )
    git = (run.provenance or {}).get("git")
    diff = source / DIFF_FILE
    saved = SavedSource(git if isinstance(git, dict) else None, diff if diff.is_file() else None)
    return os.fspath(copy), saved
