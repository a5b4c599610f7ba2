"""`bt cancel`, `bt wait`, `bt worker`: acting on runs and the queue."""

from __future__ import annotations

from typing import Annotated

import typer

from btmanager import exitcodes
from btmanager.app import JsonOption, app, service
from btmanager.commands.inspect import RunRef
from btmanager.errors import UsageError
from btmanager.render.common import emit_json, stdout_console
from btmanager.store import COMPLETED


@app.command()
def cancel(
    ctx: typer.Context,
    run_id: RunRef,
    grace: Annotated[
        float, typer.Option(help="Seconds between SIGTERM and SIGKILL for the run's tree.")
    ] = 10.0,
    json_output: JsonOption = False,
) -> None:
    """Cancel a queued or running run (its whole process tree ends)."""
    if grace < 0:
        raise UsageError("--grace must be 0 or more")
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
    run_ids: Annotated[list[str], typer.Argument(help="Runs to wait for (ids, prefixes, latest).")],
    timeout: Annotated[
        float | None, typer.Option(help="Give up after S seconds (exit 124).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Block until the runs finish; exit 0 only if all completed."""
    if timeout is not None and timeout < 0:
        raise UsageError("--timeout must be 0 or more")
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


@app.command()
def worker(
    ctx: typer.Context,
    max_parallel: Annotated[
        int | None,
        typer.Option(help="Runs at once (default: $BT_MAX_PARALLEL, else the CPU count).", min=1),
    ] = None,
    idle_exit: Annotated[
        float | None,
        typer.Option(help="Return once nothing was queued or running for S seconds."),
    ] = None,
    drain: Annotated[
        bool,
        typer.Option("--drain", hidden=True, help="Exit as soon as nothing can be claimed."),
    ] = False,
) -> None:
    """Execute queued runs in the foreground (for systemd, cron or CI)."""
    from btmanager.execution.signals import stop_on_signals

    svc = service(ctx, spawn_workers=False)
    slots = max_parallel or svc.settings.max_parallel
    if drain:
        slots = 1
    pool = svc.worker(slots, idle_exit, drain)
    with stop_on_signals(lambda name: pool.request_stop(f"worker received {name}")):
        pool.run()
    if pool.stop.requested.is_set():
        raise typer.Exit(exitcodes.CANCELLED)
