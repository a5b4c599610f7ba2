"""metadata.json: a JSON object with the run's parameters and when it ran.

Optional by default, and every problem is a warning: it describes a run, nothing is computed
from it. Scripts name things differently, so a few common keys are accepted for each.
"""

from __future__ import annotations

from btmanager.validation.checks.json_file import read_json
from btmanager.validation.checks.run_folder import RunFolder
from btmanager.validation.report import FileCheck

PARAM_KEYS = ("params", "parameters")
TIMESTAMP_KEYS = ("timestamp", "created_at", "executed_at", "start_time")


def check_metadata(run: RunFolder, check: FileCheck) -> None:
    data = read_json(run, check, "warning")
    if data is None:
        return
    if not isinstance(data, dict):
        check.warn(f"not a JSON object (found {_json_kind(data)})")
        return
    params = next((k for k in PARAM_KEYS if k in data), None)
    if params is None:
        check.warn(f"no run parameters (expected key {' or '.join(PARAM_KEYS)})")
    elif not isinstance(data[params], dict):
        check.warn(f"{params} is not an object (found {_json_kind(data[params])})")
    if not any(k in data for k in TIMESTAMP_KEYS):
        keys = ", ".join(TIMESTAMP_KEYS[:-1]) + f" or {TIMESTAMP_KEYS[-1]}"
        check.warn(f"no execution timestamp (expected key {keys})")


def _json_kind(value: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else "a value")
