"""Deterministic benchmark data, always written into the benchmark's temporary directory.

Nothing here is random: the same sizes give byte-identical files, so two benchmark runs measure
the same work. Big files are written as one pre-built block repeated, which is fast (the disk,
not Python, sets the pace) and still realistic for the code reading them.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

# A script that does nothing but start, print and exit: the unit of work for queue benchmarks.
TRIVIAL_SCRIPT = 'print("trivial backtest done")\n'

# A script that writes small valid outputs (trades.csv, pnl.csv, summary.csv, metadata.json)
# into --output_dir, with nothing but the standard library's cheapest modules.
VALID_OUTPUTS_SCRIPT = """\
import os
import sys

args = sys.argv[1:]
out = args[args.index("--output_dir") + 1] if "--output_dir" in args else os.environ["BACKTEST_OUTPUT_DIR"]
os.makedirs(out, exist_ok=True)
trades = ["entry_time,exit_time,pnl,strike,option_type"]
for day in range(6, 11):
    trades.append(f"2020-01-{day:02d} 09:20:00,2020-01-{day:02d} 15:15:00,{day * 10.5 - 80:.2f},17000,CE")
with open(os.path.join(out, "trades.csv"), "w") as f:
    f.write("\\n".join(trades) + "\\n")
pnl = ["date,pnl,cumulative_pnl"]
total = 0.0
for day in range(6, 11):
    total += day * 10.5 - 80
    pnl.append(f"2020-01-{day:02d},{day * 10.5 - 80:.2f},{total:.2f}")
with open(os.path.join(out, "pnl.csv"), "w") as f:
    f.write("\\n".join(pnl) + "\\n")
with open(os.path.join(out, "summary.csv"), "w") as f:
    f.write(f"metric,value\\ntotal_pnl,{total:.2f}\\nwin_rate,0.6\\nmax_drawdown,-7.5\\n"
            "sharpe_ratio,1.23\\nnum_trades,5\\n")
with open(os.path.join(out, "metadata.json"), "w") as f:
    f.write('{"params": {}, "timestamp": "2020-01-10T16:00:00+00:00"}\\n')
print("wrote 4 files to", out)
"""

# Prints exactly --bytes N bytes (lines of 100 bytes) to stdout as fast as Python can.
PRINT_BYTES_SCRIPT = """\
import sys

args = sys.argv[1:]
total = int(args[args.index("--bytes") + 1])
line = b"%-99s\\n" % b"2020-01-06 09:20:00,000 INFO strategy: tick processed, position unchanged"
block = line * 10_000  # 1 MB
out = sys.stdout.buffer
written = 0
while written + len(block) <= total:
    out.write(block)
    written += len(block)
