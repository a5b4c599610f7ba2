"""`bt run`: start a backtest in the foreground, or queue it with --detach.

No `from __future__ import annotations` here: Typer reads the options from the annotations of
`run`, and evaluating 17 of them from strings (compiling each) cost ~8 ms per `bt run`.
"""

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from btmanager import exitcodes
from btmanager.app import JsonOption, app, service
from btmanager.errors import UsageError
from btmanager.registry.model import Run, Status
from btmanager.render.common import emit_json, is_terminal, stdout_console
from btmanager.settings import DEFAULT_GRACE

if TYPE_CHECKING:
    from btmanager.lifecycle.request import RunRequest


def load_rules_dict(rules_file: Path | None) -> dict[str, object] | None:
    """--rules FILE, else ./bt.toml if present; parsed now so the run keeps these rules."""
    cwd = Path.cwd()
    if rules_file is None and not (cwd / "bt.toml").exists():
        return None  # the usual case, told without importing the rules parser (~8 ms)
    from btmanager.validation.rules import load_rules

    rules = load_rules(rules_file, cwd)
    return rules.to_dict() if rules is not None else None


def exit_code_for(run: Run) -> int:
    if run.status == Status.COMPLETED:
        return exitcodes.OK
    if run.status == Status.CANCELLED:
        return exitcodes.CANCELLED
    return exitcodes.FAILED


FlagOption = Annotated[
    list[str] | None,
    typer.Option(
        "--flag", metavar="NAME", help="Passed as --NAME alone (a switch); repeat for more."
    ),
]
AfterOption = Annotated[
    list[str] | None,
    typer.Option(
        "--after",
        metavar="RUN",
        help="With --detach: start only after this run completed (cancelled if it fails); "
        "repeat for more.",
    ),
]


@app.command()
def run(
    ctx: typer.Context,
    script: Annotated[
        str, typer.Argument(metavar="SCRIPT", help="The backtest script (.py runs with Python).")
    ],
    extra: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="-- EXTRA...", help="Arguments after -- go to the script as they are."
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            metavar="KEY=VALUE",
            help="Passed as --KEY VALUE (--KEY=VALUE if VALUE starts with -); repeat for more.",
        ),
    ] = None,
    params_file: Annotated[
        Path | None,
        typer.Option(
            "--params-file", metavar="FILE", help="JSON or TOML file of parameters (-p overrides)."
        ),
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Queue the run and return at once.")
    ] = False,
    priority: Annotated[
        int, typer.Option(metavar="N", help="Queue priority: higher starts first; ties keep order.")
    ] = 0,
    nice: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="CPU priority (nice, -20 to 19) of the script; default 10 when detached.",
        ),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(metavar="SECONDS", help="End the run after this long; it fails.")
    ] = None,
    grace: Annotated[
        float,
        typer.Option(metavar="SECONDS", help="Wait between SIGTERM and SIGKILL when ending a run."),
    ] = DEFAULT_GRACE,
    label: Annotated[
        str | None, typer.Option(metavar="TEXT", help="A free-text label for the run.")
    ] = None,
    no_validate: Annotated[
        bool, typer.Option("--no-validate", help="Skip output validation.")
    ] = False,
    rules: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="Validation rules file (TOML; default ./bt.toml)."),
    ] = None,
    flag: FlagOption = None,
    after: AfterOption = None,
    json_output: JsonOption = False,
) -> None:
    """Run a backtest script: an id, a folder, a log, validation.

    In the foreground (default) the script's output is mirrored live; Ctrl-C cancels the run and
    its whole process tree. Exit 0 completed, 1 failed, 130 cancelled. With --detach the run is
    queued (at most $BT_MAX_PARALLEL at once) and only its id is printed.
    """
    from btmanager.commands import _options

    _options.check(
        ("--priority", priority, _options.PRIORITY),
        ("--nice", nice, _options.NICE),
        ("--timeout", timeout, _options.TIMEOUT),
        ("--grace", grace, _options.GRACE),
    )
    # Here, not at the top: `bt --help` imports this module to list `bt run`.
    from btmanager.lifecycle.request import RunRequest
    from btmanager.params import load_params_file, merge_params

    file_params = load_params_file(params_file) if params_file is not None else None
    request = RunRequest(
        script=script,
        params=merge_params(file_params, param or [], flag or []),
        extra_args=list(extra or []),
        cwd=Path.cwd(),
        label=label,
        validate=not no_validate,
        rules=None if no_validate else load_rules_dict(rules),
        timeout=timeout,
        grace=grace,
        priority=priority,
        nice=nice,
    )
    svc = service(ctx)
    request.after = after_ids(svc, after, detach)
    if detach:
        print_queued(svc.submit(request), json_output)
        return
    # Its early supervisor records the run while this process gets ready to watch it.
    svc.hand_over(request)
    raise typer.Exit(run_attached(svc, request, json_output))


