"""Where things live: the results root and the registry file.

Resolved once per command from the global `--results-dir` option and the environment, so core
functions receive explicit paths and never read the environment themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_RESULTS_DIR = "results"
REGISTRY_FILENAME = "bt.sqlite3"
# Seconds between SIGTERM and SIGKILL when a run's tree is ended. Defined here rather than in
# `runner` so that `bt run`'s option default does not make every command import the runner.
DEFAULT_GRACE = 5.0


@dataclass(frozen=True)
class Settings:
    results_dir: Path
    db_path: Path
    max_parallel: int

    @classmethod
    def resolve(cls, results_dir: str | None = None) -> Settings:
        root = Path(results_dir or os.environ.get("BT_RESULTS_DIR") or DEFAULT_RESULTS_DIR)
        root = root.expanduser().absolute()
        db_env = os.environ.get("BT_DB")
        db = Path(db_env).expanduser().absolute() if db_env else root / REGISTRY_FILENAME
        return cls(results_dir=root, db_path=db, max_parallel=default_max_parallel())

    def run_dir(self, run_id: str) -> Path:
        return self.results_dir / f"run_{run_id}"


def default_max_parallel() -> int:
    """`BT_MAX_PARALLEL`, else the CPU count. A bad value falls back to the CPU count."""
    raw = os.environ.get("BT_MAX_PARALLEL", "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value >= 1:
            return value
    return os.cpu_count() or 1
