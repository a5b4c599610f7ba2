"""The run registry: one SQLite file shared safely by any number of `bt` processes.

Every connection goes through `connect()` (WAL, busy timeout, migrations). Commands that only
read open the file read-only, so they work on a full disk and never wait for a write lock.
Writes are short `BEGIN IMMEDIATE` transactions. Status changes are made only by
`btmanager.lifecycle.state`, inside `Registry.write()`: read the row, decide, update, under one lock.
sqlite3 errors never leave this module raw: they become `RegistryError` or `StorageError`.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from btmanager.errors import (
    AmbiguousRunError,
    NoRegistry,
    NotFoundError,
    RegistryError,
    StorageError,
)
from btmanager.registry.migrations import LATEST_VERSION, migrate
from btmanager.registry.model import STATUSES, CorruptRow, Run, Selection, Status

BUSY_TIMEOUT_MS = 30_000
# The registry holds detached runs' environments (tokens, keys): owner-only, whatever the umask.
REGISTRY_MODE = 0o600

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
    if isinstance(exc, OSError) and exc.strerror:
        return StorageError(f"Cannot use the registry {db_path}: {exc.strerror}")
    return RegistryError(f"Registry {db_path}: {text}")


def _guarded(method: Callable[P, T]) -> Callable[P, T]:
    """Translate sqlite3 errors raised by a Registry method into BtErrors."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        registry = args[0]
        assert isinstance(registry, Registry)
        try:
            return method(*args, **kwargs)
        except (sqlite3.Error, OSError) as exc:
            raise _translate(registry.path, exc) from exc
        except CorruptRow as exc:
            raise RegistryError(f"The registry {registry.path} is corrupt: {exc}") from None

    return wrapper


def _create_private(db_path: Path) -> None:
    """Create the file owner-only before SQLite does: its -wal and -shm files copy the mode."""
    try:
        fd = os.open(db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, REGISTRY_MODE)
    except FileExistsError:
        return
    os.close(fd)


def _make_private(db_path: Path) -> None:
    """Registries made by older versions were world-readable under umask 022: tighten them."""
    try:
        info = db_path.stat()
        if info.st_mode & 0o077 and info.st_uid == os.geteuid():
            os.chmod(db_path, REGISTRY_MODE)
    except (OSError, AttributeError):
        pass  # not ours to change, or no geteuid (Windows): leave it


def connect(
    db_path: Path, create: bool = True, readonly: bool = False, busy_ms: int = BUSY_TIMEOUT_MS
) -> sqlite3.Connection:
    """Open (creating if needed) and migrate the registry; autocommit mode, WAL, busy timeout.

    With `create=False` a missing file is `NoRegistry`, so commands that only read never leave
    an empty registry behind in a folder the user did not mean. With `readonly=True` the file is
    opened read-only (no write, no lock taken, works on a full disk) unless it still needs a
    migration. `busy_ms` is how long to wait for another process's lock before failing.
    """
    if not create and not db_path.exists():
        raise NoRegistry(f"No registry at {db_path} (no runs recorded there yet)")
    if db_path.parent.exists() and not db_path.parent.is_dir():
        raise StorageError(f"The results folder {db_path.parent} is not a directory")
    if readonly:
        try:
            return _open_readonly(db_path, busy_ms)
        except _NeedsWrite:
            pass
    try:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        _create_private(db_path)
        _make_private(db_path)
        db = sqlite3.connect(db_path, timeout=busy_ms / 1000, isolation_level=None)
    except (sqlite3.Error, OSError) as exc:
        raise _translate(db_path, exc) from exc
    try:
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
        version = _check_version(db, db_path)
        if version < LATEST_VERSION:
            # WAL lets readers and one writer work at once; it is persistent, so set it once.
            db.execute("PRAGMA journal_mode = WAL")
            if migrate(db):
                # Creating tables filled the write-ahead log: fold it into the database and
                # give the space back (a small disk would otherwise be full of it).
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        # NORMAL is durable in WAL mode except for the last commits on power loss, and avoids
        # an fsync per transaction (hundreds of them when a queue drains).
        db.execute("PRAGMA synchronous = NORMAL")
    except (sqlite3.Error, OSError) as exc:
        db.close()
        raise _translate(db_path, exc) from exc
    except BaseException:
        db.close()
        raise
    return db


