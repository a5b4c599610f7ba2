"""Entry point of the `bt` command: the Typer app plus one place that turns errors into exits.

Every failure the user can cause ends here as one `Error: ...` line on stderr and exit code 2
(see `btmanager.exitcodes`); no traceback reaches the user for bad input.
"""

from __future__ import annotations

import copy
import gc
import os
import sys
from collections.abc import Sequence

import typer
from typer.main import get_command, get_command_name

from btmanager import exitcodes
from btmanager.app import app

# Importing the command modules registers their commands, in the order `bt --help` lists them.
from btmanager.commands import run  # noqa: F401 # isort: skip
from btmanager.commands import inspect  # noqa: F401 # isort: skip
from btmanager.commands import validate  # noqa: F401 # isort: skip
from btmanager.commands import control  # noqa: F401 # isort: skip
from btmanager.commands import sweep  # noqa: F401 # isort: skip
from btmanager.commands import compare  # noqa: F401 # isort: skip
from btmanager.commands import plot  # noqa: F401 # isort: skip
from btmanager.commands import keeping  # noqa: F401 # isort: skip
from btmanager.commands import serve  # noqa: F401 # isort: skip
from btmanager.errors import BtError

# Typer bundles its own Click; its exception base class is reachable from a public exception
# without importing Click (which this project does not declare as a dependency).
_ClickException: type[Exception] = next(
    cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException"
)


def _fail(message: str, code: int) -> int:
    try:
        sys.stderr.write(f"Error: {message}\n")
        sys.stderr.flush()
    except OSError:
        pass  # no terminal left to tell (it was closed)
    return code


_GLOBAL_WITH_VALUE = ("--results-dir",)


def _command_index(args: Sequence[str]) -> int | None:
    """Where the command name is in `args` (after the global options), or None."""
    index = 0
    while index < len(args):
        arg = args[index]
        if arg in _GLOBAL_WITH_VALUE:
            index += 2
        elif arg.split("=", 1)[0] in _GLOBAL_WITH_VALUE and "=" in arg:
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
    start = _command_index(args)
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
        if arg in _GLOBAL_WITH_VALUE and index + 1 < len(args):
            moved += args[index : index + 2]
            index += 2
            continue
        if "=" in arg and arg.split("=", 1)[0] in _GLOBAL_WITH_VALUE:
            moved.append(arg)
        else:
            kept.append(arg)
        index += 1
    return kept[:start] + moved + kept[start:]


def _app_for(args: Sequence[str]) -> typer.Typer:
    """The app, narrowed to the one command `args` plainly name (`bt [--results-dir D] NAME`).

    Building the Click tree makes Typer inspect every command's signature (~0.5 ms each, about
    the cost of the whole work of `bt status`); running one command needs only its own.
    Anything else (`bt --help`, `bt`, `--version`, an unknown name) gets the whole tree, so
    help and errors are exactly those of the full app.
    """
    index = _command_index(args)
    if index is None:
        return app
    name = args[index]
    chosen = [
        info
        for info in app.registered_commands
        if (info.name or get_command_name(info.callback.__name__ if info.callback else "")) == name
    ]
    if len(chosen) != 1:
        return app
    narrowed = copy.copy(app)
    narrowed.registered_commands = chosen
    # --install-completion / --show-completion belong before a command: one that is named
    # needs neither (and building them costs ~0.5 ms).
    narrowed._add_completion = False
    return narrowed


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Run `bt` with `argv` (default: sys.argv[1:]) and return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        args = ["--help"]  # `bt` alone: the overview, and that is not an error
    args = hoist_globals(args)
    command = get_command(_app_for(args))
    try:
        result = command.main(
            args=args,
            prog_name="bt",
            standalone_mode=False,
        )
    except BtError as exc:
        return _fail(str(exc), exc.exit_code)
    except _ClickException as exc:
        message = exc.format_message()  # type: ignore[attr-defined]
        context = getattr(exc, "ctx", None)
        where = getattr(context, "command_path", None) or "bt"
        return _fail(f"{message} (see '{where} --help')", exitcodes.USAGE)
    except typer.Abort:
        return _fail("Aborted", exitcodes.CANCELLED)
    except KeyboardInterrupt:
        return exitcodes.CANCELLED
    except BrokenPipeError:
        # The reader went away (`bt logs ... | head`): not an error of ours.
        return exitcodes.OK
    except OSError as exc:
        # Disk full, read-only folder, permissions: the user's environment, said plainly.
        where = f" ({exc.filename})" if exc.filename else ""
        return _fail(f"{exc.strerror or exc}{where}", exitcodes.USAGE)
    except Exception as exc:
        if os.environ.get("BT_DEBUG"):
            raise
        return _fail(
            f"internal error: {type(exc).__name__}: {exc} (set BT_DEBUG=1 to see the traceback)",
            exitcodes.FAILED,
        )
    return int(result) if isinstance(result, int) else exitcodes.OK


def main() -> None:
    code = run_cli()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    # The process ends here: spare the interpreter's final garbage collection over every object
    # Typer, Click and Rich created (~10 ms, a sixth of `bt status`). Nothing of bt's needs the
    # collector to be finalised (the registry is closed and the output flushed by now); the
    # memory goes back to the system with the process.
    gc.freeze()
    sys.exit(code)
