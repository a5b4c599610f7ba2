"""Reading `bt`'s command line before Typer does: where the command is, and what it asks for.

Imported by the entry point before Typer (see `btmanager.entry`), so it imports nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

RESULTS_DIR_OPTION = "--results-dir"
GLOBAL_WITH_VALUE = (RESULTS_DIR_OPTION,)
_DETACH = ("-d", "--detach")
_HELP = ("-h", "--help")


def command_index(args: Sequence[str]) -> int | None:
    """Where the command name is in `args` (after the global options), or None."""
    index = 0
    while index < len(args):
        arg = args[index]
        if arg in GLOBAL_WITH_VALUE:
            index += 2
        elif arg.split("=", 1)[0] in GLOBAL_WITH_VALUE and "=" in arg:
            index += 1
        elif arg.startswith("-"):
            return None
        else:
            return index
    return None


def hoist_globals(args: Sequence[str]) -> list[str]:
    """Move global options given after the command (`bt list --results-dir X`) before it,
    where Click looks for them. Nothing after `--` moves: those are the script's own
    arguments (`bt run s.py -- --results-dir X`). A later value wins, as for Click."""
    args = list(args)
    start = command_index(args)
    if start is None:
        return args
    moved: list[str] = []
    kept = args[: start + 1]
    index = start + 1
    while index < len(args):
        arg = args[index]
        if arg == "--":
            kept += args[index:]
            break
        if arg in GLOBAL_WITH_VALUE and index + 1 < len(args):
            moved += args[index : index + 2]
            index += 2
            continue
        if "=" in arg and arg.split("=", 1)[0] in GLOBAL_WITH_VALUE:
            moved.append(arg)
        else:
            kept.append(arg)
        index += 1
    return kept[:start] + moved + kept[start:]


def global_value(args: Sequence[str], option: str) -> str | None:
    """The value of a global option (`--results-dir X` or `--results-dir=X`, before or after
    the command, the last one winning as for Click), or None."""
    value = None
    for index, arg in enumerate(args):
        if arg == "--":
            break
        if arg == option and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith(option + "="):
            value = arg[len(option) + 1 :]
    return value


def foreground_run(args: Sequence[str]) -> bool:
    """Does `args` look like a foreground `bt run` (not --detach, not --help)?

    A guess from the words alone, before Typer parses them: a wrong guess costs time, never
    correctness (see `btmanager.entry`).
    """
    start = command_index(args)
    if start is None or args[start] != "run":
        return False
    for arg in args[start + 1 :]:
        if arg == "--":
            break
        if arg in _DETACH or arg in _HELP:
            return False
    return True


def validates(args: Sequence[str]) -> bool:
    """Does a `bt run` command line leave output validation on (no --no-validate)?"""
    for arg in args:
        if arg == "--":
            break
        if arg == "--no-validate":
            return False
    return True
