"""The notebook API behind `btmanager.runs`, `status`, `pnl`, `trades` and `validate`.

`import btmanager` binds thin wrappers that import this module on first call, so importing the
package stays as cheap as before (no pandas until a DataFrame is asked for).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from btmanager.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

    from btmanager.service import Service

PathLike = str | os.PathLike[str]


@contextmanager
def _service(results_dir: PathLike | None) -> Iterator[Service]:
    from btmanager.service import Service

    settings = Settings.resolve(None if results_dir is None else os.fspath(results_dir))
    # A notebook reads: it never starts queue workers of its own accord.
    svc = Service(settings, spawn_workers=False)
    try:
        yield svc
    finally:
        svc.close()


def _number(value: Any) -> int | float | None:
    """A param value as a number (ints stay ints); ValueError if it is not one."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        return value
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        return float(text)


def _numeric_column(values: Sequence[Any]) -> list[Any] | None:
    """The values as numbers if every one that is set reads as a number, else None."""
    try:
        return [_number(value) for value in values]
    except ValueError:
        return None


def runs(
    *,
    results_dir: PathLike | None = None,
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
    import pandas as pd

    from btmanager.compare import CompareOptions

    tags = [tag] if isinstance(tag, str) else list(tag or [])
    with _service(results_dir) as svc:
        selection = svc.selection(sweep, label, tags, status, script)
        table = svc.compare(list(run_ids), selection, CompareOptions(sort, top, all_params))
    columns = table.columns()
    frame = pd.DataFrame(table.records(), columns=columns)
    # Params are text in the registry; a column of numbers is more use as numbers.
    for column in columns[2 : 2 + len(table.params)]:
        numbers = _numeric_column(frame[column].tolist())
        if numbers is None:
            continue
        if all(isinstance(number, int) for number in numbers):
            frame[column] = pd.Series(numbers, index=frame.index, dtype="int64")
        else:
            floats = [math.nan if number is None else float(number) for number in numbers]
            frame[column] = pd.Series(floats, index=frame.index, dtype="float64")
    for name in ("duration_seconds", *table.metrics):
        frame[name] = frame[name].astype("float64")
    return frame.set_index("run_id")


def status(run: str, *, results_dir: PathLike | None = None) -> dict[str, Any]:
    with _service(results_dir) as svc:
        return svc.status(run).to_status_dict()


def _read_run_csv(run: str, name: str, results_dir: PathLike | None) -> pd.DataFrame:
    """A CSV file of a run, read through the same safe path as `bt results` (never a file
    outside the run folder)."""
    import pandas as pd

    with _service(results_dir) as svc, svc.result_file(run, name) as handle:
        return pd.read_csv(handle, encoding="utf-8-sig")


def pnl(run: str, *, results_dir: PathLike | None = None) -> pd.DataFrame:
    import pandas as pd

    frame = _read_run_csv(run, "pnl.csv", results_dir)
    frame.columns = [str(name).strip() for name in frame.columns]
    frame["date"] = pd.to_datetime(frame["date"])
    return frame.set_index("date")


def trades(run: str, *, results_dir: PathLike | None = None) -> pd.DataFrame:
    import pandas as pd

    frame = _read_run_csv(run, "trades.csv", results_dir)
    frame.columns = [str(name).strip() for name in frame.columns]
    for name in ("entry_time", "exit_time"):
        if name in frame.columns:
            frame[name] = pd.to_datetime(frame[name])
    return frame


def validate(
    path: PathLike,
    rules: PathLike | None = None,
    *,
    results_dir: PathLike | None = None,
) -> dict[str, Any]:
    with _service(results_dir) as svc:
        outcome = svc.validate(
            os.fspath(path), None if rules is None else Path(os.fspath(rules)), Path.cwd()
        )
        report: dict[str, Any] = outcome.report.to_dict()
        return report
