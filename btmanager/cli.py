"""Entry point of the `bt` command: the Typer app plus one place that turns errors into exits.

Every failure the user can cause ends here as one `Error: ...` line on stderr and exit code 2
(see `btmanager.exitcodes`); no traceback reaches the user for bad input.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import typer
from typer.main import get_command

from btmanager import exitcodes
from btmanager.app import app

# Importing the command modules registers their commands, in the order `bt --help` lists them.
from btmanager.commands import run  # noqa: F401 # isort: skip
from btmanager.commands import inspect  # noqa: F401 # isort: skip
from btmanager.commands import validate  # noqa: F401 # isort: skip
from btmanager.commands import control  # noqa: F401 # isort: skip
from btmanager.errors import BtError

# Typer bundles its own Click; its exception base class is reachable from a public exception
# without importing Click (which this project does not declare as a dependency).
_ClickException: type[Exception] = next(
    cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException"
)


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"Error: {message}\n")
    sys.stderr.flush()
    return code


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Run `bt` with `argv` (default: sys.argv[1:]) and return the exit code."""
    command = get_command(app)
    try:
        result = command.main(
            args=list(sys.argv[1:] if argv is None else argv),
            prog_name="bt",
            standalone_mode=False,
        )
    except BtError as exc:
        return _fail(str(exc), exc.exit_code)
    except _ClickException as exc:
        message = exc.format_message()  # type: ignore[attr-defined]
        return _fail(f"{message} (see 'bt --help')", exitcodes.USAGE)
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
    sys.exit(code)
