"""Ordered, named schema migrations of the run registry.

Each migration runs in one transaction together with the row that records it, so a crash leaves
the database either before or after a migration, never half-way. `PRAGMA user_version` mirrors the
number applied, which lets `connect()` skip the migration check with a single read on every call.
Append new migrations at the end; never edit or reorder released ones.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import NamedTuple

from btmanager.timeutil import now_iso


class Migration(NamedTuple):
    name: str
    apply: Callable[[sqlite3.Connection], None]


def _create_runs(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE runs (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL UNIQUE,
            script_path TEXT NOT NULL,
            script_resolved TEXT NOT NULL,
            params TEXT NOT NULL,
            extra_args TEXT NOT NULL,
            command TEXT NOT NULL,
            cwd TEXT NOT NULL,
            output_dir TEXT NOT NULL,
            status TEXT NOT NULL,
            label TEXT,
            created_at TEXT NOT NULL,
            started_at TEXT,
            completed_at TEXT,
            exit_code INTEGER,
            error_message TEXT,
            validation_results TEXT,
            pid INTEGER,
            pid_create_time REAL
        )
        """
    )
    db.execute("CREATE INDEX runs_status ON runs(status)")


def _add_queue_and_supervision(db: sqlite3.Connection) -> None:
    """Detached runs: queue order, limits, supervisor identity and cancel requests."""
    for column in (
        "priority INTEGER NOT NULL DEFAULT 0",
        "detached INTEGER NOT NULL DEFAULT 0",
        "nice INTEGER",
        "timeout_seconds REAL",
        "grace_seconds REAL NOT NULL DEFAULT 5",
        "validate INTEGER NOT NULL DEFAULT 1",
        "rules TEXT",
        "supervisor_pid INTEGER",
        "supervisor_create_time REAL",
        "cancel_requested INTEGER NOT NULL DEFAULT 0",
    ):
        db.execute(f"ALTER TABLE runs ADD COLUMN {column}")
    # The queue is read as "queued, highest priority first, then oldest": index that order.
    db.execute("DROP INDEX runs_status")
    db.execute("CREATE INDEX runs_status_seq ON runs(status, priority DESC, seq)")


def _add_resource_usage_and_log_cache(db: sqlite3.Connection) -> None:
    for column in (
        "peak_memory_bytes INTEGER",
        "cpu_seconds REAL",
        "log_size INTEGER",
        "log_lines INTEGER",
    ):
        db.execute(f"ALTER TABLE runs ADD COLUMN {column}")


def _add_environment(db: sqlite3.Connection) -> None:
    """Detached runs keep their submitter's environment: a worker started by someone else's
    `bt` command must not hand them its own."""
    db.execute("ALTER TABLE runs ADD COLUMN env TEXT")


