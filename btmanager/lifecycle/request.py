"""What a user asks `bt run` for, before anything is recorded.

Its own module, importing almost nothing: a foreground `bt run` builds one before it needs the
registry (its early supervisor records the run; see btmanager.execution.early).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from btmanager.settings import DEFAULT_GRACE

if TYPE_CHECKING:
    from btmanager.params import ParamValue
    from btmanager.provenance import SavedSource


class RunRequest:
    """What the user asked `bt run` for, before anything is recorded."""

    # A plain class: as a dataclass it cost ~1.3 ms to build on every run's start-up.
    def __init__(
        self,
        script: str,
        # Values from -p are text; a params file's numbers and booleans keep their type; None
        # is a flag (`--flag NAME`). The script gets them all as text (see
        # btmanager.params.param_text).
        params: dict[str, ParamValue] | None = None,
        extra_args: list[str] | None = None,
        cwd: Path | None = None,
        label: str | None = None,
        validate: bool = True,
        rules: dict[str, Any] | None = None,
        timeout: float | None = None,
        grace: float = DEFAULT_GRACE,
        priority: int = 0,
        nice: int | None = None,
        after: list[str] | None = None,  # run ids that must complete first
        rerun_of: str | None = None,
        # An --exact rerun runs the script copy saved with an earlier run: that run's git state.
        saved_source: SavedSource | None = None,
    ) -> None:
        self.script = script
        self.params: dict[str, ParamValue] = params if params is not None else {}
        self.extra_args: list[str] = extra_args if extra_args is not None else []
        self.cwd = cwd if cwd is not None else Path.cwd()
        self.label = label
        self.validate = validate
        self.rules = rules
        self.timeout = timeout
        self.grace = grace
        self.priority = priority
        self.nice = nice
        self.after: list[str] = after if after is not None else []
        self.rerun_of = rerun_of
        self.saved_source = saved_source

    # The request as plain data and back, for a supervisor that records the run itself (see
    # btmanager.execution.early). An --exact rerun's saved source is not plain: it never goes.
    _PLAIN: tuple[str, ...] = ("script", "params", "extra_args", "label", "validate", "rules")
    _PLAIN += ("timeout", "grace", "priority", "nice", "after", "rerun_of")

    def to_plain(self) -> dict[str, Any] | None:
        if self.saved_source is not None:
            return None
        plain = {name: getattr(self, name) for name in self._PLAIN}
        plain["cwd"] = str(self.cwd)
        return plain

    @classmethod
    def from_plain(cls, plain: dict[str, Any]) -> RunRequest:
        return cls(**{**plain, "cwd": Path(plain["cwd"])})
