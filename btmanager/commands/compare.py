"""`bt compare`: runs side by side (params that differ, metrics), sorted or pivoted."""

# No `from __future__ import annotations`: Typer reads the options from the annotations,
# and compiling them from strings cost ~2 ms a command (~30 ms for `bt --help`).

from pathlib import Path
from typing import Annotated

import typer

from btmanager.app import JsonOption, app, service
from btmanager.commands._output import Output
from btmanager.commands._selection import (
    LabelOption,
    ScriptOption,
    StatusOption,
    SweepOption,
    TagOption,
)
from btmanager.errors import UsageError


def _pivot_params(text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    names = [name.strip() for name in text.split(",")]
    if len(names) != 2 or not all(names):
        raise UsageError(f"--pivot takes two params, P1,P2 (not {text!r})")
    return names[0], names[1]


@app.command()
def compare(
    ctx: typer.Context,
    run_ids: Annotated[
        list[str] | None,
        typer.Argument(metavar="[RUN_ID]...", help="Runs to compare (ids, prefixes, latest)."),
    ] = None,
    sweep: SweepOption = None,
    label: LabelOption = None,
    tag: TagOption = None,
    status: StatusOption = None,
    script: ScriptOption = None,
    sort: Annotated[
        str | None,
        typer.Option(
            metavar="[-]METRIC",
            help="Sort by a metric, ascending; -METRIC descending. Runs without it go last.",
        ),
    ] = None,
    top: Annotated[int | None, typer.Option(metavar="N", help="Keep the first N rows.")] = None,
    all_params: Annotated[
        bool,
        typer.Option("--all-params", help="Show every param, not only those that differ."),
    ] = False,
    pivot: Annotated[
        str | None,
        typer.Option(
            metavar="P1,P2",
            help="A table of --metric with P1's values as rows and P2's as columns.",
        ),
    ] = None,
    metric: Annotated[
        str | None, typer.Option(metavar="M", help="The metric of the --pivot table.")
    ] = None,
    csv: Annotated[
        Path | None, typer.Option("--csv", metavar="FILE", help="Also write the table as CSV.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Compare runs: one row each, with the params that differ and every metric.

    Default: the completed runs of the selection (--sweep, --label, --tag, --script; --status
    chooses another status), or of the whole registry when nothing is named. Metrics are
    summary.csv's numbers, stored in the registry when a run is validated. With --pivot the
    best (highest) cell is marked; a cell is the mean of the runs sharing its two values.
    """
    from btmanager.compare import CompareOptions

    if csv is not None:
        from btmanager.outfile import check_destination

        check_destination(csv)
    options = CompareOptions(
        sort=sort, top=top, all_params=all_params, pivot=_pivot_params(pivot), metric=metric
    )
    svc = service(ctx)
    selection = svc.selection(sweep, label, tag, status, script)
    table = svc.compare(list(run_ids or []), selection, options)
    out = Output(json_output)
    if csv is not None:
        from btmanager.compare import to_csv
        from btmanager.outfile import write_text

        write_text(csv, to_csv(table))
    out.compare(table)
