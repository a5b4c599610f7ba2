"""The run registry: one SQLite file shared safely by any number of `bt` processes.

Every connection goes through `connect()` (WAL, busy timeout, migrations). Writes are short
`BEGIN IMMEDIATE` transactions, and every state change is a guarded UPDATE
(`... WHERE status = 'running'`), so of two processes racing to change a run exactly one wins.
sqlite3 errors never leave this module raw: they become `RegistryError` or `StorageError`.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from btmanager.errors import AmbiguousRunError, NotFoundError, RegistryError, StorageError
from btmanager.migrations import LATEST_VERSION, migrate
from btmanager.timeutil import now_iso, parse_iso, seconds_between

BUSY_TIMEOUT_MS = 30_000

QUEUED = "queued"
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
STATUSES = (QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED)
FINAL_STATUSES = frozenset({COMPLETED, FAILED, CANCELLED})

P = ParamSpec("P")
T = TypeVar("T")


def _translate(db_path: Path, exc: sqlite3.Error | OSError) -> Exception:
    text = str(exc)
    lowered = text.lower()
    if "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered:
        return StorageError(f"Cannot write the registry {db_path}: {text}")
    if "disk" in lowered and ("full" in lowered or "i/o" in lowered):
        return StorageError(f"Cannot write the registry {db_path}: {text}")
    if "locked" in lowered or "busy" in lowered:
        return RegistryError(
            f"The registry {db_path} stayed locked for {BUSY_TIMEOUT_MS // 1000} s; try again"
        )
    if isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in lowered or "malformed" in lowered or "no such" in lowered
    ):
        return RegistryError(f"The registry {db_path} is corrupt or not a bt database ({text})")
    return RegistryError(f"Registry {db_path}: {text}")


def _guarded(method: Callable[P, T]) -> Callable[P, T]:
    """Translate sqlite3 errors raised by a Registry method into BtErrors."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(*args, **kwargs)
        except (sqlite3.Error, OSError) as exc:
            registry = args[0]
            assert isinstance(registry, Registry)
            raise _translate(registry.path, exc) from exc
        except CorruptRow as exc:
            registry = args[0]
            assert isinstance(registry, Registry)
            raise RegistryError(f"The registry {registry.path} is corrupt: {exc}") from None

    return wrapper


class NoRegistry(NotFoundError):
    """The registry file does not exist (and the caller asked not to create it)."""


class CorruptRow(ValueError):
    """A registry row whose stored values cannot be read back."""


def connect(db_path: Path, create: bool = True) -> sqlite3.Connection:
    """Open (creating if needed) and migrate the registry; autocommit mode, WAL, busy timeout.

    With `create=False` a missing file is `NoRegistry`, so commands that only read never leave
    an empty registry behind in a folder the user did not mean.
    """
    if not create and not db_path.exists():
        raise NoRegistry(f"No registry at {db_path} (no runs recorded there yet)")
    if db_path.parent.exists() and not db_path.parent.is_dir():
        raise StorageError(f"The results folder {db_path.parent} is not a directory")
    try:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except (sqlite3.Error, OSError) as exc:
        raise _translate(db_path, exc) from exc
    try:
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > LATEST_VERSION:
            db.close()
            raise RegistryError(
                f"The registry {db_path} was written by a newer bt (schema {version}, this bt "
                f"knows {LATEST_VERSION}); upgrade bt to use it"
            )
        if version < LATEST_VERSION:
            # WAL lets readers and one writer work at once; it is persistent, so set it once.
            db.execute("PRAGMA journal_mode = WAL")
            migrate(db)
        # NORMAL is durable in WAL mode except for the last commits on power loss, and avoids
        # an fsync per transaction (hundreds of them when a queue drains).
        db.execute("PRAGMA synchronous = NORMAL")
    except (sqlite3.Error, OSError) as exc:
        db.close()
        raise _translate(db_path, exc) from exc
    return db


