"""From a user's `bt run` request to a recorded run: its id, its folder, its exact command."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from btmanager.command import (
    RUN_ID_SAMPLE,
    build_argv,
    build_env,
    check_request,
    check_runnable,
    resolve_script,
)
from btmanager.errors import StorageError
from btmanager.lifecycle.request import RunRequest
from btmanager.lifecycle.state import RunStates
from btmanager.logs import LOG_FILE
from btmanager.params import ParamValue, argv_params
from btmanager.registry.model import ProcessIdentity, Run
from btmanager.settings import Settings
from btmanager.timeutil import new_run_id

if TYPE_CHECKING:
    from btmanager.execution import LaunchSpec

DEFAULT_DETACHED_NICE = 10
# A run folder holds the script's results and its log: owner-only, whatever the umask.
RUN_FOLDER_MODE = 0o700


def make_results_folder(settings: Settings) -> None:
    """The results folder, created if missing (a StorageError says why it cannot be)."""
    try:
        settings.results_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(
            f"Cannot create the results folder {settings.results_dir}: {exc.strerror or exc}"
        ) from None


# Below this much free space on the results disk no run starts: its folder, exit record, script
# copy and run.json need a few blocks, and the registry room to record its start and end.
MIN_FREE_BYTES = 64 * 1024


def check_room(folder: Path) -> None:
    """Refuse (StorageError) to start a run on a disk too full to keep its record.

    Without this, whether a run on a full disk is refused depends on how much room the
    registry's write-ahead log happens to have kept from earlier runs.
    """
    try:
        disk = os.statvfs(folder)
    except (OSError, AttributeError):  # no statvfs (Windows): the writes themselves tell
        return
    # root may also use the blocks reserved for it; a file system that reports no size at all
    # (some network and FUSE ones) is not judged.
    blocks = disk.f_bfree if os.geteuid() == 0 else disk.f_bavail
    free = blocks * disk.f_frsize
    if disk.f_blocks and free < MIN_FREE_BYTES:
        raise StorageError(
            f"No room for a run on the disk of {folder}: {free // 1024} KB free "
            f"(a run needs at least {MIN_FREE_BYTES // 1024} KB)"
        )


def _make_run_folder(settings: Settings) -> tuple[str, Path]:
    make_results_folder(settings)
    check_room(settings.results_dir)
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


class Prepared(NamedTuple):
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
    params: Mapping[str, ParamValue] | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    """The registry row of one run of `request` (`params`/`label` replace the request's).

    Params keep their types in the registry (a params file's numbers and booleans) and reach
    the script as text. The environment is never part of the row: a detached run's waits in a
    file of its own (see `save_environment`), a sweep's in one file for all its runs.
    """
    params = request.params if params is None else params
    return {
        "run_id": run_id,
        "script_path": request.script,
        "script_resolved": str(prepared.script),
        "params": params,
        "extra_args": request.extra_args,
        "command": build_argv(
            prepared.script, argv_params(params), request.extra_args, output_dir, prepared.env
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
        "rerun_of": request.rerun_of,
    }


def create_run(
    settings: Settings,
    states: RunStates,
    request: RunRequest,
    *,
    detached: bool,
    watcher: ProcessIdentity | None = None,
    supervisor: ProcessIdentity | None = None,
    environ: Mapping[str, str] | None = None,
) -> Run:
    """Resolve the script, make the run folder and record the run.

    A detached run is `queued`; a foreground one is `running` at once (foreground runs start
    immediately and count as active), watched by `watcher` (the foreground `bt`) and, when
    the run's supervisor records it, supervised by `supervisor`.
    """
    env = dict(os.environ if environ is None else environ)
    texts = argv_params(request.params)  # what the script receives
    # Refused now, before anything is recorded, what could only fail once started: NUL bytes,
    # a command line too long for the OS.
    check_request(
        request.script,
        texts,
        request.extra_args,
        request.label,
        request.cwd,
        settings.run_dir(RUN_ID_SAMPLE),
        env,
    )
    prepared = prepare(request, env)
    run_id, output_dir = _make_run_folder(settings)
    values = run_values(request, prepared, run_id, output_dir, detached=detached)
    if watcher is not None:
        values["worker_pid"] = watcher.pid
        values["worker_create_time"] = watcher.create_time
    if supervisor is not None:  # a supervisor recording its own run (it need not say so again)
        values["supervisor_pid"] = supervisor.pid
        values["supervisor_create_time"] = supervisor.create_time
    try:
        from btmanager.lifecycle.exitrecord import STATE_DIR
        from btmanager.provenance import collect

        values["provenance"] = collect(
            prepared.script, output_dir / STATE_DIR, env, request.saved_source
        )
        if detached:
            save_environment(output_dir, env)
        return states.create(values, running=not detached, after=request.after)
    except BaseException:
        _remove_folder(output_dir)
        raise


def _remove_folder(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


# A detached run starts later, in a worker another `bt` command may have started, and must see
# its submitter's environment (credentials for data sources included). It is kept in the run's
# owner-only folder, never in the registry, and deleted as soon as the script has started (the
# running script's own environment is readable by its owner only). Not kept: what bt sets anew
# for each run, and what describes the submitting terminal rather than the user.
ENV_FILE = "env.json"
NOT_KEPT = frozenset(
    {
        "BACKTEST_RUN_ID",
        "BACKTEST_OUTPUT_DIR",
        "BT_SERVE_TOKEN",
        "COLUMNS",
        "LINES",
        "TERM_SESSION_ID",
        "WINDOWID",
        "SHLVL",
        "OLDPWD",
        "_",
    }
)


def save_environment(output_dir: Path, env: Mapping[str, str]) -> None:
    import json

    from btmanager.lifecycle.exitrecord import STATE_DIR

    kept = {key: value for key, value in env.items() if key not in NOT_KEPT}
    folder = output_dir / STATE_DIR
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(folder / ENV_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(kept, handle)
    except OSError as exc:
        raise StorageError(
            f"Cannot write the run folder {output_dir}: {exc.strerror or exc}"
        ) from None


def load_environment(output_dir: Path) -> dict[str, str] | None:
    import json

    from btmanager.lifecycle.exitrecord import STATE_DIR

    try:
        data = json.loads((output_dir / STATE_DIR / ENV_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    return {str(key): str(value) for key, value in data.items()}


def forget_environment(output_dir: Path) -> None:
    from btmanager.lifecycle.exitrecord import STATE_DIR

    try:
        (output_dir / STATE_DIR / ENV_FILE).unlink()
    except OSError:
        pass


def launch_spec(run: Run, environ: Mapping[str, str] | None = None) -> LaunchSpec:
    """The exact argv, environment, folder and log of a run's script."""
    from btmanager.execution import LaunchSpec

    output_dir = Path(run.output_dir)
    base: Mapping[str, str] | None = run.env  # runs queued by older versions kept it here
    if base is None and run.detached:
        base = load_environment(output_dir)
    if base is None:
        base = os.environ if environ is None else environ
    env = build_env(base, run.run_id, output_dir)
    return LaunchSpec(
        argv=run.command,
        cwd=Path(run.cwd),
        env=env,
        log_path=output_dir / LOG_FILE,
        run_id=run.run_id,
        nice=run.nice,
    )
