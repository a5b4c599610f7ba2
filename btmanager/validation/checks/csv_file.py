"""What any CSV file must be, whatever its kind, and the wording its checks share.

`read_csv` reads the file through readers.table and reports what concerns the file as a
whole: binary data, bytes that are not UTF-8, a parse error, no header, rows with the wrong
number of fields, and the columns the rules require or recommend. The check of each kind
then reports its cells with `report_cells`, so nulls and bad values read alike everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from btmanager.validation.checks.run_folder import RunFolder
from btmanager.validation.findings import Positions, plural
from btmanager.validation.readers.table import C, TableScan, scan_table
from btmanager.validation.report import FileCheck
from btmanager.validation.rules import Level, Severity

TIME_HINT = "ISO 8601, e.g. 2024-01-31 or 2024-01-31 09:30:00"


def big_enough(check: FileCheck, minimum: int) -> bool:
    """Report a file of `minimum` bytes or less; False when it is empty (nothing to read)."""
    size = check.size or 0
    if size <= minimum:
        hint = ""
        if size > 0:
            # Small outputs can be valid (one trade): say how to lower the floor.
            hint = f'; if that is right, set [min_bytes] "{check.name}" = {size - 1} in bt.toml'
        check.error(f"too small: {plural(size, 'byte')} (expected more than {minimum}{hint})")
    return size > 0


def read_csv(
    run: RunFolder, check: FileCheck, make: Callable[[list[str]], C], fast: bool
) -> tuple[TableScan, C] | None:
    """Read a CSV file; report problems of the file as a whole. None: contents unusable."""
    use_fast = fast and (check.size or 0) >= run.fast_bytes
    scan, table = scan_table(run.file(check), make, use_fast, run.engine)
    check.row_count = scan.rows
    check.columns = scan.header
    if scan.binary:
        check.columns = None  # a header read from binary data is noise
        check.error(
            f"binary data, not CSV text: NUL bytes on {plural(scan.binary.count, 'line')} "
            f"{scan.binary.lines()}"
        )
        return None
    if scan.non_utf8:
        check.warn(
            f"{plural(scan.non_utf8.count, 'line')} not valid UTF-8, read as cp1252/latin-1 "
            f"{scan.non_utf8.lines()}"
        )
    if scan.parse_error:
        check.error(f"cannot be parsed as CSV: {scan.parse_error}")
    if scan.header is None or table is None:
        if not scan.parse_error:
            check.error("no header line")
        return None
    ragged = scan.ragged
    if ragged.rows:
        shown = ", ".join(
            f"line {n} has {f}" for n, f in zip(ragged.rows.first, ragged.found, strict=True)
        )
        more = ", ..." if ragged.rows.count > len(ragged.rows.first) else ""
        check.error(
            f"{plural(ragged.rows.count, 'row')} with the wrong number of fields, "
            f"expected {ragged.expected} ({shown}{more})"
        )
    _check_columns(run, check, scan.header)
    return None if scan.parse_error else (scan, table)


def _check_columns(run: RunFolder, check: FileCheck, header: list[str]) -> None:
    levels = run.rules.column_levels(check.name)
    report_missing(check, "column", levels, header)
    for name in levels:
        if header.count(name) > 1:
            at = ", ".join(str(i + 1) for i, h in enumerate(header) if h == name)
            check.warn(
                f"column {name} appears {header.count(name)} times (columns {at}); the first is checked"
            )


def report_missing(
    check: FileCheck, what: str, levels: Mapping[str, Level], present: Iterable[str]
) -> None:
    """Missing required names are errors, missing recommended ones warnings (columns, metrics)."""
    have = set(present)
    wanted: tuple[tuple[Level, Severity], ...] = (("required", "error"), ("recommended", "warning"))
    for level, severity in wanted:
        missing = [n for n, lv in levels.items() if lv == level and n not in have]
        if missing:
            noun = what if len(missing) == 1 else what + "s"
            check.add(severity, f"missing {level} {noun} {', '.join(missing)}")


def report_cells(
    check: FileCheck, severity: Severity, name: str, nulls: Positions, bad: Positions, kind: str
) -> None:
    """The null and the unconvertible cells of one column."""
    if nulls:
        check.add(severity, f"{plural(nulls.count, 'null value')} in {name} {nulls.lines()}")
    if not bad:
        return
    if kind == "time":
        text = f"{plural(bad.count, 'unparseable timestamp')} in {name} {bad.lines()}{bad.eg()}; expected {TIME_HINT}"
    else:
        verb = "is not a finite number" if bad.count == 1 else "are not finite numbers"
        text = f"{plural(bad.count, 'value')} in {name} {verb} {bad.lines()}{bad.eg()}"
    check.add(severity, text)
