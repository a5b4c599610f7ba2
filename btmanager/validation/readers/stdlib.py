"""Streaming CSV reading with the stdlib `csv` module: the reader whose findings are the truth.

Each record comes with the file line it starts on (header = line 1), so messages can say where.
Text is UTF-8 (a BOM is skipped); bytes that are not UTF-8 are read as cp1252 (latin-1 where
cp1252 has no character) and the lines holding them are noted. NUL bytes mark binary data. The
file is read line by line, so memory stays bounded whatever its size; a quoted field is capped
by the csv module's field size limit.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

SHOWN = 5  # positions quoted in a message; the count covers the rest

# Cell texts read as "no value" (after trimming spaces), as pandas writes and reads them.
NULL_TOKENS = ("", "NA", "N/A", "n/a", "NaN", "nan", "-nan", "null", "NULL", "None", "#N/A", "<NA>")
_NULLS = frozenset(NULL_TOKENS)
_SURROGATES = re.compile("[\udc80-\udcff]")


class Positions:
    """How many times something happened, and the first few places (line numbers)."""

    __slots__ = ("count", "example", "first")

    def __init__(self) -> None:
        self.count = 0
        self.first: list[int] = []
        self.example: str | None = None  # the first offending cell text, when there is one

    def add(self, line: int, example: str | None = None) -> None:
        self.count += 1
        if len(self.first) < SHOWN:
            self.first.append(line)
        if self.example is None and example is not None:
            self.example = example

    def add_indices(self, base: int, indices: Iterable[int], count: int) -> None:
        """Record `count` occurrences at row indices `base + i` (first few of `indices`)."""
        for index in indices:
            if len(self.first) >= SHOWN:
                break
            self.first.append(base + int(index))
        self.count += count

    def shift(self, offset: int) -> None:
        self.first = [p + offset for p in self.first]

    def __bool__(self) -> bool:
        return self.count > 0

    def lines(self) -> str:
        """`(line 4)`, `(lines 4, 9, 12)` or `(lines 4, 9, 12, 15, 20, ...)`."""
        more = ", ..." if self.count > len(self.first) else ""
        word = "line" if self.count == 1 else "lines"
        return f"({word} {', '.join(map(str, self.first))}{more})"

    def eg(self) -> str:
        return f", e.g. {shorten(self.example)!r}" if self.example is not None else ""


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    return f"{count} {singular if count == 1 else plural_form or singular + 's'}"


def shorten(text: str, width: int = 30) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def is_null(text: str) -> bool:
    return text.strip() in _NULLS


def parse_timestamp(text: str) -> datetime:
    """An ISO 8601 date or date-time (Python's fromisoformat); ValueError otherwise."""
    return datetime.fromisoformat(text.strip())


def instant(value: datetime) -> datetime:
    """A comparable point in time: aware values in UTC without tzinfo, naive ones as they are."""
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def clean_text(text: str) -> str:
    """Undo the decoding of non-UTF-8 bytes: read them as cp1252, else latin-1."""
    if text.isascii() or not _SURROGATES.search(text):
        return text
    raw = text.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("cp1252")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


@dataclass
class Ragged:
    """Rows whose field count differs from the header's."""

    expected: int = 0
    rows: Positions = field(default_factory=Positions)
    found: list[int] = field(default_factory=list)  # field counts of the rows in rows.first


class CsvReader:
    """Reads one CSV file record by record; problems with the text itself are collected."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.raw_header: list[str] | None = None  # as written (decoded), for other readers
        self.header: list[str] | None = None  # trimmed names
        self.header_line = 0  # the line the header ends on
        self.rows = 0  # data records read (ragged ones included)
        self.non_utf8 = Positions()
        self.binary = Positions()
        self.ragged = Ragged()
        self.parse_error: str | None = None

    def records(self, header_only: bool = False) -> Iterator[tuple[int, list[str]]]:
        """(start line, fields) for every data record with as many fields as the header.

        Call once per reader: the counts and findings accumulate.
        """
        with (
            self.path.open("rb") as raw,
            io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="") as f,
        ):
            reader = csv.reader(self._lines(f))
            consumed = 0
            try:
                for fields in reader:
                    start, consumed = consumed + 1, reader.line_num
                    if not fields:  # a blank line
                        continue
                    if self.header is None:
                        self._set_header(fields, consumed)
                        if header_only:
                            return
                        continue
                    self.rows += 1
                    if len(fields) != len(self.header):
                        self.ragged.rows.add(start)
                        if len(self.ragged.found) < SHOWN:
                            self.ragged.found.append(len(fields))
                        continue
                    yield start, fields
            except csv.Error as exc:
                self.parse_error = f"{exc} (line {reader.line_num})"

    def read_header(self) -> None:
        """Read only as far as the header."""
        for _ in self.records(header_only=True):
            pass

    def _set_header(self, fields: list[str], line: int) -> None:
        self.raw_header = [clean_text(name) for name in fields]
        self.header = [name.strip() for name in self.raw_header]
        self.header_line = line
        self.ragged.expected = len(fields)

    def _lines(self, lines: Iterable[str]) -> Iterator[str]:
        for number, line in enumerate(lines, 1):
            if not line.isascii() and _SURROGATES.search(line):
                self.non_utf8.add(number)
            if "\x00" in line:
                self.binary.add(number)
                line = line.replace("\x00", "")  # the csv module of Python 3.11 rejects NUL
            yield line
