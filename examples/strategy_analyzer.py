#!/usr/bin/env python3
"""Intraday short-straddle / short-strangle options backtest on synthetic data.

This is the example script bundled with ``bt``. It needs only the Python standard
library (>= 3.11) and is deterministic: the same arguments always produce
byte-identical ``trades.csv``, ``pnl.csv`` and ``summary.csv``.

Model (every number below is computed, nothing is hard-coded):

* Trading days are Monday to Friday between ``--start_date`` and ``--end_date``
  (no holiday calendar). The session runs 09:15-15:30; weekly options expire on
  Thursday at 15:30.
* The underlying follows a geometric Brownian motion driven by
  ``random.Random(seed)``, with a mean-reverting stochastic daily volatility and
  rare intraday jumps. Prices are sampled at ``--entry_time`` and ``--exit_time``.
* Options are priced with Black-Scholes (``math.erf`` for the normal CDF), time
  measured in trading minutes. Implied volatility is the day's volatility regime
  times a variance-risk premium plus an intraday IV shock, so the strategy earns
  a premium on average but loses on large moves (jumps, trending days).
* Every day one call and one put are sold at entry and bought back at exit.
  Fills are on a 0.05 tick with slippage against us; each order pays a flat
  commission. P&L per leg = (premium_in - premium_out) * lot_size - commissions.

Outputs in ``--output_dir``: trades.csv (one row per leg), pnl.csv (one row per
trading day), summary.csv (metric,value) and metadata.json.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import random
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

STRATEGY_VERSION = "1.0.0"
STRATEGIES = ("short_straddle", "short_strangle")

# Market and instrument model.
SESSION_OPEN_MIN = 9 * 60 + 15  # 09:15
SESSION_CLOSE_MIN = 15 * 60 + 30  # 15:30
SESSION_MINUTES = SESSION_CLOSE_MIN - SESSION_OPEN_MIN  # 375
TRADING_DAYS_PER_YEAR = 252
EXPIRY_WEEKDAY = 3  # Thursday
STRIKE_STEP = 50.0
TICK = 0.05
RISK_FREE_RATE = 0.06
DRIFT = 0.08  # annual drift of the underlying
VOL_LONG_RUN = 0.15  # long-run annualised volatility
VOL_MEAN_REVERSION = 0.05  # daily pull of log-vol towards the long-run level
VOL_OF_VOL = 0.12  # daily std-dev of the log-vol shock
VARIANCE_RISK_PREMIUM = 1.10  # implied vol = regime vol * this
IV_INTRADAY_SHOCK = 0.06  # std-dev of the log IV change between entry and exit
JUMP_PROBABILITY = 0.03  # chance of an intraday jump on a given day
JUMP_STD = 0.012  # std-dev of the jump (log return)

# Costs.
COMMISSION_PER_ORDER = 20.0
SLIPPAGE_FRACTION = 0.002  # of the premium, at least one tick, per fill

PROGRESS_EVERY = 20

DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
TIME_RE = re.compile(r"^(\d{1,2}):(\d{2})$")
STRIKE_RE = re.compile(r"^(atm|otm([1-9]\d?))$")


# ---------------------------------------------------------------------------
# Argument parsing


def parse_date(text: str) -> date:
    """Parse a strict ``YYYY-MM-DD`` date (argparse type)."""
    if not DATE_RE.match(text):
        raise argparse.ArgumentTypeError(f"invalid date {text!r}: expected YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid date {text!r}: {exc}") from None


def parse_time(text: str) -> int:
    """Parse ``HH:MM`` into minutes after midnight (argparse type)."""
    match = TIME_RE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"invalid time {text!r}: expected HH:MM")
    hours, minutes = int(match.group(1)), int(match.group(2))
    if hours > 23 or minutes > 59:
        raise argparse.ArgumentTypeError(f"invalid time {text!r}: expected HH:MM")
    return hours * 60 + minutes


def parse_strike_selection(text: str) -> int:
    """Parse ``atm`` / ``otmN`` into a strike offset in steps (argparse type)."""
    match = STRIKE_RE.match(text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(
            f"invalid strike selection {text!r}: expected atm, otm1, otm2, ..."
        )
    return int(match.group(2)) if match.group(2) else 0


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def format_hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class Config:
    strategy: str
    start_date: date
    end_date: date
    capital: float
    strike_selection: str
    strike_offset: int
    entry_min: int
    exit_min: int
    output_dir: Path
    seed: int
    lot_size: int
    spot: float

    def params(self) -> dict[str, object]:
        """All parameters, as JSON-friendly values."""
        return {
            "strategy": self.strategy,
            "start_date": self.start_date.isoformat(),
            "end_date": self.end_date.isoformat(),
            "capital": self.capital,
            "strike_selection": self.strike_selection,
            "entry_time": format_hhmm(self.entry_min),
            "exit_time": format_hhmm(self.exit_min),
            "output_dir": str(self.output_dir),
            "seed": self.seed,
            "lot_size": self.lot_size,
            "spot": self.spot,
        }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="strategy_analyzer.py",
        description="Deterministic intraday short straddle/strangle backtest on synthetic data.",
        allow_abbrev=False,
    )
    parser.add_argument("--strategy", required=True, choices=STRATEGIES)
    parser.add_argument("--start_date", required=True, type=parse_date, help="YYYY-MM-DD")
    parser.add_argument("--end_date", required=True, type=parse_date, help="YYYY-MM-DD")
    parser.add_argument("--capital", type=positive_float, default=100000.0)
    parser.add_argument(
        "--strike_selection",
        default=None,
        help="atm, otm1, otm2, ... (default: atm for a straddle, otm1 for a strangle)",
    )
    parser.add_argument("--entry_time", type=parse_time, default="09:20", help="HH:MM")
    parser.add_argument("--exit_time", type=parse_time, default="15:15", help="HH:MM")
    parser.add_argument(
        "--output_dir",
        default=None,
        help="output folder (default: $BACKTEST_OUTPUT_DIR, else 'results')",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--lot_size", type=positive_int, default=50)
    parser.add_argument("--spot", type=positive_float, default=17000.0, help="starting level")
    return parser


def parse_args(argv: Sequence[str] | None) -> Config:
    parser = build_parser()
    ns = parser.parse_args(argv)
    strategy: str = ns.strategy
    start: date = ns.start_date
    end: date = ns.end_date
    entry_min: int = ns.entry_time
    exit_min: int = ns.exit_time

    if end < start:
        parser.error(f"--end_date {end.isoformat()} is before --start_date {start.isoformat()}")
    if not SESSION_OPEN_MIN <= entry_min < exit_min <= SESSION_CLOSE_MIN:
        parser.error(
            f"need {format_hhmm(SESSION_OPEN_MIN)} <= entry_time < exit_time <= "
            f"{format_hhmm(SESSION_CLOSE_MIN)}, got {format_hhmm(entry_min)} "
            f"and {format_hhmm(exit_min)}"
        )

    raw_selection: str | None = ns.strike_selection
    if raw_selection is None:
        raw_selection = "atm" if strategy == "short_straddle" else "otm1"
    try:
        offset = parse_strike_selection(raw_selection)
    except argparse.ArgumentTypeError as exc:
        parser.error(f"argument --strike_selection: {exc}")
    if strategy == "short_straddle" and offset != 0:
        parser.error(
            "short_straddle sells both legs at the ATM strike; "
            "use --strategy short_strangle for OTM strikes"
        )
    if strategy == "short_strangle" and offset == 0:
        parser.error("short_strangle needs OTM strikes (--strike_selection otm1, otm2, ...)")

    output_dir = ns.output_dir or os.environ.get("BACKTEST_OUTPUT_DIR") or "results"
    return Config(
        strategy=strategy,
        start_date=start,
        end_date=end,
        capital=ns.capital,
        strike_selection=raw_selection.strip().lower(),
        strike_offset=offset,
        entry_min=entry_min,
        exit_min=exit_min,
        output_dir=Path(output_dir),
        seed=ns.seed,
        lot_size=ns.lot_size,
        spot=ns.spot,
    )


# ---------------------------------------------------------------------------
# Pricing


def norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def black_scholes(spot: float, strike: float, t_years: float, vol: float, is_call: bool) -> float:
    """European option value; intrinsic value at or after expiry."""
    if t_years <= 0.0 or vol <= 0.0:
        return max(spot - strike, 0.0) if is_call else max(strike - spot, 0.0)
    sqrt_t = math.sqrt(t_years)
    d1 = (math.log(spot / strike) + (RISK_FREE_RATE + 0.5 * vol * vol) * t_years) / (vol * sqrt_t)
    d2 = d1 - vol * sqrt_t
    discount = math.exp(-RISK_FREE_RATE * t_years)
    if is_call:
        return spot * norm_cdf(d1) - strike * discount * norm_cdf(d2)
    return strike * discount * norm_cdf(-d2) - spot * norm_cdf(-d1)


def to_ticks(price: float) -> int:
    """Price in whole ticks, never below one tick."""
    return max(1, round(price / TICK))


def ticks_to_cents(ticks: int) -> int:
    return ticks * round(TICK * 100)


def next_expiry(day: date) -> date:
    return day + timedelta(days=(EXPIRY_WEEKDAY - day.weekday()) % 7)


def weekdays_between(start: date, end: date) -> int:
    """Number of Mon-Fri dates d with start < d <= end."""
    count = 0
    d = start + timedelta(days=1)
    while d <= end:
        if d.weekday() < 5:
            count += 1
        d += timedelta(days=1)
    return count


def years_to_expiry(day: date, minute: int, expiry: date) -> float:
    """Trading time (in years) from ``minute`` on ``day`` to 15:30 on ``expiry``."""
    minutes = (SESSION_CLOSE_MIN - minute) + SESSION_MINUTES * weekdays_between(day, expiry)
    return minutes / (SESSION_MINUTES * TRADING_DAYS_PER_YEAR)


def trading_days(start: date, end: date) -> list[date]:
    days: list[date] = []
    d = start
    while d <= end:
        if d.weekday() < 5:
            days.append(d)
        d += timedelta(days=1)
    return days


# ---------------------------------------------------------------------------
# Backtest


@dataclass(frozen=True)
class Trade:
    entry_time: datetime
    exit_time: datetime
    option_type: str  # "CE" or "PE"
    strike: float
    expiry: date
    underlying_entry: float
    underlying_exit: float
    iv_entry: float
    iv_exit: float
    premium_in_ticks: int
    premium_out_ticks: int
    lot_size: int
    costs_cents: int
    pnl_cents: int


@dataclass(frozen=True)
class DayResult:
    day: date
    pnl_cents: int
    cumulative_cents: int


def fill_ticks(model_price: float, sell: bool) -> int:
    """Fill on the tick grid with slippage against us (sell lower, buy higher)."""
    slip = max(TICK, model_price * SLIPPAGE_FRACTION)
    return to_ticks(model_price - slip if sell else model_price + slip)


def simulate(cfg: Config, days: Sequence[date]) -> Iterator[tuple[date, float, list[Trade]]]:
    """Yield (day, exit spot, trades) for every trading day, in order."""
    rng = random.Random(cfg.seed)
    intraday_frac = (cfg.exit_min - cfg.entry_min) / SESSION_MINUTES
    day_dt = 1.0 / TRADING_DAYS_PER_YEAR
    log_vol_mean = math.log(VOL_LONG_RUN)
    log_vol = log_vol_mean
    spot = cfg.spot
    commission_cents = round(COMMISSION_PER_ORDER * 100)

    for index, day in enumerate(days):
        # Draw a fixed number of variates per day so the stream stays aligned.
        z_vol, z_gap, z_move, z_iv, u_jump, z_jump = (
            rng.gauss(0.0, 1.0),
            rng.gauss(0.0, 1.0),
            rng.gauss(0.0, 1.0),
            rng.gauss(0.0, 1.0),
            rng.random(),
            rng.gauss(0.0, 1.0),
        )
        log_vol += VOL_MEAN_REVERSION * (log_vol_mean - log_vol) + VOL_OF_VOL * z_vol
        vol = math.exp(log_vol)

        # Overnight / pre-entry move (the part of a day's variance outside entry..exit).
        if index > 0:
            gap_dt = day_dt * (1.0 - intraday_frac)
            spot *= math.exp((DRIFT - 0.5 * vol * vol) * gap_dt + vol * math.sqrt(gap_dt) * z_gap)
        spot_entry = spot

        # Intraday move between entry and exit, with an occasional jump.
        move_dt = day_dt * intraday_frac
        log_ret = (DRIFT - 0.5 * vol * vol) * move_dt + vol * math.sqrt(move_dt) * z_move
        if u_jump < JUMP_PROBABILITY:
            log_ret += JUMP_STD * z_jump
        spot_exit = spot_entry * math.exp(log_ret)
        spot = spot_exit

        iv_entry = vol * VARIANCE_RISK_PREMIUM
        iv_exit = iv_entry * math.exp(IV_INTRADAY_SHOCK * z_iv - 0.5 * IV_INTRADAY_SHOCK**2)

        expiry = next_expiry(day)
        t_entry = years_to_expiry(day, cfg.entry_min, expiry)
        t_exit = years_to_expiry(day, cfg.exit_min, expiry)
        atm = round(spot_entry / STRIKE_STEP) * STRIKE_STEP
        entry_dt = datetime.combine(day, datetime.min.time()) + timedelta(minutes=cfg.entry_min)
        exit_dt = datetime.combine(day, datetime.min.time()) + timedelta(minutes=cfg.exit_min)

        trades: list[Trade] = []
        for option_type, is_call, strike in (
            ("CE", True, atm + cfg.strike_offset * STRIKE_STEP),
            ("PE", False, atm - cfg.strike_offset * STRIKE_STEP),
        ):
            price_in = black_scholes(spot_entry, strike, t_entry, iv_entry, is_call)
            price_out = black_scholes(spot_exit, strike, t_exit, iv_exit, is_call)
            ticks_in = fill_ticks(price_in, sell=True)
            ticks_out = fill_ticks(price_out, sell=False)
            gross_cents = (ticks_to_cents(ticks_in) - ticks_to_cents(ticks_out)) * cfg.lot_size
            costs_cents = 2 * commission_cents
            trades.append(
                Trade(
                    entry_time=entry_dt,
                    exit_time=exit_dt,
                    option_type=option_type,
                    strike=strike,
                    expiry=expiry,
                    underlying_entry=spot_entry,
                    underlying_exit=spot_exit,
                    iv_entry=iv_entry,
                    iv_exit=iv_exit,
                    premium_in_ticks=ticks_in,
                    premium_out_ticks=ticks_out,
                    lot_size=cfg.lot_size,
                    costs_cents=costs_cents,
                    pnl_cents=gross_cents - costs_cents,
                )
            )
        yield day, spot_exit, trades


# ---------------------------------------------------------------------------
# Metrics and output


def money(cents: int) -> str:
    """Format integer cents as a decimal string with exactly two places."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole}.{frac:02d}"


