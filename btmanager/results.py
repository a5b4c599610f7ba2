"""A run folder's files: listing them, and handing out one without ever leaving the folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from btmanager.errors import NotFoundError, UsageError

STATE_DIR = ".bt"  # bt's own files in a run folder (see btmanager.lifecycle.exitrecord)


@dataclass(frozen=True)
class ResultFile:
    name: str  # relative to the run folder, with '/'
    size: int
    modified: str

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "size": self.size, "modified": self.modified}


def list_files(folder: Path) -> list[ResultFile]:
    """Every regular file below the folder (recursively), sorted by name.

    Symlinks are listed only if they point at a file inside the folder, the same rule as
    `safe_path`, so what is listed can always be downloaded.
    """
    if not folder.is_dir():
        raise NotFoundError(f"Run folder not found: {folder}")
    root = folder.resolve()
    found: list[ResultFile] = []
    for directory, subdirs, files in os.walk(folder):
        if Path(directory) == folder and STATE_DIR in subdirs:
            subdirs.remove(STATE_DIR)  # bt's own bookkeeping, not a result
        subdirs.sort()
        for filename in files:
            path = Path(directory) / filename
            try:
                real = path.resolve(strict=True)
                if not real.is_relative_to(root) or not real.is_file():
                    continue
                stat = real.stat()
            except (OSError, RuntimeError):
                continue
            relative = path.relative_to(folder).as_posix()
            modified = datetime.fromtimestamp(stat.st_mtime, UTC).isoformat(timespec="seconds")
            found.append(ResultFile(relative, stat.st_size, modified))
    return sorted(found, key=lambda item: item.name)


def safe_path(folder: Path, name: str) -> Path:
    """The file `name` inside `folder`; refuses anything that resolves outside it."""
    if not name or "\x00" in name:
        raise UsageError("A result file name must not be empty")
    relative = PurePosixPath(name.replace("\\", "/"))
    if relative.is_absolute() or Path(name).is_absolute() or Path(name).drive:
        raise UsageError(f"Refusing {name!r}: result paths are relative to the run folder")
    if ".." in relative.parts:
        raise UsageError(f"Refusing {name!r}: '..' is not allowed in result paths")
    root = folder.resolve()
    candidate = folder.joinpath(*relative.parts)
    try:
        real = candidate.resolve(strict=True)
    except FileNotFoundError:
        raise NotFoundError(f"No file {name!r} in {folder}") from None
    except (OSError, RuntimeError) as exc:
        raise UsageError(f"Cannot open {name!r}: {exc}") from None
    if not real.is_relative_to(root):
        raise UsageError(f"Refusing {name!r}: it resolves outside the run folder (symlink)")
    if not real.is_file():
        raise UsageError(f"{name!r} is not a file")
    return real
