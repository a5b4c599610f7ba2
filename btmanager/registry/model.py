"""What the registry stores about a run: statuses, failure kinds, process identities, the row."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple

from btmanager.timeutil import parse_iso, seconds_between

if TYPE_CHECKING:
    import sqlite3


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


STATUSES = tuple(str(status) for status in Status)
FINAL_STATUSES = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})


class FailureKind(StrEnum):
    """Why a run did not complete; decided where the run ends, never parsed from messages."""

    EXIT_CODE = "exit_code"
    SIGNAL = "signal"
    TIMEOUT = "timeout"
    VALIDATION = "validation"
    CANCELLED = "cancelled"
    SUPERVISOR_LOST = "supervisor_lost"
    DEPENDENCY = "dependency"
    LAUNCH = "launch"  # the script could not be started at all
    FOLDER_LOST = "folder_lost"  # the run folder disappeared while the script ran


# Short reasons for tables (`bt list`), by failure kind.
FAILURE_REASONS = {
    FailureKind.EXIT_CODE: "exit code {code}",
    FailureKind.SIGNAL: "killed by {signal}",
    FailureKind.TIMEOUT: "timed out",
    FailureKind.VALIDATION: "validation errors",
    FailureKind.CANCELLED: "cancelled",
    FailureKind.SUPERVISOR_LOST: "supervisor lost",
    FailureKind.DEPENDENCY: "dependency failed",
    FailureKind.LAUNCH: "could not start",
    FailureKind.FOLDER_LOST: "folder disappeared",
}


class ProcessIdentity(NamedTuple):
    """A pid plus its create time: together they survive pid reuse."""

    pid: int
    create_time: float


def _identity(pid: int | None, made: float | None) -> ProcessIdentity | None:
    return ProcessIdentity(pid, made) if pid is not None and made is not None else None


class CorruptRow(ValueError):
    """A registry row whose stored values cannot be read back."""


class Run:
    """One row of the registry.

    A plain class with its __init__ written out: as a dataclass (45 fields) it cost ~3 ms to
    build on every `bt` command's start-up.
    """

    def __init__(
        self,
        seq: int,
        run_id: str,
        script_path: str,
        script_resolved: str,
        params: dict[str, Any],
        extra_args: list[str],
        command: list[str],
        cwd: str,
        output_dir: str,
        status: str,
        label: str | None,
        created_at: str,
        started_at: str | None,
        completed_at: str | None,
        exit_code: int | None,
        error_message: str | None,
        validation_results: dict[str, Any] | None,
        pid: int | None,
        pid_create_time: float | None,
        priority: int,
        detached: bool,
        nice: int | None,
        timeout_seconds: float | None,
        grace_seconds: float,
        validate: bool,
        rules: dict[str, Any] | None,
        supervisor_pid: int | None,
        supervisor_create_time: float | None,
        cancel_requested: bool,
        peak_memory_bytes: int | None,
        cpu_seconds: float | None,
        log_size: int | None,
        log_lines: int | None,
        env: dict[str, str] | None,
        failure_kind: str | None = None,
        worker_pid: int | None = None,
        worker_create_time: float | None = None,
        cancel_grace: float | None = None,
        sweep_id: str | None = None,
        rerun_of: str | None = None,
        note: str | None = None,
        provenance: dict[str, Any] | None = None,
        host: str | None = None,
        executor: str | None = None,
        tags: list[str] | None = None,
    ) -> None:
        self.seq = seq
        self.run_id = run_id
        self.script_path = script_path
        self.script_resolved = script_resolved
        self.params = params  # text, or a params file's numbers and booleans; None: a flag
        self.extra_args = extra_args
        self.command = command
        self.cwd = cwd
        self.output_dir = output_dir
        self.status = status
        self.label = label
        self.created_at = created_at
        self.started_at = started_at
        self.completed_at = completed_at
        self.exit_code = exit_code
        self.error_message = error_message
        self.validation_results = validation_results
        self.pid = pid
        self.pid_create_time = pid_create_time
        self.priority = priority
        self.detached = detached
        self.nice = nice
        self.timeout_seconds = timeout_seconds
        self.grace_seconds = grace_seconds
        self.validate = validate
        self.rules = rules
        self.supervisor_pid = supervisor_pid
        self.supervisor_create_time = supervisor_create_time
        self.cancel_requested = cancel_requested
        self.peak_memory_bytes = peak_memory_bytes
        self.cpu_seconds = cpu_seconds
        self.log_size = log_size
        self.log_lines = log_lines
        self.env = env
        self.failure_kind = failure_kind
        self.worker_pid = worker_pid
        self.worker_create_time = worker_create_time
        self.cancel_grace = cancel_grace
        self.sweep_id = sweep_id
        self.rerun_of = rerun_of
        self.note = note
        self.provenance = provenance
        self.host = host
        self.executor = executor
        # Not a column: the `tags` table's rows for this run, filled in by the Registry's readers.
        self.tags: list[str] = tags if tags is not None else []

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Run):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in RUN_FIELDS)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it was

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in RUN_FIELDS)
        return f"Run({shown})"

    _JSON_COLUMNS = (
        "params",
        "extra_args",
        "command",
        "validation_results",
        "rules",
        "env",
        "provenance",
    )
    _BOOL_COLUMNS = ("detached", "validate", "cancel_requested")
    _TIME_COLUMNS = ("created_at", "started_at", "completed_at")

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Run:
        import json  # here: a foreground `bt run` hands its run over before it needs json

        # dict(row) looks every column up by name: 5x slower than pairing the keys.
        values = dict(zip(row.keys(), row, strict=True))
        name = ""
        try:
            for name in cls._JSON_COLUMNS:
                if values.get(name) is not None:
                    values[name] = json.loads(values[name])
            for name in cls._TIME_COLUMNS:
                if values.get(name) is not None:
                    parse_iso(values[name])
            if values.get("status") not in STATUSES:
                name = "status"
                raise ValueError(f"unknown status {values.get('status')!r}")
        except (ValueError, TypeError) as exc:
            raise CorruptRow(
                f"run {values.get('run_id')!r} has an unreadable {name}: {exc}"
            ) from None
        for name in cls._BOOL_COLUMNS:
            values[name] = bool(values[name])
        return cls(**{name: values[name] for name in RUN_FIELDS if name in values})

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def script_identity(self) -> ProcessIdentity | None:
        """The script's pid and create time, once it has started."""
        return _identity(self.pid, self.pid_create_time)

    @property
    def supervisor_identity(self) -> ProcessIdentity | None:
        """The run's own supervisor (the script's parent), once it has recorded itself."""
        return _identity(self.supervisor_pid, self.supervisor_create_time)

    @property
    def worker_identity(self) -> ProcessIdentity | None:
        """The worker that claimed the run, or the foreground `bt` that watches it."""
        return _identity(self.worker_pid, self.worker_create_time)

    @property
    def duration_seconds(self) -> float | None:
        return seconds_between(self.started_at, self.completed_at)

    @property
    def failure_reason(self) -> str | None:
        """A short reason for a run that did not complete (`bt list`'s column)."""
        if self.failure_kind is None:
            return None
        try:
            kind = FailureKind(self.failure_kind)
        except ValueError:
            return self.failure_kind
        code = self.exit_code
        signal_name = f"signal {-code}" if code is not None else "a signal"
        if code is not None and code < 0:
            from btmanager.execution.exits import signal_name as name_of

            signal_name = name_of(-code)
        return FAILURE_REASONS[kind].format(code=code, signal=signal_name)

    def to_status_dict(self) -> dict[str, Any]:
        """The status shape of `bt status --json` (and of the HTTP API)."""
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
            "failure_kind": self.failure_kind,
            "validation_results": self.validation_results,
            "duration_seconds": self.duration_seconds,
            "pid": self.pid,
            "supervisor_pid": self.supervisor_pid,
            "worker_pid": self.worker_pid,
            "label": self.label,
            "priority": self.priority,
            "peak_memory_bytes": self.peak_memory_bytes,
            "cpu_seconds": self.cpu_seconds,
            "command": self.command,
            "extra_args": self.extra_args,
            "cwd": self.cwd,
            "detached": self.detached,
            "timeout_seconds": self.timeout_seconds,
            "grace_seconds": self.grace_seconds,
            "sweep_id": self.sweep_id,
            "rerun_of": self.rerun_of,
            "note": self.note,
            "tags": self.tags,
            "provenance": self.provenance,
            "host": self.host,
            "executor": self.executor or "local",
        }


# Every attribute of a Run, in the order of its __init__ (rows, run.json, equality): read from
# the __init__ itself, so a new column cannot be left out of it.
RUN_FIELDS: tuple[str, ...] = Run.__init__.__code__.co_varnames[
    1 : Run.__init__.__code__.co_argcount + Run.__init__.__code__.co_kwonlyargcount
]


class Selection(NamedTuple):
    """Which runs a command acts on (`--sweep/--label/--tag/--status/--script`): all must hold.

    `sweep` is a full sweep id (resolve prefixes with `Registry.resolve_sweep`); `script`
    matches the path given at submission, its file name, or `script_resolved`.
    """

    sweep: str | None = None
    label: str | None = None
    tags: tuple[str, ...] = ()
    status: str | None = None
    script: str | None = None
    script_resolved: str | None = None

    @property
    def is_empty(self) -> bool:
        return not (self.sweep or self.label is not None or self.tags or self.status or self.script)
