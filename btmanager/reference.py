"""Generate the CLI reference (docs/cli.md) from the Typer app itself, so it cannot drift.

`python -m btmanager.reference > docs/cli.md` rewrites it; a test fails when it is stale.
"""

from __future__ import annotations

from typing import Any

from typer.main import get_command

from btmanager.cli import full_app

HEADER = """# `bt` command reference

Generated from the Typer app by `python -m btmanager.reference > docs/cli.md`; do not edit by
hand (a test fails when this file is stale). Exit codes: 0 ok, 1 run failed / invalid /
refused, 2 usage or input error, 124 `bt wait --timeout` passed, 130 cancelled.
"""


def _option_line(param: Any) -> str:
    names = ", ".join(f"`{name}`" for name in [*param.opts, *param.secondary_opts])
    if param.param_type_name == "argument":
        names = f"`{str(param.name).upper()}`" + (" ..." if param.nargs == -1 else "")
    text = (getattr(param, "help", None) or "").strip()
    extras: list[str] = []
    if param.param_type_name == "option" and not param.is_flag:
        default = param.default
        if default not in (None, (), []) and param.show_default is not False:
            extras.append(f"default: `{default}`")
    if param.required:
        extras.append("required")
    if getattr(param, "multiple", False):
        extras.append("repeatable")
    suffix = f" ({'; '.join(extras)})" if extras else ""
    return f"- {names}: {text}{suffix}".rstrip()


def _metavar(param: Any) -> str:
    name = str(param.name).upper()
    if param.nargs == -1:
        name += "..."
    return name if param.required else f"[{name}]"


def _usage(name: str, command: Any) -> str:
    arguments = [_metavar(p) for p in command.params if p.param_type_name == "argument"]
    return " ".join(["bt", name, "[OPTIONS]", *arguments])


def generate() -> str:
    root = get_command(full_app())
    lines = [HEADER]
    with root.make_context("bt", [], resilient_parsing=True) as root_ctx:
        lines.append("## Global options\n")
        lines.append("```\nbt [GLOBAL OPTIONS] COMMAND [ARGS]...\n```\n")
        for param in root.params:
            if not getattr(param, "hidden", False) and param.name != "help":
                lines.append(_option_line(param))
        lines.append("")
        _commands(root, root_ctx, "", lines)
    return "\n".join(lines).rstrip() + "\n"


def _commands(group: Any, group_ctx: Any, prefix: str, lines: list[str]) -> None:
    """A section per command; a group's commands (`bt registry rebuild`) each get theirs."""
    for name in group.list_commands(group_ctx):
        command = group.get_command(group_ctx, name)
        if command is None or command.hidden:
            continue
        full = f"{prefix}{name}"
        with command.make_context(name, [], parent=group_ctx, resilient_parsing=True) as ctx:
            if hasattr(command, "list_commands"):
                _commands(command, ctx, f"{full} ", lines)
                continue
            lines.append(f"## bt {full}\n")
            lines.append(f"```\n{_usage(full, command)}\n```\n")
            lines.append((command.help or "").strip() + "\n")
            for param in command.params:
                if getattr(param, "hidden", False) or param.name == "help":
                    continue
                lines.append(_option_line(param))
            lines.append("")


if __name__ == "__main__":
    print(generate(), end="")
