"""`bt validate`: check a run's folder, or any folder, against the checklist and rules."""

# No `from __future__ import annotations`: Typer reads the options from the annotations,
# and compiling them from strings cost ~2 ms a command (~30 ms for `bt --help`).

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
    targets: Annotated[
        list[str],
        typer.Argument(
            metavar="TARGET...",
            help="Runs (id, prefix, latest) or directories of outputs; one or more.",
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
    strict: Annotated[
        bool, typer.Option("--strict", help="Warnings fail too (exit 1), as errors do.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Let --junit replace an existing file.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Validate the output files of runs or folders.

    For a run, the stored result is updated, and a run that exited 0 becomes completed or failed
    as the new result says. Rules: --rules, else ./bt.toml, else those recorded with the run.
    Exit 0 valid, 1 invalid (or, with --strict, any warning), 2 bad target or rules file.
    With several targets, --json prints {"valid", "reports": [{"target", ...}]}.
    """
    if junit is not None:
        from btmanager.safe_files import check_destination

        # Before validating: a bad destination must not leave a new result stored for a run.
        check_destination(junit, force=force, option="--junit")
    elif force:
        raise UsageError("--force goes with --junit")
    svc = service(ctx)
    outcomes = [svc.validate(target, rules, Path.cwd()) for target in targets]
    passed = [
        outcome.report.valid and not (strict and outcome.report.warnings) for outcome in outcomes
    ]
    if junit is not None:
        from btmanager.junit import write_junit
        from btmanager.validation.report import combined

        if len(outcomes) == 1:
            write_junit(outcomes[0].report, Path(junit), outcomes[0].name, force)
        else:
            named = [(outcome.name, outcome.report) for outcome in outcomes]
            write_junit(combined(named), Path(junit), "bt validate", force)
    out = Output(json_output)
    if out.json and len(outcomes) > 1:
        out.document(
            {
                "valid": all(passed),
                "reports": [
                    {"target": outcome.name, **outcome.report.to_dict()} for outcome in outcomes
                ],
            }
        )
    else:
        for outcome, ok in zip(outcomes, passed, strict=True):
            out.report(outcome.report, outcome.name)
            if outcome.report.valid and not ok and not out.json:
                out.message("Strict: warnings fail the check (--strict)", ok=False)
    if not all(passed):
        raise typer.Exit(exitcodes.FAILED)
