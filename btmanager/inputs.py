"""Reading a small JSON or TOML input file (params, rules) without being made to misbehave.

The file may be anything a user points at: huge, binary, a device, or nested 100 000 levels
deep (which makes Python's parsers raise RecursionError). Reads stop at a size limit, nesting
is limited, and every problem is one error naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

from btmanager.errors import BtError, UsageError

MAX_INPUT_BYTES = 1024 * 1024
# Params files are flat and rules files three levels deep; this leaves room and stays far
# below the parsers' recursion limits.
MAX_DEPTH = 32


class Wording(NamedTuple):
    """How problems with an input file are said: format strings with {what} (e.g. "Params
    file"), {lower} (the same in lower case), {path} (as given), {detail}, {limit}, {depth}.

    Each kind of input keeps the wording its users and tests know; the defaults are the params
    file's.
    """

    not_found: str = "{what} not found: {path}"
    unreadable: str = "Cannot read {lower} {path}: {detail}"
    too_large: str = "{what} {path} is too large (more than {limit} bytes)"
    not_utf8: str = "{what} {path} is not UTF-8 text"
    invalid_toml: str = "{what} {path} is not valid TOML: {detail}"
    invalid_json: str = (
        "{what} {path} is not valid JSON: {detail} (JSON, or TOML when the name ends in .toml)"
    )
    too_deep: str = "{what} {path} is nested too deeply (at most {depth} levels)"
    not_table: str = "{what} {path} must hold one object of KEY: VALUE pairs"


PARAMS_WORDING = Wording()


class _Say:
    """Builds the errors for one file."""

    def __init__(self, what: str, shown: str, wording: Wording, error: type[BtError]) -> None:
        self.what, self.shown, self.wording, self.error = what, shown, wording, error

    def __call__(self, template: str, detail: str = "") -> BtError:
        return self.error(
            template.format(
                what=self.what,
                lower=self.what.lower(),
                path=self.shown,
                detail=detail,
                limit=MAX_INPUT_BYTES,
                depth=MAX_DEPTH,
            )
        )


def read_limited(
    path: Path,
    what: str,
    error: type[BtError] = UsageError,
    *,
    shown: str | None = None,
    wording: Wording = PARAMS_WORDING,
) -> bytes:
    """At most MAX_INPUT_BYTES of the file (a pipe such as `<(...)` works too). `shown` is how
    messages name the file (default: `path`)."""
    say = _Say(what, str(path) if shown is None else shown, wording, error)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_INPUT_BYTES + 1)
    except FileNotFoundError:
        raise say(wording.not_found) from None
    except OSError as exc:
        raise say(wording.unreadable, exc.strerror or str(exc)) from None
    if len(data) > MAX_INPUT_BYTES:
        raise say(wording.too_large)
    return data


def load_document(
    path: Path,
    what: str,
    *,
    toml: bool | None = None,
    error: type[BtError] = UsageError,
    shown: str | None = None,
    wording: Wording = PARAMS_WORDING,
) -> dict[str, Any]:
    """The top-level table of a JSON or TOML file (TOML when the name ends in .toml, unless
    `toml` says). `what` names the file in messages ("Params file"), `shown` how its path is
    written (default: `path`), `wording` how each problem is said; errors are `error`."""
    import tomllib  # here, not at the top: most commands never read such a file

    say = _Say(what, str(path) if shown is None else shown, wording, error)
    as_toml = path.suffix.lower() == ".toml" if toml is None else toml
    raw = read_limited(path, what, error, shown=shown, wording=wording)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise say(wording.not_utf8) from None
    data: Any
    try:
        data = tomllib.loads(text) if as_toml else json.loads(text)
    except RecursionError:
        raise say(wording.too_deep) from None
    except ValueError as exc:  # decode errors, and e.g. JSON integers of over 4300 digits
        raise say(wording.invalid_toml if as_toml else wording.invalid_json, str(exc)) from None
    if _depth(data) > MAX_DEPTH:
        raise say(wording.too_deep)
    if not isinstance(data, dict):
        raise say(wording.not_table)
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
