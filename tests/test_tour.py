"""The README's tour is real output: run again, its commands print output of the same shape."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tour() -> ModuleType:
    """scripts/tour.py (a script, not a package module), loaded once."""
    if "bt_tour" not in sys.modules:
        spec = importlib.util.spec_from_file_location("bt_tour", ROOT / "scripts" / "tour.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["bt_tour"] = module  # its dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules["bt_tour"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="the tour runs its commands in bash")
def test_readme_tour_still_prints_what_it_shows(tmp_path: Path) -> None:
    tour = _tour()
    committed = tour.current_tour((ROOT / "README.md").read_text(encoding="utf-8"))
    project = tmp_path / "project"
    project.mkdir()
    fresh = tour.generate(keep=project)
    assert tour.shape(fresh) == tour.shape(committed), (
        "the README's tour is stale: run `python scripts/tour.py`"
    )


def test_readme_tour_shows_nothing_of_the_recording_machine() -> None:
    tour = _tour()
    committed = tour.current_tour((ROOT / "README.md").read_text(encoding="utf-8"))
    assert "$ bt run examples/strategy_analyzer.py" in committed
    for machine_path in ("/tmp/", "/work/", "/home/", "/root/", "/usr/", ".venv"):
        assert machine_path not in committed, machine_path
    assert " UTC" in committed  # times are shown in UTC, whatever the zone of the machine


def test_shape_ignores_ids_and_numbers_only() -> None:
    tour = _tour()
    assert tour.shape("Run 20261202_132535_0d0b6af5 took 0.9 s") == ["Run RUN took N s"]
    assert tour.shape("a   b") == tour.shape("a b")
    assert tour.shape("1 run") != tour.shape("1 runs")
