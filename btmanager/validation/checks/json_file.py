"""What any JSON file must be: not empty, not huge, UTF-8 text, valid JSON.

metadata.json's problems are warnings (the file is optional and informative); a .json file a
rules file adds is there because someone requires it, so its problems are errors.
"""

from __future__ import annotations

import json
from typing import Any

from btmanager.validation.checks.run_folder import RunFolder
from btmanager.validation.findings import plural
from btmanager.validation.readers.source import reading
from btmanager.validation.report import FileCheck
from btmanager.validation.rules import Severity

MAX_BYTES = 64 << 20  # a JSON file is parsed whole; bigger ones are not read


def read_json(run: RunFolder, check: FileCheck, severity: Severity) -> Any:
    """The parsed JSON, or None with the problem reported."""
    size = check.size or 0
    if size == 0:
        check.add(severity, "empty file")
        return None
    if size > MAX_BYTES:
        check.add(severity, f"too large to check ({plural(size, 'byte')})")
        return None
    with reading(run.file(check)) as handle:
        raw = handle.read(MAX_BYTES + 1)  # bounded: the file may have grown since its stat
    if len(raw) > MAX_BYTES:
        check.add(severity, f"too large to check (more than {plural(MAX_BYTES, 'byte')})")
        return None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        check.add(severity, "not UTF-8 text")
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        check.add(severity, f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")
        return None
