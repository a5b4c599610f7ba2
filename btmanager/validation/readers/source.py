"""Where a reader's bytes come from: a file the engine opened safely, or a path.

A run folder is written by its script, which may have made trades.csv a symlink to
/etc/passwd, a hard link to a file elsewhere, or a FIFO; a report quoting such a file's lines
would leak it. So validation never opens a name itself: the engine opens each file once
through the folder's `safe_files.SafeFolder`, and every reader pass rewinds that one handle,
which also means every pass reads the very file whose size was checked. A plain path (tests,
tools) is opened the same safe way, as a file of its folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

Source = Path | BinaryIO


@contextmanager
def reading(source: Source) -> Iterator[BinaryIO]:
    """The source open for binary reading at its first byte; a handle is left open after."""
    if isinstance(source, Path):
        from btmanager.safe_files import open_in_folder

        with open_in_folder(source.parent, source.name, allow_symlinked_folder=True) as handle:
            yield handle
        return
    source.seek(0)
    yield source
