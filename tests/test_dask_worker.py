"""`bt worker --dask local:N`: runs executed on a local Dask cluster, end to end."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from tests.dask_support import DaskLab, dask_lab_for, dask_worker_of, read_line
from tests.helpers import pid_alive, wait_for, write_script
from tests.queue_support import (
    QueueLab,
    assert_each_started_once,
    assert_tree_gone,
    max_overlap,
    tree_pids,
    wait_until_gone,
)
from tests.scripts import VALID

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def dlab(tmp_path: Path) -> Iterator[DaskLab]:
    with dask_lab_for(tmp_path) as lab:
        yield lab


def _start_tree(lab: QueueLab) -> tuple[str, Path, dict[str, int]]:
    """A TREE run (grace 1 s) once all its processes are up: (run id, pid folder, pids)."""
    piddir = lab.piddir("tree")
    run_id = lab.submit("tree.py", "-p", f"piddir={piddir}", "--grace", "1")
    return run_id, piddir, tree_pids(piddir, timeout=120)


def _cluster_goes_on_and_never_reran(lab: QueueLab, piddir: Path, pids: dict[str, int]) -> None:
    """Another run completes on the cluster, and the lost run's tree started only once (its pid
    files are those of its one start)."""
    after = lab.job("after")
    code, (run,) = lab.wait(after, timeout=120)
    assert code == 0 and run["status"] == "completed"
    assert {role: int((piddir / role).read_text()) for role in pids} == pids


def test_batch_of_20_drains_with_outputs_logs_and_validation(dlab: DaskLab) -> None:
    lab = dlab.lab
    write_script(lab.cwd, "valid.py", VALID)
    health = dlab.start("local:2")
    assert health["workers"] == 2 and health["threads"] == 2
    assert health["scheduler"].startswith("tcp://")
    ids = []
    for index in range(20):
        result = lab.bt("run", "-d", "valid.py", "-p", f"n={index}")
        assert result.code == 0, result.stderr
        ids.append(result.stdout.strip())
    code, runs = lab.wait(*ids, timeout=300)
    assert code == 0, [(run["run_id"], run["status"], run["error_message"]) for run in runs]
    for run in runs:
        assert run["status"] == "completed"
        assert run["executor"] == "dask"
        assert run["host"] == socket.gethostname()
        assert run["exit_code"] == 0
        assert run["validation_results"]["valid"] is True
        assert run["validation_results"]["errors"] == []
        folder = lab.run_dir(run["run_id"])
        for name in ("trades.csv", "pnl.csv", "summary.csv", "metadata.json"):
            assert (folder / name).is_file(), f"{name} missing in {folder}"
        assert lab.log(run["run_id"]) == "backtest starting\nbacktest done\n"
        # The script saw its scratch folder as --output_dir, not the run folder.
        metadata = (folder / "metadata.json").read_text()
        assert str(folder) not in metadata
    # No local drain worker was started for these runs: the queue was the cluster's.
    assert "worker --drain" not in lab.worker_log()
    assert not (lab.results / ".bt-worker.log").exists()
    # Metrics are stored as for local runs (compare reads them from the registry).
    assert lab.bt("logs", ids[0], "--json").json()["total_lines"] == 2
    dlab.stop()
    assert dlab.leftover_scratch() == []
    assert "dask" not in lab.bt("health", "--json").json()


def test_logs_follow_a_remote_run_live(dlab: DaskLab) -> None:
    lab = dlab.lab
    dlab.start("local:2")
    gate = lab.gate("follow")
    run_id = lab.job("follow", "-p", f"gate={gate}")
    follower = lab.popen_bt("logs", "-f", run_id)
    first = read_line(follower, 120)
    assert first.startswith("job follow started")
    # The line came while the script still waits for its gate: followed live.
    assert lab.rows()[run_id]["status"] == "running"
    gate.touch()
    out, err = wait_until_gone(follower, 60)
    assert follower.returncode == 0, err
    assert out.splitlines()[-1] == "job follow done"
    code, (run,) = lab.wait(run_id)
    assert code == 0 and run["status"] == "completed"
    dlab.stop()


def test_cancel_ends_the_remote_tree(dlab: DaskLab) -> None:
    lab = dlab.lab
    dlab.start("local:2")
    piddir = lab.piddir("tree")
    run_id = lab.submit("tree.py", "-p", f"piddir={piddir}")
    lab.wait_running(run_id, timeout=120)
    pids = tree_pids(piddir, timeout=120)
    result = lab.bt("cancel", run_id, "--grace", "1", "--json", timeout=120)
    assert result.code == 0, result.stderr
    assert result.json() == {"success": True, "message": "Run cancelled"}
    # When `bt cancel` returns, the whole remote tree is gone: the grandchild that ignores
    # SIGTERM and those in sessions of their own (one of them orphaned) too.
    assert_tree_gone(pids)
    status = lab.status(run_id)
    assert status["status"] == "cancelled"
    assert status["error_message"] == "cancelled by user"
    assert status["exit_code"] is not None
    assert status["validation_results"] is None
    dlab.stop()


def test_killed_dask_worker_fails_its_run_once_and_leaves_no_orphan(dlab: DaskLab) -> None:
    lab = dlab.lab
    dlab.start("local:2")
    run_id, piddir, pids = _start_tree(lab)
    dask_worker_of(pids["root"]).send_signal(signal.SIGKILL)

    def failed() -> dict[str, object] | None:
        row = lab.rows()[run_id]
        return row if row["status"] != "running" else None

    row = wait_for(failed, 60)
    assert row["status"] == "failed"
    assert "dask worker lost" in str(row["error_message"])
    # Its tree died with the worker: no orphan, SIGTERM-ignoring and setsid ones included.
    assert_tree_gone(pids, timeout=30)
    # The cluster goes on (the nanny starts a new worker); the lost run is never run again.
    _cluster_goes_on_and_never_reran(lab, piddir, pids)
    assert lab.status(run_id)["status"] == "failed"
    dlab.stop()


def test_parallel_limit_holds_on_a_bigger_cluster(dlab: DaskLab) -> None:
    lab = dlab.lab
    dlab.start("local:3", "--max-parallel", "2")
    names = [f"j{index}" for index in range(6)]
    ids = [lab.job(name, sleep=1.0) for name in names]
    code, runs = lab.wait(*ids, timeout=300)
    assert code == 0, [run["error_message"] for run in runs]
    assert max_overlap(lab.timeline) <= 2
    assert_each_started_once(lab.timeline, names)
    dlab.stop()


def test_killed_bt_worker_dask_ends_its_runs_as_executor_lost(dlab: DaskLab) -> None:
    lab = dlab.lab
    dlab.start("local:2")
    run_id, _piddir, pids = _start_tree(lab)
    assert dlab.worker is not None
    os.kill(dlab.worker.pid, signal.SIGKILL)
    dlab.worker.wait(30)
    assert_tree_gone(pids, timeout=30)
    status = lab.status(run_id)  # its housekeeping records the end
    assert status["status"] == "failed"
    assert status["error_message"].startswith("executor lost")
    assert not pid_alive(pids["root"])


@pytest.fixture
def scheduler(dlab: DaskLab) -> Iterator[str]:
    """A Dask cluster of the test's own (as `dask scheduler` + `dask worker` would be), with
    Dask's default `allowed-failures` (3); its scheduler's address."""
    from distributed import LocalCluster

    cluster = LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        local_directory=str(dlab.scratch),
    )
    try:
        yield str(cluster.scheduler_address)
    finally:
        cluster.close()  # type: ignore[no-untyped-call]


def test_external_scheduler_retry_is_refused(dlab: DaskLab, scheduler: str) -> None:
    """When the worker running a run dies, such a scheduler may start its task again
    elsewhere; `bt` refuses that start."""
    lab = dlab.lab
    dlab.start(scheduler)
    run_id, piddir, pids = _start_tree(lab)
    dask_worker_of(pids["root"]).send_signal(signal.SIGKILL)
    code, (run,) = lab.wait(run_id, timeout=120)
    assert code == 1 and run["status"] == "failed"
    assert "dask worker lost" in run["error_message"]
    assert_tree_gone(pids, timeout=30)
    _cluster_goes_on_and_never_reran(lab, piddir, pids)
    dlab.stop()


def test_external_scheduler_ends_the_runs_of_a_killed_bt_worker(
    dlab: DaskLab, scheduler: str
) -> None:
    """The cluster outlives `bt worker --dask`: the scheduler releases its tasks, and their
    remote side ends the trees."""
    lab = dlab.lab
    dlab.start(scheduler)
    run_id, _piddir, pids = _start_tree(lab)
    assert dlab.worker is not None
    os.kill(dlab.worker.pid, signal.SIGKILL)
    dlab.worker.wait(30)
    assert_tree_gone(pids, timeout=60)
    status = lab.status(run_id)
    assert status["status"] == "failed"
    assert status["error_message"].startswith("executor lost")