class _NeedsWrite(Exception):
    """A read-only open is not enough (the registry must be migrated first)."""


def _check_version(db: sqlite3.Connection, db_path: Path) -> int:
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > LATEST_VERSION:
        raise RegistryError(
            f"The registry {db_path} was written by a newer bt (schema {version}, this bt "
            f"knows {LATEST_VERSION}); upgrade bt to use it"
        )
    return version


def _open_readonly(db_path: Path, busy_ms: int) -> sqlite3.Connection:
    try:
        return _open_readonly_as(db_path, busy_ms, immutable=False)
    except StorageError:
        # A WAL database read-only needs its -shm file, and cannot create one on a full or
        # read-only disk. With no write-ahead log (the last writer folded it in and removed
        # it), there is nothing uncommitted to miss: read the file as it is.
        wal = db_path.with_name(db_path.name + "-wal")
        try:
            empty_log = not wal.exists() or wal.stat().st_size == 0
        except OSError:
            empty_log = False
        if not empty_log:
            raise
        return _open_readonly_as(db_path, busy_ms, immutable=True)


def _open_readonly_as(db_path: Path, busy_ms: int, immutable: bool) -> sqlite3.Connection:
    uri = f"{db_path.absolute().as_uri()}?mode=ro" + ("&immutable=1" if immutable else "")
    try:
        db = sqlite3.connect(uri, uri=True, timeout=busy_ms / 1000, isolation_level=None)
    except sqlite3.Error as exc:
        raise _translate(db_path, exc) from exc
    try:
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
        if _check_version(db, db_path) < LATEST_VERSION:
            db.close()
            raise _NeedsWrite
    except sqlite3.Error as exc:
        db.close()
        raise _translate(db_path, exc) from exc
    return db


NEXT_CLAIMABLE = """
SELECT r.run_id FROM runs r
WHERE r.status = 'queued'
  AND NOT EXISTS (
    SELECT 1 FROM sweeps s
    WHERE s.sweep_id = r.sweep_id AND s.max_parallel IS NOT NULL
      AND (SELECT COUNT(*) FROM runs x WHERE x.sweep_id = s.sweep_id AND x.status = 'running')
          >= s.max_parallel)
  AND NOT EXISTS (
    SELECT 1 FROM run_after a JOIN runs d ON d.run_id = a.after_run_id
    WHERE a.run_id = r.run_id AND d.status != 'completed')
ORDER BY r.priority DESC, r.seq
LIMIT 1
"""

BROKEN_DEPENDENTS = """
SELECT a.run_id, a.after_run_id, d.status
FROM run_after a
JOIN runs r ON r.run_id = a.run_id
JOIN runs d ON d.run_id = a.after_run_id
WHERE r.status = 'queued' AND d.status IN ('failed', 'cancelled')
ORDER BY r.seq
"""


