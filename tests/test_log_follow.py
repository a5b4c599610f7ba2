"""Numbered log lines for streaming: `Service.follow_numbered`."""

from __future__ import annotations

from pathlib import Path

from btmanager import logs
from btmanager.service import Service
from btmanager.settings import Settings
from tests.conftest import BtRunner
from tests.helpers import write_script


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


def test_follow_numbered_after_the_log_was_counted(bt: BtRunner) -> None:
    svc, run_id, _ = _finished_run(bt)
    assert svc.logs(run_id, 0).total_lines == 5  # leaves its count mark beside the log
    svc.close()
    fresh = Service(Settings.resolve(str(bt.results)))
    assert _lines(fresh, run_id, last=1) == [(5, "l5")]
    fresh.close()


def test_follow_numbered_in_a_log_of_many_blocks(bt: BtRunner) -> None:
    svc, run_id, folder = _finished_run(bt)
    with open(folder / "execution.log", "ab") as log:
        for number in range(6, 30_001):
            log.write(f"l{number}\n".encode())
    assert (folder / "execution.log").stat().st_size > 3 * 64 * 1024  # several blocks
    assert _lines(svc, run_id, after=12_344)[:2] == [(12_345, "l12345"), (12_346, "l12346")]
    assert _lines(svc, run_id, last=2) == [(29_999, "l29999"), (30_000, "l30000")]
    assert _lines(svc, run_id, after=29_999) == [(30_000, "l30000")]
    svc.close()


def test_follow_numbered_cuts_huge_lines_as_follow_does(bt: BtRunner) -> None:
    svc, run_id, folder = _finished_run(bt)
    with open(folder / "execution.log", "ab") as log:
        log.write(b"x" * (logs.LINE_CAP + 10) + b"\nafter\n")
    got = _lines(svc, run_id, after=5)
    assert [number for number, _ in got] == [6, 7]
    assert got[0][1].endswith(f"[line truncated, {logs.LINE_CAP + 10} bytes]")
    assert got[1] == (7, "after")
    svc.close()