@dataclass
class Run:
    """One row of the registry."""

    seq: int
    run_id: str
    script_path: str
    script_resolved: str
    params: dict[str, str]
    extra_args: list[str]
    command: list[str]
    cwd: str
    output_dir: str
    status: str
    label: str | None
    created_at: str
    started_at: str | None
    completed_at: str | None
    exit_code: int | None
    error_message: str | None
    validation_results: dict[str, Any] | None
    pid: int | None
    pid_create_time: float | None
    priority: int
    detached: bool
    nice: int | None
    timeout_seconds: float | None
    grace_seconds: float
    validate: bool
    rules: dict[str, Any] | None
    supervisor_pid: int | None
    supervisor_create_time: float | None
    cancel_requested: bool
    peak_memory_bytes: int | None
    cpu_seconds: float | None
    log_size: int | None
    log_lines: int | None
    env: dict[str, str] | None

    _JSON_COLUMNS = ("params", "extra_args", "command", "validation_results", "rules", "env")
    _BOOL_COLUMNS = ("detached", "validate", "cancel_requested")
    _TIME_COLUMNS = ("created_at", "started_at", "completed_at")

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Run:
        values = dict(row)
        try:
            for name in cls._JSON_COLUMNS:
                if values.get(name) is not None:
                    values[name] = json.loads(values[name])
            for name in cls._TIME_COLUMNS:
                if values.get(name) is not None:
                    parse_iso(values[name])
        except (ValueError, TypeError) as exc:
            raise CorruptRow(
                f"run {values.get('run_id')!r} has an unreadable {name}: {exc}"
            ) from None
        for name in cls._BOOL_COLUMNS:
            values[name] = bool(values[name])
        return cls(**{f.name: values.get(f.name) for f in fields(cls)})  # type: ignore[arg-type]

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def script_identity(self) -> ProcessIdentity | None:
        """The script's pid and create time, once it has started."""
        return _identity(self.pid, self.pid_create_time)

    @property
    def supervisor_identity(self) -> ProcessIdentity | None:
        """The pid and create time of the process watching the run, once one has it."""
        return _identity(self.supervisor_pid, self.supervisor_create_time)

    @property
    def duration_seconds(self) -> float | None:
        return seconds_between(self.started_at, self.completed_at)

    def to_status_dict(self) -> dict[str, Any]:
        """The guide's status shape (plus the contract's extra keys)."""
        return {
            "run_id": self.run_id,
            "script_path": self.script_path,
            "params": self.params,
            "status": self.status,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "output_dir": self.output_dir,
            "exit_code": self.exit_code,
            "error_message": self.error_message,
            "validation_results": self.validation_results or {},
            "duration_seconds": self.duration_seconds,
            "pid": self.pid,
            "label": self.label,
            "priority": self.priority,
            "peak_memory_bytes": self.peak_memory_bytes,
            "cpu_seconds": self.cpu_seconds,
            "command": self.command,
            "extra_args": self.extra_args,
            "cwd": self.cwd,
            "detached": self.detached,
            "timeout_seconds": self.timeout_seconds,
        }


@dataclass(frozen=True)
class ProcessIdentity:
    """A pid plus its create time: together they survive pid reuse."""

    pid: int
    create_time: float


