"""A full or read-only disk under the results root: one `Error:` line, never a traceback.

These tests mount small tmpfs file systems, which needs root (CI runs as root); elsewhere they
are skipped.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BtRunner
from tests.scripts import VALID, write


def _mount(point: Path, options: str) -> bool:
    point.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True
    )
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    point = tmp_path / "disk"
    if not _mount(point, "size=256k"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def _assert_one_error_line(result: object) -> None:
    code, stdout, stderr = result.code, result.stdout, result.stderr  # type: ignore[attr-defined]
    assert code == 2, (code, stdout, stderr)
    assert stderr.startswith("Error: ") and stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr


def test_read_only_results_root(bt: BtRunner, small_disk: Path) -> None:
    write(bt.cwd, "ok.py", VALID)
    results = small_disk / "results"
    assert bt("--results-dir", str(results), "run", "ok.py").code == 0
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    _assert_one_error_line(bt("--results-dir", str(results), "run", "ok.py"))
    for args in (("list",), ("status", "latest"), ("validate", "latest")):
        result = bt("--results-dir", str(results), *args)
        assert result.code in (0, 1, 2) and "Traceback" not in result.stderr, result.stderr
        if result.code == 2:
            _assert_one_error_line(result)


def test_full_disk(bt: BtRunner, small_disk: Path) -> None:
    write(bt.cwd, "ok.py", VALID)
    results = small_disk / "results"
    assert bt("--results-dir", str(results), "run", "ok.py").code == 0
    descriptor = os.open(small_disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(descriptor, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(descriptor)
    _assert_one_error_line(bt("--results-dir", str(results), "run", "ok.py"))
    # Reads need no room: the registry is opened read-only (as it is when no -shm can be made).
    listing = bt("--results-dir", str(results), "list", "--json")
    assert listing.code == 0 and listing.stderr == "", listing.stderr
    assert listing.json()["total"] == 1
