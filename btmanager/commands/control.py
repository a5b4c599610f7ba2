"""`bt cancel`, `bt wait`, `bt worker`: acting on runs and the queue."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from btmanager import exitcodes
from btmanager.app import JsonOption, app, service
from btmanager.commands.inspect import RunRef
from btmanager.render.common import emit_json, stdout_console
from btmanager.store import COMPLETED


@app.command()
def cancel(
    ctx: typer.Context,
    run_id: RunRef,
    grace: Annotated[
        float,
        typer.Option(
            metavar="SECONDS", help="Wait between SIGTERM and SIGKILL for the run's tree."
        ),
    ] = 10.0,
    json_output: JsonOption = False,
) -> None:
    """Cancel a queued or running run (its whole process tree).

    A queued run never starts. A running one gets SIGTERM (its whole tree), then SIGKILL after
    the grace period. Exit 1 if the run had already finished.
    """
    from btmanager.commands import _options

    _options.check(("--grace", grace, _options.GRACE))
    result = service(ctx).cancel(run_id, grace)
    if json_output:
        emit_json(result.to_dict())
    else:
        style = "green" if result.success else "yellow"
        stdout_console().print(f"[{style}]{result.message}[/]: {result.run.run_id}")
    if not result.success:
        raise typer.Exit(exitcodes.FAILED)


@app.command()
def wait(
    ctx: typer.Context,
    run_ids: Annotated[
        list[str],
        typer.Argument(metavar="RUN_ID...", help="Runs to wait for (ids, prefixes, latest)."),
    ],
    timeout: Annotated[
        float | None, typer.Option(metavar="SECONDS", help="Give up after this long (exit 124).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Block until the runs finish; exit 0 if all completed.

    Exit 1 if any failed or was cancelled, 124 if --timeout passed first.
    """
    from btmanager.commands import _options

    _options.check(("--timeout", timeout, _options.WAIT))
    try:
        runs, timed_out = service(ctx).wait(run_ids, timeout)
    except KeyboardInterrupt:
        raise typer.Exit(exitcodes.CANCELLED) from None
    if json_output:
        emit_json({"runs": [run.to_status_dict() for run in runs]})
    else:
        from btmanager.render.runs import render_list

        render_list(len(runs), runs, stdout_console())
    if timed_out:
        raise typer.Exit(exitcodes.WAIT_TIMEOUT)
    if any(run.status != COMPLETED for run in runs):
        raise typer.Exit(exitcodes.FAILED)


def _log_event(message: str) -> None:
    """One timestamped line per event, for journald, cron mail or the drain workers' log."""
    from btmanager.timeutil import now_iso

    print(f"{now_iso()} bt worker[{os.getpid()}]: {message}", flush=True)


@app.command()
def worker(
    ctx: typer.Context,
    max_parallel: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Runs at once, 1 to 1024 (default: $BT_MAX_PARALLEL, else the CPU count).",
        ),
    ] = None,
    idle_exit: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS", help="Return once nothing was queued or running for this long."
        ),
    ] = None,
    drain: Annotated[
        bool,
        typer.Option("--drain", hidden=True, help="Exit as soon as nothing can be claimed."),
    ] = False,
) -> None:
    """Execute queued runs in the foreground (systemd, cron, CI).

    Not needed for `bt run -d`, which starts a worker on demand; this one stays until stopped
    (SIGTERM/Ctrl-C cancel the runs it is executing) or, with --idle-exit, until idle.
    """
    from btmanager.commands import _options

    _options.check(
        ("--max-parallel", max_parallel, _options.MAX_PARALLEL),
        ("--idle-exit", idle_exit, _options.IDLE),
    )
    from btmanager.execution.signals import stop_on_signals

    svc = service(ctx, spawn_workers=False)
    slots = max_parallel or svc.settings.max_parallel
    if drain:
        slots = 1
    pool = svc.worker(slots, idle_exit, drain, on_event=_log_event)
    with stop_on_signals(lambda name: pool.request_stop(f"worker received {name}")):
        pool.run()
    if pool.stop.requested.is_set():
        raise typer.Exit(exitcodes.CANCELLED)
