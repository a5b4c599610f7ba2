"""The outcome of validating a run folder: a Report, assembled from one FileCheck per file.

Renderers and the JUnit writer import this module alone, so it stays free of the checks and
readers (and of the rules, whose Severity it needs only for type checking).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from btmanager.validation.rules import Severity


class Report(NamedTuple):
    """The outcome of validating one folder.

    `to_dict()` is the JSON that `bt validate --json` prints and that a run stores, so its keys
    and their order are part of what users parse.
    """

    valid: bool
    errors: list[str]
    warnings: list[str]
    file_checks: dict[str, dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "errors": list(self.errors),
            "warnings": list(self.warnings),
            "file_checks": {name: dict(check) for name, check in self.file_checks.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        """A report back from `to_dict()` output (e.g. as stored with a run)."""
        return cls(
            valid=bool(data.get("valid")),
            errors=list(data.get("errors", [])),
            warnings=list(data.get("warnings", [])),
            file_checks={k: dict(v) for k, v in dict(data.get("file_checks", {})).items()},
        )


def combined(reports: list[tuple[str, Report]]) -> Report:
    """Several folders' reports as one (`bt validate A B --junit F`): each file check named
    `<folder>/<file>`, valid only if every report is."""
    return Report(
        valid=all(report.valid for _name, report in reports),
        errors=[f"{name}: {message}" for name, report in reports for message in report.errors],
        warnings=[f"{name}: {m}" for name, report in reports for m in report.warnings],
        file_checks={
            f"{name}/{file}": check
            for name, report in reports
            for file, check in report.file_checks.items()
        },
    )


class FileCheck:
    """The findings about one file; every message is prefixed with the file's name."""

    # A plain class: a dataclass costs ~1 ms to build at import, on every validated run.
    def __init__(self, name: str) -> None:
        self.name = name
        self.exists = False
        self.size: int | None = None
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.row_count: int | None = None
        self.columns: list[str] | None = None

    def add(self, severity: Severity, text: str) -> None:
        target = self.errors if severity == "error" else self.warnings
        target.append(f"{self.name}: {text}")

    def error(self, text: str) -> None:
        self.add("error", text)

    def warn(self, text: str) -> None:
        self.add("warning", text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "exists": self.exists,
            "size": self.size,
            "errors": self.errors,
            "warnings": self.warnings,
            "row_count": self.row_count,
            "columns": self.columns,
        }
