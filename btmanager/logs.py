"""execution.log access that never loads the file: tail from the end, count incrementally.

Logs can be gigabytes, and one line can be too (a script printing a whole data frame). The last
N lines are found by scanning blocks backwards from the end for line breaks, then read forwards;
a line longer than LINE_CAP bytes keeps its first LINE_CAP bytes and says how long it was, so
memory never depends on line lengths. The line count is kept up to date incrementally (the
watcher counts while the run writes, and the registry caches size and count), so `bt logs` costs
the same on a 1 MB and a 1 GB log.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

LOG_FILE = "execution.log"
# What one line may return: enough for any human-readable line, bounded for a 200 MB one.
LINE_CAP = 64 * 1024
_BLOCK = 64 * 1024
_READ_BLOCK = 1024 * 1024
_COUNT_BLOCK = 4 * 1024 * 1024


class LogReader:
    """Reads what was appended to a log since the last call, and counts its lines.

    Reads through `handle` when given (opened safely by the caller, kept for a whole `-f`),
    else opens `path` on each call without following a symlink.
    """

    def __init__(
        self,
        path: Path | None,
        offset: int = 0,
        lines: int = 0,
        last_byte: int = -1,
        handle: BinaryIO | None = None,
    ) -> None:
        self.path = path
        self.offset = offset
        self.newlines = lines
        self._last_byte = last_byte
        self._handle = handle

    @property
    def lines(self) -> int:
        """Lines so far: newlines, plus one for an unterminated last line."""
        partial = 1 if self.offset > 0 and self._last_byte not in (-1, 0x0A) else 0
        return self.newlines + partial

    def read_new(self, block: int = _READ_BLOCK) -> Iterator[bytes]:
        if self._handle is not None:
            yield from self._read_from(self._handle, block)
            return
        if self.path is None:
            return
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return
        with os.fdopen(fd, "rb") as handle:
            yield from self._read_from(handle, block)

    def _read_from(self, handle: BinaryIO, block: int) -> Iterator[bytes]:
        handle.seek(self.offset)
        while True:
            chunk = handle.read(block)
            if not chunk:
                return
            self.offset += len(chunk)
            self.newlines += chunk.count(b"\n")
            self._last_byte = chunk[-1]
            yield chunk


def count_lines(handle: BinaryIO, cached_size: int | None, cached_lines: int | None) -> LogReader:
    """A reader positioned at the end of the file, its count made exact.

    With a cache for a prefix of the file, only the bytes after it are read. A file that is
    smaller than the cache says (rewritten) is counted from the start.
    """
    size = os.fstat(handle.fileno()).st_size
    if cached_size is not None and cached_lines is not None and 0 < cached_size <= size:
        handle.seek(cached_size - 1)
        data = handle.read(1)
        last = data[0] if data else -1
        newlines = cached_lines - (1 if last != 0x0A else 0)
        reader = LogReader(None, cached_size, newlines, last, handle=handle)
    else:
        reader = LogReader(None, handle=handle)
    for _ in reader.read_new(_COUNT_BLOCK):
        pass
    return reader


class LineSplitter:
    """Cuts a byte stream into decoded lines, keeping at most `cap` bytes of each.

    Holds at most `cap` bytes of the line in progress whatever its length, so following a log
    with a huge unterminated line stays bounded too.
    """

    def __init__(self, cap: int = LINE_CAP) -> None:
        self.cap = cap
        self._kept = bytearray()
        self._length = 0  # the full length of the line in progress, in bytes

    @property
    def pending(self) -> bool:
        return self._length > 0

    def feed(self, data: bytes) -> list[str]:
        """The lines `data` completes (their newlines removed)."""
        pieces = data.split(b"\n")
        lines: list[str] = []
        for piece in pieces[:-1]:
            self._add(piece)
            lines.append(self._take())
        self._add(pieces[-1])
        return lines

    def finish(self) -> str:
        """The line in progress, as a last line without its newline."""
        return self._take()

    def _add(self, piece: bytes) -> None:
        room = self.cap - len(self._kept)
        if room > 0:
            self._kept += piece[:room]
        self._length += len(piece)

    def _take(self) -> str:
        line = _decode_line(bytes(self._kept), self._length)
        self._kept.clear()
        self._length = 0
        return line


def _decode_line(kept: bytes, length: int) -> str:
    if length <= len(kept):
        return kept.decode("utf-8", errors="replace").rstrip("\r")
    text = kept[: _utf8_boundary(kept)].decode("utf-8", errors="replace")
    return f"{text} … [line truncated, {length} bytes]"


def _utf8_boundary(data: bytes) -> int:
    """len(data), less an incomplete UTF-8 sequence at its end (a cut inside a character)."""
    end = len(data)
    for back in range(1, min(4, end) + 1):
        byte = data[end - back]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: the lead byte is further back
        width = 4 if byte >= 0xF0 else 3 if byte >= 0xE0 else 2 if byte >= 0xC0 else 1
        return end - back if back < width else end
    return end


def tail_start(handle: BinaryIO, count: int, end: int, block: int = _BLOCK) -> int:
    """The offset where the last `count` lines of the file's first `end` bytes begin.

    Scans backwards for line breaks without keeping what it reads.
    """
    if count <= 0 or end <= 0:
        return end
    handle.seek(end - 1)
    # A final newline terminates the last line rather than starting a new one.
    position = end - 1 if handle.read(1) == b"\n" else end
    wanted = count  # the break before the first of the lines wanted
    while position > 0:
        step = min(block, position)
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


def iter_tail(
    handle: BinaryIO,
    count: int,
    end: int | None = None,
    cap: int = LINE_CAP,
    block: int = _BLOCK,
) -> Iterator[str]:
    """The last `count` lines of the file (up to offset `end`), each cut at `cap` bytes."""
    if count <= 0:
        return
    if end is None:
        end = os.fstat(handle.fileno()).st_size
    if end <= 0:
        return
    position = tail_start(handle, count, end, block)
    handle.seek(end - 1)
    stop = end - 1 if handle.read(1) == b"\n" else end
    splitter = LineSplitter(cap)
    handle.seek(position)
    while position < stop:
        chunk = handle.read(min(block, stop - position))
        if not chunk:
            break
        position += len(chunk)
        yield from splitter.feed(chunk)
    yield splitter.finish()


def tail_lines(
    handle: BinaryIO,
    count: int,
    end: int | None = None,
    cap: int = LINE_CAP,
    block: int = _BLOCK,
) -> list[str]:
    """The last `count` lines of a file, decoded leniently, each at most `cap` bytes."""
    return list(iter_tail(handle, count, end, cap, block))


def complete_lines_end(handle: BinaryIO) -> int:
    """The offset just after the last newline (the end of the file's complete lines).

    Looks at the last block only: an unterminated line longer than that counts as complete.
    """
    size = os.fstat(handle.fileno()).st_size
    start = max(0, size - _BLOCK)
    handle.seek(start)
    block = handle.read(size - start)
    cut = block.rfind(b"\n")
    if cut >= 0:
        return start + cut + 1
    return 0 if start == 0 else size


def open_log(folder: Path) -> BinaryIO | None:
    """The run folder's execution.log, opened safely; None while it does not exist yet.

    A missing run folder is NotFoundError; a log (or folder) that is a symlink leading
    outside, a hard link or not a regular file is refused (UnsafeFileError).
    """
    from btmanager.errors import NotFoundError
    from btmanager.safe_files import MissingFileError, SafeFolder

    try:
        opened = SafeFolder(folder)
    except MissingFileError:
        raise NotFoundError(f"Run folder not found: {folder} (moved or deleted?)") from None
    with opened:
        try:
            return opened.open(LOG_FILE)
        except MissingFileError:
            return None
