"""Value specs of `bt sweep -p KEY=SPEC` and grid files.

A SPEC is a list (`a,b,c`; `\\,` is a literal comma), a numeric range (`START:STOP:STEP`, STOP
included when reached, computed in decimal so `0.1:0.3:0.1` is exactly 0.1, 0.2, 0.3), or a
fixed value. `\\:` is a literal colon, so times can be written (`09\\:30`); values inside a
list are always literal. A range is a lazy sequence: a huge one is refused for its count
before a single value is made.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, overload

from btmanager.errors import UsageError
from btmanager.params import check_key

_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_ESCAPABLE = {",", ":", "\\"}
MAX_GRID_BYTES = 1 << 20  # a grid file is a few lines; anything bigger is not one


def split_unescaped(text: str, separator: str) -> list[str]:
    """`text` cut at each `separator` not preceded by a backslash escape (escapes kept)."""
    parts: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text) and text[index + 1] in _ESCAPABLE:
            current.append(text[index : index + 2])
            index += 2
            continue
        if char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    parts.append("".join(current))
    return parts


def unescape(text: str) -> str:
    """`\\,` -> `,`, `\\:` -> `:`, `\\\\` -> `\\`; any other backslash stays as it is."""
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text) and text[index + 1] in _ESCAPABLE:
            out.append(text[index + 1])
            index += 2
            continue
        out.append(char)
        index += 1
    return "".join(out)


class DecimalRange(Sequence[str]):
    """START, START+STEP, ... up to STOP inclusive, as text with a fixed number of decimals.

    The values carry as many decimal places as the most precise of START, STOP and STEP, so
    integers stay integers (`1:3:1` is 1, 2, 3) and `1:2:0.5` is 1.0, 1.5, 2.0.
    """

    def __init__(self, start: Decimal, stop: Decimal, step: Decimal, places: int) -> None:
        self.start, self.stop, self.step, self.places = start, stop, step, places
        self.size = int((stop - start) // step) + 1

    def __len__(self) -> int:
        return self.size

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...

    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.size))]
        if index < 0:
            index += self.size
        if not 0 <= index < self.size:
            raise IndexError(index)
        value = self.start + self.step * index
        return f"{value:.{self.places}f}"

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(self.size))

    def __repr__(self) -> str:
        return f"DecimalRange({self.start}, {self.stop}, {self.step}, places={self.places})"


def _places(number: Decimal) -> int:
    exponent = number.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def make_range(parts: Sequence[str], where: str) -> DecimalRange:
    """START:STOP:STEP from three texts; `where` names them in errors."""
    if not all(_NUMBER.fullmatch(part) for part in parts):
        raise UsageError(
            f"Invalid range {where}: START:STOP:STEP must be three decimal numbers "
            "(write \\: for a literal colon, e.g. 09\\:30)"
        )
    try:
        start, stop, step = (Decimal(part) for part in parts)
    except InvalidOperation:  # not reachable for texts the pattern accepts; be safe
        raise UsageError(f"Invalid range {where}: not numbers") from None
    if step <= 0:
        raise UsageError(f"Invalid range {where}: STEP must be greater than 0")
    if stop < start:
        raise UsageError(f"Invalid range {where}: STOP is less than START")
    return DecimalRange(start, stop, step, max(_places(start), _places(stop), _places(step)))


def parse_spec(key: str, spec: str, origin: str | None = None) -> Sequence[str]:
    """The values one SPEC stands for (a list, a lazy range, or one fixed value); `origin`
    says where it was given, for errors (default `-p KEY=SPEC`)."""
    where = origin or f"-p {key}={spec}"
    items = split_unescaped(spec, ",")
    if len(items) > 1:
        values = [unescape(item) for item in items]
        if any(value == "" for value in values):
            raise UsageError(f"Invalid list in {where}: an item is empty")
        return values
    pieces = split_unescaped(spec, ":")
    if len(pieces) == 3:
        return make_range(pieces, f"'{spec}' in {where}")
    return [unescape(spec)]


def parse_assignment_spec(text: str) -> tuple[str, Sequence[str]]:
    """`KEY=SPEC` -> (KEY, its values)."""
    from btmanager.params import parse_assignment

    key, spec = parse_assignment(text)
    return key, parse_spec(key, spec)


# --- grid files -------------------------------------------------------------------------------


def scalar_text(value: Any, where: str) -> str:
    """A TOML scalar as the text passed to the script (booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    if hasattr(value, "isoformat"):  # TOML dates and times
        return str(value.isoformat())
    kind = "a list" if isinstance(value, list) else "a table" if isinstance(value, dict) else ""
    raise UsageError(
        f"{where} must be a string, number or boolean{', not ' + kind if kind else ''}"
    )


def _range_table(table: dict[str, Any], where: str) -> DecimalRange:
    unknown = [name for name in table if name not in ("start", "stop", "step")]
    if unknown:
        raise UsageError(f"Unknown key '{unknown[0]}' in {where} (expected start, stop, step)")
    missing = [name for name in ("start", "stop", "step") if name not in table]
    if missing:
        raise UsageError(f"{where} needs start, stop and step (missing {', '.join(missing)})")
    parts: list[str] = []
    for name in ("start", "stop", "step"):
        value = table[name]
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise UsageError(f"{where}: {name} must be a number")
        parts.append(str(value))
    return make_range(parts, where)


def _grid_values(key: str, value: Any, where: str) -> Sequence[str]:
    if isinstance(value, list):
        if not value:
            raise UsageError(f"{where} is an empty list (a key needs at least one value)")
        return [scalar_text(item, f"{where}: each value") for item in value]
    if isinstance(value, dict):
        return _range_table(value, where)
    if isinstance(value, str):
        return parse_spec(key, value, where)
    return [scalar_text(value, where)]


def load_grid(path: Path) -> tuple[dict[str, Sequence[str]], dict[str, str]]:
    """A grid file: ([grid] keys and their values, [params] fixed values), in file order."""
    import tomllib

    try:
        if path.stat().st_size > MAX_GRID_BYTES:
            raise UsageError(f"Grid file {path} is over {MAX_GRID_BYTES} bytes")
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"Grid file not found: {path}") from None
    except UnicodeDecodeError:
        raise UsageError(f"Grid file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"Cannot read grid file {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise UsageError(f"Grid file {path} is not valid TOML: {exc}") from None
    for name in data:
        if name not in ("grid", "params"):
            raise UsageError(
                f"Unknown key '{name}' in grid file {path} (expected [grid] and [params])"
            )
    grid_table = data.get("grid", {})
    fixed_table = data.get("params", {})
    if not isinstance(grid_table, dict) or not isinstance(fixed_table, dict):
        raise UsageError(f"Grid file {path}: [grid] and [params] must be tables")
    grid: dict[str, Sequence[str]] = {}
    for key, value in grid_table.items():
        where = f"grid.{key} in {path}"
        grid[check_key(key, f"grid file {path}")] = _grid_values(key, value, where)
    fixed = {
        check_key(key, f"grid file {path}"): scalar_text(value, f"params.{key} in {path}")
        for key, value in fixed_table.items()
    }
    return grid, fixed
