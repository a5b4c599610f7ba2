"""Removing runs (`bt rm`, `bt gc`): their registry rows, then their folders.

Safe by construction:
- only finished runs go: the row is deleted in one guarded transaction (`RunStates.delete`,
  `WHERE status IN` the final statuses), so a run that was queued or started meanwhile stays;
  the folder is deleted only after its row is gone;
- only a run's own folder inside the results root goes: a folder that is a symlink, that is
  not named `run_<id>`, or that resolves anywhere but directly inside the results root is
  refused (the run stays, row and folder), and the deletion itself never follows a symlink.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from btmanager.errors import UsageError
from btmanager.lifecycle.state import RunStates
from btmanager.registry.model import STATUSES, Run, Status
from btmanager.settings import Settings

_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_AGE_DAYS = 100 * 366


@dataclass
class Removed:
    run_id: str
    status: str
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "status": self.status, "bytes": self.bytes}


@dataclass
class Removal:
    """What `bt rm` / `bt gc` removed (or, with `dry_run`, would remove) and what it left."""

    removed: list[Removed] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (run id, why)
    dry_run: bool = False

    @property
    def bytes_freed(self) -> int:
        return sum(item.bytes for item in self.removed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "removed": [item.run_id for item in self.removed],
            "bytes_freed": self.bytes_freed,
            "runs": [item.to_dict() for item in self.removed],
            "skipped": [{"run_id": run_id, "reason": why} for run_id, why in self.skipped],
            "dry_run": self.dry_run,
        }


def parse_age(text: str) -> timedelta:
    """`30d`, `12h`, `90m`, `45s`, `2w` (a number and a unit) as a duration."""
    match = _AGE.fullmatch(text.strip().lower())
    if not match:
        raise UsageError(
            f"Invalid age {text!r}: a number and a unit, s, m, h, d or w (e.g. 30d, 12h)"
        )
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds > MAX_AGE_DAYS * 86400:  # also what timedelta could not hold
        raise UsageError(f"Invalid age {text!r}: at most {MAX_AGE_DAYS // 366} years")
    return timedelta(seconds=seconds)


def parse_statuses(text: str | None) -> list[str]:
    """`failed,cancelled` -> the statuses; default: every final status."""
    finals = [str(status) for status in (Status.COMPLETED, Status.FAILED, Status.CANCELLED)]
    if text is None:
        return finals
    chosen = [item.strip() for item in text.split(",") if item.strip()]
    if not chosen:
        raise UsageError("--status needs at least one status")
    for item in chosen:
        if item not in STATUSES:
            raise UsageError(f"Unknown status {item!r}; expected some of {', '.join(finals)}")
        if item not in finals:
            raise UsageError(
                f"Runs that are {item} are never removed; choose among {', '.join(finals)}"
            )
    return list(dict.fromkeys(chosen))


def folder_problem(settings: Settings, run: Run) -> str | None:
    """Why the run's folder must not be deleted, or None (deleting it is safe, or it is gone)."""
    folder = Path(run.output_dir)
    if folder.name != f"run_{run.run_id}":
        return f"its folder {folder} is not named run_{run.run_id}"
    try:
        info = folder.lstat()
    except FileNotFoundError:
        return None  # nothing left to delete
    except OSError as exc:
        return f"its folder {folder} cannot be examined ({exc.strerror or exc})"
    if stat.S_ISLNK(info.st_mode):
        return f"its folder {folder} is a symlink (bt deletes only real run folders)"
    if not stat.S_ISDIR(info.st_mode):
        return f"{folder} is not a folder"
    try:
        inside = folder.parent.resolve() == settings.results_dir.resolve()
    except (OSError, RuntimeError):
        inside = False
    if not inside:
        return f"its folder {folder} is outside the results root {settings.results_dir}"
    return None


def folder_bytes(folder: Path) -> int:
    """Bytes a folder's deletion frees: its regular files not linked from elsewhere (symlinks
    and what they point at are not followed)."""
    total = 0
    for directory, _subdirs, files in os.walk(folder):
        for name in files:
            try:
                info = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
                total += info.st_size
    return total


def remove_runs(
    settings: Settings,
    states: RunStates | None,
    runs: list[Run],
    unless_tagged: str | None = None,
) -> Removal:
    """Remove each finished run: row first (guarded), then its folder. Without `states`, a
    dry run: what would be removed, and the bytes it would free."""
    import shutil

    dry_run = states is None
    result = Removal(dry_run=dry_run)
    for run in runs:
        problem = f"it is {run.status}" if not run.is_final else folder_problem(settings, run)
        if problem is not None:
            result.skipped.append((run.run_id, problem))
            continue
        folder = Path(run.output_dir)
        size = folder_bytes(folder)
        if states is None:
            result.removed.append(Removed(run.run_id, run.status, size))
            continue
        if states.delete(run.run_id, unless_tagged) is None:
            also = f", or tagged {unless_tagged}" if unless_tagged else ""
            result.skipped.append(
                (run.run_id, f"it changed meanwhile (removed by another bt{also})")
            )
            continue
        try:
            # On Linux rmtree works through directory file descriptors and refuses a
            # symlink, so a folder swapped for a link after the check above is not followed.
            shutil.rmtree(folder)
        except FileNotFoundError:
            pass
        except OSError as exc:
            size -= folder_bytes(folder)  # what is left was not freed
            where = f" ({exc.filename})" if exc.filename else ""
            left = f"removed from the registry, but its folder was left: {exc.strerror or exc}"
            result.skipped.append((run.run_id, left + where))
        result.removed.append(Removed(run.run_id, run.status, size))
    return result
