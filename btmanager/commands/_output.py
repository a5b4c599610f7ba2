"""How every command shows its result, decided in one place.

`--json`: exactly one JSON document on stdout. A terminal: Rich, with colour. Anything else (a
pipe, a file, a CI log, cron mail): plain text at full width, no Rich import, no truncation,
the same columns every time. Commands hand their plain data to an `Output` and never choose.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Literal

from btmanager.render.common import emit_json, is_terminal

if TYPE_CHECKING:
    from btmanager.compare import Table
    from btmanager.registry.model import Run
    from btmanager.render.many import PlainProgress, RichProgress
    from btmanager.sweeps.submit import Planned
    from btmanager.validation.report import Report

Mode = Literal["json", "rich", "plain"]


def output_mode(json_output: bool) -> Mode:
    if json_output:
        return "json"
    return "rich" if is_terminal() else "plain"


class Output:
    def __init__(self, json_output: bool) -> None:
        self.mode: Mode = output_mode(json_output)

    @property
    def json(self) -> bool:
        return self.mode == "json"

    def document(self, data: Any) -> None:
        emit_json(data)

    def status(self, run: Run, details: dict[str, Any] | None = None) -> None:
        """A run's status; `details` (metrics, the log's error line) join the JSON keys."""
        if self.mode == "json":
            emit_json({**run.to_status_dict(), **(details or {})})
        elif self.mode == "rich":
            from btmanager.render.common import stdout_console
            from btmanager.render.runs import render_status

            render_status(run, stdout_console(), details)
        else:
            from btmanager.render.text import write_status

            write_status(run, details=details)

    def runs(self, total: int, runs: list[Run], registry: str, document: Any) -> None:
        """A list of runs (`bt list`, `bt wait`); `document` is the JSON form."""
        if self.mode == "json":
            emit_json(document)
        elif self.mode == "rich":
            from btmanager.render.common import stdout_console
            from btmanager.render.runs import render_list

            render_list(total, runs, stdout_console(), registry)
        else:
            from btmanager.render.text import write_list

            write_list(total, runs, registry)

    def report(self, report: Report, title: str | None) -> None:
        if self.mode == "json":
            emit_json(report.to_dict())
        elif self.mode == "rich":
            from btmanager.render.common import stdout_console
            from btmanager.render.validation import render_report

            render_report(report, stdout_console(), title=title)
        else:
            from btmanager.render.text import write_report

            write_report(report, title=title)

    def files(self, listing: dict[str, Any]) -> None:
        if self.mode == "json":
            emit_json(listing)
        elif self.mode == "rich":
            from btmanager.render.common import stdout_console
            from btmanager.render.runs import render_files

            render_files(listing, stdout_console())
        else:
            from btmanager.render.text import write_files

            write_files(listing)

    def health(self, data: dict[str, Any]) -> None:
        if self.mode == "json":
            emit_json(data)
            return
        from btmanager.render.text import health_line

        text = health_line(data)
        if self.mode == "rich":
            from rich.markup import escape

            from btmanager.render.common import stdout_console

            style = "green" if data.get("status") == "healthy" else "bold red"
            head, _, rest = text.partition(":")
            stdout_console().print(f"[{style}]{escape(head)}[/]:{escape(rest)}", soft_wrap=True)
        else:
            sys.stdout.write(text + "\n")

    def message(self, text: str, ok: bool = True, document: Any = None) -> None:
        """A one-line outcome (`Run cancelled: ID`); `document` is the JSON form."""
        if self.mode == "json":
            emit_json(document)
        elif self.mode == "rich":
            from rich.markup import escape

            from btmanager.render.common import stdout_console

            style = "green" if ok else "yellow"
            head, sep, rest = text.partition(":")
            stdout_console().print(f"[{style}]{escape(head)}[/]{sep}{escape(rest)}", soft_wrap=True)
        else:
            sys.stdout.write(text + "\n")

    # --- many runs ------------------------------------------------------------------------

    def sweep_plan(self, planned: Planned) -> None:
        """`bt sweep --dry-run`: the runs it would queue."""
        if self.mode == "json":
            emit_json(planned.to_dict())
            return
        from btmanager.render.many import plan_grid, plan_title

        grid = plan_grid(planned)
        if self.mode == "rich":
            from btmanager.render.common import stdout_console

            grid.render(stdout_console(), plan_title(planned))
        else:
            sys.stdout.write(plan_title(planned) + "\n")
            grid.write(sys.stdout)

    def sweep_progress(self, sweep_id: str, total: int) -> PlainProgress | RichProgress | None:
        """What shows a sweep's progress while `bt sweep --wait` waits (nothing with --json)."""
        if self.mode == "json":
            return None
        if self.mode == "rich":
            from btmanager.render.common import stdout_console
            from btmanager.render.many import RichProgress

            return RichProgress(sweep_id, total, stdout_console())
        from btmanager.render.many import PlainProgress

        return PlainProgress(sweep_id)

    def sweeps(self, sweeps: list[dict[str, Any]], registry: str) -> None:
        if self.mode == "json":
            emit_json({"sweeps": sweeps})
            return
        from btmanager.render.many import no_sweeps, sweeps_grid

        if not sweeps:
            self.message(no_sweeps(registry))
            return
        grid = sweeps_grid(sweeps)
        if self.mode == "rich":
            from btmanager.render.common import stdout_console

            grid.render(stdout_console())
        else:
            grid.write(sys.stdout)

    def compare(self, table: Table) -> None:
        if self.mode == "json":
            emit_json(table.to_dict())
        elif self.mode == "rich":
            from btmanager.render.common import stdout_console
            from btmanager.render.many import render_table

            render_table(table, stdout_console())
        else:
            from btmanager.render.many import write_table

            write_table(table)

    def lines(self, lines: list[tuple[str, str | None]], document: Any) -> None:
        """Several outcome lines (`bt rm`, `bt gc`, `bt registry rebuild`), each with a Rich
        style or None; `document` is the JSON form."""
        if self.mode == "json":
            emit_json(document)
        elif self.mode == "rich":
            from rich.markup import escape

            from btmanager.render.common import stdout_console

            console = stdout_console()
            for text, style in lines:
                console.print(
                    f"[{style}]{escape(text)}[/]" if style else escape(text), soft_wrap=True
                )
        else:
            sys.stdout.writelines(text + "\n" for text, _style in lines)
            sys.stdout.flush()
