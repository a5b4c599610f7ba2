"""A backtest script whose outputs are known from its params, for compare, plot and API tests.

`metrics.py --a A --b B` writes valid trades.csv, pnl.csv and summary.csv into --output_dir:
total_pnl = 100*A + B, sharpe_ratio = A + B/10 (left out with --no_sharpe 1), win_rate 0.5,
max_drawdown = -A, num_trades 2; pnl.csv has ten weekdays from 2024-01-01 with the two trades'
pnl on the first and fifth, a loss of A on the third. --no_summary 1 leaves summary.csv out.
"""

from __future__ import annotations

from pathlib import Path

METRICS_SCRIPT = r"""
import argparse, os

parser = argparse.ArgumentParser(allow_abbrev=False)
parser.add_argument("--a", type=float, default=1.0)
parser.add_argument("--b", type=float, default=0.0)
parser.add_argument("--no_sharpe", default="0")
parser.add_argument("--no_summary", default="0")
parser.add_argument("--output_dir", required=True)
args, _ = parser.parse_known_args()
out = args.output_dir
total = 100 * args.a + args.b
first = round(total / 2 + args.a, 2)
second = round(total - first + args.a, 2)
with open(os.path.join(out, "trades.csv"), "w") as f:
    f.write("entry_time,exit_time,strike,option_type,pnl\n")
    f.write(f"2024-01-01 09:30:00,2024-01-01 15:30:00,100,CE,{first}\n")
    f.write(f"2024-01-05 09:30:00,2024-01-05 15:30:00,100,PE,{round(total - first, 2)}\n")
days = ["2024-01-%02d" % d for d in (1, 2, 3, 4, 5, 8, 9, 10, 11, 12)]
daily = [0.0] * 10
daily[0] = first
daily[2] = -args.a
daily[4] = second
cum = 0.0
with open(os.path.join(out, "pnl.csv"), "w") as f:
    f.write("date,pnl,cumulative_pnl\n")
    for day, pnl in zip(days, daily):
        cum = round(cum + pnl, 2)
        f.write(f"{day},{pnl},{cum}\n")
if args.no_summary != "1":
    rows = [("total_pnl", total), ("win_rate", 0.5), ("max_drawdown", -args.a)]
    if args.no_sharpe != "1":
        rows.append(("sharpe_ratio", args.a + args.b / 10))
    rows.append(("num_trades", 2))
    with open(os.path.join(out, "summary.csv"), "w") as f:
        f.write("metric,value\n")
        for name, value in rows:
            f.write(f"{name},{value}\n")
print("done", args.a, args.b)
"""


def write_metrics_script(folder: Path) -> Path:
    path = folder / "metrics.py"
    path.write_text(METRICS_SCRIPT, encoding="utf-8")
    return path


def expected_pnl(a: float, b: float) -> tuple[list[str], list[float]]:
    """(dates, cumulative_pnl) that metrics.py writes for A and B."""
    total = 100 * a + b
    first = round(total / 2 + a, 2)
    second = round(total - first + a, 2)
    daily = [0.0] * 10
    daily[0], daily[2], daily[4] = first, -a, second
    days = [f"2024-01-{d:02d}" for d in (1, 2, 3, 4, 5, 8, 9, 10, 11, 12)]
    cumulative, total_so_far = [], 0.0
    for pnl in daily:
        total_so_far = round(total_so_far + pnl, 2)
        cumulative.append(total_so_far)
    return days, cumulative


def run_in_terminal(
    argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 60
) -> tuple[int, str]:
    """Run a command on a pseudo-terminal (so it draws for a person); (exit code, screen)."""
    import os
    import pty
    import select
    import subprocess

    master, slave = pty.openpty()
    full_env = dict(env, TERM="xterm-256color", COLUMNS="120", LINES="40")
    proc = subprocess.Popen(argv, cwd=cwd, env=full_env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([master], [], [], timeout)
        if not ready:
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the terminal closed
            break
        if not data:
            break
        chunks.append(data)
    code = proc.wait(timeout=timeout)
    os.close(master)
    return code, b"".join(chunks).decode("utf-8", errors="replace")
