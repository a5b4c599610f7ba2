"""execution.log: the script's output, scanned for tracebacks and critical errors.

Recommended by default, and every finding is a warning: the result files decide whether a
run's outputs are valid; the log only points at what may have gone wrong. Logs can be
gigabytes, so the file is scanned in binary chunks that overlap by more than the longest
pattern: a match split across two chunks is found once, with its line number.
"""

from __future__ import annotations

from collections.abc import Iterable

from btmanager.validation.checks.run_folder import RunFolder
from btmanager.validation.findings import Positions, plural
from btmanager.validation.readers.source import Source, reading
from btmanager.validation.report import FileCheck

LOG_CHUNK = 8 << 20

_TRACEBACK = b"Traceback (most recent call last)"
_LEVEL_WORDS = (b"CRITICAL", b"FATAL")
_FATAL_PYTHON = b"Fatal Python error"  # CPython's message when the interpreter itself dies
_OVERLAP = len(_TRACEBACK) + 2  # longer than any pattern, plus a byte of context each side


def check_log(run: RunFolder, check: FileCheck) -> None:
    if not check.size:
        check.warn("empty: the script wrote no output")
        return
    tracebacks, fatal = scan_log(run.file(check))
    if tracebacks:
        check.warn(f"{plural(tracebacks.count, 'Python traceback')} {tracebacks.lines()}")
    if fatal:
        check.warn(f"{plural(fatal.count, 'CRITICAL/FATAL line')} {fatal.lines()}")


def scan_log(source: Source, chunk_size: int = LOG_CHUNK) -> tuple[Positions, Positions]:
    """Lines with a Python traceback, and lines with a CRITICAL/FATAL level (or CPython's
    fatal error), found by scanning the file in binary chunks that overlap."""
    tracebacks, fatal = Positions(), Positions()
    last_line = {tracebacks: 0, fatal: 0}  # one count per line and kind
    with reading(source) as f:
        buffer = b""
        base_line = 1  # line number of buffer[0]
        start = 0  # matches starting before this were counted with the previous chunk
        while True:
            data = f.read(chunk_size)
            buffer += data
            end = len(buffer) if not data else max(len(buffer) - _OVERLAP, 0)
            hits = sorted(_hits(buffer, start, end, tracebacks, fatal), key=lambda hit: hit[0])
            line, counted = base_line, 0
            for position, found in hits:
                line += buffer.count(b"\n", counted, position)
                counted = position
                if last_line[found] != line:
                    last_line[found] = line
                    found.add(line)
            if not data:
                return tracebacks, fatal
            keep = max(end - 1, 0)  # keep one byte before the next match for word boundaries
            base_line += buffer.count(b"\n", 0, keep)
            buffer, start = buffer[keep:], end - keep


def _hits(
    buffer: bytes, start: int, end: int, tracebacks: Positions, fatal: Positions
) -> Iterable[tuple[int, Positions]]:
    for position in _find_all(buffer, _TRACEBACK, start, end):
        yield position, tracebacks
    for position in _find_all(buffer, _FATAL_PYTHON, start, end):
        yield position, fatal
    for word in _LEVEL_WORDS:
        for position in _find_all(buffer, word, start, end):
            before = buffer[position - 1 : position] if position else b""
            after = buffer[position + len(word) : position + len(word) + 1]
            if not _is_word_byte(before) and not _is_word_byte(after):
                yield position, fatal


def _find_all(buffer: bytes, pattern: bytes, start: int, end: int) -> Iterable[int]:
    position = buffer.find(pattern, start)
    while 0 <= position < end:
        yield position
        position = buffer.find(pattern, position + 1)


def _is_word_byte(byte: bytes) -> bool:
    return bool(byte) and (byte.isalnum() or byte == b"_")
