"""Starting a detached drain worker: the one spawn of a `bt` process by `bt` itself."""

from __future__ import annotations

import os
import subprocess
import sys

from btmanager.settings import Settings

WORKER_LOG = ".bt-worker.log"
# The drain workers' log is kept to about this size: one older generation is kept beside it.
WORKER_LOG_MAX = 1 << 20


def open_worker_log(settings: Settings) -> int:
    """The drain workers' log, owner-only, rotated when it grows past WORKER_LOG_MAX."""
    path = settings.results_dir / WORKER_LOG
    try:
        if path.stat().st_size > WORKER_LOG_MAX:
            os.replace(path, path.with_name(WORKER_LOG + ".1"))
    except OSError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.fchmod(fd, 0o600)  # made by an older bt, world-readable
    except (OSError, AttributeError):
        pass
    return fd


def spawn_worker(settings: Settings) -> None:
    """Start a detached drain worker that outlives this process, its terminal and its group."""
    argv = [
        sys.executable,
        "-m",
        "btmanager",
        "--results-dir",
        str(settings.results_dir),
        "worker",
        "--drain",
    ]
    env = dict(os.environ)
    env["BT_DB"] = str(settings.db_path)
    # The stored limit rules, not whatever this process's environment says.
    env.pop("BT_MAX_PARALLEL", None)
    # A run's script may itself submit runs: the worker it spawns serves the whole queue and
    # must not carry that run's marker, or cancelling the run would end the worker too.
    env.pop("BACKTEST_RUN_ID", None)  # execution.proctree.MARKER_ENV (not imported: start-up)
    env.pop("BACKTEST_OUTPUT_DIR", None)
    # Adopted by that run's supervisor (its subreaper) once the submitting `bt` exits: this
    # says it is no process of the run (execution.proctree.QUEUE_WORKER_ENV).
    env["BT_QUEUE_WORKER"] = "1"
    kwargs: dict[str, object] = {}
    if os.name == "posix":
        kwargs["start_new_session"] = True
    else:
        flags = getattr(subprocess, "DETACHED_PROCESS", 0)
        kwargs["creationflags"] = flags | getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
    settings.results_dir.mkdir(parents=True, exist_ok=True)  # BT_DB may live elsewhere
    log = open_worker_log(settings)
    try:
        subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            close_fds=True,
            cwd=str(settings.results_dir),
            env=env,
            **kwargs,  # type: ignore[call-overload]
        )
    finally:
        os.close(log)
