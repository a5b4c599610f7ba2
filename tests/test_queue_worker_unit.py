"""The queue worker in-process: one run's internal failure must not strand it or the worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from btmanager.execution import LaunchSpec, LocalBackend
from btmanager.execution.local import LocalProcess
from btmanager.runner import RunRequest, create_run
from btmanager.settings import Settings
from btmanager.store import Registry
from btmanager.worker import Worker
from tests.helpers import write_script


class ExplodingBackend(LocalBackend):
    """Starts nothing: the first start raises an unexpected error (a bug, not an OSError)."""

    def __init__(self) -> None:
        self.calls = 0

    def start(self, spec: LaunchSpec) -> LocalProcess:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("boom")
        return super().start(spec)


def test_internal_error_fails_the_run_and_the_worker_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    settings = Settings(results_dir=results, db_path=results / "bt.sqlite3", max_parallel=1)
    script = write_script(tmp_path, "ok.py", "print('fine')\n")
    with Registry(settings.db_path) as registry:
        request = RunRequest(script=str(script), cwd=tmp_path, validate=False)
        first = create_run(settings, registry, request, detached=True)
        second = create_run(settings, registry, request, detached=True)
        Worker(settings, ExplodingBackend(), 1, 1, None, drain=True).run()
        broken, fine = registry.get(first.run_id), registry.get(second.run_id)
    assert broken.status == "failed"
    assert broken.error_message is not None and "RuntimeError: boom" in broken.error_message
    assert fine.status == "completed"
    assert "RuntimeError: boom" in capsys.readouterr().err  # the traceback goes to the worker log