def fixed(value: float, places: int) -> str:
    """Fixed-point text without a negative zero."""
    text = f"{value:.{places}f}"
    return text[1:] if text.startswith("-") and float(text) == 0.0 else text


def price(ticks: int) -> str:
    return money(ticks_to_cents(ticks))


@dataclass(frozen=True)
class Summary:
    total_pnl_cents: int
    win_rate: float
    max_drawdown_cents: int
    max_drawdown_pct: float
    sharpe_ratio: float
    num_trades: int
    winning_trades: int
    num_days: int
    winning_days: int
    best_day_cents: int
    worst_day_cents: int
    capital: float

    @property
    def final_equity(self) -> float:
        return self.capital + self.total_pnl_cents / 100

    @property
    def return_pct(self) -> float:
        return self.total_pnl_cents / 100 / self.capital * 100

    def rows(self) -> list[tuple[str, str]]:
        avg_trade = self.total_pnl_cents / 100 / self.num_trades if self.num_trades else 0.0
        day_win_rate = self.winning_days / self.num_days if self.num_days else 0.0
        return [
            ("total_pnl", money(self.total_pnl_cents)),
            ("win_rate", fixed(self.win_rate, 4)),
            ("max_drawdown", money(self.max_drawdown_cents)),
            ("max_drawdown_pct", fixed(self.max_drawdown_pct, 4)),
            ("sharpe_ratio", fixed(self.sharpe_ratio, 4)),
            ("num_trades", str(self.num_trades)),
            ("winning_trades", str(self.winning_trades)),
            ("avg_trade_pnl", fixed(avg_trade, 2)),
            ("trading_days", str(self.num_days)),
            ("day_win_rate", fixed(day_win_rate, 4)),
            ("best_day", money(self.best_day_cents)),
            ("worst_day", money(self.worst_day_cents)),
            ("capital", fixed(self.capital, 2)),
            ("final_equity", fixed(self.final_equity, 2)),
            ("return_pct", fixed(self.return_pct, 4)),
        ]


