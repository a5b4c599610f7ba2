"""Streaming CSV reading with the stdlib `csv` module: the reader whose findings are the truth.

Each record comes with the file line it starts on (header = line 1), so messages can say where.
Text is UTF-8 (a BOM is skipped); bytes that are not UTF-8 are read as cp1252 (latin-1 where
cp1252 has no character) and the lines holding them are noted. NUL bytes mark binary data. The
file is read line by line, so memory stays bounded whatever its size; a quoted field is capped
by the csv module's field size limit.

What a cell's text means is defined here too (nulls, numbers, timestamps, undecodable bytes),
for the checks that take rows from this reader; the fast scan is handed the same NULL_TOKENS,
so both readers agree on what is missing.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from btmanager.validation.findings import SHOWN, Positions
from btmanager.validation.readers.source import Source, reading

# Cell texts read as "no value" (after trimming spaces), as pandas writes and reads them.
NULL_TOKENS = ("", "NA", "N/A", "n/a", "NaN", "nan", "-nan", "null", "NULL", "None", "#N/A", "<NA>")
_NULLS = frozenset(NULL_TOKENS)
_SURROGATES = re.compile("[\udc80-\udcff]")


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


def finite_number(text: str, line: int, nulls: Positions, bad: Positions) -> float | None:
    """The cell as a finite float, else None with the null or bad value recorded."""
    if is_null(text):
        nulls.add(line)
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        bad.add(line, clean_text(text.strip()))
        return None
    return value


def timestamp(text: str, line: int, nulls: Positions, bad: Positions) -> datetime | None:
    """The cell as a datetime, else None with the null or bad value recorded."""
    if is_null(text):
        nulls.add(line)
        return None
    try:
        return parse_timestamp(text)
    except ValueError:
        bad.add(line, clean_text(text.strip()))
        return None


class Ragged:
    """Rows whose field count differs from the header's."""

    # A plain class: a dataclass costs ~1 ms to build at import, on every validated run.
    def __init__(self) -> None:
        self.expected = 0
        self.rows = Positions()
        self.found: list[int] = []  # field counts of the rows in rows.first


class CsvReader:
    """Reads one CSV file record by record; problems with the text itself are collected."""

    def __init__(self, source: Source) -> None:
        self.source = source
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
        with reading(self.source) as raw:
            f = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
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
            finally:
                f.detach()  # the handle is the caller's: another pass may read it again

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
