"""`bt registry rebuild`: the registry recorded again from the run folders' run.json files.

Each run folder's run.json is rewritten whenever its run changes (and when it is tagged or
noted), so the folders hold what the registry held about them. A corrupt registry file is
kept aside (`bt.sqlite3.corrupt-<time>`, with its -wal and -shm files, which belong to it and
must not be applied to the new one); a missing one is created; a healthy one only gains the
runs it lacks, so a rebuild can be repeated safely.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from btmanager.errors import NotFoundError, RegistryError
from btmanager.registry.db import BUSY_TIMEOUT_MS, Registry
from btmanager.registry.migrations import LATEST_VERSION
from btmanager.registry.model import RUN_FIELDS, STATUSES
from btmanager.settings import Settings
from btmanager.timeutil import Clock, parse_iso

RUN_ID = re.compile(r"\d{8}_\d{6}_[0-9a-f]{8}")
MAX_RUN_FILE = 64 << 20
# What run.json carries of a run's row, tags included (the rest start empty: log counts,
# cancel requests, the environment of old versions).
_COLUMNS = tuple(
    name
    for name in RUN_FIELDS
    if name not in ("seq", "env", "log_size", "log_lines", "cancel_requested")
)
_REQUIRED = ("run_id", "script_path", "params", "command", "cwd", "status", "created_at")


@dataclass
class Rebuild:
    recovered: int = 0
    already: int = 0  # runs the registry had already
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (folder name, why)
    set_aside: Path | None = None
    registry: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "recovered": self.recovered,
            "already_recorded": self.already,
            "skipped": [{"folder": name, "reason": why} for name, why in self.skipped],
            "registry": str(self.registry) if self.registry else None,
            "set_aside": str(self.set_aside) if self.set_aside else None,
        }


def rebuild(settings: Settings, clock: Clock) -> Rebuild:
    root = settings.results_dir
    if not root.is_dir():
        raise NotFoundError(f"No results folder at {root} (see --results-dir / BT_RESULTS_DIR)")
    result = Rebuild(registry=settings.db_path)
    problem = registry_problem(settings.db_path)
    if problem is not None:
        result.set_aside = set_aside(settings.db_path, clock)
    rows: list[dict[str, Any]] = []
    metrics: dict[str, dict[str, float]] = {}
    for folder in sorted(root.glob("run_*")):
        try:
            document = _read_run_file(folder)
            row = _row(folder, document)
        except _Skip as skip:
            result.skipped.append((folder.name, str(skip)))
            continue
        rows.append(row)
        if row["validation_results"] is not None:
            from btmanager.validation.metrics import read_metrics

            metrics[row["run_id"]] = read_metrics(folder)
    rows.sort(key=lambda row: (str(row["created_at"]), str(row["run_id"])))
    from btmanager.lifecycle.state import RunStates

    with Registry(settings.db_path, create=True) as registry:
        restored = RunStates(registry, clock, write_files=False).restore_many(rows, metrics)
    result.recovered = len(restored)
    result.already = len(rows) - len(restored)
    return result


def registry_problem(db_path: Path) -> str | None:
    """Why the registry file is corrupt, or None (healthy, or missing). A registry that is
    merely busy, or written by a newer bt, is an error: it must not be replaced."""
    if not db_path.exists():
        return None
    uri = f"{db_path.absolute().as_uri()}?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > LATEST_VERSION:
            raise RegistryError(
                f"The registry {db_path} was written by a newer bt (schema {version}); "
                "upgrade bt rather than rebuild it"
            )
        verdict = [str(row[0]) for row in db.execute("PRAGMA quick_check").fetchall()[:5]]
        if verdict != ["ok"]:
            return "; ".join(verdict)
        db.execute("SELECT COUNT(*) FROM runs").fetchone()
    except sqlite3.OperationalError as exc:
        text = str(exc).lower()
        if "locked" in text or "busy" in text:
            raise RegistryError(f"The registry {db_path} is in use; try again") from None
        return str(exc)
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        db.close()
    return None


def set_aside(db_path: Path, clock: Clock) -> Path:
    """Rename the registry (and its -wal, -shm files) to `<name>.corrupt-<UTC time>`."""
    stamp = clock.now().strftime("%Y%m%dT%H%M%SZ")
    target = db_path.with_name(f"{db_path.name}.corrupt-{stamp}")
    count = 1
    while target.exists():
        count += 1
        target = db_path.with_name(f"{db_path.name}.corrupt-{stamp}-{count}")
    os.replace(db_path, target)
    for suffix in ("-wal", "-shm"):
        companion = db_path.with_name(db_path.name + suffix)
        if companion.exists():
            os.replace(companion, target.with_name(target.name + suffix))
    return target


class _Skip(Exception):
    """A run folder that cannot be recorded again (the message says why)."""


def _read_run_file(folder: Path) -> dict[str, Any]:
    if folder.is_symlink() or not folder.is_dir():
        raise _Skip("not a run folder (a symlink, or not a folder)")
    path = folder / "run.json"
    try:
        if path.is_symlink():
            raise _Skip("run.json is a symlink")
        if path.stat().st_size > MAX_RUN_FILE:
            raise _Skip("run.json is too large")
        document = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise _Skip("no run.json") from None
    except OSError as exc:
        raise _Skip(f"run.json cannot be read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _Skip("run.json is not valid JSON") from None
    if not isinstance(document, dict):
        raise _Skip("run.json is not a JSON object")
    return document


def _row(folder: Path, document: dict[str, Any]) -> dict[str, Any]:
    missing = [key for key in _REQUIRED if document.get(key) is None]
    if missing:
        raise _Skip(f"run.json lacks {', '.join(missing)}")
    run_id = document["run_id"]
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise _Skip(f"run.json holds no valid run id ({run_id!r})")
    if folder.name != f"run_{run_id}":
        raise _Skip(f"run.json is that of run {run_id}, not of this folder")
    if document["status"] not in STATUSES:
        raise _Skip(f"unknown status {document['status']!r}")
    try:
        for key in ("created_at", "started_at", "completed_at"):
            if document.get(key) is not None:
                parse_iso(str(document[key]))
    except ValueError:
        raise _Skip(f"unreadable time in run.json ({key})") from None
    if not isinstance(document["params"], dict) or not isinstance(document["command"], list):
        raise _Skip("run.json has unreadable params or command")
    row = {name: document.get(name) for name in _COLUMNS}
    tags = document.get("tags") or []
    if not isinstance(tags, list):
        raise _Skip("run.json has unreadable tags")
    row["tags"] = [str(tag) for tag in tags]
    # The folder is where it is now (the results root may have moved since).
    row["output_dir"] = str(folder.absolute())
    row["script_resolved"] = document.get("script_resolved") or _script_of(document)
    for name, default in (("priority", 0), ("detached", False), ("grace_seconds", 10.0)):
        if row[name] is None:
            row[name] = default
    row["validate"] = int(document.get("validate", True) is not False)
    row["detached"] = int(bool(row["detached"]))
    return row


def _script_of(document: dict[str, Any]) -> str:
    """The script's full path, for a run.json written before it recorded it: the command's
    argument that names the script, else the script as given, from the run's folder."""
    name = Path(str(document["script_path"])).name
    for argument in document["command"][:2]:
        if isinstance(argument, str) and Path(argument).name == name:
            return argument
    return str(Path(str(document["cwd"])) / str(document["script_path"]))