def summarise(trades: Sequence[Trade], days: Sequence[DayResult], capital: float) -> Summary:
    total = sum(t.pnl_cents for t in trades)
    winners = sum(1 for t in trades if t.pnl_cents > 0)

    peak = capital
    max_dd_cents = 0
    max_dd_pct = 0.0
    for d in days:
        equity = capital + d.cumulative_cents / 100
        peak = max(peak, equity)
        drawdown = equity - peak
        max_dd_cents = min(max_dd_cents, round(drawdown * 100))
        max_dd_pct = min(max_dd_pct, drawdown / peak * 100 if peak > 0 else 0.0)

    daily_returns = [d.pnl_cents / 100 / capital for d in days]
    sharpe = 0.0
    if len(daily_returns) > 1:
        mean = sum(daily_returns) / len(daily_returns)
        var = sum((r - mean) ** 2 for r in daily_returns) / (len(daily_returns) - 1)
        if var > 0:
            sharpe = mean / math.sqrt(var) * math.sqrt(TRADING_DAYS_PER_YEAR)

    return Summary(
        total_pnl_cents=total,
        win_rate=winners / len(trades) if trades else 0.0,
        max_drawdown_cents=max_dd_cents,
        max_drawdown_pct=max_dd_pct,
        sharpe_ratio=sharpe,
        num_trades=len(trades),
        winning_trades=winners,
        num_days=len(days),
        winning_days=sum(1 for d in days if d.pnl_cents > 0),
        best_day_cents=max((d.pnl_cents for d in days), default=0),
        worst_day_cents=min((d.pnl_cents for d in days), default=0),
        capital=capital,
    )


