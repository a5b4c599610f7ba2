"""`bt validate`: check a run's folder, or any folder, against the checklist and rules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from btmanager import exitcodes
from btmanager.app import JsonOption, app, service
from btmanager.commands._output import Output
from btmanager.errors import UsageError


@app.command()
def validate(
    ctx: typer.Context,
    target: Annotated[
        str,
        typer.Argument(
            metavar="TARGET", help="A run (id, prefix, latest) or any directory of outputs."
        ),
    ],
    rules: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="Validation rules file (TOML; default ./bt.toml)."),
    ] = None,
    junit: Annotated[
        str | None,  # as typed: Path() would drop the '/' of `--junit out/`
        typer.Option(
            metavar="FILE",
            help="Also write a JUnit XML report to this file (a new one, or a regular file with "
            "--force).",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Let --junit replace an existing file.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Validate the output files of a run or a folder.

    For a run, the stored result is updated, and a run that exited 0 becomes completed or failed
    as the new result says. Rules: --rules, else ./bt.toml, else those recorded with the run.
    Exit 0 valid, 1 invalid, 2 bad target or rules file.
    """
    if junit is not None:
        from btmanager.safe_files import check_destination

        # Before validating: a bad destination must not leave a new result stored for a run.
        check_destination(junit, force=force, option="--junit")
    elif force:
        raise UsageError("--force goes with --junit")
    outcome = service(ctx).validate(target, rules, Path.cwd())
    if junit is not None:
        from btmanager.junit import write_junit

        write_junit(outcome.report, Path(junit), outcome.name, force)
    Output(json_output).report(outcome.report, outcome.name)
    if not outcome.report.valid:
        raise typer.Exit(exitcodes.FAILED)
