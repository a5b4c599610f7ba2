"""Entry point of the `bt` command: the Typer app plus one place that turns errors into exits.

Every failure the user can cause ends here as one `Error: ...` line on stderr and exit code 2
(see `btmanager.exitcodes`); no traceback reaches the user for bad input.
"""

from __future__ import annotations

import atexit
import copy
import gc
import importlib
import os
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import typer
from typer.main import get_command, get_command_name

from btmanager import exitcodes
from btmanager.app import app
from btmanager.cmdline import command_index, hoist_globals
from btmanager.errors import BtError

if TYPE_CHECKING:
    from typer.models import CommandInfo

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


# The command modules, in the order `bt --help` lists their commands, and the commands each
# registers when imported (a test checks this against what they register). A command named on
# the command line needs only its own module: importing the other eight cost ~4 ms.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "run": ("run",),
    "inspect": ("status", "logs", "results", "list", "health"),
    "validate": ("validate",),
    "control": ("cancel", "wait", "worker", "parallel"),
    "sweep": ("sweep", "sweeps"),
    "compare": ("compare",),
    "plot": ("plot",),
    "keeping": ("rerun", "tag", "note", "rm", "gc", "registry"),
    "serve": ("serve",),
}


def _import_commands(modules: Iterable[str]) -> None:
    for module in modules:
        importlib.import_module(f"btmanager.commands.{module}")


def _command_name(info: CommandInfo) -> str:
    return info.name or get_command_name(info.callback.__name__ if info.callback else "")


def full_app() -> typer.Typer:
    """The app with every command, in the order of `COMMAND_MODULES` whatever order the
    modules were imported in."""
    _import_commands(COMMAND_MODULES)
    order = list(COMMAND_MODULES)
    full = copy.copy(app)
    full.registered_commands = sorted(
        app.registered_commands,
        key=lambda info: order.index(getattr(info.callback, "__module__", "").rsplit(".")[-1]),
    )
    return full


def _app_for(args: Sequence[str]) -> typer.Typer:
    """The app, narrowed to the one command `args` plainly name (`bt [--results-dir D] NAME`).

    Building the Click tree makes Typer inspect every command's signature (~0.5 ms each, about
    the cost of the whole work of `bt status`); running one command needs only its own.
    Anything else (`bt --help`, `bt`, `--version`, an unknown name) gets the whole tree, so
    help and errors are exactly those of the full app.
    """
    index = command_index(args)
    name = args[index] if index is not None else None
    module = next((key for key, names in COMMAND_MODULES.items() if name in names), None)
    if module is None:
        return full_app()
    _import_commands([module])
    chosen = [info for info in app.registered_commands if _command_name(info) == name]
    if len(chosen) != 1:
        return full_app()  # a group (`bt registry ...`)
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
    early = sys.modules.get("btmanager.execution.early")
    if early is not None:
        early.discard()  # forked for a foreground run that did not happen (see there)
    _flush_standard_streams()
    if _only_thread():
        # The process ends here: spare the interpreter its finalisation, which tears down every
        # module and object Typer, Click and Rich created (~8 ms after a `bt run`, ~5 ms after a
        # `bt status`). What a clean exit would still do is done first: the exit handlers run
        # (a coverage collector, temporary folders) and the streams are flushed. bt closes its
        # files and its registry itself; the memory goes back to the system with the process.
        atexit._run_exitfuncs()
        _flush_standard_streams()
        os._exit(code)
    # Another thread is alive (a server's pool): let the interpreter join it as usual, and spare
    # only its final garbage collection.
    gc.freeze()
    sys.exit(code)


def _flush_standard_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):
            pass  # the reader went away, or the stream was closed: nothing left to deliver


def _only_thread() -> bool:
    threading = sys.modules.get("threading")
    return threading is None or threading.active_count() == 1
