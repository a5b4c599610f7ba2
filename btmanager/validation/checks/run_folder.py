"""The folder under validation, and what the checks of its files need to know besides."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from btmanager.validation.report import FileCheck
    from btmanager.validation.rules import Rules


class RunFolder:
    """Passed to every check, so a check's signature does not grow with what it consults.

    A plain class rather than a dataclass: it is created once per validation, but a frozen
    dataclass would cost about a millisecond at every `bt run` start-up to build.
    """

    __slots__ = ("engine", "fast_bytes", "opened", "params", "path", "rules")

    def __init__(
        self,
        path: Path,
        rules: Rules,
        params: Mapping[str, str],
        fast_bytes: int,
        engine: str | None,
    ) -> None:
        self.path = path
        self.rules = rules
        self.params = params  # the run's -p params: `capital` can feed the drawdown rule
        self.fast_bytes = fast_bytes  # CSV files this big or bigger get a fast scan first
        self.engine = engine  # "arrow" or "pandas" forces the fast scanner; None picks one
        # The files found present, each opened once through the folder's SafeFolder (so never
        # one outside the folder); readers rewind the handle for each pass.
        self.opened: dict[str, BinaryIO] = {}

    def file(self, check: FileCheck) -> BinaryIO:
        return self.opened[check.name]
