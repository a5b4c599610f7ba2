"""The `bt` command's entry point.

A foreground `bt run` forks its supervisor here, before Typer is imported (see
`btmanager.execution.early`): so this module imports nothing of its own before that.
"""

import sys


def main() -> None:
    args = sys.argv[1:]
    from btmanager.cmdline import foreground_run, validates

    if foreground_run(args):
        from btmanager.execution import early

        early.fork(validate=validates(args))
    from btmanager.cli import main as cli_main

    cli_main()
