"""`bt plot`: equity curves of runs in the terminal, as a PNG, or as JSON."""

# No `from __future__ import annotations`: Typer reads the options from the annotations,
# and compiling them from strings cost ~2 ms a command (~30 ms for `bt --help`).

import os
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from btmanager.app import JsonOption, app, service
from btmanager.commands._output import Output

PLAIN_WIDTH = 100  # a plot written to a pipe or file: wide enough to read, narrow enough to mail
PLAIN_HEIGHT = 22


def _size(terminal: bool) -> tuple[int, int]:
    if terminal:
        size = shutil.get_terminal_size((PLAIN_WIDTH, PLAIN_HEIGHT + 4))
        return max(40, size.columns), max(12, min(40, size.lines - 4))
    try:
        width = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        width = PLAIN_WIDTH
    return max(40, width), PLAIN_HEIGHT


@app.command()
def plot(
    ctx: typer.Context,
    run_ids: Annotated[
        list[str],
        typer.Argument(metavar="RUN_ID...", help="Runs to plot (ids, prefixes, latest)."),
    ],
    drawdown: Annotated[
        bool, typer.Option("--drawdown", help="Add the drawdown below the equity curve.")
    ] = False,
    png: Annotated[
        Path | None,
        typer.Option("--png", metavar="FILE", help="Write a PNG instead (needs the `plot` extra)."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Plot the equity curve (cumulative pnl by date, from pnl.csv) of runs, overlaid.

    Drawn in the terminal; plain characters when stdout is not a terminal. A run without a
    readable pnl.csv: exit 2.
    """
    if png is not None:
        from btmanager.outfile import check_destination

        check_destination(png)
    curves = service(ctx).curves(run_ids)
    out = Output(json_output)
    if png is not None:
        from btmanager.plot import png_plot

        png_plot(curves, png, drawdown)
        if not out.json:
            out.message(f"Wrote {png}", True, None)
    if out.json:
        out.document({"runs": [curve.to_dict() for curve in curves]})
        return
    if png is not None:
        return
    from btmanager.plot import terminal_plot

    terminal = out.mode == "rich"
    width, height = _size(terminal)
    if drawdown:
        height += height // 2
    text = terminal_plot(curves, width, height, drawdown, plain=not terminal)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
