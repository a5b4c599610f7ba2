"""The run state machine in-process: a fake clock, a fake backend, a real registry file.

These cover most of a run's life in milliseconds; the real-process tests show the same paths
with real signals and processes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from btmanager.execution.base import LaunchSpec, Outcome
from btmanager.lifecycle import exitrecord
from btmanager.lifecycle.create import create_run
from btmanager.lifecycle.exitrecord import ExitRecord
from btmanager.lifecycle.request import RunRequest
from btmanager.lifecycle.settle import CLAIM_GRACE, settle
from btmanager.lifecycle.state import RunStates, decide
from btmanager.lifecycle.supervise import Supervisor, SupervisorJob
from btmanager.registry.db import Registry
from btmanager.registry.model import FailureKind, ProcessIdentity, Run
from btmanager.settings import Settings
from btmanager.timeutil import Clock, iso

START = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


class FakeClock(Clock):
    def __init__(self) -> None:
        self.moment = START
        self.ticks = 0.0

    def now(self) -> datetime:
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)
        self.ticks += seconds

    def monotonic(self) -> float:
        return self.ticks


class FakeScript:
    def __init__(self, backend: FakeBackend, exit_after: float | None, code: int) -> None:
        self.backend, self.exit_after, self.code = backend, exit_after, code
        self.began = backend.clock.ticks
        self.outcome: Outcome | None = None

    @property
    def identity(self) -> ProcessIdentity:
        return ProcessIdentity(4242, 7.0)

    def poll(self) -> Outcome | None:
        elapsed = self.backend.clock.ticks - self.began
        if self.outcome is None and self.exit_after is not None and elapsed >= self.exit_after:
            self.outcome = Outcome(self.code, 1000, 0.5)
        return self.outcome

    def sample(self) -> None:
        pass


class FakeStopper:
    """The tree goes away after `grace` seconds (SIGTERM ignored) or at once when forced."""

    def __init__(self, backend: FakeBackend, grace: float, term_code: int | None) -> None:
        self.backend, self.grace, self.term_code = backend, grace, term_code
        self.began: float | None = None
        self.forced = False

    def begin(self) -> None:
        if self.began is None:
            self.began = self.backend.clock.ticks
            self.backend.sigterms += 1
            script = self.backend.script
            if self.term_code is not None and script is not None and script.outcome is None:
                script.outcome = Outcome(self.term_code, 1000, 0.5)

    def force(self) -> None:
        self.forced = True

    def step(self) -> bool:
        assert self.began is not None
        script = self.backend.script
        due = self.forced or self.backend.clock.ticks - self.began >= self.grace
        if due and script is not None and script.outcome is None:
            script.outcome = Outcome(-9, 1000, 0.5)
            self.backend.sigkills += 1
        return script is None or script.outcome is not None


class FakeBackend:
    def __init__(
        self,
        clock: FakeClock,
        exit_after: float | None = 0.0,
        code: int = 0,
        term_code: int | None = -15,
    ) -> None:
        self.clock, self.exit_after, self.code, self.term_code = clock, exit_after, code, term_code
        self.script: FakeScript | None = None
        self.alive: set[int] = set()
        self.sigterms = self.sigkills = 0
        self.terminated: list[str] = []
        self.started: list[LaunchSpec] = []

    def start_script(self, spec: LaunchSpec) -> FakeScript:
        self.started.append(spec)
        self.script = FakeScript(self, self.exit_after, self.code)
        return self.script

    def stopper(self, root: ProcessIdentity, run_id: str, grace: float) -> FakeStopper:
        return FakeStopper(self, grace, self.term_code)

    def leftovers_exist(self, root: ProcessIdentity, run_id: str) -> bool:
        return False

    def is_alive(self, process: ProcessIdentity) -> bool:
        return process.pid in self.alive

    def terminate(self, process: ProcessIdentity | None, run_id: str, grace: float) -> None:
        self.terminated.append(run_id)
        if process is not None:
            self.alive.discard(process.pid)

    def signal(self, process: ProcessIdentity, name: str) -> bool:
        return False

    def current(self) -> ProcessIdentity:
        return ProcessIdentity(100, 1.0)

    def reap_children(self) -> list[int]:
        return []


class FakeEvents:
    """Scripted messages: {tick: [messages]}; each wait advances the fake clock."""

    def __init__(self, clock: FakeClock, script: dict[float, list[str]] | None = None) -> None:
        self.clock = clock
        self.script = dict(script or {})
        self.on_ended: Callable[[], None] | None = None

    def ended(self) -> None:
        if self.on_ended is not None:
            self.on_ended()

    def wait(self, timeout: float) -> list[str]:
        self.clock.advance(timeout)
        due = [t for t in self.script if t <= self.clock.ticks]
        return [message for t in sorted(due) for message in self.script.pop(t)]


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Any]:
    results = tmp_path / "results"
    settings = Settings(results_dir=results, db_path=results / "bt.sqlite3")
    clock = FakeClock()
    registry = Registry(settings.db_path)
    states = RunStates(registry, clock)
    script = tmp_path / "s.py"
    script.write_text("pass\n")
    yield {"settings": settings, "clock": clock, "registry": registry, "states": states,
           "script": script, "tmp": tmp_path}  # fmt: skip
    registry.close()


def _create(world: dict[str, Any], detached: bool = True, **request: Any) -> Run:
    options: dict[str, Any] = {"validate": False, **request}
    req = RunRequest(script=str(world["script"]), cwd=world["tmp"], **options)
    watcher = None if detached else ProcessIdentity(100, 1.0)
    return create_run(world["settings"], world["states"], req, detached=detached, watcher=watcher)


def _supervise(
    world: dict[str, Any], run: Run, backend: FakeBackend, events: dict[float, list[str]] | None
) -> Run:
    clock: FakeClock = world["clock"]
    if run.status == "queued":
        claimed = world["states"].claim(ProcessIdentity(7, 7.0))
        assert claimed is not None and claimed.run_id == run.run_id
        run = claimed
    job = SupervisorJob(world["settings"].db_path, run, watched=not run.detached)
    supervisor = Supervisor(job, backend, FakeEvents(clock, events), clock, clock.monotonic)  # type: ignore[arg-type]
    assert supervisor.main() == 0
    final: Run = world["registry"].get(run.run_id)
    return final


# --- deciding the end ---------------------------------------------------------------------------


def _run_row(**changes: Any) -> Run:
    values: dict[str, Any] = {
        "seq": 1, "run_id": "r", "script_path": "s.py", "script_resolved": "/s.py", "params": {},
        "extra_args": [], "command": [], "cwd": "/", "output_dir": "/r", "status": "running",
        "label": None, "created_at": iso(START), "started_at": iso(START), "completed_at": None,
        "exit_code": None, "error_message": None, "validation_results": None, "pid": None,
        "pid_create_time": None, "priority": 0, "detached": True, "nice": None,
        "timeout_seconds": None, "grace_seconds": 10.0, "validate": True, "rules": None,
        "supervisor_pid": None, "supervisor_create_time": None, "cancel_requested": False,
        "peak_memory_bytes": None, "cpu_seconds": None, "log_size": None, "log_lines": None,
        "env": None,
    }  # fmt: skip
    values.update(changes)
    return Run(**values)


@pytest.mark.parametrize(
    ("record", "report", "run", "expected"),
    [
        (ExitRecord(0, "t"), {"valid": True}, {}, ("completed", None, None)),
        (ExitRecord(3, "t"), None, {}, ("failed", "exit_code", "exit code 3")),
        (ExitRecord(-9, "t"), None, {}, ("failed", "signal", "killed by signal 9 (SIGKILL)")),
        (ExitRecord(-15, "t", timed_out=2.0), None, {}, ("failed", "timeout", "timed out after 2 s")),
        (ExitRecord(0, "t"), {"valid": False, "errors": ["a", "b"]}, {},
         ("failed", "validation", "validation errors: a (+1 more)")),
        (ExitRecord(None, "t", launch_error="No such file"), None, {},
         ("failed", "launch", "could not start the script: No such file")),
        (ExitRecord(-15, "t", folder_lost=True), None, {},
         ("failed", "folder_lost", "run folder disappeared while the script ran")),
        (ExitRecord(0, "t", cancelled="cancelled: received SIGINT"), None, {},
         ("cancelled", "cancelled", "cancelled: received SIGINT")),
        # The first request (recorded in the registry) names the reason, and wins over the end.
        (ExitRecord(0, "t"), {"valid": True},
         {"cancel_requested": True, "error_message": "cancelled by user"},
         ("cancelled", "cancelled", "cancelled by user")),
        (ExitRecord(None, "t", internal_error="KeyError: x"), None, {},
         ("failed", "supervisor_lost", "internal error while supervising the run: KeyError: x")),
    ],
)  # fmt: skip
def test_decide(
    record: ExitRecord,
    report: dict[str, Any] | None,
    run: dict[str, Any],
    expected: tuple[str, ...],
) -> None:
    decision = decide(_run_row(**run), record, report)
    kind = None if decision.failure_kind is None else str(decision.failure_kind)
    assert (str(decision.status), kind, decision.message) == expected


# --- transitions --------------------------------------------------------------------------------


def test_claim_honours_the_stored_limit_priority_and_order(world: dict[str, Any]) -> None:
    states: RunStates = world["states"]
    states.set_limit(2)
    a, b, c = _create(world), _create(world, priority=5), _create(world)
    me = ProcessIdentity(7, 7.0)
    first, second = states.claim(me), states.claim(me)
    assert first is not None and second is not None
    assert [first.run_id, second.run_id] == [b.run_id, a.run_id]
    assert states.claim(me) is None  # two running: the limit
    assert first.started_at == iso(START) and first.worker_pid == 7
    states.set_limit(3)
    third = states.claim(me)
    assert third is not None and third.run_id == c.run_id


def test_cancel_queued_is_final_and_only_once(world: dict[str, Any]) -> None:
    states: RunStates = world["states"]
    run = _create(world)
    world["clock"].advance(3)
    cancelled = states.cancel_queued(run.run_id)
    assert cancelled is not None and cancelled.status == "cancelled"
    assert cancelled.failure_kind == "cancelled" and cancelled.completed_at == iso(
        world["clock"].now()
    )
    assert states.cancel_queued(run.run_id) is None
    assert states.request_cancel(run.run_id, "late") is None
    document = (Path(run.output_dir) / "run.json").read_text()
    assert '"status": "cancelled"' in document  # run.json follows every change


def test_end_records_the_exit_record_once(world: dict[str, Any]) -> None:
    states: RunStates = world["states"]
    run = _create(world, detached=False)
    record = ExitRecord(0, iso(START + timedelta(seconds=4)), 2048, 1.5, log_size=10, log_lines=2)
    ended = states.end(run.run_id, record, {"valid": True, "errors": [], "warnings": []})
    assert ended is not None and ended.status == "completed" and ended.duration_seconds == 4.0
    assert (ended.peak_memory_bytes, ended.cpu_seconds, ended.log_lines) == (2048, 1.5, 2)
    assert states.end(run.run_id, ExitRecord(1, "x"), None) is None  # already final


def test_cancelled_runs_are_not_validated_and_keep_their_exit_code(world: dict[str, Any]) -> None:
    states: RunStates = world["states"]
    run = _create(world, detached=False)
    states.request_cancel(run.run_id, "cancelled by user", 3.0)
    states.request_cancel(run.run_id, "second request", 1.0)  # the first one is kept
    assert world["registry"].get(run.run_id).cancel_grace == 3.0
    ended = states.end(run.run_id, ExitRecord(0, iso(START)), {"valid": True})
    assert ended is not None and ended.status == "cancelled"
    assert ended.error_message == "cancelled by user" and ended.exit_code == 0
    assert ended.validation_results is None


def test_revalidation_follows_only_runs_that_exited_zero(world: dict[str, Any]) -> None:
    states: RunStates = world["states"]
    bad = {"valid": False, "errors": ["trades.csv: missing"], "warnings": []}
    good = {"valid": True, "errors": [], "warnings": []}
    ran = _create(world, detached=False)
    states.end(ran.run_id, ExitRecord(0, iso(START)), bad)
    assert states.revalidate(ran.run_id, good).status == "completed"
    assert states.revalidate(ran.run_id, bad).failure_kind == "validation"
    crashed = _create(world, detached=False)
    states.end(crashed.run_id, ExitRecord(2, iso(START)), None)
    after = states.revalidate(crashed.run_id, good)
    assert after.status == "failed" and after.error_message == "exit code 2"
    cancelled = _create(world, detached=False)
    states.request_cancel(cancelled.run_id, "cancelled by user")
    states.end(cancelled.run_id, ExitRecord(0, iso(START)), None)
    assert states.revalidate(cancelled.run_id, good).status == "cancelled"


# --- the supervisor ----------------------------------------------------------------------------


def test_supervisor_records_a_normal_end(world: dict[str, Any]) -> None:
    run = _create(world)
    backend = FakeBackend(world["clock"], exit_after=0.35, code=0)
    final = _supervise(world, run, backend, None)
    assert final.status == "completed" and final.exit_code == 0
    assert final.supervisor_pid == 100 and final.pid == 4242
    assert exitrecord.read(Path(run.output_dir)) is not None  # the truth stays in the folder


def test_supervisor_tells_its_watcher_once_the_end_is_committed(world: dict[str, Any]) -> None:
    run = _create(world, detached=False)
    backend = FakeBackend(world["clock"], exit_after=0.35, code=0)
    clock: FakeClock = world["clock"]
    events = FakeEvents(clock)
    seen: list[tuple[str, str]] = []

    def told() -> None:
        folder = json.loads((Path(run.output_dir) / "run.json").read_text())
        seen.append((world["registry"].get(run.run_id).status, folder["status"]))

    events.on_ended = told
    job = SupervisorJob(world["settings"].db_path, run, watched=True)
    assert Supervisor(job, backend, events, clock, clock.monotonic).main() == 0  # type: ignore[arg-type]
    # Told once, with the end committed; run.json is rewritten after (the watcher reads the
    # registry meanwhile, and waits for the supervisor's exit before it exits itself).
    assert seen == [("completed", "running")]
    assert json.loads((Path(run.output_dir) / "run.json").read_text())["status"] == "completed"


def test_supervisor_times_out_with_one_sigterm_then_kills(world: dict[str, Any]) -> None:
    run = _create(world, timeout=2.0, grace=1.0)
    backend = FakeBackend(world["clock"], exit_after=None, term_code=None)  # ignores SIGTERM
    final = _supervise(world, run, backend, None)
    assert final.status == "failed" and final.failure_kind == "timeout"
    assert final.error_message == "timed out after 2 s" and final.exit_code == -9
    assert (backend.sigterms, backend.sigkills) == (1, 1)
    assert 3.0 <= world["clock"].ticks < 3.5  # time-out, then the grace, then SIGKILL


def test_supervisor_cancel_messages_keep_the_first_reason(world: dict[str, Any]) -> None:
    run = _create(world, detached=False, grace=5.0)
    backend = FakeBackend(world["clock"], exit_after=None, term_code=None)
    events = {0.5: ["cancel cancelled: received SIGINT"], 0.8: ["cancel cancelled: again"],
              1.0: ["kill"]}  # fmt: skip
    final = _supervise(world, run, backend, events)
    assert final.status == "cancelled" and final.error_message == "cancelled: received SIGINT"
    assert backend.sigterms == 1 and backend.sigkills == 1  # the second Ctrl-C kills at once
    assert world["clock"].ticks < 1.5


def test_watcher_death_cancels_a_foreground_run(world: dict[str, Any]) -> None:
    run = _create(world, detached=False)
    backend = FakeBackend(world["clock"], exit_after=None, term_code=-15)
    final = _supervise(world, run, backend, {0.3: ["EOF"]})
    assert final.status == "cancelled" and final.error_message == "cancelled: bt was killed"
    assert final.exit_code == -15


def test_watcher_death_does_not_touch_a_detached_run(world: dict[str, Any]) -> None:
    run = _create(world)
    backend = FakeBackend(world["clock"], exit_after=1.0, code=0)
    final = _supervise(world, run, backend, {0.3: ["EOF"]})
    assert final.status == "completed"


def test_cancel_requested_before_the_start_never_starts_the_script(world: dict[str, Any]) -> None:
    states: RunStates = world["states"]
    run = _create(world)
    claimed = states.claim(ProcessIdentity(7, 7.0))
    assert claimed is not None
    states.request_cancel(run.run_id, "cancelled by user")
    backend = FakeBackend(world["clock"])
    final = _supervise(world, claimed, backend, None)
    assert backend.started == [] and final.status == "cancelled"


def test_vanished_folder_fails_the_run(world: dict[str, Any]) -> None:
    import shutil

    run = _create(world)
    backend = FakeBackend(world["clock"], exit_after=None, term_code=-15)

    class Vanishing(FakeEvents):
        def wait(self, timeout: float) -> list[str]:
            if self.clock.ticks >= 0.5 and Path(run.output_dir).exists():
                shutil.rmtree(run.output_dir)
            return super().wait(timeout)

    clock: FakeClock = world["clock"]
    run = world["states"].claim(ProcessIdentity(7, 7.0))
    job = SupervisorJob(world["settings"].db_path, run, watched=False)
    Supervisor(job, backend, Vanishing(clock), clock, clock.monotonic).main()  # type: ignore[arg-type]
    final = world["registry"].get(run.run_id)
    assert final.status == "failed" and final.failure_kind == "folder_lost"


# --- settling runs nobody supervises ----------------------------------------------------------


def test_settle_records_the_true_end_from_the_exit_record(world: dict[str, Any]) -> None:
    states: RunStates = world["states"]
    run = _create(world)
    states.claim(ProcessIdentity(7, 7.0))
    states.supervised(run.run_id, ProcessIdentity(8, 8.0))
    states.script_started(run.run_id, ProcessIdentity(9, 9.0))
    exitrecord.reserve(Path(run.output_dir))
    backend = FakeBackend(world["clock"])
    backend.alive.add(9)  # the supervisor died; its script lives on
    assert settle(world["registry"], backend, world["clock"]) == []  # blank record: not ended
    backend.alive.discard(9)
    exitrecord.write(Path(run.output_dir), ExitRecord(0, iso(START), 5, 0.1))
    assert settle(world["registry"], backend, world["clock"]) == [run.run_id]
    final = world["registry"].get(run.run_id)
    assert final.status == "completed" and final.exit_code == 0 and final.peak_memory_bytes == 5


def test_settle_leaves_a_live_supervisor_alone(world: dict[str, Any]) -> None:
    states: RunStates = world["states"]
    run = _create(world)
    states.claim(ProcessIdentity(7, 7.0))
    states.supervised(run.run_id, ProcessIdentity(8, 8.0))
    backend = FakeBackend(world["clock"])
    backend.alive.add(8)
    exitrecord.write(Path(run.output_dir), ExitRecord(0, iso(START)))
    assert settle(world["registry"], backend, world["clock"]) == []  # it records it itself


def test_settle_ends_an_overdue_orphaned_script(world: dict[str, Any]) -> None:
    states: RunStates = world["states"]
    run = _create(world, timeout=5.0)
    states.claim(ProcessIdentity(7, 7.0))
    states.supervised(run.run_id, ProcessIdentity(8, 8.0))
    states.script_started(run.run_id, ProcessIdentity(9, 9.0))
    backend = FakeBackend(world["clock"])
    backend.alive.add(9)
    assert settle(world["registry"], backend, world["clock"]) == []  # within its time
    world["clock"].advance(6)
    assert settle(world["registry"], backend, world["clock"]) == [run.run_id]
    final = world["registry"].get(run.run_id)
    assert final.failure_kind == "timeout" and backend.terminated == [run.run_id]


def test_a_claim_whose_worker_died_is_lost_only_after_the_grace(world: dict[str, Any]) -> None:
    states: RunStates = world["states"]
    run = _create(world)
    states.claim(ProcessIdentity(7, 7.0))
    backend = FakeBackend(world["clock"])
    world["clock"].advance(CLAIM_GRACE - 1)
    assert settle(world["registry"], backend, world["clock"]) == []
    world["clock"].advance(2)
    assert settle(world["registry"], backend, world["clock"]) == [run.run_id]
    final = world["registry"].get(run.run_id)
    assert final.failure_kind == FailureKind.SUPERVISOR_LOST
    assert final.error_message == "worker (pid 7) died before the run started"


# --- sweeps and dependencies in the claim --------------------------------------------------------


def _rows(world: dict[str, Any], count: int) -> list[dict[str, Any]]:
    base = _create(world)  # a template row, then removed from the queue
    world["states"].cancel_queued(base.run_id)
    rows = []
    for n in range(count):
        row = {k: v for k, v in base.__dict__.items() if k not in ("seq", "status")}
        row.update(run_id=f"{base.run_id}-{n:02d}", created_at=None, started_at=None)
        row.update(completed_at=None, error_message=None, failure_kind=None)
        rows.append(row)
    return rows


def test_a_sweep_cap_holds_within_the_global_limit(world: dict[str, Any]) -> None:
    states: RunStates = world["states"]
    states.set_limit(10)
    sweep = {"sweep_id": "sweep_0000abcd", "script_path": "s.py", "max_parallel": 2}
    swept = states.create_many(_rows(world, 5), sweep=sweep)
    loose = _create(world)
    me = ProcessIdentity(7, 7.0)
    claimed = [run.run_id for run in iter(lambda: states.claim(me), None)]
    assert claimed == [swept[0].run_id, swept[1].run_id, loose.run_id]
    assert {r.sweep_id for r in swept} == {"sweep_0000abcd"}
    states.end(swept[0].run_id, ExitRecord(0, iso(START)), None)
    third = states.claim(me)
    assert third is not None and third.run_id == swept[2].run_id


def test_after_waits_for_completion_and_cancels_on_failure(world: dict[str, Any]) -> None:
    states: RunStates = world["states"]
    me = ProcessIdentity(7, 7.0)
    first = _create(world)
    second = world["states"].create(
        {k: v for k, v in _rows(world, 1)[0].items()}, running=False, after=[first.run_id]
    )
    (third_row,) = _rows(world, 1)
    third_row["run_id"] = third_row["run_id"][:-2] + "zz"
    third = states.create(third_row, running=False, after=[second.run_id])
    claimed = states.claim(me)
    assert claimed is not None and claimed.run_id == first.run_id
    assert states.claim(me) is None  # the others wait for it
    states.end(first.run_id, ExitRecord(4, iso(START)), None)
    assert states.claim(me) is None
    dropped = world["registry"].get(second.run_id)
    assert dropped.status == "cancelled" and dropped.failure_kind == "dependency"
    assert dropped.error_message == f"dependency {first.run_id} failed"
    cascaded = world["registry"].get(third.run_id)
    assert cascaded.error_message == f"dependency {second.run_id} failed (it was cancelled)"


def test_after_a_completed_run_starts(world: dict[str, Any]) -> None:
    states: RunStates = world["states"]
    me = ProcessIdentity(7, 7.0)
    first = _create(world)
    second = states.create(_rows(world, 1)[0], running=False, after=[first.run_id])
    assert states.claim(me) is not None
    assert world["registry"].has_claimable(10) is False
    states.end(first.run_id, ExitRecord(0, iso(START)), None)
    assert world["registry"].has_claimable(10) is True
    claimed = states.claim(me)
    assert claimed is not None and claimed.run_id == second.run_id


def test_metrics_are_stored_with_each_validation(world: dict[str, Any]) -> None:
    from btmanager.validation.metrics import read_metrics

    states: RunStates = world["states"]
    run = _create(world, detached=False)
    folder = Path(run.output_dir)
    (folder / "summary.csv").write_text(
        "metric,value\ntotal_pnl,1250.5\nwin_rate,0.61\nnote,not a number\nsharpe_ratio,nan\n"
    )
    metrics = read_metrics(folder)
    assert metrics == {"total_pnl": 1250.5, "win_rate": 0.61}
    states.end(run.run_id, ExitRecord(0, iso(START)), {"valid": True}, metrics)

    def stored() -> dict[str, float]:
        rows = world["registry"].db.execute(
            "SELECT name, value FROM metrics WHERE run_id = ?", (run.run_id,)
        )
        return {str(row[0]): float(row[1]) for row in rows}

    assert stored() == metrics
    states.revalidate(run.run_id, {"valid": True}, {"total_pnl": 3.0})
    assert stored() == {"total_pnl": 3.0}  # replaced, not added to
