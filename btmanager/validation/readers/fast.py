"""Fast column scans of big CSV files: pyarrow's streaming reader, else pandas chunks.

A fast scan only *confirms* that a big file is clean. It hands numpy chunks of the needed
columns to a consumer and gives up (raises GiveUp) on anything whose message needs the stdlib
reader's exact diagnostics: a null or a value that does not convert, a non-finite number, a
ragged row, non-UTF-8 or NUL bytes, a header it reads differently. The caller then re-reads the
file with the stdlib reader (readers.stdlib.CsvReader), so both ways give identical messages.
What the fast scan accepts is a subset of what the stdlib reader accepts, with the same values
(see tests/test_validate_fast.py).

pyarrow and pandas are imported here, lazily: small folders never pay for them.
"""

from __future__ import annotations

import codecs
import io
import os
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, NamedTuple, cast

from btmanager.validation.findings import SHOWN, Positions
from btmanager.validation.readers.source import Source, reading
from btmanager.validation.readers.stdlib import NULL_TOKENS

if TYPE_CHECKING:
    import numpy.typing as npt

Kind = Literal["number", "time"]
Columns = dict[str, "npt.NDArray[Any]"]  # float64 for numbers, datetime64[us] for times
Consumer = Callable[[int, Columns], None]  # (index of the chunk's first data row, columns)

ENGINE_ENV = "BT_VALIDATE_ENGINE"  # "arrow" or "pandas"; default: arrow if importable
ARROW_BLOCK = 1 << 20  # pyarrow keeps dozens of blocks in flight: 1 MiB keeps RSS ~150 MB
PANDAS_ROWS = 1 << 18
_MAX_LINE = 16 << 20  # longer lines: let the stdlib reader judge


class GiveUp(Exception):
    """The fast scan cannot vouch for the file; read it with the stdlib reader instead."""


class FastScan(NamedTuple):
    rows: int
    quotes: bool  # the file has a quote character somewhere


def mark(positions: Positions, start: int, mask: Any) -> None:
    """Record the rows where a chunk's boolean mask is true (`start`: the chunk's first row)."""
    import numpy as np

    hits = np.flatnonzero(mask)
    if hits.size:
        positions.add_indices(start, hits[:SHOWN].tolist(), int(hits.size))


def one_line_records(source: Source, expected_lines: int, block_size: int = 8 << 20) -> bool:
    """Whether the file has exactly `expected_lines` lines (header lines + data rows) and no
    quotes: then no record spans lines and no line is blank, so data row i is on line
    header_line + 1 + i. A separate pass (counting is ~10 GB/s), made only when a finding
    needs line numbers, so the scan of the usual clean file does not pay for it."""
    newlines = carriage_returns = crlf = 0
    last = b""
    with reading(source) as f:
        while block := f.read(block_size):
            if b'"' in block:
                return False
            newlines += block.count(b"\n")
            if b"\r" in block:  # lone CRs end lines too; count them only in files that have CRs
                carriage_returns += block.count(b"\r")
                crlf += block.count(b"\r\n")
            crlf += last == b"\r" and block.startswith(b"\n")
            last = block[-1:]
    if carriage_returns != crlf:
        return False
    lines = newlines + (1 if last and last != b"\n" else 0)
    return lines == expected_lines


class _CheckedRaw(io.RawIOBase):
    """Passes the file's bytes through, noting what only the stdlib reader can report.

    Problems are recorded, not raised, because pyarrow and pandas would wrap or swallow an
    exception raised inside read(); a problem ends the stream early instead.
    """

    def __init__(self, raw: BinaryIO, fields_per_line: int | None) -> None:
        super().__init__()
        # A file opened in binary mode is a BufferedReader, whose readinto spares a copy.
        self._raw = cast(io.BufferedIOBase, raw)
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._fields = fields_per_line  # check every line has this many (quote-free files)
        self._carry = b""
        self.problem: str | None = None
        self.quotes = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.problem:
            return 0
        try:
            count: int = self._raw.readinto(buffer)
        except OSError as exc:
            self.problem = f"read error: {exc}"  # the stdlib reader meets and reports it
            return 0
        if count == 0:
            self._at_end()
            return 0
        block = bytes(memoryview(buffer)[:count])
        self._inspect(block)
        return 0 if self.problem else count

    def _inspect(self, block: bytes) -> None:
        if b"\0" in block:
            self.problem = "NUL bytes"
            return
        if not block.isascii():
            try:
                self._utf8.decode(block)
            except UnicodeDecodeError:
                self.problem = "not UTF-8"
                return
        if b'"' in block:
            self.quotes = True
        if self._fields is not None:
            self._count_fields(block, self._fields)

    def _count_fields(self, block: bytes, fields: int) -> None:
        import numpy as np

        if self.quotes:
            self.problem = "quoted fields"  # commas inside quotes do not separate fields
            return
        data = self._carry + block
        codes = np.frombuffer(data, dtype=np.uint8)
        ends = np.flatnonzero(codes == 10)
        if ends.size:
            commas = np.cumsum(codes == 44, dtype=np.int64)[ends]
            per_line = np.diff(commas, prepend=0)
            if np.any(per_line != fields - 1):
                self.problem = "a line with another number of fields"
                return
            data = data[int(ends[-1]) + 1 :]
        self._carry = data
        if len(self._carry) > _MAX_LINE:
            self.problem = "a very long line"

    def _at_end(self) -> None:
        try:
            self._utf8.decode(b"", final=True)
        except UnicodeDecodeError:
            self.problem = "not UTF-8"
        last_line = self._carry.strip(b"\r")
        if self._fields is not None and last_line and last_line.count(b",") != self._fields - 1:
            self.problem = "a line with another number of fields"


