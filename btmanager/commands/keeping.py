"""`bt rerun`, `bt tag`, `bt note`, `bt rm`, `bt gc`, `bt registry rebuild`: keeping runs."""

# No `from __future__ import annotations`: Typer reads the options from the annotations,
# and compiling them from strings cost ~2 ms a command (~30 ms for `bt --help`).

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
from btmanager.commands.inspect import RunRef
from btmanager.commands.run import AfterOption, FlagOption, after_ids, print_queued, run_attached


@app.command()
def rerun(
    ctx: typer.Context,
    run_id: RunRef,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-p", metavar="KEY=VALUE", help="Change or add a parameter; repeatable."
        ),
    ] = None,
    flag: FlagOption = None,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Queue the run and return at once.")
    ] = False,
    label: Annotated[
        str | None, typer.Option(metavar="TEXT", help="Label of the new run (default: the run's).")
    ] = None,
    exact: Annotated[
        bool,
        typer.Option(
            "--exact", help="Run the copy of the script saved with the run, not the file now."
        ),
    ] = False,
    after: AfterOption = None,
    json_output: JsonOption = False,
) -> None:
    """Run a recorded run again: same script, params, extra arguments, rules, time-out and
    priority, in the same working directory; the new run's `rerun_of` names it.

    In the foreground (default) or queued with --detach, as `bt run`, with the same exit codes.
    """
    svc = service(ctx)
    request = svc.rerun_request(run_id, param or [], flag or [], label, exact)
    request.after = after_ids(svc, after, detach)
    if detach:
        print_queued(svc.submit(request), json_output)
        return
    raise typer.Exit(run_attached(svc, request, json_output))


@app.command()
def tag(
    ctx: typer.Context,
    run_id: RunRef,
    tags: Annotated[list[str], typer.Argument(metavar="TAG...", help="Tags to add (or remove).")],
    remove: Annotated[bool, typer.Option("--remove", help="Remove these tags instead.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Tag a run (`bt list --tag T` selects by tag). The tag `keep` protects a run from gc."""
    run = service(ctx).tag(run_id, tags, remove)
    shown = ", ".join(run.tags) or "none"
    document = {"run_id": run.run_id, "tags": run.tags}
    Output(json_output).message(f"Tags of {run.run_id}: {shown}", True, document)


@app.command()
def note(
    ctx: typer.Context,
    run_id: RunRef,
    text: Annotated[str, typer.Argument(metavar="TEXT", help="The note ('' clears it).")],
    append: Annotated[
        bool, typer.Option("--append", help="Add TEXT as a new line instead of replacing.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Write a note on a run (shown by `bt status`, kept in its run.json)."""
    run = service(ctx).note(run_id, text, append)
    document = {"run_id": run.run_id, "note": run.note}
    shown = (run.note or "(none)").replace("\n", " / ")
    Output(json_output).message(f"Note of {run.run_id}: {shown}", True, document)


@app.command()
def rm(
    ctx: typer.Context,
    run_ids: Annotated[
        list[str] | None,
        typer.Argument(metavar="[RUN_ID]...", help="Runs to remove (ids, prefixes, latest)."),
    ] = None,
    sweep: SweepOption = None,
    label: LabelOption = None,
    tag: TagOption = None,
    status: StatusOption = None,
    script: ScriptOption = None,
    cancel: Annotated[
        bool, typer.Option("--cancel", help="Cancel queued and running runs, then remove them.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Delete runs: their registry rows and their folders.

    Queued or running runs are refused (exit 1, nothing removed) unless --cancel. Only run
    folders inside the results root are deleted: a folder that is a symlink or lies elsewhere
    is left, with its run (exit 1). Runs tagged `keep` are removed when named here.
    """
    svc = service(ctx)
    selection = svc.selection(sweep, label, tag, status, script)
    _show_removal(svc.remove(list(run_ids or []), selection, cancel).to_dict(), json_output)


@app.command()
def gc(
    ctx: typer.Context,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than", metavar="AGE", help="Runs that ended longer ago than this (30d, 12h)."
        ),
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            metavar="S,S",
            help="Only runs with these statuses: completed, failed, cancelled (comma-separated).",
        ),
    ] = None,
    keep_last: Annotated[
        int | None,
        typer.Option(
            "--keep-last", metavar="N", help="Keep the N newest of the runs (whatever their age)."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be removed; remove nothing.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Remove finished runs that match the filters (at least one is required).

    Never queued or running runs, nor runs tagged `keep`. Prints each run removed and the
    bytes freed.
    """
    from btmanager.commands import _options

    _options.check(("--keep-last", keep_last, _options.COUNT))
    removal = service(ctx).gc(older_than, status, keep_last, dry_run)
    _show_removal(removal.to_dict(), json_output)


def _show_removal(document: dict[str, object], json_output: bool) -> None:
    from btmanager.render.text import removal_lines

    Output(json_output).lines(removal_lines(document), document)
    if document["skipped"]:
        raise typer.Exit(exitcodes.FAILED)


registry_app = typer.Typer(
    name="registry",
    help="Maintain the registry file.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(registry_app)


@registry_app.command("rebuild")
def registry_rebuild(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Rebuild a lost or corrupt registry from the run folders' run.json files.

    A corrupt registry file is kept aside as bt.sqlite3.corrupt-<time>; a healthy one only
    gains the runs it lacks. Tags, notes and metrics come back too.
    """
    from btmanager.render.text import rebuild_lines

    document = service(ctx, spawn_workers=False).rebuild_registry().to_dict()
    Output(json_output).lines(rebuild_lines(document), document)