def after_ids(svc: object, refs: list[str] | None, detach: bool) -> list[str]:
    """The runs of `--after`, as full ids; only queued runs can wait."""
    from btmanager.service import Service

    assert isinstance(svc, Service)
    if not refs:
        return []
    if not detach:
        raise UsageError("--after needs --detach (a foreground run starts at once)")
    return svc.run_ids(refs)


def print_queued(queued: Run, json_output: bool) -> None:
    """What `run -d` and `rerun -d` print: the run id alone, so `id=$(bt run -d ...)` works."""
    if json_output:
        emit_json(
            {
                "success": True,
                "run_id": queued.run_id,
                "status": queued.status,
                "message": "Backtest queued for execution",
            }
        )
    else:
        sys.stdout.write(queued.run_id + "\n")


def run_attached(svc: object, request: "RunRequest", json_output: bool) -> int:
    """A foreground run, mirrored live, then its summary; the exit code to return."""
    from btmanager.execution.signals import stop_on_signals
    from btmanager.lifecycle.watch import QuietObserver, RunObserver, StopRequest
    from btmanager.service import Service

    assert isinstance(svc, Service)
    stop = StopRequest()
    observer: RunObserver
    rich = not json_output and is_terminal()  # Rich only where someone sees its colours
    if json_output:
        observer = QuietObserver()
    elif rich:
        from btmanager.render.runs import LiveRunView

        console = stdout_console()
        observer = LiveRunView(console, live_line=not os.environ.get("NO_COLOR"))
    else:
        from btmanager.render.text import PlainRunView

        observer = PlainRunView()
    with stop_on_signals(lambda name: stop.request(_stop_reason(name))):
        final = svc.run_foreground(
            request, observer, stop, lambda: _prepare_final(json_output, rich)
        )
    try:
        _show_final(final, svc.details(final), json_output, rich)
    except OSError:
        pass  # the terminal is gone (closed window): the run is recorded all the same
    return exit_code_for(final)


def _stop_reason(signal_name: str) -> str:
    if signal_name == "SIGHUP":
        return "terminal closed (SIGHUP)"
    return f"received {signal_name}"


def _prepare_final(json_output: bool, rich: bool) -> None:
    """Import what `_show_final` needs while the script runs (~10 ms the end would wait)."""
    from btmanager import logerror  # noqa: F401  (a failed run's error line, in every mode)

    if json_output:
        return
    from btmanager import plot  # noqa: F401
    from btmanager.validation import metrics, report  # noqa: F401

    if rich:
        from btmanager.render import runs, validation  # noqa: F401
    else:
        from btmanager.render import text  # noqa: F401


def _show_final(final: Run, details: dict[str, Any], json_output: bool, rich: bool) -> None:
    if json_output:
        emit_json({**final.to_status_dict(), **details})
        return
    report = None
    if final.validation_results:
        from btmanager.validation.report import Report

        report = Report(**final.validation_results)
    # The report that follows lists every validation message: the status leaves them out.
    if rich:
        from btmanager.render.runs import render_status
        from btmanager.render.validation import render_report

        console = stdout_console()
        render_status(final, console, details, messages=report is None)
        if report is not None:
            render_report(report, console, title="Output files")
    else:
        from btmanager.render.text import write_report, write_status

        write_status(final, details=details, messages=report is None)
        if report is not None:
            write_report(report, title="Output files")