rest = total - written
out.write(block[:rest])
out.flush()
"""


def write_script(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


# --- logs ----------------------------------------------------------------------------------

_LOG_LEVELS = ("INFO", "INFO", "INFO", "DEBUG", "INFO", "WARNING")


def _log_block(lines: int) -> bytes:
    """`lines` realistic log lines (timestamps, levels, messages), each ending in \\n."""
    start = datetime(2020, 1, 6, 9, 15)
    out = []
    for n in range(lines):
        moment = start + timedelta(milliseconds=250 * n)
        level = _LOG_LEVELS[n % len(_LOG_LEVELS)]
        spot = 17000 + (n * 37) % 400 - 200
        out.append(
            f"{moment:%Y-%m-%d %H:%M:%S},{moment.microsecond // 1000:03d} {level} "
            f"strategy.short_straddle: bar {n} spot={spot:.2f} iv={0.12 + (n % 50) / 1000:.3f} "
            f"position=short pnl={(n % 97) * 3.5 - 150:.2f}\n"
        )
    return "".join(out).encode()


def write_log(path: Path, size: int) -> int:
    """An execution.log of exactly `size` bytes made of whole lines; returns its line count."""
    block = _log_block(10_000)
    lines_per_block = block.count(b"\n")
    written = lines = 0
    with open(path, "wb") as handle:
        while written + len(block) <= size:
            handle.write(block)
            written += len(block)
            lines += lines_per_block
        rest = block[: size - written]
        cut = rest.rfind(b"\n") + 1  # whole lines only; pad the last one to the exact size
        tail = rest[:cut]
        pad = size - written - len(tail)
        if pad:
            tail += b"#" * (pad - 1) + b"\n" if pad > 1 else b"\n"
        handle.write(tail)
        lines += tail.count(b"\n")
    return lines


# --- validation inputs ----------------------------------------------------------------------


def _trades_block(rows: int, first_day: date) -> bytes:
    out = []
    for n in range(rows):
        day = first_day + timedelta(days=n % 250)
        entry = datetime(day.year, day.month, day.day, 9, 20 + n % 30)
        exit_ = entry + timedelta(hours=5, minutes=n % 50)
        strike = 17000 + 50 * (n % 40)
        kind = "CE" if n % 2 == 0 else "PE"
        premium_in = 120 + (n * 7) % 90 + 0.05 * (n % 20)
        premium_out = 100 + (n * 11) % 130 + 0.05 * (n % 13)
        pnl = (premium_in - premium_out) * 50 - 40
        out.append(
            f"{entry:%Y-%m-%d %H:%M:%S},{exit_:%Y-%m-%d %H:%M:%S},{pnl:.2f},{strike},{kind},"
            f"{premium_in:.2f},{premium_out:.2f},50,short_straddle\n"
        )
    return "".join(out).encode()


TRADES_HEADER = (
    b"entry_time,exit_time,pnl,strike,option_type,entry_premium,exit_premium,lot_size,strategy\n"
)


def write_validation_dir(folder: Path, trades_size: int) -> int:
    """A folder of valid outputs whose trades.csv is about `trades_size` bytes; returns rows."""
    folder.mkdir(parents=True, exist_ok=True)
    block = _trades_block(10_000, date(2020, 1, 1))
    per_block = block.count(b"\n")
    pnls = [float(line.split(b",")[2]) for line in block.splitlines()]
    rows = 0
    with open(folder / "trades.csv", "wb") as handle:
        handle.write(TRADES_HEADER)
        written = len(TRADES_HEADER)
        while written + len(block) <= max(trades_size, len(block)):
            handle.write(block)
            written += len(block)
            rows += per_block
    # Consistent with trades.csv (totals, win rate), so the report has nothing to warn about.
    blocks = rows // per_block
    trades_total = round(sum(pnls) * blocks, 2)
    win_rate = sum(1 for pnl in pnls if pnl > 0) / len(pnls)
    # pnl.csv: every weekday of 2020; the last day closes the gap to the trades' total.
    days = []
    day = date(2020, 1, 1)
    while day.year == 2020:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    daily = [(n * 37) % 200 - 90.0 for n in range(len(days) - 1)]
    daily.append(trades_total - sum(daily))
    lines = ["date,pnl,cumulative_pnl"]
    total = 0.0
    for day, pnl in zip(days, daily, strict=True):
        total += pnl
        lines.append(f"{day.isoformat()},{pnl:.2f},{total:.2f}")
    (folder / "pnl.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "summary.csv").write_text(
        "metric,value\n"
        f"total_pnl,{trades_total:.2f}\nwin_rate,{win_rate:.4f}\nmax_drawdown,-1234.50\n"
        f"sharpe_ratio,1.10\nnum_trades,{rows}\ncapital,100000\n",
        encoding="utf-8",
    )
    (folder / "metadata.json").write_text(
        json.dumps({"params": {"capital": "100000"}, "timestamp": "2020-12-31T16:00:00+00:00"})
        + "\n",
        encoding="utf-8",
    )
    (folder / "execution.log").write_bytes(_log_block(50))
    return rows


# --- registry -------------------------------------------------------------------------------


def _template_row(db: sqlite3.Connection, db_path: Path, run_id: str) -> dict[str, Any]:
    """A real run's row (without its seq), to copy into generated ones."""
    db.row_factory = sqlite3.Row
    row = db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        raise ValueError(f"no run {run_id} in {db_path}")
    return {key: row[key] for key in row.keys() if key != "seq"}  # noqa: SIM118


