"""`bt` imports only the command module a command line names (btmanager.cli.COMMAND_MODULES)."""

from __future__ import annotations

import subprocess
import sys

from typer.main import get_command_name

from btmanager.cli import COMMAND_MODULES, full_app


def test_the_table_of_command_modules_is_what_they_register() -> None:
    app = full_app()
    registered: dict[str, list[str]] = {}
    for info in app.registered_commands:
        assert info.callback is not None
        module = info.callback.__module__.rsplit(".", 1)[-1]
        name = info.name or get_command_name(info.callback.__name__)
        registered.setdefault(module, []).append(name)
    for group in app.registered_groups:
        registered["keeping"].append(str(group.typer_instance.info.name if group.typer_instance else ""))  # fmt: skip
    assert registered == {module: list(names) for module, names in COMMAND_MODULES.items()}
    # `bt --help` lists them in the table's order.
    assert list(registered) == list(COMMAND_MODULES)


def _modules_after(*args: str) -> set[str]:
    code = (
        "import sys\n"
        f"sys.argv = ['bt', *{list(args)!r}]\n"
        "from btmanager.cli import run_cli\n"
        "run_cli()\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('btmanager.commands.'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.strip().splitlines()[-1].split())


def test_a_named_command_imports_only_its_module() -> None:
    loaded = _modules_after("status", "--help")
    assert "btmanager.commands.inspect" in loaded
    assert not loaded & {f"btmanager.commands.{name}" for name in ("run", "sweep", "serve")}


def test_help_lists_every_command_in_order_whatever_was_imported_first() -> None:
    first = subprocess.run(
        [sys.executable, "-c", "from btmanager.cli import run_cli; run_cli(['status', '--help']);"
         " run_cli(['--help'])"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    listed = [
        line.split()[0] for line in first.stdout.split("Commands:")[-1].splitlines() if line.strip()
    ]
    assert listed[:3] == ["run", "status", "logs"], listed
    assert listed[-1] == "serve" or "registry" in listed
