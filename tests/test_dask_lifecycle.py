"""Dask runs in the registry, in-process (no cluster): settling, the serving record, the queue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from btmanager.execution.forkserver import ChannelSupervision, SupervisedRun
from btmanager.lifecycle import exitrecord, serving
from btmanager.lifecycle.exitrecord import ExitRecord
from btmanager.lifecycle.queue import ensure_worker
from btmanager.lifecycle.settle import settle, settle_one
from btmanager.registry.model import ProcessIdentity
from btmanager.timeutil import iso
from tests.test_lifecycle_state import START, FakeBackend, FakeEvents, _create, world

__all__ = ["world"]  # the fixture, used by name

EXECUTOR = ProcessIdentity(55, 5.0)


def _dask_run(world: dict[str, Any], backend: FakeBackend) -> str:
    run = _create(world)
    states = world["states"]
    assert states.claim(EXECUTOR, executor=serving.DASK_EXECUTOR) is not None
    # The remote script's pid: on another machine, meaningless here.
    states.script_started(run.run_id, ProcessIdentity(4242, 7.0), host="node1")
    backend.alive.add(EXECUTOR.pid)
    return run.run_id


def test_a_dask_run_records_its_host_and_executor(world: dict[str, Any]) -> None:
    backend = FakeBackend(world["clock"])
    run_id = _dask_run(world, backend)
    status = world["registry"].get(run_id).to_status_dict()
    assert status["executor"] == "dask" and status["host"] == "node1"
    assert status["supervisor_pid"] == EXECUTOR.pid


def test_settle_leaves_a_dask_run_to_its_live_executor(world: dict[str, Any]) -> None:
    backend = FakeBackend(world["clock"])
    run_id = _dask_run(world, backend)
    assert settle(world["registry"], backend, world["clock"]) == []
    run = world["registry"].get(run_id)
    assert settle_one(world["states"], run, backend, world["clock"]) is None


def test_a_dask_run_whose_executor_died_is_failed_executor_lost(world: dict[str, Any]) -> None:
    backend = FakeBackend(world["clock"])
    run_id = _dask_run(world, backend)
    backend.alive.clear()
    backend.alive.add(4242)  # a local process with the remote pid must not keep it running
    assert settle(world["registry"], backend, world["clock"]) == [run_id]
    final = world["registry"].get(run_id)
    assert final.status == "failed"
    assert final.error_message.startswith("executor lost")
    assert backend.terminated == []  # nothing local is ended for a remote script


def test_a_dask_run_whose_end_was_kept_is_recorded_from_it(world: dict[str, Any]) -> None:
    backend = FakeBackend(world["clock"])
    run_id = _dask_run(world, backend)
    folder = Path(world["registry"].get(run_id).output_dir)
    exitrecord.write(folder, ExitRecord(0, iso(START)))
    backend.alive.clear()
    assert settle(world["registry"], backend, world["clock"]) == [run_id]
    assert world["registry"].get(run_id).status == "completed"


def test_no_drain_worker_while_a_dask_worker_serves(
    world: dict[str, Any], monkeypatch: Any
) -> None:
    spawned: list[object] = []
    monkeypatch.setattr("btmanager.execution.spawn.spawn_worker", spawned.append)
    registry = world["registry"]
    _create(world)
    from btmanager.execution.proctree import current_identity

    me = current_identity()
    record = serving.DaskServing(me.pid, me.create_time, serving.this_host(), "tcp://x:1", 2, 4, "")
    serving.record(registry, record)
    assert serving.serving(registry) == record
    assert ensure_worker(world["settings"], registry, 2) is False
    assert spawned == []
    serving.clear(registry, ProcessIdentity(me.pid + 1, 0.0))  # not ours: kept
    assert serving.serving(registry) == record
    serving.clear(registry, me)
    assert serving.serving(registry) is None
    assert ensure_worker(world["settings"], registry, 2) is True
    assert len(spawned) == 1


def test_a_dead_or_foreign_dask_worker_does_not_serve(world: dict[str, Any]) -> None:
    registry = world["registry"]
    dead = serving.DaskServing(2**22 + 17, 1.0, serving.this_host(), "tcp://x:1", 1, 1, "")
    serving.record(registry, dead)
    assert serving.serving(registry) is None
    from btmanager.execution.proctree import current_identity

    me = current_identity()
    foreign = serving.DaskServing(
        me.pid, me.create_time, "elsewhere.invalid", "tcp://x:1", 1, 1, ""
    )
    serving.record(registry, foreign)
    assert serving.serving(registry) is None


def test_channel_supervision_takes_the_grace_a_message_gives(world: dict[str, Any]) -> None:
    """`grace S` before `cancel REASON` (what the Dask side sends for `bt cancel --grace S`)."""
    clock = world["clock"]
    backend = FakeBackend(clock, exit_after=None, term_code=None)  # ignores SIGTERM
    out = world["tmp"] / "out"
    out.mkdir()
    run = SupervisedRun(
        "r1", ["x"], str(world["tmp"]), {}, str(out), str(world["tmp"] / "s.log"), None, 30.0,
        None, "lost",
    )  # fmt: skip
    events = FakeEvents(clock, {1.0: ["grace 2", "cancel cancelled by user"]})
    supervision = ChannelSupervision(run, -1, backend, events)  # type: ignore[arg-type]
    record = supervision.run_to_end()
    assert record.cancelled == "cancelled by user"
    assert record.exit_code == -9
    assert 2.0 <= clock.ticks < 4.0  # killed after the grace given, not the run's 30 s
    assert exitrecord.read(out) == record


def test_the_script_travels_where_its_path_does_not_exist(tmp_path: Path) -> None:
    from btmanager.execution.dask_executor import RemoteJob, _script_path

    job = RemoteJob(
        "r1", "/nowhere/strategy.py", "strategy.py", b"print('hi')\n", {}, [], "/", None, 1.0,
        None, "events", "control", "token",
    )  # fmt: skip
    used = _script_path(job, tmp_path)
    assert used == tmp_path / "script" / "strategy.py"
    assert used.read_bytes() == b"print('hi')\n"
    here = tmp_path / "here.py"
    here.write_text("pass\n")
    job = RemoteJob(
        "r1", str(here), "here.py", b"other", {}, [], "/", None, 1.0, None, "e", "c", "t",
    )  # fmt: skip
    assert _script_path(job, tmp_path / "elsewhere") == here  # used in place


def test_outputs_come_back_without_links_out_of_the_run_folder(tmp_path: Path) -> None:
    from btmanager.execution.dask_executor import _outputs_tar
    from btmanager.lifecycle.dask_worker import _unpack

    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "trades.csv").write_text("a,b\n")
    (out / "sub" / "x.txt").write_text("x")
    (out / "execution.log").write_text("shipped apart\n")
    (out / ".bt").mkdir()
    (out / ".bt" / "exit.json").write_text("{}")
    (out / "escape").symlink_to("/etc/passwd")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    refused = _unpack(_outputs_tar(out), run_dir)
    assert (run_dir / "trades.csv").read_text() == "a,b\n"
    assert (run_dir / "sub" / "x.txt").read_text() == "x"
    assert not (run_dir / "execution.log").exists()
    assert not (run_dir / ".bt").exists()
    assert not (run_dir / "escape").exists() and not (run_dir / "escape").is_symlink()
    assert [line.split(":")[0] for line in refused] == ["escape"]
