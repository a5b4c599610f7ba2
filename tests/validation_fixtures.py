"""Run folders for tests: `write_valid_run(folder)` writes one that passes validation cleanly.

The other helpers build the same files as row lists, so a test can break exactly one thing.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime, timedelta
from pathlib import Path

TRADES_HEADER = ["entry_time", "exit_time", "symbol", "strike", "option_type", "qty", "pnl"]
PNL_HEADER = ["date", "pnl", "cumulative_pnl"]
SUMMARY_HEADER = ["metric", "value"]
FIRST_DAY = date(2024, 1, 2)
LAST_DAY = date(2024, 1, 31)
TRADE_PNLS = [
    1250.5,
    -430.25,
    980.0,
    -1200.0,
    310.75,
    0.0,
    2150.0,
    -85.5,
    640.0,
    -310.0,
    95.25,
    420.0,
]


def weekdays(first: date = FIRST_DAY, last: date = LAST_DAY) -> list[date]:
    span = (last - first).days + 1
    return [d for d in (first + timedelta(i) for i in range(span)) if d.weekday() < 5]


def trade_rows() -> list[list[str]]:
    """Header plus one trade on each of the first weekdays, pnl from TRADE_PNLS."""
    rows = [list(TRADES_HEADER)]
    for day, pnl in zip(weekdays(), TRADE_PNLS, strict=False):
        entry = datetime.combine(day, datetime.min.time()).replace(hour=9, minute=20)
        exit_ = entry.replace(hour=15, minute=15)
        option = "CE" if len(rows) % 2 else "PE"
        rows.append([str(entry), str(exit_), "NIFTY", "21500", option, "50", repr(pnl)])
    return rows


def pnl_rows(days: list[date] | None = None) -> list[list[str]]:
    """Header plus one row per day; the day's pnl is the trade of that day (or 0)."""
    rows = [list(PNL_HEADER)]
    total = 0.0
    for i, day in enumerate(days or weekdays()):
        pnl = TRADE_PNLS[i] if i < len(TRADE_PNLS) else 0.0
        total += pnl
        rows.append([day.isoformat(), repr(pnl), repr(round(total, 2))])
    return rows


def summary_rows() -> list[list[str]]:
    total = sum(TRADE_PNLS)
    wins = sum(1 for p in TRADE_PNLS if p > 0)
    return [
        list(SUMMARY_HEADER),
        ["total_pnl", repr(round(total, 2))],
        ["win_rate", f"{wins / len(TRADE_PNLS):.4f}"],
        ["max_drawdown", "-1630.25"],
        ["sharpe_ratio", "1.42"],
        ["num_trades", str(len(TRADE_PNLS))],
    ]


def csv_text(rows: list[list[str]], newline: str = "\n") -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator=newline).writerows(rows)
    return out.getvalue()


def write_csv(
    path: Path,
    rows: list[list[str]],
    *,
    newline: str = "\n",
    encoding: str = "utf-8",
    bom: bool = False,
) -> Path:
    data = csv_text(rows, newline).encode(encoding)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


def write_metadata(folder: Path, data: object | None = None) -> Path:
    if data is None:
        data = {
            "params": {"strategy": "short_straddle", "capital": "100000"},
            "timestamp": "2024-02-01T10:00:00+00:00",
        }
    path = folder / "metadata.json"
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def write_valid_run(folder: Path) -> Path:
    """Write trades.csv, summary.csv, pnl.csv, metadata.json and execution.log that pass."""
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / "trades.csv", trade_rows())
    write_csv(folder / "summary.csv", summary_rows())
    write_csv(folder / "pnl.csv", pnl_rows())
    write_metadata(folder)
    (folder / "execution.log").write_text(
        "Starting backtest...\nLoading data from 2024-01-02 to 2024-01-31\n"
        f"Processing {len(weekdays())} trading days\nDone: {len(TRADE_PNLS)} trades\n",
        encoding="utf-8",
    )
    return folder