def csv_text(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8", newline="")
    os.replace(tmp, path)


TRADE_COLUMNS = (
    "entry_time",
    "exit_time",
    "option_type",
    "strike",
    "expiry",
    "underlying_entry",
    "underlying_exit",
    "iv_entry",
    "iv_exit",
    "premium_in",
    "premium_out",
    "lot_size",
    "costs",
    "pnl",
)


def trade_row(t: Trade) -> list[str]:
    return [
        t.entry_time.strftime("%Y-%m-%d %H:%M:%S"),
        t.exit_time.strftime("%Y-%m-%d %H:%M:%S"),
        t.option_type,
        fixed(t.strike, 0),
        t.expiry.isoformat(),
        fixed(t.underlying_entry, 2),
        fixed(t.underlying_exit, 2),
        fixed(t.iv_entry, 4),
        fixed(t.iv_exit, 4),
        price(t.premium_in_ticks),
        price(t.premium_out_ticks),
        str(t.lot_size),
        money(t.costs_cents),
        money(t.pnl_cents),
    ]


def write_outputs(
    cfg: Config, trades: Sequence[Trade], days: Sequence[DayResult], summary: Summary
) -> None:
    out = cfg.output_dir
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "trades.csv", csv_text(TRADE_COLUMNS, [trade_row(t) for t in trades]))
    write_atomic(
        out / "pnl.csv",
        csv_text(
            ("date", "pnl", "cumulative_pnl"),
            [[d.day.isoformat(), money(d.pnl_cents), money(d.cumulative_cents)] for d in days],
        ),
    )
    write_atomic(out / "summary.csv", csv_text(("metric", "value"), summary.rows()))
    metadata = {
        "params": cfg.params(),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_id": os.environ.get("BACKTEST_RUN_ID"),
        "strategy": cfg.strategy,
        "strategy_version": STRATEGY_VERSION,
        "script": "strategy_analyzer.py",
        "python_version": sys.version.split()[0],
        "trading_days": len(days),
        "num_trades": len(trades),
        "model": {
            "strike_step": STRIKE_STEP,
            "tick": TICK,
            "risk_free_rate": RISK_FREE_RATE,
            "drift": DRIFT,
            "vol_long_run": VOL_LONG_RUN,
            "variance_risk_premium": VARIANCE_RISK_PREMIUM,
            "jump_probability": JUMP_PROBABILITY,
            "commission_per_order": COMMISSION_PER_ORDER,
            "slippage_fraction": SLIPPAGE_FRACTION,
            "expiry_weekday": "Thursday",
        },
    }
    write_atomic(out / "metadata.json", json.dumps(metadata, indent=2) + "\n")