def fill_registry(db_path: Path, template_run_id: str, count: int) -> None:
    """Add `count` finished runs shaped like a real one (same columns, other ids and times).

    The registry must already exist (created and migrated by `bt`); rows go in with one
    transaction, which takes a second or two for 100 000 of them.
    """
    db = sqlite3.connect(db_path, isolation_level=None)
    try:
        template = _template_row(db, db_path, template_run_id)
        results_dir = Path(template["output_dir"]).parent
        columns = list(template)
        base = datetime(2020, 1, 1)

        def rows() -> list[tuple[object, ...]]:
            made = []
            for n in range(count):
                created = base + timedelta(seconds=30 * n)
                run_id = f"{created:%Y%m%d_%H%M%S}_{n:08x}"
                values = dict(template)
                values["run_id"] = run_id
                values["output_dir"] = str(results_dir / f"run_{run_id}")
                values["created_at"] = f"{created:%Y-%m-%dT%H:%M:%S}.000+00:00"
                values["started_at"] = values["created_at"]
                values["completed_at"] = (
                    f"{created + timedelta(seconds=2):%Y-%m-%dT%H:%M:%S}.000+00:00"
                )
                if n % 10 == 9:
                    values["status"], values["exit_code"] = "failed", 1
                    values["error_message"] = "exit code 1"
                made.append(tuple(values[c] for c in columns))
            return made

        marks = ", ".join("?" for _ in columns)
        db.execute("BEGIN IMMEDIATE")
        db.executemany(f"INSERT INTO runs ({', '.join(columns)}) VALUES ({marks})", rows())
        db.execute("COMMIT")
    finally:
        db.close()


_RESET_COLUMNS = (
    "started_at",
    "completed_at",
    "exit_code",
    "error_message",
    "validation_results",
    "pid",
    "pid_create_time",
    "supervisor_pid",
    "supervisor_create_time",
    "peak_memory_bytes",
    "cpu_seconds",
    "log_size",
    "log_lines",
)


def queue_copies(db_path: Path, template_run_id: str, count: int) -> list[str]:
    """Queue `count` copies of a submitted run (same script and arguments, own folders).

    Rows go straight into the registry, so no worker is started for them: `bt worker` can then
    drain them, which measures the execution machinery without the submissions.
    """
    db = sqlite3.connect(db_path, isolation_level=None, timeout=30)
    try:
        template = _template_row(db, db_path, template_run_id)
        old_dir = template["output_dir"]
        results_dir = Path(old_dir).parent
        columns = list(template)
        ids, rows = [], []
        for n in range(count):
            run_id = f"{template_run_id[:15]}_{n:08x}"
            output_dir = str(results_dir / f"run_{run_id}")
            Path(output_dir).mkdir()
            values = dict(template)
            values.update(dict.fromkeys(_RESET_COLUMNS))
            values.update(
                run_id=run_id,
                output_dir=output_dir,
                status="queued",
                cancel_requested=0,
                command=json.dumps(
                    [
                        output_dir if arg == old_dir else arg
                        for arg in json.loads(template["command"])
                    ]
                ),
            )
            ids.append(run_id)
            rows.append(tuple(values[c] for c in columns))
        marks = ", ".join("?" for _ in columns)
        db.execute("BEGIN IMMEDIATE")
        db.executemany(f"INSERT INTO runs ({', '.join(columns)}) VALUES ({marks})", rows)
        db.execute("COMMIT")
        return ids
    finally:
        db.close()


def count_by_status(db_path: Path) -> dict[str, int]:
    db = sqlite3.connect(db_path, timeout=30)
    try:
        return {
            str(status): int(n)
            for status, n in db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status")
        }
    finally:
        db.close()


def count_active(db_path: Path) -> int:
    """Queued plus running runs (read directly, so polling costs the measured `bt` nothing)."""
    if not db_path.exists():
        return 0
    db = sqlite3.connect(db_path, timeout=30)
    try:
        row = db.execute(
            "SELECT COUNT(*) FROM runs WHERE status IN ('queued', 'running')"
        ).fetchone()
        return int(row[0])
    finally:
        db.close()


def count_running(db_path: Path) -> int:
    """Running runs whose script has started (pid recorded)."""
    if not db_path.exists():
        return 0
    db = sqlite3.connect(db_path, timeout=30)
    try:
        row = db.execute(
            "SELECT COUNT(*) FROM runs WHERE status = 'running' AND pid IS NOT NULL"
        ).fetchone()
        return int(row[0])
    finally:
        db.close()
