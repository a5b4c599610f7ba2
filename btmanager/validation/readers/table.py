"""One way in for every CSV check: `scan_table` feeds a TableCheck from one of two readers.

A check takes rows from the stdlib reader (`add_row`, with line numbers) or numpy chunks from
a fast scan (`add_chunk`, with row indices turned into lines at the end). Both ways apply the
same arithmetic in the same order, so the findings, and hence the messages, are the same.
The fast scan is tried only where the caller allows it, and only vouches for a clean file;
for anything else the stdlib reader reads the file again and names the lines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

from btmanager.validation.findings import Positions
from btmanager.validation.readers.fast import (
    Columns,
    GiveUp,
    Kind,
    one_line_records,
    scan_columns,
)
from btmanager.validation.readers.source import Source
from btmanager.validation.readers.stdlib import CsvReader, Ragged


class TableCheck(Protocol):
    """What a check of one kind of CSV file offers the readers."""

    kinds: dict[str, Kind]  # the columns a fast scan must convert; empty: never fast-scanned

    def add_row(self, line: int, fields: list[str]) -> None: ...

    def add_chunk(self, start: int, columns: Columns) -> None: ...

    def positions(self) -> list[Positions]: ...

    def needs_lines(self) -> bool: ...

    def finish_fast(self, first_line: int) -> None: ...


C = TypeVar("C", bound=TableCheck)


class TableScan:
    """What reading a CSV file found about the file as a whole."""

    # A plain class: a dataclass costs ~1 ms to build at import, on every validated run.
    def __init__(
        self,
        header: list[str] | None = None,
        header_line: int = 0,
        rows: int = 0,
        non_utf8: Positions | None = None,
        binary: Positions | None = None,
        ragged: Ragged | None = None,
        parse_error: str | None = None,
        fast: bool = False,  # confirmed by a fast scan
    ) -> None:
        self.header = header
        self.header_line = header_line
        self.rows = rows
        self.non_utf8 = non_utf8 if non_utf8 is not None else Positions()
        self.binary = binary if binary is not None else Positions()
        self.ragged = ragged if ragged is not None else Ragged()
        self.parse_error = parse_error
        self.fast = fast


def scan_table(
    source: Source, make_check: Callable[[list[str]], C], fast: bool, engine: str | None = None
) -> tuple[TableScan, C | None]:
    """Read a CSV file once, feeding a check; fast scan first when `fast` and it can vouch."""
    if fast:
        done = _try_fast(source, make_check, engine)
        if done is not None:
            return done
    reader = CsvReader(source)
    check: C | None = None
    for line, fields in reader.records():
        if check is None:
            assert reader.header is not None
            check = make_check(reader.header)
        check.add_row(line, fields)
    if check is None and reader.header is not None:
        check = make_check(reader.header)
    scan = TableScan(
        reader.header,
        reader.header_line,
        reader.rows,
        reader.non_utf8,
        reader.binary,
        reader.ragged,
        reader.parse_error,
    )
    return scan, check


def _try_fast(
    source: Source, make_check: Callable[[list[str]], C], engine: str | None
) -> tuple[TableScan, C] | None:
    head = CsvReader(source)
    head.read_header()
    if head.header is None or head.raw_header is None or head.binary or head.non_utf8:
        return None
    if head.parse_error:
        return None
    check = make_check(head.header)
    if not check.kinds or any(head.header.count(name) > 1 for name in check.kinds):
        return None
    names = {name: head.raw_header[head.header.index(name)] for name in check.kinds}
    try:
        result = scan_columns(source, names, check.kinds, len(head.header), check.add_chunk, engine)
    except GiveUp:
        return None
    lines = head.header_line + result.rows
    if check.needs_lines() and (result.quotes or not one_line_records(source, lines)):
        return None  # row indices cannot be turned into line numbers
    check.finish_fast(head.header_line + 1)
    return TableScan(head.header, head.header_line, result.rows, fast=True), check


def column_index(header: list[str], names: Iterable[str]) -> dict[str, int]:
    """Where each of `names` first appears in the header; absent ones are left out."""
    return {name: header.index(name) for name in names if name in header}
