"""Bodies of small backtest scripts used by the tests (written into tmp_path)."""

from __future__ import annotations

from pathlib import Path

# Writes a small, internally consistent set of outputs that passes every validation check.
WRITE_VALID_OUTPUTS = """
import json, os, sys
from pathlib import Path

def write_valid_outputs(out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    days = ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"]
    pnls = [100.0, -50.0, 200.0, 25.5, -10.0]
    rows = ["entry_time,exit_time,strike,option_type,pnl"]
    for day, pnl in zip(days, pnls):
        rows.append(f"{day} 09:20:00,{day} 15:15:00,17000,straddle,{pnl}")
    (out / "trades.csv").write_text("\\n".join(rows) + "\\n")
    cumulative, lines = 0.0, ["date,pnl,cumulative_pnl"]
    for day, pnl in zip(days, pnls):
        cumulative += pnl
        lines.append(f"{day},{pnl},{cumulative}")
    (out / "pnl.csv").write_text("\\n".join(lines) + "\\n")
    (out / "summary.csv").write_text(
        "metric,value\\ntotal_pnl,265.5\\nwin_rate,0.6\\nmax_drawdown,-50.0\\nsharpe_ratio,1.2\\n"
    )
    (out / "metadata.json").write_text(
        json.dumps({"params": {"argv": sys.argv[1:]}, "timestamp": "2024-01-05T16:00:00+00:00"})
    )

def output_dir():
    return sys.argv[sys.argv.index("--output_dir") + 1]
"""

VALID = (
    WRITE_VALID_OUTPUTS
    + """
print("backtest starting", flush=True)
write_valid_outputs(output_dir())
print("backtest done", flush=True)
"""
)

# Records exactly what it was given: argv, environment markers and working directory.
ECHO = (
    WRITE_VALID_OUTPUTS
    + """
out = Path(output_dir())
write_valid_outputs(out)
(out / "seen.json").write_text(json.dumps({
    "argv": sys.argv[1:],
    "cwd": os.getcwd(),
    "run_id": os.environ.get("BACKTEST_RUN_ID"),
    "output_dir": os.environ.get("BACKTEST_OUTPUT_DIR"),
    "unbuffered": os.environ.get("PYTHONUNBUFFERED"),
    "custom": os.environ.get("BT_TEST_CUSTOM"),
}))
"""
)

INTERLEAVED = (
    WRITE_VALID_OUTPUTS
    + """
for i in range(5):
    print(f"out {i}", flush=True)
    print(f"err {i}", file=sys.stderr, flush=True)
write_valid_outputs(output_dir())
"""
)

FAILING = """
import sys
print("about to fail", flush=True)
sys.exit(3)
"""

NO_OUTPUTS = """
print("I forgot to write my files", flush=True)
"""

SLEEPER = (
    WRITE_VALID_OUTPUTS
    + """
import time
print("sleeping", flush=True)
pid_file = os.environ.get("BT_TEST_PID_FILE")
if pid_file:
    Path(pid_file).write_text(str(os.getpid()))
time.sleep(float(os.environ.get("BT_TEST_SLEEP", "60")))
write_valid_outputs(output_dir())
"""
)


def write(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(body, encoding="utf-8")
    return path
