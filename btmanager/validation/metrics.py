"""A run's metrics: the numeric rows of its summary.csv, as the registry stores them.

Read whenever a run is validated, so comparing thousands of runs never opens their files.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

SUMMARY = "summary.csv"
MAX_BYTES = 1 << 20  # a summary is a few dozen rows; a bigger file is not a summary to store


def read_metrics(folder: Path) -> dict[str, float]:
    """{metric: value} for every row of summary.csv whose value is a finite number.

    A missing, oversized or unreadable file gives no metrics (validation says why), and so
    does one that leads out of the run folder (a symlink, a hard link): its numbers would be
    another file's.
    """
    from btmanager.errors import BtError
    from btmanager.safe_files import open_in_folder

    try:
        with open_in_folder(folder, SUMMARY) as handle:
            raw = handle.read(MAX_BYTES + 1)
    except (BtError, OSError):
        return {}
    if len(raw) > MAX_BYTES:
        return {}
    text = raw.decode("utf-8-sig", errors="replace")
    rows = csv.reader(io.StringIO(text, newline=""))
    header = [cell.strip().lower() for cell in next(rows, [])]
    if "metric" not in header or "value" not in header:
        return {}
    name_at, value_at = header.index("metric"), header.index("value")
    found: dict[str, float] = {}
    for row in rows:
        if len(row) <= max(name_at, value_at):
            continue
        name = row[name_at].strip()
        try:
            value = float(row[value_at].strip())
        except ValueError:
            continue
        if name and math.isfinite(value):
            found[name] = value
    return found
