"""execution.log access that never loads the file: tail from the end, count incrementally.

Logs can be gigabytes, and one line can be too (a script printing a whole data frame). The last
N lines are found by scanning blocks backwards from the end for line breaks, then read forwards;
a line longer than LINE_CAP bytes keeps its first LINE_CAP bytes and says how long it was, so
memory never depends on line lengths.

The line count is kept up to date incrementally: `bt logs` leaves a count mark beside the log
(size, newlines, and a fingerprint of the file: its inode and its first and last 4 KiB up to
that size) and next time counts only what was written after it, so `bt logs` costs the same on
a 1 MB and a 1 GB log once it has counted it. A log only grows while its script writes it, but
a script (or a user) may also rewrite it, to any size: a fingerprint that no longer matches
means the counted part changed, and the log is counted afresh. A bare (size, lines) pair cannot
tell, which is why the count the supervisor records at a run's end is not used here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

LOG_FILE = "execution.log"
# What one line may return: enough for any human-readable line, bounded for a 200 MB one.
LINE_CAP = 64 * 1024
_BLOCK = 64 * 1024
_READ_BLOCK = 1024 * 1024
_COUNT_BLOCK = 4 * 1024 * 1024
# The count mark, among bt's own files of the run folder (lifecycle.exitrecord.STATE_DIR).
STATE_DIR = ".bt"
MARK_NAME = "log-count"
_MARK_SAMPLE = 4096  # bytes fingerprinted at each end of the counted part
_MARK_MAX = 4096  # a mark file is a few dozen bytes; anything bigger is not one


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


class CountMark(NamedTuple):
    """The first `size` bytes of a log hold `newlines` line breaks, if it still has `digest`."""

    size: int
    newlines: int
    digest: str


def fingerprint(handle: BinaryIO, size: int) -> str:
    """The inode and the first and last bytes of the file's first `size` bytes, hashed.

    Cheap (two small reads) and sensitive to what a rewrite changes: a new file (inode), new
    text at the start, or text that moved (the bytes just before `size`).
    """
    try:
        # What hashlib.blake2b is, without hashlib loading OpenSSL's bindings (~3 ms on every
        # run's start-up, twice that in a forked supervisor).
        from _blake2 import blake2b
    except ImportError:
        from hashlib import blake2b
    digest = blake2b(digest_size=16)
    digest.update(f"{os.fstat(handle.fileno()).st_ino}:{size}:".encode())
    handle.seek(0)
    digest.update(handle.read(min(size, _MARK_SAMPLE)))
    start = max(0, size - _MARK_SAMPLE)
    handle.seek(start)
    digest.update(handle.read(size - start))
    return digest.hexdigest()


def count_lines(handle: BinaryIO, mark: CountMark | None) -> LogReader:
    """A reader positioned at the end of the file, its count made exact.

    With a mark for a prefix of the file whose fingerprint still matches, only the bytes after
    it are read; otherwise (no mark, a smaller file, a rewritten one) the file is counted from
    the start.
    """
    size = os.fstat(handle.fileno()).st_size
    if mark is not None and 0 < mark.size <= size and fingerprint(handle, mark.size) == mark.digest:
        handle.seek(mark.size - 1)
        data = handle.read(1)
        last = data[0] if data else -1
        reader = LogReader(None, mark.size, mark.newlines, last, handle=handle)
    else:
        reader = LogReader(None, handle=handle)
    for _ in reader.read_new(_COUNT_BLOCK):
        pass
    return reader


def mark_for(handle: BinaryIO, reader: LogReader) -> CountMark:
    """The mark of what `reader` counted."""
    return CountMark(reader.offset, reader.newlines, fingerprint(handle, reader.offset))


def read_mark(folder: Path) -> CountMark | None:
    """The run folder's count mark; None if missing or not one (a script may write anything)."""
    from btmanager.errors import BtError
    from btmanager.safe_files import open_in_folder

    try:
        with open_in_folder(folder, f"{STATE_DIR}/{MARK_NAME}") as handle:
            raw = handle.read(_MARK_MAX + 1)
        data = json.loads(raw) if len(raw) <= _MARK_MAX else None
    except (BtError, OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    size, newlines, digest = data.get("size"), data.get("newlines"), data.get("digest")
    if type(size) is not int or type(newlines) is not int or not isinstance(digest, str):
        return None
    if size < 0 or not 0 <= newlines <= size:
        return None
    return CountMark(size, newlines, digest)


def write_mark(folder: Path, mark: CountMark) -> bool:
    """Leave the count mark in the run folder's state folder; False if it cannot be written.

    The folder is the script's: it may have made the state folder, or the mark, a symlink to
    somewhere else. Every step therefore goes from a descriptor of the run folder without
    following a symlink, and the mark is written to a new temp file renamed over the old name
    (a rename replaces a symlink itself, never what it points to).
    """
    # (os.replace takes the same dir_fd arguments as os.rename but is not listed itself.)
    if not (os.open in os.supports_dir_fd and os.rename in os.supports_dir_fd):
        return False  # without openat (Windows) the log is simply counted each time
    directory = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_NOFOLLOW | os.O_CLOEXEC
    data = json.dumps({"size": mark.size, "newlines": mark.newlines, "digest": mark.digest})
    temp = f".{MARK_NAME}.{os.getpid()}.tmp"
    try:
        run_fd = os.open(folder, directory)
    except OSError:
        return False
    try:
        try:
            os.mkdir(STATE_DIR, 0o700, dir_fd=run_fd)
        except FileExistsError:
            pass
        state_fd = os.open(STATE_DIR, directory, dir_fd=run_fd)
        try:
            try:
                os.unlink(temp, dir_fd=state_fd)  # left by a bt that died here with our pid
            except FileNotFoundError:
                pass
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(temp, flags, 0o600, dir_fd=state_fd)
            try:
                os.write(fd, data.encode())
            finally:
                os.close(fd)
            os.replace(temp, MARK_NAME, src_dir_fd=state_fd, dst_dir_fd=state_fd)
            return True
        except OSError:
            try:
                os.unlink(temp, dir_fd=state_fd)
            except OSError:
                pass
            return False
        finally:
            os.close(state_fd)
    except OSError:
        return False
    finally:
        os.close(run_fd)


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
