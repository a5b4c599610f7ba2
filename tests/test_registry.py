"""The registry: migrations, concurrency-safe transitions, prefix resolution, bad files."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from btmanager.errors import AmbiguousRunError, NotFoundError, RegistryError
from btmanager.lifecycle.exitrecord import ExitRecord
from btmanager.lifecycle.state import RunStates
from btmanager.registry.db import Registry, connect
from btmanager.registry.migrations import LATEST_VERSION, MIGRATIONS, migrate
from btmanager.registry.model import ProcessIdentity


def insert(registry: Registry, row: dict[str, object]) -> None:
    with registry.write() as db:
        registry.insert_in(db, row)


def states(registry: Registry, limit: int = 10) -> RunStates:
    runs = RunStates(registry, write_files=False)
    runs.set_limit(limit)
    return runs


def _row(run_id: str, status: str = "queued", **extra: object) -> dict[str, object]:
    row: dict[str, object] = {
        "run_id": run_id,
        "script_path": "s.py",
        "script_resolved": "/x/s.py",
        "params": {"a": "1"},
        "extra_args": [],
        "command": ["python", "s.py"],
        "cwd": "/x",
        "output_dir": f"/x/run_{run_id}",
        "status": status,
        "created_at": "2026-01-01T00:00:00.000+00:00",
    }
    row.update(extra)
    return row


def test_blank_db_is_migrated_and_recorded(tmp_path: Path) -> None:
    db = connect(tmp_path / "bt.sqlite3")
    names = [r[0] for r in db.execute("SELECT name FROM _migrations ORDER BY rowid")]
    assert names == [m.name for m in MIGRATIONS]
    assert db.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000


def test_old_schema_is_upgraded_keeping_rows(tmp_path: Path) -> None:
    path = tmp_path / "bt.sqlite3"
    old = sqlite3.connect(path, isolation_level=None)
    migrate(old, upto=1)  # a registry written by the first release
    old.execute(
        "INSERT INTO runs (run_id, script_path, script_resolved, params, extra_args, command,"
        " cwd, output_dir, status, created_at) VALUES ('20260101_000000_aaaaaaaa', 's.py',"
        " '/s.py', '{}', '[]', '[]', '/', '/r', 'completed', '2026-01-01T00:00:00+00:00')"
    )
    old.close()
    with Registry(path) as registry:
        run = registry.get("20260101_000000_aaaaaaaa")
        assert run.status == "completed"
        assert run.priority == 0 and run.peak_memory_bytes is None
        applied = [r[0] for r in registry.db.execute("SELECT name FROM _migrations")]
    assert applied == [m.name for m in MIGRATIONS]


def test_migrating_twice_is_a_no_op(tmp_path: Path) -> None:
    db = connect(tmp_path / "bt.sqlite3")
    assert migrate(db) == []


def test_corrupt_registry_is_a_registry_error(tmp_path: Path) -> None:
    path = tmp_path / "bt.sqlite3"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(RegistryError, match="corrupt or not a bt database"):
        Registry(path)


def test_prefix_resolution(tmp_path: Path) -> None:
    with Registry(tmp_path / "bt.sqlite3") as registry:
        insert(registry, _row("20260101_000000_aaaa0001"))
        insert(registry, _row("20260101_000000_aaaa0002"))
        insert(registry, _row("20260102_000000_bbbb0001"))
        assert registry.resolve("20260102").run_id == "20260102_000000_bbbb0001"
        assert registry.resolve("latest").run_id == "20260102_000000_bbbb0001"
        assert registry.resolve("20260101_000000_aaaa0001").run_id.endswith("0001")
        with pytest.raises(AmbiguousRunError, match=r"aaaa0001.*aaaa0002|aaaa0002.*aaaa0001"):
            registry.resolve("20260101")
        with pytest.raises(NotFoundError):
            registry.resolve("2027")
        with pytest.raises(NotFoundError):
            registry.resolve("%")  # LIKE wildcards are escaped


def test_guarded_transitions_have_one_winner(tmp_path: Path) -> None:
    with Registry(tmp_path / "bt.sqlite3") as registry:
        runs = states(registry)
        ended = ExitRecord(0, "2026-01-01T00:00:01.000+00:00")
        insert(registry, _row("r1", status="running"))
        assert runs.end("r1", ended, None) is not None
        assert runs.end("r1", ExitRecord(1, "2026-01-01T00:00:02.000+00:00"), None) is None
        assert registry.get("r1").status == "completed"
        insert(registry, _row("r2", status="running"))
        assert runs.request_cancel("r2", "cancelled by user") is not None
        assert runs.end("r2", ended, None) is not None
        assert registry.get("r2").status == "cancelled"  # a cancel request wins
        assert registry.get("r2").exit_code == 0  # and the script's own exit code is kept
        insert(registry, _row("r3"))
        assert runs.cancel_queued("r3") is not None
        assert runs.cancel_queued("r3") is None


def test_concurrent_claims_respect_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "bt.sqlite3"
    with Registry(path) as registry:
        states(registry, limit=3)
        for n in range(40):
            insert(registry, _row(f"r{n:02d}"))
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer() -> None:
        with Registry(path) as mine:
            runs = RunStates(mine, write_files=False)
            while (run := runs.claim(ProcessIdentity(1, 1.0))) is not None:
                with lock:
                    claimed.append(run.run_id)

    threads = [threading.Thread(target=claimer) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == ["r00", "r01", "r02"]  # the oldest three, each once


def test_priority_then_submission_order(tmp_path: Path) -> None:
    with Registry(tmp_path / "bt.sqlite3") as registry:
        insert(registry, _row("a"))
        insert(registry, _row("b", priority=5))
        insert(registry, _row("c"))
        insert(registry, _row("d", priority=5))
        me = ProcessIdentity(1, 1.0)
        runs = states(registry)
        order = [runs.claim(me).run_id for _ in range(4)]  # type: ignore[union-attr]
    assert order == ["b", "d", "a", "c"]


def test_list_total_ignores_limit_and_filters(tmp_path: Path) -> None:
    with Registry(tmp_path / "bt.sqlite3") as registry:
        for n in range(7):
            insert(registry, _row(f"r{n}", script_path=f"/p/s{n % 2}.py"))
        total, runs = registry.list_runs(limit=2)
        assert total == 7 and [r.run_id for r in runs] == ["r6", "r5"]
        total, runs = registry.list_runs(script="s1.py", limit=50)
        assert total == 3 and {r.run_id for r in runs} == {"r1", "r3", "r5"}
        total, _ = registry.list_runs(status="running")
        assert total == 0
