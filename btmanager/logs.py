"""execution.log access that never loads the file: tail from the end, count incrementally.

Logs can be gigabytes. The last N lines are found by reading blocks backwards from the end; the
line count is kept up to date incrementally (the watcher counts while the run writes, and the
registry caches size and count), so `bt logs` costs the same on a 1 MB and a 1 GB log.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

LOG_FILE = "execution.log"
_BLOCK = 64 * 1024
_COUNT_BLOCK = 4 * 1024 * 1024


class LogReader:
    """Reads what was appended to a log since the last call, and counts its lines."""

    def __init__(self, path: Path, offset: int = 0, lines: int = 0, last_byte: int = -1) -> None:
        self.path = path
        self.offset = offset
        self.newlines = lines
        self._last_byte = last_byte

    @property
    def lines(self) -> int:
        """Lines so far: newlines, plus one for an unterminated last line."""
        partial = 1 if self.offset > 0 and self._last_byte not in (-1, 0x0A) else 0
        return self.newlines + partial

    def read_new(self, block: int = _BLOCK * 16) -> Iterator[bytes]:
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - closed below, generator-safe
        except OSError:
            return
        with handle:
            handle.seek(self.offset)
            while True:
                chunk = handle.read(block)
                if not chunk:
                    return
                self.offset += len(chunk)
                self.newlines += chunk.count(b"\n")
                self._last_byte = chunk[-1]
                yield chunk


def count_lines(path: Path, cached_size: int | None, cached_lines: int | None) -> LogReader:
    """A reader positioned at the end of the file, its count made exact.

    With a cache for a prefix of the file, only the bytes after it are read. A file that is
    smaller than the cache says (rewritten) is counted from the start.
    """
    size = path.stat().st_size
    if cached_size is not None and cached_lines is not None and 0 < cached_size <= size:
        last = _byte_at(path, cached_size - 1)
        newlines = cached_lines - (1 if last != 0x0A else 0)
        reader = LogReader(path, cached_size, newlines, last)
    else:
        reader = LogReader(path)
    for _ in reader.read_new(_COUNT_BLOCK):
        pass
    return reader


def _byte_at(path: Path, position: int) -> int:
    with open(path, "rb") as handle:
        handle.seek(position)
        data = handle.read(1)
    return data[0] if data else -1


def tail_lines(path: Path, count: int, end: int | None = None) -> list[str]:
    """The last `count` lines of a file, decoded leniently.

    Reads backwards in blocks until it has seen enough line breaks, so the cost depends on the
    lines asked for, not on the size of the file.
    """
    if count <= 0:
        return []
    with open(path, "rb") as handle:
        position = handle.seek(0, os.SEEK_END) if end is None else end
        chunks: list[bytes] = []
        found = 0
        # One more break than lines wanted: the break before the first of them (a final
        # newline terminates the last line rather than starting a new one).
        while position > 0 and found <= count:
            step = min(_BLOCK, position)
            position -= step
            handle.seek(position)
            chunk = handle.read(step)
            chunks.append(chunk)
            found += chunk.count(b"\n")
    data = b"".join(reversed(chunks))
    if data.endswith(b"\n"):
        data = data[:-1]
    if not data and not chunks:
        return []
    kept = data.split(b"\n")[-count:]
    return [line.decode("utf-8", errors="replace").rstrip("\r") for line in kept]


def complete_lines_end(path: Path) -> int:
    """The offset just after the last newline (the end of the file's complete lines).

    Looks at the last block only: an unterminated line longer than that counts as complete.
    """
    size = path.stat().st_size
    start = max(0, size - _BLOCK)
    with open(path, "rb") as handle:
        handle.seek(start)
        block = handle.read(size - start)
    cut = block.rfind(b"\n")
    if cut >= 0:
        return start + cut + 1
    return 0 if start == 0 else size


def split_lines(buffer: bytes) -> tuple[list[str], bytes]:
    """Complete lines of a buffer (decoded) and the unterminated rest."""
    *complete, rest = buffer.split(b"\n")
    return [line.decode("utf-8", errors="replace").rstrip("\r") for line in complete], rest


def tail_start(path: Path, count: int, end: int, breaks: int) -> int:
    """Where the last `count` complete lines before offset `end` begin (`end` itself when
    `count` is 0); the file holds `breaks` line breaks before `end`.

    Scans backwards for line breaks, or from the start when that is nearer, without keeping
    what it reads.
    """
    if count <= 0:
        return _after_last_break(path, end)
    if count >= breaks:
        return 0
    with open(path, "rb") as handle:
        skip = breaks - count  # the break ending the line before the first one wanted
        if skip <= count:
            position = 0
            while position < end:
                chunk = handle.read(min(_BLOCK, end - position))
                if not chunk:
                    break
                found = chunk.count(b"\n")
                if found >= skip:
                    cut = -1
                    for _ in range(skip):
                        cut = chunk.index(b"\n", cut + 1)
                    return position + cut + 1
                skip -= found
                position += len(chunk)
            return end
        wanted = count + 1  # the break that ends the line before the first one wanted
        position = end
        while position > 0:
            step = min(_BLOCK, position)
            handle.seek(position - step)
            chunk = handle.read(step)
            found = chunk.count(b"\n")
            if found >= wanted:
                cut = len(chunk)
                for _ in range(wanted):
                    cut = chunk.rfind(b"\n", 0, cut)
                return position - step + cut + 1
            wanted -= found
            position -= step
        return 0


def _after_last_break(path: Path, end: int) -> int:
    """The offset just after the last line break before `end` (0 if there is none)."""
    with open(path, "rb") as handle:
        position = end
        while position > 0:
            step = min(_BLOCK, position)
            handle.seek(position - step)
            cut = handle.read(step).rfind(b"\n")
            if cut >= 0:
                return position - step + cut + 1
            position -= step
    return 0
