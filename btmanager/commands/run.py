"""`bt run`: start a backtest in the foreground, or queue it with --detach."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from btmanager import exitcodes
from btmanager.app import JsonOption, app, service
from btmanager.registry.model import Run, Status
from btmanager.render.common import emit_json, is_terminal, stdout_console
from btmanager.settings import DEFAULT_GRACE

if TYPE_CHECKING:
    from btmanager.lifecycle.create import RunRequest


def load_rules_dict(rules_file: Path | None) -> dict[str, object] | None:
    """--rules FILE, else ./bt.toml if present; parsed now so the run keeps these rules."""
    from btmanager.validation.rules import load_rules

    rules = load_rules(rules_file, Path.cwd())
    return rules.to_dict() if rules is not None else None


def exit_code_for(run: Run) -> int:
    if run.status == Status.COMPLETED:
        return exitcodes.OK
    if run.status == Status.CANCELLED:
        return exitcodes.CANCELLED
    return exitcodes.FAILED


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
    # Here, not at the top: every `bt` command imports this module to register `bt run`.
    from btmanager.lifecycle.create import RunRequest
    from btmanager.params import load_params_file, merge_params

    file_params = load_params_file(params_file) if params_file is not None else None
    request = RunRequest(
        script=script,
        params=merge_params(file_params, param or []),
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
    if detach:
        queued = svc.submit(request)
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
        return
    raise typer.Exit(_run_foreground(svc, request, json_output))


def _run_foreground(svc: object, request: RunRequest, json_output: bool) -> int:
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
        final = svc.run_foreground(request, observer, stop)
    try:
        _show_final(final, json_output, rich)
    except OSError:
        pass  # the terminal is gone (closed window): the run is recorded all the same
    return exit_code_for(final)


def _stop_reason(signal_name: str) -> str:
    if signal_name == "SIGHUP":
        return "terminal closed (SIGHUP)"
    return f"received {signal_name}"


def _show_final(final: Run, json_output: bool, rich: bool) -> None:
    if json_output:
        emit_json(final.to_status_dict())
        return
    report = None
    if final.validation_results:
        from btmanager.validation.report import Report

        report = Report(**final.validation_results)
    if rich:
        from btmanager.render.runs import render_status
        from btmanager.render.validation import render_report

        console = stdout_console()
        render_status(final, console)
        if report is not None:
            render_report(report, console, title="Output files")
    else:
        from btmanager.render.text import write_report, write_status

        write_status(final)
        if report is not None:
            write_report(report, title="Output files")
