"""The queue worker in-process: one run's internal failure must not strand it or the worker."""

from __future__ import annotations

from pathlib import Path

from btmanager.execution.base import LaunchSpec
from btmanager.execution.local import LocalBackend, LocalScript
from btmanager.lifecycle.create import create_run
from btmanager.lifecycle.queue import Worker
from btmanager.lifecycle.request import RunRequest
from btmanager.lifecycle.state import RunStates
from btmanager.registry.db import Registry
from btmanager.settings import Settings
from tests.helpers import write_script


class ExplodingBackend(LocalBackend):
    """A bug in starting one script (an unexpected error, not an OSError)."""

    def start_script(self, spec: LaunchSpec) -> LocalScript:
        if "explode" in " ".join(spec.argv):
            raise RuntimeError("boom")
        return super().start_script(spec)


def test_internal_error_fails_the_run_and_the_worker_goes_on(tmp_path: Path) -> None:
    results = tmp_path / "results"
    settings = Settings(results_dir=results, db_path=results / "bt.sqlite3")
    script = write_script(tmp_path, "ok.py", "print('fine')\n")
    events: list[str] = []
    with Registry(settings.db_path) as registry:
        states = RunStates(registry)
        states.set_limit(1)
        broken_request = RunRequest(
            script=str(script), cwd=tmp_path, validate=False, params={"mode": "explode"}
        )
        first = create_run(settings, states, broken_request, detached=True)
        request = RunRequest(script=str(script), cwd=tmp_path, validate=False)
        second = create_run(settings, states, request, detached=True)
    Worker(settings, ExplodingBackend(), None, drain=True, on_event=events.append).run()
    with Registry(settings.db_path) as registry:
        broken, fine = registry.get(first.run_id), registry.get(second.run_id)
    assert broken.status == "failed" and broken.failure_kind == "supervisor_lost"
    assert broken.error_message is not None and "RuntimeError: boom" in broken.error_message
    assert fine.status == "completed"
    log = Path(first.output_dir) / ".bt" / "supervisor.log"
    assert "RuntimeError: boom" in log.read_text()  # the traceback is kept with the run
    assert any(event.startswith(f"finished {second.run_id} completed") for event in events)
