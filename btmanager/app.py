"""The Typer application object and what every command shares (settings, the service)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from btmanager import __version__
from btmanager.settings import Settings

if TYPE_CHECKING:
    from btmanager.service import Service

app = typer.Typer(
    name="bt",
    help=(
        "Run manager for backtest scripts: run them with an id and a folder each, in the "
        "foreground or queued, capture their logs, record them in a registry, and validate "
        "the files they write."
    ),
    no_args_is_help=True,
    # Typer's own --install-completion / --show-completion (two options on the root command).
    add_completion=True,
    pretty_exceptions_enable=False,
    # Plain Click help: compact, and it shows each option's metavar where Rich panels show the
    # Python type instead.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else.")
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bt {__version__}")
        raise typer.Exit()


@app.callback()
def global_options(
    ctx: typer.Context,
    results_dir: Annotated[
        str | None,
        typer.Option(
            "--results-dir",
            metavar="DIR",
            help="Results root (default: $BT_RESULTS_DIR, else ./results if it exists, else "
            "the nearest results/bt.sqlite3 in a parent folder, else ./results). The registry "
            "is <results>/bt.sqlite3 unless $BT_DB names another file. Accepted before or "
            "after the command.",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    ctx.obj = Settings.resolve(results_dir)


def service(ctx: typer.Context, spawn_workers: bool = True) -> Service:
    # Imported here, not at the top: `bt --help` and usage errors never pay for it.
    from btmanager.service import Service

    settings = ctx.obj if isinstance(ctx.obj, Settings) else Settings.resolve()
    svc = Service(settings, spawn_workers=spawn_workers)
    ctx.call_on_close(svc.close)
    return svc
