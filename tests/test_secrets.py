"""Secrets stay with their owner: registry 0600, run folders 0700, the submitter's environment
kept only in the run folder until the script starts, never in the registry."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.queue_support import QueueLab

SECRET = "s3cr3t-value-that-must-not-leak"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_files_whatever_the_umask(lab: QueueLab) -> None:
    gate = lab.gate("go")
    run_id = lab.job("secretive", "-p", f"gate={gate}", AWS_SECRET_ACCESS_KEY=SECRET)
    row = lab.wait_running(run_id)
    folder = lab.run_dir(run_id)
    assert _mode(lab.results / "bt.sqlite3") == 0o600
    assert _mode(folder) == 0o700
    assert not (folder / ".bt" / "env.json").exists()  # deleted once the script started
    environ = Path(f"/proc/{row['pid']}/environ").read_bytes()
    assert f"AWS_SECRET_ACCESS_KEY={SECRET}".encode() in environ  # the script has it
    gate.touch()
    code, _ = lab.wait(run_id)
    assert code == 0
    for name in ("bt.sqlite3", "bt.sqlite3-wal"):
        path = lab.results / name
        if path.exists():
            assert SECRET.encode() not in path.read_bytes(), f"{name} holds the secret"
            assert _mode(path) == 0o600
    worker_log = lab.results / ".bt-worker.log"
    if worker_log.exists():
        assert _mode(worker_log) == 0o600


def test_queued_environment_waits_in_an_owner_only_file(lab: QueueLab) -> None:
    lab.bt("parallel", "1")
    gate = lab.gate("hold")
    blocker = lab.job("blocker", "-p", f"gate={gate}")
    lab.wait_running(blocker)
    queued = lab.job("waiting", GITHUB_TOKEN=SECRET)
    env_file = lab.run_dir(queued) / ".bt" / "env.json"
    assert env_file.exists() and _mode(env_file) == 0o600
    assert SECRET in env_file.read_text()
    assert lab.rows()[queued]["env"] is None  # not in the registry
    gate.touch()
    code, _ = lab.wait(blocker, queued)
    assert code == 0
    assert not env_file.exists()
    assert "job waiting started" in lab.log(queued)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_another_user_cannot_read_the_registry(lab: QueueLab) -> None:
    run_id = lab.job("done", AWS_SECRET_ACCESS_KEY=SECRET)
    code, _ = lab.wait(run_id)
    assert code == 0
    # A child that drops to nobody (uid 65534) tries to read what bt wrote.
    probe = (
        "import os, sys\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        open(path, 'rb').read(1)\n"
        "        print('READ', path)\n"
        "    except PermissionError:\n"
        "        print('DENIED', path)\n"
    )
    targets = [
        lab.results / "bt.sqlite3",
        lab.run_dir(run_id) / "execution.log",
        lab.run_dir(run_id) / "run.json",
    ]
    os.chmod(lab.root, 0o755)  # let nobody reach the folders; the files must still refuse
    os.chmod(lab.results, 0o755)
    out = subprocess.run(
        [sys.executable, "-c", probe, *map(str, targets)], capture_output=True, text=True
    )
    assert "READ" not in out.stdout, out.stdout
    assert out.stdout.count("DENIED") == len(targets), out.stdout + out.stderr


def test_a_sweeps_environment_is_kept_outside_the_registry(lab: QueueLab) -> None:
    lab.bt("parallel", "1")
    gate = lab.gate("hold")
    blocker = lab.job("blocker", "-p", f"gate={gate}")
    lab.wait_running(blocker)
    swept = lab.bt(
        "sweep", "job.py", "-p", "name=a,b", "--no-validate", "--json", env={"API_TOKEN": SECRET}
    )
    assert swept.code == 0, swept.stderr
    ids = swept.json()["run_ids"]
    kept = list((lab.results / ".bt-env").glob("*.json"))
    assert len(kept) == 1 and _mode(kept[0]) == 0o600 and SECRET in kept[0].read_text()
    gate.touch()
    code, _ = lab.wait(blocker, *ids)
    assert code == 0
    assert not list((lab.results / ".bt-env").glob("*.json"))  # gone once all have started
    for name in ("bt.sqlite3", "bt.sqlite3-wal"):
        path = lab.results / name
        if path.exists():
            assert SECRET.encode() not in path.read_bytes(), f"{name} holds the secret"


def test_a_nul_byte_in_any_sweep_value_queues_nothing(lab: QueueLab) -> None:
    grid = lab.cwd / "grid.toml"
    grid.write_text('[grid]\nname = ["a", "b"]\nx = ["1", "2\\u0000"]\n', encoding="utf-8")
    bad = lab.bt("sweep", "job.py", "--grid", str(grid))
    assert bad.code == 2 and bad.stderr.startswith("Error: ") and "NUL" in bad.stderr, bad.stderr
    assert bad.stderr.count("\n") == 1
    assert lab.rows() == {}
