"""From a user's `bt run` request to a recorded run: its id, its folder, its exact command."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from btmanager.command import build_argv, build_env, check_runnable, resolve_script
from btmanager.errors import StorageError
from btmanager.lifecycle.state import RunStates
from btmanager.logs import LOG_FILE
from btmanager.registry.model import ProcessIdentity, Run
from btmanager.settings import DEFAULT_GRACE, Settings
from btmanager.timeutil import new_run_id

DEFAULT_DETACHED_NICE = 10
# A run folder holds the script's results and its log: owner-only, whatever the umask.
RUN_FOLDER_MODE = 0o700


@dataclass
class RunRequest:
    """What the user asked `bt run` for, before anything is recorded."""

    script: str
    params: dict[str, str] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)
    cwd: Path = field(default_factory=Path.cwd)
    label: str | None = None
    validate: bool = True
    rules: dict[str, Any] | None = None
    timeout: float | None = None
    grace: float = DEFAULT_GRACE
    priority: int = 0
    nice: int | None = None


def _make_run_folder(settings: Settings) -> tuple[str, Path]:
    try:
        settings.results_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(
            f"Cannot create the results folder {settings.results_dir}: {exc.strerror or exc}"
        ) from None
    for _attempt in range(5):
        run_id = new_run_id()
        output_dir = settings.run_dir(run_id)
        try:
            output_dir.mkdir(mode=RUN_FOLDER_MODE, exist_ok=False)
            return run_id, output_dir
        except FileExistsError:
            continue
        except OSError as exc:
            raise StorageError(
                f"Cannot create the run folder {output_dir}: {exc.strerror or exc}"
            ) from None
    raise StorageError(f"Could not find a free run id in {settings.results_dir}")


@dataclass(frozen=True)
class Prepared:
    """What every run of one request shares, resolved once (a sweep has thousands of runs)."""

    script: Path
    env: dict[str, str]


def prepare(request: RunRequest, environ: Mapping[str, str] | None = None) -> Prepared:
    """Resolve and check the request's script, and take the submitter's environment."""
    env = dict(os.environ if environ is None else environ)
    script = resolve_script(request.script, request.cwd, env)
    check_runnable(script)
    return Prepared(script, env)


def run_values(
    request: RunRequest,
    prepared: Prepared,
    run_id: str,
    output_dir: Path,
    *,
    detached: bool,
    params: dict[str, str] | None = None,
    label: str | None = None,
    keep_env: bool = True,
) -> dict[str, Any]:
    """The registry row of one run of `request` (`params`/`label` replace the request's).

    `keep_env=False` leaves the environment out (a sweep stores it once, for all its runs).
    """
    params = request.params if params is None else params
    return {
        "run_id": run_id,
        "script_path": request.script,
        "script_resolved": str(prepared.script),
        "params": params,
        "extra_args": request.extra_args,
        "command": build_argv(
            prepared.script, params, request.extra_args, output_dir, prepared.env
        ),
        "cwd": str(request.cwd),
        "output_dir": str(output_dir),
        "label": request.label if label is None else label,
        "priority": request.priority,
        "detached": int(detached),
        "nice": request.nice,
        "timeout_seconds": request.timeout,
        "grace_seconds": request.grace,
        "validate": int(request.validate),
        "rules": request.rules,
        # A detached run starts later, in a worker another `bt` command may have started: keep
        # the submitter's environment with the run (a foreground run uses it directly).
        "env": prepared.env if detached and keep_env else None,
    }


def create_run(
    settings: Settings,
    states: RunStates,
    request: RunRequest,
    *,
    detached: bool,
    watcher: ProcessIdentity | None = None,
    environ: Mapping[str, str] | None = None,
) -> Run:
    """Resolve the script, make the run folder and record the run.

    A detached run is `queued`; a foreground one is `running` at once (foreground runs start
    immediately and count as active), watched by `watcher` (the foreground `bt`).
    """
    prepared = prepare(request, environ)
    run_id, output_dir = _make_run_folder(settings)
    values = run_values(request, prepared, run_id, output_dir, detached=detached)
    if watcher is not None:
        values["worker_pid"] = watcher.pid
        values["worker_create_time"] = watcher.create_time
    try:
        return states.create(values, running=not detached)
    except BaseException:
        _remove_empty(output_dir)
        raise


def _remove_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def launch_spec(run: Run, environ: Mapping[str, str] | None = None) -> Any:
    """The exact argv, environment, folder and log of a run's script."""
    from btmanager.execution import LaunchSpec

    output_dir = Path(run.output_dir)
    base = run.env if run.env is not None else (os.environ if environ is None else environ)
    env = build_env(base, run.run_id, output_dir)
    return LaunchSpec(
        argv=run.command,
        cwd=Path(run.cwd),
        env=env,
        log_path=output_dir / LOG_FILE,
        run_id=run.run_id,
        nice=run.nice,
    )
