"""`bt status`, `bt list`, `bt logs`, `bt results`, `bt health`: looking at runs."""

# No `from __future__ import annotations`: Typer reads the options from the annotations,
# and compiling them from strings cost ~2 ms a command (~30 ms for `bt --help`).

import sys
from pathlib import Path
from typing import Annotated

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
from btmanager.errors import UsageError

RunRef = Annotated[
    str, typer.Argument(metavar="RUN_ID", help="Run id, a unique prefix of one, or 'latest'.")
]


@app.command()
def status(ctx: typer.Context, run_id: RunRef, json_output: JsonOption = False) -> None:
    """Show one run: status, timings, exit code, resources, validation, metrics, and for a
    failed run the last error line of its log."""
    svc = service(ctx)
    run = svc.status(run_id)
    Output(json_output).status(run, svc.details(run))


@app.command()
def logs(
    ctx: typer.Context,
    run_id: RunRef,
    lines: Annotated[
        int,
        typer.Option("--lines", "-n", metavar="N", help="How many last lines (up to 10^9)."),
    ] = 100,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until the run ends.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Print the last lines of a run's execution.log.

    A line longer than 64 KiB is cut there and ends with "… [line truncated, N bytes]".
    """
    from btmanager.commands import _options
    from btmanager.render.common import write_lines

    _options.check(("--lines", lines, _options.COUNT))
    if follow and json_output:
        raise UsageError("--follow and --json cannot be combined")
    svc = service(ctx)
    if follow:
        try:
            write_lines(svc.follow(run_id, lines))
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        return
    tail = svc.logs(run_id, lines)
    out = Output(json_output)
    if out.json:
        out.document(tail.to_dict())
    else:
        write_lines(tail.lines)


@app.command()
def results(
    ctx: typer.Context,
    run_id: RunRef,
    file: Annotated[
        str | None,
        typer.Argument(metavar="FILE", help="A file of the run folder to print (or save with -o)."),
    ] = None,
    output: Annotated[
        str | None,  # as typed: Path() would drop the '/' of `-o out/`
        typer.Option(
            "--output",
            "-o",
            metavar="PATH",
            help="Write FILE here instead of stdout (a new file, or a regular one with --force).",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Let --output replace an existing file.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """List a run's result files, or download one of them.

    Only files inside the run folder are listed and served: symlinks leading out of it,
    hard-linked files and devices are left out (and refused when named).
    """
    if output is not None:
        from btmanager.safe_files import check_destination

        if file is None:
            raise UsageError("--output needs a FILE to download")
        check_destination(output, force=force, option="--output")
    elif force:
        raise UsageError("--force goes with --output")
    svc = service(ctx)
    if file is None:
        Output(json_output).files(svc.results(run_id).to_dict())
        return
    if output is None and json_output:
        raise UsageError("--json with FILE needs --output (file contents are not JSON)")
    with svc.result_file(run_id, file) as source:
        if output is None:
            while chunk := source.read(1024 * 1024):
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            return
        size = svc.copy_result(source, Path(output), force)
    document = {"run_id": svc.status(run_id).run_id, "file": file, "output": output, "size": size}
    Output(json_output).message(f"Wrote {file} ({size} bytes) to {output}", True, document)


@app.command("list")
def list_runs(
    ctx: typer.Context,
    status: StatusOption = None,
    limit: Annotated[
        int, typer.Option(metavar="N", help="At most this many runs (up to 10^9), newest first.")
    ] = 50,
    script: ScriptOption = None,
    sweep: SweepOption = None,
    label: LabelOption = None,
    tag: TagOption = None,
    json_output: JsonOption = False,
) -> None:
    """List runs, newest first."""
    from btmanager.commands import _options

    _options.check(("--limit", limit, _options.COUNT))
    svc = service(ctx)
    selection = svc.selection(sweep, label, tag, status, script)
    total, runs = svc.list_runs(selection, limit)
    document = {"total": total, "runs": [run.to_status_dict() for run in runs]}
    Output(json_output).runs(total, runs, str(svc.settings.db_path), document)


@app.command()
def health(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Registry health and counts of running and queued runs."""
    data = service(ctx).health()
    Output(json_output).health(data)
    if data["status"] != "healthy":
        raise typer.Exit(exitcodes.FAILED)
