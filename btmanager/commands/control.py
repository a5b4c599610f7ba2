"""`bt cancel`, `bt wait`, `bt worker`: acting on runs and the queue."""

# No `from __future__ import annotations`: Typer reads the options from the annotations,
# and compiling them from strings cost ~2 ms a command (~30 ms for `bt --help`).

import os
from typing import TYPE_CHECKING, Annotated

import typer

from btmanager import exitcodes
from btmanager.app import JsonOption, app, service
from btmanager.commands._output import Output
from btmanager.commands._selection import (
    LabelOption,
    ScriptOption,
    StatusOption,
    SweepOption,
    TagOption,
)
from btmanager.registry.model import Status
from btmanager.settings import DEFAULT_GRACE

if TYPE_CHECKING:
    from btmanager.lifecycle.dask_worker import DaskWorker
    from btmanager.lifecycle.queue import Worker


@app.command()
def cancel(
    ctx: typer.Context,
    run_ids: Annotated[
        list[str] | None,
        typer.Argument(metavar="[RUN_ID]...", help="Runs to cancel (ids, prefixes, latest)."),
    ] = None,
    sweep: SweepOption = None,
    label: LabelOption = None,
    tag: TagOption = None,
    status: StatusOption = None,
    script: ScriptOption = None,
    grace: Annotated[
        float,
        typer.Option(
            metavar="SECONDS", help="Wait between SIGTERM and SIGKILL for the run's tree."
        ),
    ] = DEFAULT_GRACE,
    json_output: JsonOption = False,
) -> None:
    """Cancel queued or running runs (each with its whole process tree).

    A queued run never starts. A running one gets SIGTERM (its whole tree), then SIGKILL after
    the grace period; the command returns once it has ended. One run named: exit 1 if it had
    already finished. With a selection (--sweep, ...): every queued and running run of it.
    """
    from btmanager.commands import _options

    _options.check(("--grace", grace, _options.GRACE))
    svc = service(ctx)
    selection = svc.selection(sweep, label, tag, status, script)
    refs = list(run_ids or [])
    if len(refs) == 1 and selection.is_empty:
        result = svc.cancel(refs[0], grace)
        text = f"{result.message}: {result.run.run_id}"
        Output(json_output).message(text, result.success, result.to_dict())
        if not result.success:
            raise typer.Exit(exitcodes.FAILED)
        return
    count = svc.cancel_many(svc.selected_ids(refs, selection), grace)
    document = {"success": True, "cancelled": count}
    Output(json_output).message(f"Cancelled {count} runs", True, document)


@app.command()
def wait(
    ctx: typer.Context,
    run_ids: Annotated[
        list[str] | None,
        typer.Argument(metavar="[RUN_ID]...", help="Runs to wait for (ids, prefixes, latest)."),
    ] = None,
    sweep: SweepOption = None,
    label: LabelOption = None,
    tag: TagOption = None,
    status: StatusOption = None,
    script: ScriptOption = None,
    timeout: Annotated[
        float | None, typer.Option(metavar="SECONDS", help="Give up after this long (exit 124).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Block until the runs finish; exit 0 if all completed.

    Exit 1 if any failed or was cancelled, 124 if --timeout passed first. Runs are named, or
    selected (--sweep ID waits for all its runs).
    """
    from btmanager.commands import _options

    _options.check(("--timeout", timeout, _options.WAIT))
    svc = service(ctx)
    ids = svc.selected_ids(list(run_ids or []), svc.selection(sweep, label, tag, status, script))
    try:
        runs, timed_out = svc.wait(ids, timeout)
    except KeyboardInterrupt:
        raise typer.Exit(exitcodes.CANCELLED) from None
    document = {"runs": [run.to_status_dict() for run in runs]}
    Output(json_output).runs(len(runs), runs, str(svc.settings.db_path), document)
    if timed_out:
        raise typer.Exit(exitcodes.WAIT_TIMEOUT)
    if any(run.status != Status.COMPLETED for run in runs):
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
            help="Set the parallel limit of the registry, 1 to 1024 (as `bt parallel N`); "
            "default: $BT_MAX_PARALLEL if set, else the stored limit.",
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
    dask: Annotated[
        str | None,
        typer.Option(
            "--dask",
            metavar="ADDRESS",
            help="Execute the runs on a Dask cluster: a scheduler address (tcp://HOST:8786), "
            "or local:N for a local cluster of N worker processes (extra `dask`).",
        ),
    ] = None,
) -> None:
    """Execute queued runs in the foreground (systemd, cron, CI).

    Not needed for `bt run -d`, which starts a worker on demand; this one stays until stopped
    (SIGTERM/Ctrl-C cancel the runs it is executing) or, with --idle-exit, until idle.
    With --dask the runs execute on a Dask cluster (outputs and logs come back into their run
    folders) and, while it serves, no local worker is started for queued runs.
    """
    from btmanager.commands import _options

    _options.check(
        ("--max-parallel", max_parallel, _options.MAX_PARALLEL),
        ("--idle-exit", idle_exit, _options.IDLE),
    )
    from btmanager.execution.signals import stop_on_signals

    svc = service(ctx, spawn_workers=False)
    pool: Worker | DaskWorker
    if dask is not None:
        pool = svc.dask_worker(dask, max_parallel, idle_exit, on_event=_log_event)
    else:
        pool = svc.worker(max_parallel, idle_exit, drain, on_event=_log_event)
    with stop_on_signals(lambda name: pool.request_stop(f"worker received {name}")):
        pool.run()
    if pool.stop.requested.is_set():
        raise typer.Exit(exitcodes.CANCELLED)


@app.command()
def parallel(
    ctx: typer.Context,
    limit: Annotated[
        int | None,
        typer.Argument(metavar="N", help="The new limit (1-1024); without it, show the limit."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Show or set how many runs may run at once (stored in the registry, for every worker).

    `BT_MAX_PARALLEL` in the environment of `bt run -d` and `bt worker --max-parallel N` set it
    too; until set, it is the CPU count.
    """
    value = service(ctx, spawn_workers=limit is not None).parallel(limit)
    Output(json_output).message(str(value), True, {"max_parallel": value})
