"""Run parameters: `-p KEY=VALUE` options and `--params-file` (JSON or TOML), order kept."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from btmanager.errors import UsageError

KEY_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def check_key(key: str, origin: str) -> str:
    if not KEY_PATTERN.fullmatch(key):
        raise UsageError(
            f"Invalid parameter key {key!r} in {origin}: keys must match [A-Za-z_][A-Za-z0-9_.-]*"
        )
    return key


def parse_assignment(text: str) -> tuple[str, str]:
    """`KEY=VALUE` -> (KEY, VALUE); the value may contain further '=' and be empty."""
    if "=" not in text:
        raise UsageError(f"Invalid parameter {text!r}: expected KEY=VALUE")
    key, value = text.split("=", 1)
    origin = f"-p {text!r}"
    return check_key(key, origin), check_value(key, value, origin)


def check_value(key: str, value: str, origin: str) -> str:
    """A value the OS can pass as an argument: no NUL byte (C strings end there)."""
    if "\x00" in value:
        raise UsageError(
            f"Parameter {key!r} in {origin} holds a NUL byte, which cannot be passed as an argument"
        )
    return value


def _scalar_to_text(key: str, value: Any, origin: str) -> str:
    if isinstance(value, str):
        return check_value(key, value, origin)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    if hasattr(value, "isoformat"):  # TOML dates and times
        return str(value.isoformat())
    kind = {type(None): "null", list: "a list", dict: "a table"}.get(type(value), "that type")
    raise UsageError(
        f"Parameter {key!r} in {origin} must be a string, number or boolean, not {kind} "
        "(params files are one flat table)"
    )


def load_params_file(path: Path) -> dict[str, str]:
    """A flat JSON object or TOML table of parameters; TOML for .toml files, else JSON."""
    from btmanager.inputs import load_document

    data = load_document(path, "Params file")
    origin = f"params file {path}"
    return {check_key(str(k), origin): _scalar_to_text(str(k), v, origin) for k, v in data.items()}


def merge_params(
    file_params: Mapping[str, str] | None, assignments: Iterable[str]
) -> dict[str, str]:
    """File params first (in file order), then -p options; a -p key overrides in place."""
    merged = dict(file_params or {})
    for text in assignments:
        key, value = parse_assignment(text)
        merged[key] = value
    return merged
