"""The run selection options shared by list, wait, cancel, compare and rm."""

# No `from __future__ import annotations`: Typer reads the options from the annotations,
# and compiling them from strings cost ~2 ms a command (~30 ms for `bt --help`).

from typing import Annotated

import typer

SweepOption = Annotated[
    str | None,
    typer.Option("--sweep", metavar="ID", help="Only runs of this sweep (id, prefix, or latest)."),
]
LabelOption = Annotated[
    str | None, typer.Option("--label", metavar="TEXT", help="Only runs with exactly this label.")
]
TagOption = Annotated[
    list[str] | None,
    typer.Option("--tag", metavar="TAG", help="Only runs with this tag; repeat: all of them."),
]
StatusOption = Annotated[
    str | None,
    typer.Option(
        "--status",
        metavar="STATUS",
        help="Only runs with this status: queued, running, completed, failed, cancelled.",
    ),
]
ScriptOption = Annotated[
    str | None,
    typer.Option("--script", metavar="NAME", help="Only runs of this script (path, or file name)."),
]