def _identity(pid: int | None, made: float | None) -> ProcessIdentity | None:
    return ProcessIdentity(pid, made) if pid is not None and made is not None else None


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Registry:
    """Typed access to the runs table. Use as a context manager to close the connection."""

    def __init__(self, path: Path, create: bool = True) -> None:
        self.path = path
        self.db = connect(path, create)

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction that takes the lock up front (no upgrade deadlocks)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        try:
            self.db.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (disk full, I/O error) leaves the transaction open and the write
            # lock held; release it so this connection and other processes can go on.
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    # --- creating and reading runs -------------------------------------------------------

    @_guarded
    def insert(self, values: Mapping[str, Any]) -> Run:
        row = dict(values)
        for name in Run._JSON_COLUMNS:
            if name in row:
                row[name] = _dumps(row[name])
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self._write() as db:
            db.execute(f"INSERT INTO runs ({columns}) VALUES ({marks})", tuple(row.values()))
        return self.get(str(values["run_id"]))

    @_guarded
    def get(self, run_id: str) -> Run:
        row = self.db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"No such run: {run_id}")
        return Run.from_row(row)

    @_guarded
    def resolve(self, ref: str) -> Run:
        """A full run id, a unique prefix of one, or `latest` (the most recently created run)."""
        ref = ref.strip()
        if not ref:
            raise NotFoundError("Empty run id")
        if ref == "latest":
            row = self.db.execute("SELECT * FROM runs ORDER BY seq DESC LIMIT 1").fetchone()
            if row is None:
                raise NotFoundError("No runs yet: 'latest' names nothing")
            return Run.from_row(row)
        # A full id is found through the unique index; LIKE scans the whole table (100 000
        # runs: +18 ms for every `bt status <id>`).
        row = self.db.execute("SELECT * FROM runs WHERE run_id = ?", (ref,)).fetchone()
        if row is not None:
            return Run.from_row(row)
        candidates = self.db.execute(
            "SELECT * FROM runs WHERE run_id LIKE ? ESCAPE '\\' ORDER BY seq DESC LIMIT 11",
            (_escape_like(ref) + "%",),
        ).fetchall()
        exact = [row for row in candidates if row["run_id"] == ref]
        if exact:
            return Run.from_row(exact[0])
        if not candidates:
            raise NotFoundError(f"No run matches '{ref}'")
        if len(candidates) > 1:
            names = [row["run_id"] for row in candidates[:10]]
            more = " ..." if len(candidates) > 10 else ""
            raise AmbiguousRunError(
                f"Run id prefix '{ref}' is ambiguous; candidates: {', '.join(names)}{more}"
            )
        return Run.from_row(candidates[0])

    @_guarded
    def list_runs(
        self,
        status: str | None = None,
        script: str | None = None,
        limit: int = 50,
        script_resolved: str | None = None,
    ) -> tuple[int, list[Run]]:
        """(count matching the filters ignoring the limit, newest `limit` of them)."""
        where: list[str] = []
        args: list[Any] = []
        if status:
            where.append("status = ?")
            args.append(status)
        if script:
            # A script matches by the path given at submission, by its file name, or by the
            # absolute path it resolved to.
            where.append(
                "(script_path = ? OR script_path LIKE ? ESCAPE '\\' OR script_resolved = ?)"
            )
            args += [script, "%/" + _escape_like(script), script_resolved or script]
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        total = self.db.execute(f"SELECT COUNT(*) FROM runs {clause}", args).fetchone()[0]
        rows = self.db.execute(
            f"SELECT * FROM runs {clause} ORDER BY seq DESC LIMIT ?", [*args, limit]
        ).fetchall()
        return int(total), [Run.from_row(row) for row in rows]

    @_guarded
    def count_by_status(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for row in self.db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status"):
            counts[row[0]] = int(row[1])
        return counts

    @_guarded
    def runs_with_status(self, status: str) -> list[Run]:
        rows = self.db.execute("SELECT * FROM runs WHERE status = ? ORDER BY seq", (status,))
        return [Run.from_row(row) for row in rows]

    @_guarded
    def has_claimable(self, limit: int) -> bool:
        """Is there a queued run and a free slot? (A cheap read; the claim re-checks.)"""
        row = self.db.execute(
            "SELECT (SELECT COUNT(*) FROM runs WHERE status = 'queued' LIMIT 1),"
            " (SELECT COUNT(*) FROM runs WHERE status = 'running')"
        ).fetchone()
        return bool(row[0]) and int(row[1]) < limit

    # --- state transitions ------------------------------------------------------------------

    @_guarded
    def claim_next(self, limit: int, supervisor: ProcessIdentity) -> Run | None:
        """Atomically move the next queued run to `running`, if fewer than `limit` are running.

        One IMMEDIATE transaction holds the write lock across the count and the update, so any
        number of concurrent workers can neither start a run twice nor exceed the limit.
        """
        with self._write() as db:
            running = db.execute("SELECT COUNT(*) FROM runs WHERE status = 'running'").fetchone()
            if int(running[0]) >= limit:
                return None
            row = db.execute(
                "SELECT run_id FROM runs WHERE status = 'queued'"
                " ORDER BY priority DESC, seq LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE runs SET status = 'running', started_at = ?, supervisor_pid = ?,"
                " supervisor_create_time = ? WHERE run_id = ? AND status = 'queued'",
                (now_iso(), supervisor.pid, supervisor.create_time, row[0]),
            )
        return self.get(row[0])

    @_guarded
    def set_process(self, run_id: str, process: ProcessIdentity) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE runs SET pid = ?, pid_create_time = ? WHERE run_id = ?",
                (process.pid, process.create_time, run_id),
            )

    @_guarded
    def cancel_queued(self, run_id: str) -> bool:
        with self._write() as db:
            cursor = db.execute(
                "UPDATE runs SET status = 'cancelled', completed_at = ?,"
                " error_message = 'cancelled before it started'"
                " WHERE run_id = ? AND status = 'queued'",
                (now_iso(), run_id),
            )
        return cursor.rowcount == 1

    @_guarded
    def request_cancel(self, run_id: str, reason: str = "cancelled by user") -> bool:
        """Mark a running run for cancelling. The first request's reason becomes the run's
        error message (a running run has none yet); `finish` then makes it `cancelled`."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE runs SET"
                " error_message = CASE WHEN cancel_requested THEN error_message ELSE ? END,"
                " cancel_requested = 1"
                " WHERE run_id = ? AND status = 'running'",
                (reason, run_id),
            )
        return cursor.rowcount == 1

    @_guarded
    def cancel_requested(self, run_id: str) -> bool:
        row = self.db.execute(
            "SELECT cancel_requested FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        return bool(row and row[0])

    @_guarded
    def finish(
        self,
        run_id: str,
        status: str,
        error_message: str | None,
        facts: Mapping[str, Any] | None = None,
        from_statuses: Sequence[str] = (RUNNING,),
    ) -> bool:
        """Record `facts` (exit code, resources, validation...) and, if the run is still in one
        of `from_statuses`, make it final. Returns whether this call decided the final status.

        A cancel requested earlier wins over whatever the run ended with, so a run cancelled
        while finishing ends in exactly one final state.
        """
        facts = dict(facts or {})
        if "validation_results" in facts:
            facts["validation_results"] = _dumps(facts["validation_results"])
        with self._write() as db:
            if facts:
                sets = ", ".join(f"{name} = ?" for name in facts)
                db.execute(f"UPDATE runs SET {sets} WHERE run_id = ?", (*facts.values(), run_id))
            marks = ", ".join("?" for _ in from_statuses)
            cursor = db.execute(
                "UPDATE runs SET"
                " status = CASE WHEN cancel_requested THEN 'cancelled' ELSE ? END,"
                " error_message = CASE WHEN cancel_requested"
                "   THEN COALESCE(error_message, 'cancelled by user') ELSE ? END,"
                " completed_at = ?"
                f" WHERE run_id = ? AND status IN ({marks})",
                (status, error_message, now_iso(), run_id, *from_statuses),
            )
        return cursor.rowcount == 1

    @_guarded
    def store_validation(
        self, run_id: str, results: Mapping[str, Any], new_status: str | None, error: str | None
    ) -> None:
        """Store a re-validation; a finished run that exited 0 follows the new result."""
        with self._write() as db:
            db.execute(
                "UPDATE runs SET validation_results = ? WHERE run_id = ?",
                (_dumps(dict(results)), run_id),
            )
            if new_status is not None:
                db.execute(
                    "UPDATE runs SET status = ?, error_message = ? WHERE run_id = ?"
                    " AND exit_code = 0 AND status IN ('completed', 'failed')",
                    (new_status, error, run_id),
                )

    @_guarded
    def set_log_cache(self, run_id: str, size: int, lines: int) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE runs SET log_size = ?, log_lines = ? WHERE run_id = ?",
                (size, lines, run_id),
            )