def default_engine() -> str:
    chosen = os.environ.get(ENGINE_ENV, "").strip().lower()
    if chosen in ("arrow", "pandas"):
        return chosen
    try:
        import pyarrow.csv  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return "pandas"
    return "arrow"


def scan_columns(
    source: Source,
    names: Mapping[str, str],
    kinds: Mapping[str, Kind],
    field_count: int,
    consume: Consumer,
    engine: str | None = None,
) -> FastScan:
    """Feed `consume` the columns `kinds` (trimmed name -> kind) of a CSV file, chunk by chunk.

    `names` maps each trimmed column name to the header text as written. Raises GiveUp.
    """
    engine = engine or default_engine()
    # Closing the wrappers below never closes `raw` (_CheckedRaw does not pass close on).
    with reading(source) as raw:
        checked = _CheckedRaw(raw, field_count if engine == "pandas" else None)
        stream = io.BufferedReader(checked, buffer_size=ARROW_BLOCK)
        chunks = _arrow_chunks if engine == "arrow" else _pandas_chunks
        rows = 0
        try:
            for columns in chunks(stream, names, kinds):
                consume(rows, columns)
                rows += len(next(iter(columns.values())))
        except GiveUp:
            raise
        except Exception as exc:
            # Whatever pyarrow or pandas object to (a conversion, a ragged row, a header they
            # read differently), the stdlib reader gives the diagnosis.
            raise GiveUp(str(exc)) from exc
        if checked.problem:
            raise GiveUp(checked.problem)
        return FastScan(rows, quotes=checked.quotes)


def _arrow_chunks(
    stream: io.BufferedIOBase, names: Mapping[str, str], kinds: Mapping[str, Kind]
) -> Iterator[Columns]:
    import numpy as np
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.csv as pacsv  # type: ignore[import-untyped]

    types = {
        names[n]: pa.float64() if k == "number" else pa.timestamp("us") for n, k in kinds.items()
    }
    reader = pacsv.open_csv(
        stream,
        read_options=pacsv.ReadOptions(block_size=ARROW_BLOCK, use_threads=True),
        parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=_reject),
        convert_options=pacsv.ConvertOptions(
            include_columns=list(types),
            column_types=types,
            null_values=list(NULL_TOKENS),
            strings_can_be_null=True,
        ),
    )
    for batch in reader:
        if not batch.num_rows:
            continue
        columns: Columns = {}
        for name, kind in kinds.items():
            array = batch.column(names[name])
            if array.null_count:
                raise GiveUp("null values")
            values = array.to_numpy(zero_copy_only=False)
            if kind == "number" and not np.isfinite(values).all():
                raise GiveUp("non-finite numbers")
            columns[name] = values
        yield columns


def _reject(row: Any) -> str:
    return "error"  # a ragged row: the stdlib reader names its line


def _pandas_chunks(
    stream: io.BufferedIOBase, names: Mapping[str, str], kinds: Mapping[str, Kind]
) -> Iterator[Columns]:
    import numpy as np
    import pandas as pd

    dtypes = {names[n]: "float64" if k == "number" else object for n, k in kinds.items()}
    reader = pd.read_csv(
        stream,
        usecols=list(dtypes),
        dtype=dtypes,
        na_values=list(NULL_TOKENS),
        keep_default_na=False,
        chunksize=PANDAS_ROWS,
        engine="c",
        encoding="utf-8",
    )
    with reader:
        for frame in reader:
            if frame.empty:
                continue
            columns: Columns = {}
            for name, kind in kinds.items():
                series = frame[names[name]]
                if kind == "number":
                    values = series.to_numpy(dtype=np.float64)
                    if not np.isfinite(values).all():
                        raise GiveUp("null or non-finite numbers")
                    columns[name] = values
                    continue
                # pandas' own ISO parser accepts more than the stdlib reader's; Python's decides.
                parsed = list(map(datetime.fromisoformat, series.to_numpy(dtype=object)))
                index = pd.DatetimeIndex(parsed)
                if index.tz is not None:
                    raise GiveUp("time zones")
                columns[name] = index.as_unit("us").to_numpy()
            yield columns