def log(message: str) -> None:
    print(message, flush=True)


def run(cfg: Config) -> int:
    log(f"Starting backtest: {cfg.strategy} ({cfg.strike_selection}), seed {cfg.seed}")
    log(f"Loading data from {cfg.start_date.isoformat()} to {cfg.end_date.isoformat()}")
    days = trading_days(cfg.start_date, cfg.end_date)
    if not days:
        print(
            f"Error: no trading days (Mon-Fri) between {cfg.start_date.isoformat()} "
            f"and {cfg.end_date.isoformat()}",
            file=sys.stderr,
            flush=True,
        )
        return 1
    log(f"Processing {len(days)} trading days")
    log(
        f"Entry {format_hhmm(cfg.entry_min)}, exit {format_hhmm(cfg.exit_min)}, "
        f"lot size {cfg.lot_size}, capital {cfg.capital:,.2f}"
    )

    all_trades: list[Trade] = []
    day_results: list[DayResult] = []
    cumulative = 0
    for count, (day, spot_exit, trades) in enumerate(simulate(cfg, days), start=1):
        day_pnl = sum(t.pnl_cents for t in trades)
        cumulative += day_pnl
        all_trades.extend(trades)
        day_results.append(DayResult(day, day_pnl, cumulative))
        if count % PROGRESS_EVERY == 0 or count == len(days):
            log(
                f"[{count}/{len(days)}] {day.isoformat()} spot {spot_exit:,.2f} "
                f"day pnl {money(day_pnl)} cumulative {money(cumulative)}"
            )

    summary = summarise(all_trades, day_results, cfg.capital)
    try:
        write_outputs(cfg, all_trades, day_results, summary)
    except OSError as exc:
        print(f"Error: cannot write results to {cfg.output_dir}: {exc}", file=sys.stderr)
        return 1

    log("Backtest complete")
    for metric, value in summary.rows():
        log(f"  {metric:<18} {value}")
    log(f"Results written to {cfg.output_dir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
