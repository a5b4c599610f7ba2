#!/usr/bin/env python3
"""Moving-average crossover backtest on generated daily prices (the sweep example of ``bt``).

Standard library only (Python >= 3.11), deterministic: the same arguments always write
byte-identical ``trades.csv``, ``pnl.csv`` and ``summary.csv``.

* Prices: one synthetic stock, a geometric Brownian motion with a slow regime switch in its
  drift, closing every weekday between ``--start_date`` and ``--end_date``, driven by
  ``random.Random(--seed)`` alone, so every run of a sweep trades the same market.
* Strategy: after each close, when the ``--fast``-day simple moving average of closes is above
  the ``--slow``-day one, be long (buy at that close); when it is not, be flat (sell at that
  close). The quantity is fixed at entry: as many shares as ``--capital`` buys. Each order
  pays ``--commission``. An open position is closed at the last close.
* Money is counted in integer cents, so the files agree to the cent: the sum of trades' pnl,
  the last cumulative_pnl and summary.csv's total_pnl are the same number.

Outputs in ``--output_dir``: trades.csv (one row per round trip), pnl.csv (one row per
trading day, marked to market), summary.csv (metric,value) and metadata.json.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

TRADING_DAYS_PER_YEAR = 252
START_PRICE = 100.0
VOLATILITY = 0.22  # annualised
DRIFTS = (0.18, -0.12)  # annual drift of the up and down regimes
REGIME_SWITCH = 1 / 120  # daily chance of switching regime: trends last months


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid date {text!r}: expected YYYY-MM-DD") from None


@dataclass(frozen=True)
class Config:
    fast: int
    slow: int
    start_date: date
    end_date: date
    capital: float
    commission: float
    seed: int
    output_dir: Path

    def params(self) -> dict[str, object]:
        return {
            "fast": self.fast,
            "slow": self.slow,
            "start_date": self.start_date.isoformat(),
            "end_date": self.end_date.isoformat(),
            "capital": self.capital,
            "commission": self.commission,
            "seed": self.seed,
            "output_dir": str(self.output_dir),
        }


def parse_args(argv: Sequence[str] | None) -> Config:
    parser = argparse.ArgumentParser(
        prog="ma_crossover.py",
        description="Moving-average crossover (long/flat) on generated daily prices.",
        allow_abbrev=False,
    )
    parser.add_argument("--fast", type=positive_int, default=10, help="fast SMA, days")
    parser.add_argument("--slow", type=positive_int, default=50, help="slow SMA, days")
    parser.add_argument("--start_date", type=iso_date, default=date(2018, 1, 1))
    parser.add_argument("--end_date", type=iso_date, default=date(2022, 12, 31))
    parser.add_argument("--capital", type=positive_float, default=100_000.0)
    parser.add_argument("--commission", type=non_negative_float, default=1.0, help="per order")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated prices")
    parser.add_argument(
        "--output_dir",
        default=None,
        help="output folder (default: $BACKTEST_OUTPUT_DIR, else 'results')",
    )
    ns = parser.parse_args(argv)
    if ns.fast >= ns.slow:
        parser.error(f"--fast ({ns.fast}) must be shorter than --slow ({ns.slow})")
    if ns.end_date < ns.start_date:
        parser.error("--end_date is before --start_date")
    output_dir = ns.output_dir or os.environ.get("BACKTEST_OUTPUT_DIR") or "results"
    return Config(
        fast=ns.fast,
        slow=ns.slow,
        start_date=ns.start_date,
        end_date=ns.end_date,
        capital=ns.capital,
        commission=ns.commission,
        seed=ns.seed,
        output_dir=Path(output_dir),
    )


# ---------------------------------------------------------------------------
# Market


def weekdays(start: date, end: date) -> list[date]:
    days = []
    day = start
    while day <= end:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days


def prices_in_cents(days: Sequence[date], seed: int) -> list[int]:
    """Closing prices, one per day, in whole cents."""
    rng = random.Random(seed)
    dt = 1 / TRADING_DAYS_PER_YEAR
    regime = 0
    price = START_PRICE
    closes = []
    for _day in days:
        if rng.random() < REGIME_SWITCH:
            regime = 1 - regime
        drift = DRIFTS[regime]
        shock = rng.gauss(0.0, 1.0)
        price *= math.exp((drift - 0.5 * VOLATILITY**2) * dt + VOLATILITY * math.sqrt(dt) * shock)
        closes.append(max(1, round(price * 100)))
    return closes


# ---------------------------------------------------------------------------
# Strategy


@dataclass(frozen=True)
class Trade:
    entry: date
    exit: date
    quantity: int
    entry_cents: int
    exit_cents: int
    commission_cents: int  # both orders

    @property
    def pnl_cents(self) -> int:
        return self.quantity * (self.exit_cents - self.entry_cents) - self.commission_cents


def backtest(
    cfg: Config, days: Sequence[date], closes: Sequence[int]
) -> tuple[list[Trade], list[int]]:
    """(round trips, pnl of each day in cents)."""
    commission = round(cfg.commission * 100)
    fast_sum = slow_sum = 0
    quantity = 0
    entry_index = -1
    trades: list[Trade] = []
    daily = [0] * len(days)
    for i, close in enumerate(closes):
        if quantity:
            daily[i] += quantity * (close - closes[i - 1])
        fast_sum += close
        slow_sum += close
        if i >= cfg.fast:
            fast_sum -= closes[i - cfg.fast]
        if i >= cfg.slow:
            slow_sum -= closes[i - cfg.slow]
        last = i == len(closes) - 1
        if i + 1 < cfg.slow:
            continue  # not enough closes for the slow average yet
        # fast_sum / fast > slow_sum / slow, in integers
        bullish = fast_sum * cfg.slow > slow_sum * cfg.fast
        if not quantity and bullish and not last:
            quantity = int(cfg.capital * 100 // close)
            if quantity:
                entry_index = i
                daily[i] -= commission
        elif quantity and (not bullish or last):
            daily[i] -= commission
            trades.append(
                Trade(
                    days[entry_index], days[i], quantity, closes[entry_index], close, 2 * commission
                )
            )
            quantity = 0
    return trades, daily


# ---------------------------------------------------------------------------
# Outputs


def money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole}.{frac:02d}"


def fixed(value: float, places: int) -> str:
    text = f"{value:.{places}f}"
    return text[1:] if text.startswith("-") and float(text) == 0.0 else text


def csv_text(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write_atomic(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text, encoding="utf-8", newline="")
    os.replace(temp, path)


def summary_rows(
    cfg: Config, trades: Sequence[Trade], daily: Sequence[int]
) -> list[tuple[str, str]]:
    total = sum(daily)
    capital_cents = round(cfg.capital * 100)
    winners = sum(1 for trade in trades if trade.pnl_cents > 0)
    peak = equity = capital_cents
    max_dd = 0
    max_dd_pct = 0.0
    for pnl in daily:
        equity += pnl
        peak = max(peak, equity)
        max_dd = min(max_dd, equity - peak)
        max_dd_pct = min(max_dd_pct, (equity - peak) / peak * 100 if peak > 0 else 0.0)
    returns = [pnl / capital_cents for pnl in daily]
    sharpe = 0.0
    if len(returns) > 1:
        mean = sum(returns) / len(returns)
        variance = sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)
        if variance > 0:
            sharpe = mean / math.sqrt(variance) * math.sqrt(TRADING_DAYS_PER_YEAR)
    held = sum((trade.exit - trade.entry).days for trade in trades)
    span = max(1, (cfg.end_date - cfg.start_date).days)
    return [
        ("total_pnl", money(total)),
        ("win_rate", fixed(winners / len(trades) if trades else 0.0, 4)),
        ("max_drawdown", money(max_dd)),
        ("max_drawdown_pct", fixed(max_dd_pct, 4)),
        ("sharpe_ratio", fixed(sharpe, 4)),
        ("num_trades", str(len(trades))),
        ("winning_trades", str(winners)),
        ("exposure", fixed(min(1.0, held / span), 4)),
        ("trading_days", str(len(daily))),
        ("capital", fixed(cfg.capital, 2)),
        ("final_equity", money(capital_cents + total)),
        ("return_pct", fixed(total / capital_cents * 100, 4)),
    ]


TRADE_COLUMNS = (
    "entry_time", "exit_time", "symbol", "side", "quantity", "entry_price", "exit_price",
    "commission", "pnl",
)  # fmt: skip


def write_outputs(
    cfg: Config, days: Sequence[date], trades: Sequence[Trade], daily: Sequence[int]
) -> list[tuple[str, str]]:
    out = cfg.output_dir
    out.mkdir(parents=True, exist_ok=True)
    trade_rows = [
        [
            f"{trade.entry.isoformat()} 16:00:00",
            f"{trade.exit.isoformat()} 16:00:00",
            "SYN",
            "long",
            str(trade.quantity),
            money(trade.entry_cents),
            money(trade.exit_cents),
            money(trade.commission_cents),
            money(trade.pnl_cents),
        ]
        for trade in trades
    ]
    write_atomic(out / "trades.csv", csv_text(TRADE_COLUMNS, trade_rows))
    cumulative = 0
    pnl_rows = []
    for day, pnl in zip(days, daily, strict=True):
        cumulative += pnl
        pnl_rows.append([day.isoformat(), money(pnl), money(cumulative)])
    write_atomic(out / "pnl.csv", csv_text(("date", "pnl", "cumulative_pnl"), pnl_rows))
    summary = summary_rows(cfg, trades, daily)
    write_atomic(out / "summary.csv", csv_text(("metric", "value"), summary))
    metadata = {
        "params": cfg.params(),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_id": os.environ.get("BACKTEST_RUN_ID"),
        "strategy": "ma_crossover",
        "script": "ma_crossover.py",
        "python_version": sys.version.split()[0],
        "trading_days": len(days),
        "num_trades": len(trades),
    }
    write_atomic(out / "metadata.json", json.dumps(metadata, indent=2) + "\n")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    days = weekdays(cfg.start_date, cfg.end_date)
    if len(days) < cfg.slow + 1:
        print(
            f"Error: {len(days)} trading days, fewer than --slow {cfg.slow} + 1",
            file=sys.stderr,
        )
        return 1
    print(f"MA crossover fast={cfg.fast} slow={cfg.slow}, {len(days)} days, seed {cfg.seed}")
    closes = prices_in_cents(days, cfg.seed)
    trades, daily = backtest(cfg, days, closes)
    try:
        summary = write_outputs(cfg, days, trades, daily)
    except OSError as exc:
        print(f"Error: cannot write results to {cfg.output_dir}: {exc}", file=sys.stderr)
        return 1
    for metric, value in summary:
        print(f"  {metric:<17} {value}")
    print(f"Results written to {cfg.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
