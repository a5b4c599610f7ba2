"""Support for the `bt worker --dask` tests: a lab whose queue is served by a local Dask cluster."""

from __future__ import annotations

import contextlib
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from tests.helpers import wait_for
from tests.queue_support import QueueLab, lab_for

CLUSTER_START = 120.0  # a LocalCluster starts in 1-3 s here, far slower on a busy machine


class DaskLab:
    """A QueueLab plus the `bt worker --dask` serving it."""

    def __init__(self, lab: QueueLab) -> None:
        self.lab = lab
        # Dask's scratch space (and so the runs' scratch folders) inside the test's folder.
        self.scratch = lab.root / "dask-scratch"
        self.scratch.mkdir()
        lab.env["DASK_TEMPORARY_DIRECTORY"] = str(self.scratch)
        self.worker: subprocess.Popen[str] | None = None

    def start(self, address: str = "local:2", *options: str) -> dict[str, Any]:
        """Start `bt worker --dask ADDRESS`; once it serves, the health document's `dask`."""
        self.worker = self.lab.popen_bt("worker", "--dask", address, *options)

        def serving() -> dict[str, Any] | None:
            assert self.worker is not None
            if self.worker.poll() is not None:
                _out, err = self.worker.communicate()
                raise AssertionError(f"bt worker --dask exited {self.worker.returncode}: {err}")
            result = self.lab.bt("health", "--json")
            document: dict[str, Any] = result.json() if result.code == 0 else {}
            dask: dict[str, Any] | None = document.get("dask")
            return dask if dask and dask["workers"] else None

        found: dict[str, Any] = wait_for(serving, CLUSTER_START, interval=0.2)
        return found

    def stop(self, timeout: float = 60) -> tuple[str, str]:
        """SIGTERM the worker and wait for it (it cancels what it runs, then exits)."""
        assert self.worker is not None
        self.worker.send_signal(signal.SIGTERM)
        try:
            return self.worker.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.worker.kill()
            _out, err = self.worker.communicate()
            raise AssertionError(f"bt worker --dask did not stop: {err}") from None

    def leftover_scratch(self) -> list[Path]:
        """Run scratch folders still on the Dask workers' disk."""
        return sorted(self.scratch.rglob("bt-*"))


@contextlib.contextmanager
def dask_lab_for(tmp_path: Path, max_parallel: int = 2) -> Iterator[DaskLab]:
    with lab_for(tmp_path, max_parallel) as lab:
        yield DaskLab(lab)


def dask_worker_of(script_pid: int) -> psutil.Process:
    """The Dask worker process a run's script runs under: script <- supervisor <- fork server
    <- Dask worker (the supervisor, forked by the server, shows the server's command line)."""
    servers = [
        parent
        for parent in psutil.Process(script_pid).parents()
        if "btmanager.execution.forkserver" in " ".join(parent.cmdline())
    ]
    assert len(servers) == 2, f"no supervisor and fork server above pid {script_pid}"
    worker = servers[-1].parent()
    assert worker is not None
    return worker


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The next line of a process's stdout, failing the test after `timeout`."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            return proc.stdout.readline()
    raise AssertionError(f"no output within {timeout} s")
