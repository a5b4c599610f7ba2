"""`bt sweep` (queue a grid of runs of one script) and `bt sweeps` (list sweeps)."""

# No `from __future__ import annotations`: Typer reads the options from the annotations,
# and compiling them from strings cost ~2 ms a command (~30 ms for `bt --help`).

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from btmanager import exitcodes
from btmanager.app import JsonOption, app, service
from btmanager.commands._output import Output
from btmanager.errors import UsageError
from btmanager.settings import DEFAULT_GRACE

if TYPE_CHECKING:
    from btmanager.params import ParamValue
    from btmanager.service import Service
    from btmanager.sweeps.submit import SweepResult


@app.command()
def sweep(
    ctx: typer.Context,
    script: Annotated[
        str, typer.Argument(metavar="SCRIPT", help="The backtest script (.py runs with Python).")
    ],
    extra: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="-- EXTRA...", help="Arguments after -- go to every run as they are."
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            metavar="KEY=SPEC",
            help="Values of KEY: a,b,c (a list; \\, is a comma), START:STOP:STEP (a range, "
            "STOP included, exact decimals), or one value (\\: is a colon). Repeat for more "
            "keys; the last key varies fastest.",
        ),
    ] = None,
    grid: Annotated[
        Path | None,
        typer.Option(
            "--grid",
            metavar="FILE",
            help="TOML grid file: [grid] key = [values] or {start, stop, step}; [params] "
            "fixed values. -p adds keys or replaces them.",
        ),
    ] = None,
    params_file: Annotated[
        Path | None,
        typer.Option(
            "--params-file", metavar="FILE", help="JSON or TOML file of fixed parameters."
        ),
    ] = None,
    random: Annotated[
        int | None,
        typer.Option("--random", metavar="N", help="Run N distinct combinations drawn at random."),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(metavar="S", help="Seed of --random: the same seed draws the same runs."),
    ] = None,
    max_runs: Annotated[
        int,
        typer.Option(metavar="N", help="Refuse (queue nothing) if the sweep has more runs."),
    ] = 10_000,
    max_parallel: Annotated[
        int | None,
        typer.Option(
            metavar="N", help="At most N runs of this sweep at once (within the global limit)."
        ),
    ] = None,
    label: Annotated[
        str | None,
        typer.Option(
            metavar="TEMPLATE", help="Label of each run; {key} is its value of key: 'ma-{fast}'."
        ),
    ] = None,
    after: Annotated[
        list[str] | None,
        typer.Option(
            metavar="RUN",
            help="Start only after this run completed (cancelled if it fails); repeatable.",
        ),
    ] = None,
    priority: Annotated[
        int, typer.Option(metavar="N", help="Queue priority: higher starts first; ties keep order.")
    ] = 0,
    nice: Annotated[
        int | None,
        typer.Option(
            metavar="N", help="CPU priority (nice) of the scripts; default 10.", min=-20, max=19
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(metavar="SECONDS", help="End a run after this long; it fails."),
    ] = None,
    grace: Annotated[
        float,
        typer.Option(metavar="SECONDS", help="Wait between SIGTERM and SIGKILL when ending a run."),
    ] = DEFAULT_GRACE,
    rules: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="Validation rules file (TOML; default ./bt.toml)."),
    ] = None,
    no_validate: Annotated[
        bool, typer.Option("--no-validate", help="Skip output validation.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the runs it would queue; queue nothing.")
    ] = False,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait", help="Show progress until every run has finished; exit as `bt wait` does."
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Queue one run per combination of parameter values, all in one go.

    Every combination (keys in the order given, the last varying fastest), or --random N of
    them. The runs are queued detached, in one transaction, as sweep `sweep_<8 hex>` (printed;
    use it with list, wait, cancel, compare --sweep). More runs than --max-runs: exit 2,
    nothing queued. With --wait: exit 0 if all completed, 1 if any failed or was cancelled.
    """
    from btmanager.commands import _options
    from btmanager.commands.run import load_rules_dict
    from btmanager.lifecycle.request import RunRequest
    from btmanager.params import load_params_file
    from btmanager.sweeps.grid import build_space
    from btmanager.sweeps.submit import SweepRequest

    _options.check(
        ("--timeout", timeout, _options.TIMEOUT),
        ("--grace", grace, _options.GRACE),
        ("--priority", priority, _options.PRIORITY),
        ("--nice", nice, _options.NICE),
        ("--max-parallel", max_parallel, _options.MAX_PARALLEL),
        ("--max-runs", max_runs, _options.COUNT),
        ("--random", random, _options.COUNT),
    )
    if dry_run and wait:
        raise UsageError("--dry-run queues nothing: there is nothing to --wait for")
    file_params = load_params_file(params_file) if params_file is not None else None
    request = SweepRequest(
        base=RunRequest(
            script=script,
            extra_args=list(extra or []),
            cwd=Path.cwd(),
            validate=not no_validate,
            rules=None if no_validate else load_rules_dict(rules),
            timeout=timeout,
            grace=grace,
            priority=priority,
            nice=nice,
        ),
        space=build_space(_texts(file_params), grid, param or []),
        sample=random,
        seed=seed,
        max_runs=max_runs,
        max_parallel=max_parallel,
        label=label,
        after=list(after or []),
    )
    out = Output(json_output)
    svc = service(ctx)
    if dry_run:
        out.sweep_plan(svc.sweep_plan(request))
        return
    result = svc.sweep(request)
    if not wait:
        if out.json:
            out.document(result.to_dict())
        else:
            sys.stdout.write(result.sweep_id + "\n")
        return
    raise typer.Exit(_wait(svc, out, result))


def _wait(svc: "Service", out: Output, result: "SweepResult") -> int:
    if not out.json:
        sys.stdout.write(result.sweep_id + "\n")
        sys.stdout.flush()
    view = out.sweep_progress(result.sweep_id, len(result.run_ids))
    try:
        final = svc.follow_sweep(result.sweep_id, view.update if view else lambda _p: None)
    except KeyboardInterrupt:
        if view is not None:
            view.close()
        sys.stderr.write(
            f"Stopped waiting; the runs go on (bt cancel --sweep {result.sweep_id} ends them)\n"
        )
        return exitcodes.CANCELLED
    if view is not None:
        view.close()
    if out.json:
        document = result.to_dict()
        document["by_status"] = final.by_status()
        out.document(document)
    return exitcodes.OK if final.all_completed else exitcodes.FAILED


@app.command("sweeps")
def list_sweeps(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List sweeps, newest first, with their runs counted by status."""
    svc = service(ctx)
    Output(json_output).sweeps(svc.sweeps(), str(svc.settings.db_path))


def _texts(params: "dict[str, ParamValue] | None") -> dict[str, str] | None:
    """A params file's values as the script receives them (a sweep's values are text)."""
    if params is None:
        return None
    from btmanager.params import param_text

    texts: dict[str, str] = {}
    for key, value in params.items():
        text = param_text(value)
        if text is None:
            raise UsageError(
                f"Parameter {key!r} of the params file is a flag; bt sweep needs values"
            )
        texts[key] = text
    return texts
