"""Reading a small JSON or TOML input file (params, rules) without being made to misbehave.

The file may be anything a user points at: huge, binary, a device, or nested 100 000 levels
deep (which makes Python's parsers raise RecursionError). Reads stop at a size limit, nesting
is limited, and every problem is one error naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from btmanager.errors import BtError, UsageError

MAX_INPUT_BYTES = 1024 * 1024
# Params files are flat and rules files three levels deep; this leaves room and stays far
# below the parsers' recursion limits.
MAX_DEPTH = 32


def read_limited(path: Path, what: str, error: type[BtError] = UsageError) -> bytes:
    """At most MAX_INPUT_BYTES of the file (a pipe such as `<(...)` works too)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_INPUT_BYTES + 1)
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except OSError as exc:
        raise error(f"Cannot read {what.lower()} {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise error(f"{what} {path} is too large (more than {MAX_INPUT_BYTES} bytes)")
    return data


def load_document(
    path: Path,
    what: str,
    *,
    toml: bool | None = None,
    error: type[BtError] = UsageError,
) -> dict[str, Any]:
    """The top-level table of a JSON or TOML file (TOML when the name ends in .toml, unless
    `toml` says). `what` names the file in messages ("Params file"); errors are `error`."""
    import tomllib  # here, not at the top: most commands never read such a file

    as_toml = path.suffix.lower() == ".toml" if toml is None else toml
    raw = read_limited(path, what, error)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise error(f"{what} {path} is not UTF-8 text") from None
    data: Any
    try:
        data = tomllib.loads(text) if as_toml else json.loads(text)
    except RecursionError:
        raise error(f"{what} {path} is nested too deeply (at most {MAX_DEPTH} levels)") from None
    except ValueError as exc:  # decode errors, and e.g. JSON integers of over 4300 digits
        if as_toml:
            raise error(f"{what} {path} is not valid TOML: {exc}") from None
        raise error(
            f"{what} {path} is not valid JSON: {exc} (JSON, or TOML when the name ends in .toml)"
        ) from None
    if _depth(data) > MAX_DEPTH:
        raise error(f"{what} {path} is nested too deeply (at most {MAX_DEPTH} levels)")
    if not isinstance(data, dict):
        raise error(f"{what} {path} must hold one object of KEY: VALUE pairs")
    return data


def _depth(data: Any) -> int:
    """How deeply lists and tables nest (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        level += 1
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            return level
        stack.extend((child, level) for child in children)
    return deepest
