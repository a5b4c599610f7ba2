"""Numbered log lines for streaming: `logs.tail_start` and `Service.follow_numbered`."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from btmanager import logs
from btmanager.service import Service
from btmanager.settings import Settings
from tests.conftest import BtRunner
from tests.helpers import write_script


def _expected_start(data: bytes, count: int) -> int:
    breaks = data.count(b"\n")
    if count == 0:
        return data.rfind(b"\n") + 1
    if count >= breaks:
        return 0
    position = -1
    for _ in range(breaks - count):
        position = data.index(b"\n", position + 1)
    return position + 1


@pytest.mark.parametrize("block", [1, 3, 7, 64 * 1024])
def test_tail_start_finds_where_the_last_lines_begin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    monkeypatch.setattr(logs, "_BLOCK", block)
    rng = random.Random(block)
    path = tmp_path / "log"
    for _ in range(300):
        lines = [b"x" * rng.randint(0, 9) for _ in range(rng.randint(0, 9))]
        data = b"\n".join(lines) + (b"\n" if lines and rng.random() < 0.5 else b"")
        path.write_bytes(data)
        breaks = data.count(b"\n")
        for count in range(breaks + 2):
            assert logs.tail_start(path, count, len(data), breaks) == _expected_start(data, count)


def _finished_run(bt: BtRunner) -> tuple[Service, str, Path]:
    write_script(bt.cwd, "five.py", "for i in range(1, 6):\n    print(f'l{i}')\n")
    result = bt("run", "five.py", "--no-validate", "--json")
    assert result.code == 0, result.stderr
    status = result.json()
    return Service(Settings.resolve(str(bt.results))), status["run_id"], Path(status["output_dir"])


def _lines(svc: Service, run_id: str, **kwargs: int) -> list[tuple[int, str]]:
    return [(line.number, line.text) for line in svc.follow_numbered(run_id, **kwargs) if line]


def test_follow_numbered_from_start_after_and_last(bt: BtRunner) -> None:
    svc, run_id, _ = _finished_run(bt)
    everything = [(n, f"l{n}") for n in range(1, 6)]
    assert _lines(svc, run_id) == everything
    assert _lines(svc, run_id, after=2) == everything[2:]
    assert _lines(svc, run_id, after=0) == everything
    assert _lines(svc, run_id, last=2) == everything[3:]
    assert _lines(svc, run_id, last=0) == []
    assert _lines(svc, run_id, last=99) == everything
    assert _lines(svc, run_id, after=5) == []
    assert _lines(svc, run_id, after=50) == []
    svc.close()


def test_follow_numbered_counts_an_unterminated_last_line(bt: BtRunner) -> None:
    svc, run_id, folder = _finished_run(bt)
    with open(folder / "execution.log", "ab") as log:
        log.write(b"l6 without newline")
    assert _lines(svc, run_id, after=4) == [(5, "l5"), (6, "l6 without newline")]
    assert _lines(svc, run_id, last=1) == [(6, "l6 without newline")]
    svc.close()


def test_follow_numbered_uses_the_registry_line_cache(bt: BtRunner) -> None:
    svc, run_id, _ = _finished_run(bt)
    assert svc.logs(run_id, 0).total_lines == 5  # caches (size, lines) in the registry
    svc.close()
    fresh = Service(Settings.resolve(str(bt.results)))
    assert _lines(fresh, run_id, last=1) == [(5, "l5")]
    fresh.close()