def _where(selection: Selection) -> tuple[str, list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    if selection.sweep:
        where.append("sweep_id = ?")
        args.append(selection.sweep)
    if selection.label is not None:
        where.append("label = ?")
        args.append(selection.label)
    for tag in selection.tags:
        where.append("EXISTS (SELECT 1 FROM tags t WHERE t.run_id = runs.run_id AND t.tag = ?)")
        args.append(tag)
    if selection.status:
        where.append("status = ?")
        args.append(selection.status)
    if selection.script:
        where.append("(script_path = ? OR script_path LIKE ? ESCAPE '\\' OR script_resolved = ?)")
        args += [
            selection.script,
            "%/" + _escape_like(selection.script),
            selection.script_resolved or selection.script,
        ]
    return (f"WHERE {' AND '.join(where)}" if where else ""), args


def selection_where(selection: Selection) -> tuple[str, list[Any]]:
    """`WHERE ...` and its arguments for the runs a selection matches (over table `runs`)."""
    return _where(selection)


# A run id is `YYYYMMDD_HHMMSS_xxxxxxxx`: its random tail starts at character 17 (1-based).
_TAIL_START = len("YYYYMMDD_HHMMSS_") + 1
_TAIL = re.compile(r"[0-9a-f]{1,8}")


def dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Registry:
    """Typed access to the runs table. Use as a context manager to close the connection."""

    def __init__(
        self,
        path: Path,
        create: bool = True,
        readonly: bool = False,
        busy_ms: int = BUSY_TIMEOUT_MS,
    ) -> None:
        self.path = path
        self.readonly = readonly
        self.db = connect(path, create, readonly, busy_ms)
        # Counts of selections, with the data version they were made at (read-only only).
        self._counts: dict[tuple[str, tuple[Any, ...]], tuple[int, int]] = {}

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction that takes the lock up front (no upgrade deadlocks).

        sqlite3 errors inside are translated like those of every other method.
        """
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _translate(self.path, exc) from exc
        try:
            yield self.db
        except BaseException as exc:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            if isinstance(exc, sqlite3.Error):
                raise _translate(self.path, exc) from exc
            raise
        try:
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            # A failed COMMIT (disk full, I/O error) leaves the transaction open and the write
            # lock held; release it so this connection and other processes can go on.
            if self.db.in_transaction:
                try:
                    self.db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise _translate(self.path, exc) from exc

    # --- rows inside a write transaction (used by btmanager.lifecycle.state) -----------------------

    @staticmethod
    def row_in(db: sqlite3.Connection, run_id: str) -> Run | None:
        row = db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else Run.from_row(row)

    @staticmethod
    def insert_in(db: sqlite3.Connection, values: Mapping[str, Any]) -> None:
        """Insert a run's row; its `tags`, if given (a Run's fields hold them), go to the tags
        table."""
        row = dict(values)
        tags = row.pop("tags", None) or ()
        db.executemany(
            "INSERT OR IGNORE INTO tags (run_id, tag) VALUES (?, ?)",
            [(row["run_id"], tag) for tag in tags],
        )
        for name in Run._JSON_COLUMNS:
            if name in row:
                row[name] = dumps(row[name])
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        db.execute(f"INSERT INTO runs ({columns}) VALUES ({marks})", tuple(row.values()))

    @staticmethod
    def update_in(
        db: sqlite3.Connection,
        run_id: str,
        values: Mapping[str, Any],
        statuses: Sequence[str] | None = None,
    ) -> bool:
        """Set `values` on the run if its status is one of `statuses` (any, if None)."""
        row = dict(values)
        for name in Run._JSON_COLUMNS:
            if name in row:
                row[name] = dumps(row[name])
        sets = ", ".join(f"{name} = ?" for name in row)
        where = "run_id = ?"
        args: list[Any] = [*row.values(), run_id]
        if statuses is not None:
            where += f" AND status IN ({', '.join('?' for _ in statuses)})"
            args += list(statuses)
        cursor = db.execute(f"UPDATE runs SET {sets} WHERE {where}", args)
        return cursor.rowcount == 1

    @staticmethod
    def next_claimable_in(db: sqlite3.Connection) -> str | None:
        """The queued run to start next: highest priority, then oldest, among those whose
        sweep is below its own cap and whose `--after` runs have all completed."""
        row = db.execute(NEXT_CLAIMABLE).fetchone()
        return None if row is None else str(row[0])

    @staticmethod
    def broken_dependents_in(db: sqlite3.Connection) -> list[tuple[str, str, str]]:
        """Queued runs waiting for a run that failed or was cancelled: (run, dependency,
        the dependency's status)."""
        rows = db.execute(BROKEN_DEPENDENTS).fetchall()
        return [(str(row[0]), str(row[1]), str(row[2])) for row in rows]

    @staticmethod
    def running_count_in(db: sqlite3.Connection) -> int:
        return int(db.execute("SELECT COUNT(*) FROM runs WHERE status = 'running'").fetchone()[0])

    @staticmethod
    def setting_in(db: sqlite3.Connection, key: str) -> str | None:
        row = db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    # --- reading runs ---------------------------------------------------------------------

    @_guarded
    def get(self, run_id: str) -> Run:
        run = self.row_in(self.db, run_id)
        if run is None:
            raise NotFoundError(f"No such run: {run_id}")
        return self._tagged([run])[0]

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
            return self._tagged([Run.from_row(row)])[0]
        # A full id is found through the unique index; LIKE scans the whole table (100 000
        # runs: +18 ms for every `bt status <id>`).
        row = self.db.execute("SELECT * FROM runs WHERE run_id = ?", (ref,)).fetchone()
        if row is not None:
            return self._tagged([Run.from_row(row)])[0]
        # Also a prefix of the 8-hex tail (`d766ff8b` of 20260101_120000_d766ff8b), in the same
        # single pass over the table as the prefix match.
        sql = "SELECT * FROM runs WHERE run_id LIKE ? ESCAPE '\\'"
        args: list[Any] = [_escape_like(ref) + "%"]
        tail = ref.lower()
        if _TAIL.fullmatch(tail):
            sql += " OR substr(run_id, ?, ?) = ?"
            args += [_TAIL_START, len(tail), tail]
        candidates = self.db.execute(f"{sql} ORDER BY seq DESC LIMIT 11", args).fetchall()
        if not candidates:
            raise NotFoundError(f"No run matches '{ref}'")
        if len(candidates) > 1:
            names = [row["run_id"] for row in candidates[:10]]
            more = " ..." if len(candidates) > 10 else ""
            raise AmbiguousRunError(
                f"Run id prefix '{ref}' is ambiguous; candidates: {', '.join(names)}{more}"
            )
        return self._tagged([Run.from_row(candidates[0])])[0]

    @_guarded
    def select(
        self, selection: Selection | None = None, limit: int | None = 50, offset: int = 0
    ) -> tuple[int, list[Run]]:
        """(count of runs the selection matches, ignoring the limit; newest `limit` of them,
        after skipping the newest `offset`)."""
        clause, args = _where(selection or Selection())
        total = self._count(clause, args)
        sql = f"SELECT * FROM runs {clause} ORDER BY seq DESC"
        if limit is not None or offset:
            sql += " LIMIT ? OFFSET ?"
            args = [*args, -1 if limit is None else limit, offset]
        rows = self.db.execute(sql, args).fetchall()
        return int(total), self._tagged([Run.from_row(row) for row in rows])

    def _count(self, clause: str, args: list[Any]) -> int:
        """COUNT(*) visits every matching row (~2 ms per 100 000). A long-lived read-only
        connection (`bt serve`'s) keeps each count until another connection commits, which
        SQLite's data_version tells; this one never writes, so its own writes cannot be missed.
        """
        sql = f"SELECT COUNT(*) FROM runs {clause}"
        if not self.readonly:
            return int(self.db.execute(sql, args).fetchone()[0])
        version = int(self.db.execute("PRAGMA data_version").fetchone()[0])
        key = (clause, tuple(args))
        cached = self._counts.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        total = int(self.db.execute(sql, args).fetchone()[0])
        if len(self._counts) >= 64:
            self._counts.clear()
        self._counts[key] = (version, total)
        return total

    def list_runs(
        self,
        status: str | None = None,
        script: str | None = None,
        limit: int = 50,
        script_resolved: str | None = None,
    ) -> tuple[int, list[Run]]:
        return self.select(
            Selection(status=status, script=script, script_resolved=script_resolved), limit
        )

    @_guarded
    def resolve_sweep(self, ref: str) -> str:
        """A full sweep id, a unique prefix of one (with or without `sweep_`), or `latest`."""
        ref = ref.strip()
        if not ref:
            raise NotFoundError("Empty sweep id")
        if ref == "latest":
            newest = self.db.execute(
                "SELECT sweep_id FROM sweeps ORDER BY created_at DESC, rowid DESC LIMIT 1"
            ).fetchone()
            if newest is None:
                raise NotFoundError("No sweeps yet: 'latest' names nothing")
            return str(newest[0])
        prefix = ref if ref.startswith("sweep_") else f"sweep_{ref}"
        rows = self.db.execute(
            "SELECT sweep_id FROM sweeps WHERE sweep_id LIKE ? ESCAPE '\\' ORDER BY created_at DESC"
            " LIMIT 11",
            (_escape_like(prefix) + "%",),
        ).fetchall()
        exact = [row[0] for row in rows if row[0] == prefix]
        if exact:
            return str(exact[0])
        if not rows:
            raise NotFoundError(f"No sweep matches '{ref}'")
        if len(rows) > 1:
            names = ", ".join(str(row[0]) for row in rows[:10])
            raise AmbiguousRunError(f"Sweep id prefix '{ref}' is ambiguous; candidates: {names}")
        return str(rows[0][0])

    @_guarded
    def get_many(self, run_ids: Sequence[str]) -> list[Run]:
        """The runs, in the order given (missing ones are left out)."""
        found: dict[str, Run] = {}
        for start in range(0, len(run_ids), 500):
            chunk = list(run_ids[start : start + 500])
            marks = ", ".join("?" for _ in chunk)
            for row in self.db.execute(f"SELECT * FROM runs WHERE run_id IN ({marks})", chunk):
                run = Run.from_row(row)
                found[run.run_id] = run
        return self._tagged([found[run_id] for run_id in run_ids if run_id in found])

    def _tagged(self, runs: list[Run]) -> list[Run]:
        """The runs with their tags (one indexed read; most runs have none)."""
        if len(runs) == 1:
            rows = self.db.execute(
                "SELECT tag FROM tags WHERE run_id = ? ORDER BY tag", (runs[0].run_id,)
            )
            runs[0].tags = [str(row[0]) for row in rows]
            return runs
        tags = self.tags_of([run.run_id for run in runs])
        for run in runs:
            run.tags = tags.get(run.run_id, [])
        return runs

    @_guarded
    def tags_of(self, run_ids: Sequence[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {run_id: [] for run_id in run_ids}
        for start in range(0, len(run_ids), 500):
            chunk = list(run_ids[start : start + 500])
            marks = ", ".join("?" for _ in chunk)
            for row in self.db.execute(
                f"SELECT run_id, tag FROM tags WHERE run_id IN ({marks}) ORDER BY tag", chunk
            ):
                found[str(row[0])].append(str(row[1]))
        return found

    @_guarded
    def metrics_of(self, run_id: str) -> dict[str, float]:
        """summary.csv's numeric metrics as stored at the run's last validation, in file order."""
        rows = self.db.execute(
            "SELECT name, value FROM metrics WHERE run_id = ? ORDER BY rowid", (run_id,)
        )
        return {str(row[0]): float(row[1]) for row in rows if row[1] is not None}

    @_guarded
    def removable(
        self,
        *,
        ended_before: str | None,
        statuses: Sequence[str],
        keep_last: int | None,
        protect_tag: str,
    ) -> list[Run]:
        """Finished runs `bt gc` may remove, newest first: of `statuses`, none tagged
        `protect_tag`, not among the newest `keep_last` of those (whatever their age), and
        ended (else created) before `ended_before`."""
        marks = ", ".join("?" for _ in statuses)
        inner = (
            f"SELECT * FROM runs WHERE status IN ({marks}) AND NOT EXISTS"
            " (SELECT 1 FROM tags t WHERE t.run_id = runs.run_id AND t.tag = ?)"
            " ORDER BY seq DESC LIMIT -1 OFFSET ?"
        )
        args: list[Any] = [*statuses, protect_tag, keep_last or 0]
        sql = f"SELECT * FROM ({inner})"
        if ended_before is not None:
            # ISO 8601 times in UTC, all written the same way: text order is time order.
            sql += " WHERE COALESCE(completed_at, created_at) < ?"
            args.append(ended_before)
        sql += " ORDER BY seq DESC"
        return self._tagged([Run.from_row(row) for row in self.db.execute(sql, args)])

    @_guarded
    def count_by_status(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for row in self.db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status"):
            counts[row[0]] = int(row[1])
        return counts

    @_guarded
    def runs_with_status(self, status: str) -> list[Run]:
        rows = self.db.execute("SELECT * FROM runs WHERE status = ? ORDER BY seq", (status,))
        return self._tagged([Run.from_row(row) for row in rows])

    @_guarded
    def any_running(self) -> bool:
        row = self.db.execute("SELECT EXISTS (SELECT 1 FROM runs WHERE status = 'running')")
        return bool(row.fetchone()[0])

    @_guarded
    def has_claimable(self, limit: int) -> bool:
        """Is there work for a worker: a startable queued run and a free slot, or queued runs
        to cancel because a run they wait for failed? (A cheap read; the claim re-checks.)"""
        if self.broken_dependents_in(self.db):
            return True
        if self.running_count_in(self.db) >= limit:
            return False
        return self.next_claimable_in(self.db) is not None

    @_guarded
    def cancel_requested(self, run_id: str) -> bool:
        row = self.db.execute(
            "SELECT cancel_requested FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        return bool(row and row[0])

    @_guarded
    def quick_check(self) -> str:
        """SQLite's own consistency check: "ok", or what it found."""
        rows = self.db.execute("PRAGMA quick_check").fetchall()
        return "; ".join(str(row[0]) for row in rows[:5]) or "ok"

    @_guarded
    def setting(self, key: str) -> str | None:
        return self.setting_in(self.db, key)

    @_guarded
    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """The rows of a read query, for modules with queries of their own (sweeps, compare);
        sqlite3 errors become BtErrors as everywhere else."""
        return self.db.execute(sql, tuple(args)).fetchall()

    # --- writes that do not change a run's status -------------------------------------------

    @_guarded
    def set_setting(self, key: str, value: str) -> None:
        with self.write() as db:
            db.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    @_guarded
    def change_tags(self, run_id: str, add: Sequence[str], remove: Sequence[str]) -> None:
        with self.write() as db:
            if self.row_in(db, run_id) is None:
                raise NotFoundError(f"No such run: {run_id}")
            db.executemany(
                "INSERT OR IGNORE INTO tags (run_id, tag) VALUES (?, ?)",
                [(run_id, tag) for tag in add],
            )
            db.executemany(
                "DELETE FROM tags WHERE run_id = ? AND tag = ?", [(run_id, tag) for tag in remove]
            )

    @_guarded
    def set_note(self, run_id: str, text: str | None, append: bool = False) -> None:
        """Replace the note (None clears it), or add `text` as a new line of it."""
        with self.write() as db:
            if append:
                cursor = db.execute(
                    "UPDATE runs SET note = CASE WHEN note IS NULL OR note = '' THEN ?1"
                    " ELSE note || char(10) || ?1 END WHERE run_id = ?2",
                    (text, run_id),
                )
            else:
                cursor = db.execute("UPDATE runs SET note = ? WHERE run_id = ?", (text, run_id))
            if cursor.rowcount != 1:
                raise NotFoundError(f"No such run: {run_id}")

    @_guarded
    def set_log_cache(self, run_id: str, size: int, lines: int) -> None:
        with self.write() as db:
            db.execute(
                "UPDATE runs SET log_size = ?, log_lines = ? WHERE run_id = ?",
                (size, lines, run_id),
            )


__all__ = ["BUSY_TIMEOUT_MS", "NoRegistry", "Registry", "Status", "connect"]
