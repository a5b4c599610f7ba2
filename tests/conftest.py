"""Fixtures: each test gets its own results root and working directory."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import Result, bt_env, run_bt
from tests.queue_support import QueueLab, lab_for


@dataclass
class BtRunner:
    """Runs the real `bt` in a subprocess, in a private cwd and results root."""

    cwd: Path
    results: Path
    env: dict[str, str]

    def __call__(self, *args: str, timeout: float = 60, **extra_env: str) -> Result:
        env = dict(self.env)
        env.update(extra_env)
        return run_bt(*args, env=env, cwd=self.cwd, timeout=timeout)


@pytest.fixture
def bt(tmp_path: Path) -> BtRunner:
    cwd = tmp_path / "work"
    cwd.mkdir()
    results = tmp_path / "results"
    # Foreground tests must not start queue workers of their own accord.
    return BtRunner(cwd, results, bt_env(results))


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[QueueLab]:
    """A private queue (results root, scripts, timeline) whose processes die with the test."""
    with lab_for(tmp_path) as queue_lab:
        yield queue_lab
