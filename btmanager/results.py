"""A run folder's files: listing them, and handing out one without ever leaving the folder.

Both go through `safe_files.SafeFolder`, so the listing holds exactly the files that can be
downloaded: symlinks are listed (under their own name) only when they lead to a file inside the
folder, and hard-linked files, devices and FIFOs are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from btmanager.errors import NotFoundError
from btmanager.safe_files import MissingFileError, SafeFolder

STATE_DIR = ".bt"  # bt's own files in a run folder (see btmanager.lifecycle.exitrecord)


@dataclass(frozen=True)
class ResultFile:
    name: str  # relative to the run folder, with '/'
    size: int
    modified: str

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "size": self.size, "modified": self.modified}


def _open_run_folder(folder: Path) -> SafeFolder:
    try:
        return SafeFolder(folder)
    except MissingFileError:
        raise NotFoundError(f"Run folder not found: {folder} (moved or deleted?)") from None


def list_files(folder: Path) -> list[ResultFile]:
    """Every file below the folder (recursively) that `open_result` would serve, by name."""
    found: list[ResultFile] = []
    with _open_run_folder(folder) as opened:
        for name, info in opened.files():
            if name.startswith(STATE_DIR + "/"):
                continue  # bt's own bookkeeping, not a result
            modified = datetime.fromtimestamp(info.st_mtime, UTC).isoformat(timespec="seconds")
            found.append(ResultFile(name, info.st_size, modified))
    return sorted(found, key=lambda item: item.name)


def open_result(folder: Path, name: str) -> BinaryIO:
    """The file `name` of the run folder, open for reading; refuses anything leading outside."""
    with _open_run_folder(folder) as opened:
        return opened.open(name)
