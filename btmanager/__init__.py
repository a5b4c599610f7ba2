"""btmanager: the `bt` run manager for backtest scripts, and its notebook API.

    import btmanager
    table = btmanager.runs(sweep="sweep_1a2b")    # the `bt compare` table, a DataFrame
    curve = btmanager.pnl(table.index[0])          # pnl.csv, indexed by date

Each function reads the results folder the CLI would (`--results-dir` / $BT_RESULTS_DIR /
./results), or `results_dir=`. They import what they need when called: importing this package
costs nothing more than before (every `bt` command imports it), and it never imports pandas.
"""

from __future__ import annotations

# Not `typing.TYPE_CHECKING`: importing this package imports nothing else (mypy reads the
# name the same way).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import os
    from collections.abc import Sequence
    from typing import Any

    import pandas as pd

__version__ = "0.1.0"
__all__ = ["pnl", "runs", "status", "trades", "validate"]


def runs(
    *,
    results_dir: str | os.PathLike[str] | None = None,
    sweep: str | None = None,
    label: str | None = None,
    tag: str | Sequence[str] | None = None,
    status: str | None = None,
    script: str | None = None,
    run_ids: Sequence[str] = (),
    sort: str | None = None,
    top: int | None = None,
    all_params: bool = False,
) -> pd.DataFrame:
    """The `bt compare` table as a DataFrame indexed by run id.

    Columns: label, the params that differ among the runs (all with `all_params=True`; numbers
    when every value is one), status, duration_seconds, then every metric (NaN where a run
    lacks it). Selection as on the CLI (`sweep` id or prefix, exact `label`, `tag` or tags,
    `status`, `script`), plus `run_ids`; completed runs unless `status` says otherwise.
    `sort="-sharpe_ratio"` sorts descending, `top=N` keeps the first N.
    """
    from btmanager import api

    return api.runs(
        results_dir=results_dir, sweep=sweep, label=label, tag=tag, status=status,
        script=script, run_ids=run_ids, sort=sort, top=top, all_params=all_params,
    )  # fmt: skip


def status(run: str, *, results_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """A run's status object, as `bt status RUN --json` prints it."""
    from btmanager import api

    return api.status(run, results_dir=results_dir)


def pnl(run: str, *, results_dir: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """A run's pnl.csv as a DataFrame indexed by date (a DatetimeIndex)."""
    from btmanager import api

    return api.pnl(run, results_dir=results_dir)


def trades(run: str, *, results_dir: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """A run's trades.csv as a DataFrame, entry_time and exit_time parsed as timestamps."""
    from btmanager import api

    return api.trades(run, results_dir=results_dir)


def validate(
    path: str | os.PathLike[str],
    rules: str | os.PathLike[str] | None = None,
    *,
    results_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Validate a folder of outputs, or a run (id, prefix, latest; its result is stored), as
    `bt validate --json` does: {"valid", "errors", "warnings", "file_checks"}. `rules` is a
    TOML rules file; default ./bt.toml if present (for a run: the rules it was run with)."""
    from btmanager import api

    return api.validate(path, rules, results_dir=results_dir)
