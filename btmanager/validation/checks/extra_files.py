"""Files a rules file adds to the checklist: checked by kind, as far as the kind tells.

A .csv must be a readable table with the columns the rules name; a .json must be valid JSON.
Their contents mean nothing to bt, so nothing beyond the structure is checked, and a file of
any other kind is checked only for presence.
"""

from __future__ import annotations

from typing import Any

from btmanager.validation.checks.csv_file import read_csv
from btmanager.validation.checks.json_file import read_json
from btmanager.validation.checks.run_folder import RunFolder
from btmanager.validation.findings import Positions
from btmanager.validation.report import FileCheck


def check_extra_file(run: RunFolder, check: FileCheck) -> None:
    if check.name.endswith(".json"):
        read_json(run, check, "error")
    elif check.name.endswith(".csv"):
        if not check.size:
            check.error("empty file")
            return
        read_csv(run, check, _RowsOnly, fast=False)


class _RowsOnly:
    """The table check of a CSV file a rules file adds: only its structure is checked."""

    def __init__(self, header: list[str]) -> None:
        self.kinds: dict[str, Any] = {}

    def add_row(self, line: int, fields: list[str]) -> None:
        return None

    def add_chunk(self, start: int, columns: Any) -> None:
        return None

    def positions(self) -> list[Positions]:
        return []

    def needs_lines(self) -> bool:
        return False

    def finish_fast(self, first_line: int) -> None:
        return None
