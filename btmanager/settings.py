"""Where things live: the results root and the registry file.

Resolved once per command from the global `--results-dir` option and the environment, so core
functions receive explicit paths and never read the environment themselves.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

DEFAULT_RESULTS_DIR = "results"
REGISTRY_FILENAME = "bt.sqlite3"
# Seconds between SIGTERM and SIGKILL when a run's tree is ended, on every command alike.
# Defined here so that option defaults do not make every command import the runs package.
DEFAULT_GRACE = 10.0
MAX_PARALLEL_ENV = "BT_MAX_PARALLEL"


class Settings(NamedTuple):
    results_dir: Path
    db_path: Path
    # BT_MAX_PARALLEL of this command's environment, if set: commands that queue work store it
    # as the limit; no other command lets it change anything.
    env_max_parallel: str | None = None

    @classmethod
    def resolve(cls, results_dir: str | None = None) -> Settings:
        given = results_dir or os.environ.get("BT_RESULTS_DIR")
        root = Path(given).expanduser().absolute() if given else discover_results(Path.cwd())
        db_env = os.environ.get("BT_DB")
        db = Path(db_env).expanduser().absolute() if db_env else root / REGISTRY_FILENAME
        limit = os.environ.get(MAX_PARALLEL_ENV, "").strip() or None
        return cls(results_dir=root, db_path=db, env_max_parallel=limit)

    def run_dir(self, run_id: str) -> Path:
        return self.results_dir / f"run_{run_id}"


def discover_results(cwd: Path) -> Path:
    """`./results` if it exists, else the nearest `results/bt.sqlite3` above (as git finds
    `.git`), else `./results`: `bt list` in a project's sub-folder sees the project's runs."""
    here = cwd / DEFAULT_RESULTS_DIR
    if here.exists():
        return here
    for parent in cwd.parents:
        candidate = parent / DEFAULT_RESULTS_DIR
        if (candidate / REGISTRY_FILENAME).is_file():
            return candidate
    return here