def _add_lifecycle(db: sqlite3.Connection) -> None:
    """Per-run supervisors, why runs failed, and the parallel limit shared by every process."""
    for column in (
        "failure_kind TEXT",
        "worker_pid INTEGER",
        "worker_create_time REAL",
        "cancel_grace REAL",
    ):
        db.execute(f"ALTER TABLE runs ADD COLUMN {column}")
    db.execute("CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    # Runs recorded before this only said why in words; classify them once, here, so nothing
    # ever has to read a message again.
    db.execute(
        """
        UPDATE runs SET failure_kind = CASE
            WHEN status = 'cancelled' THEN 'cancelled'
            WHEN error_message LIKE 'timed out%' THEN 'timeout'
            WHEN error_message LIKE 'validation errors%' THEN 'validation'
            WHEN error_message LIKE 'could not start%' THEN 'launch'
            WHEN error_message LIKE 'supervisor%' THEN 'supervisor_lost'
            WHEN exit_code < 0 THEN 'signal'
            WHEN exit_code > 0 THEN 'exit_code'
            ELSE 'supervisor_lost' END
        WHERE status IN ('failed', 'cancelled')
        """
    )


def _add_many_runs(db: sqlite3.Connection) -> None:
    """Sweeps, dependencies between runs, tags, notes, metrics, provenance, reruns."""
    for column in (
        "sweep_id TEXT",
        "rerun_of TEXT",
        "note TEXT",
        "provenance TEXT",
        "host TEXT",
        "executor TEXT",
    ):
        db.execute(f"ALTER TABLE runs ADD COLUMN {column}")
    db.execute("CREATE INDEX runs_sweep ON runs(sweep_id, status)")
    db.execute(
        """
        CREATE TABLE sweeps (
            sweep_id TEXT PRIMARY KEY,
            script_path TEXT NOT NULL,
            created_at TEXT NOT NULL,
            max_parallel INTEGER,
            count INTEGER NOT NULL
        )
        """
    )
    # A run starts only once every run it waits for has completed (`--after`).
    db.execute(
        """
        CREATE TABLE run_after (
            run_id TEXT NOT NULL,
            after_run_id TEXT NOT NULL,
            PRIMARY KEY (run_id, after_run_id)
        )
        """
    )
    db.execute("CREATE INDEX run_after_after ON run_after(after_run_id)")
    db.execute(
        "CREATE TABLE tags (run_id TEXT NOT NULL, tag TEXT NOT NULL, PRIMARY KEY (run_id, tag))"
    )
    db.execute("CREATE INDEX tags_tag ON tags(tag)")
    # summary.csv's numeric metrics, stored at each validation: comparing runs reads no files.
    db.execute(
        "CREATE TABLE metrics (run_id TEXT NOT NULL, name TEXT NOT NULL, value REAL,"
        " PRIMARY KEY (run_id, name))"
    )
    db.execute("CREATE INDEX metrics_name ON metrics(name, value)")


def _add_sweep_environment_and_index(db: sqlite3.Connection) -> None:
    """A sweep's submitter environment, stored once for all its runs (each run gets a copy when
    it starts): 10 000 copies of it would make a sweep's one transaction several times bigger.

    The sweep index also holds run_id, so comparing a sweep's runs (joined with their metrics
    by run_id) reads the index alone, never the rows with their large JSON columns.
    """
    db.execute("ALTER TABLE sweeps ADD COLUMN env TEXT")
    db.execute("DROP INDEX runs_sweep")
    db.execute("CREATE INDEX runs_sweep ON runs(sweep_id, status, run_id)")


MIGRATIONS: tuple[Migration, ...] = (
    Migration("0001_create_runs", _create_runs),
    Migration("0002_queue_and_supervision", _add_queue_and_supervision),
    Migration("0003_resource_usage_and_log_cache", _add_resource_usage_and_log_cache),
    Migration("0004_environment", _add_environment),
    Migration("0005_lifecycle", _add_lifecycle),
    Migration("0006_many_runs", _add_many_runs),
    Migration("0007_sweep_environment_and_index", _add_sweep_environment_and_index),
)

LATEST_VERSION = len(MIGRATIONS)


def applied_names(db: sqlite3.Connection) -> list[str]:
    db.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    return [row[0] for row in db.execute("SELECT name FROM _migrations ORDER BY rowid")]


def migrate(db: sqlite3.Connection, upto: int = LATEST_VERSION) -> list[str]:
    """Apply pending migrations (the first `upto` of them); return the names applied now.

    `db` must be in autocommit mode (isolation_level=None): each migration takes the write lock
    with BEGIN IMMEDIATE, re-checks under the lock (another process may have migrated meanwhile),
    applies and records itself, and commits.
    """
    done_now: list[str] = []
    for index, migration in enumerate(MIGRATIONS[:upto], start=1):
        db.execute("BEGIN IMMEDIATE")
        try:
            if migration.name in applied_names(db):
                db.execute("COMMIT")
                continue
            migration.apply(db)
            db.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                (migration.name, now_iso()),
            )
            db.execute(f"PRAGMA user_version = {index}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        done_now.append(migration.name)
        # Fold each migration into the database before the next one, so the write-ahead log
        # holds one migration's pages at most, not the whole schema's history.
        db.execute("PRAGMA wal_checkpoint(PASSIVE)")
    return done_now
