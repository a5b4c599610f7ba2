"""Equity curves: pnl.csv read into series, drawn in the terminal (plotext), as a PNG
(matplotlib, the `plot` extra), or as a one-line sparkline for `bt status`.

plotext and matplotlib are imported only by the functions that draw with them: reading a
curve, and the sparkline, need the standard library alone.
"""

from __future__ import annotations

import csv
import io
import math
import os
import stat
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from btmanager.errors import UsageError

if TYPE_CHECKING:
    from btmanager.registry.model import Run

PNL = "pnl.csv"
SPARK_BLOCKS = "▁▂▃▄▅▆▇█"
SPARK_ASCII = "_.-~=+*#"
SPARK_WIDTH = 40
# A status line reads pnl.csv only up to this size: `bt status` must stay instant.
SPARK_MAX_BYTES = 512 << 10  # ~13 000 daily rows, read in a few ms
# Box-drawing characters plotext frames with, and what a plain-text plot uses instead.
_ASCII_FRAME = str.maketrans("┌┐└┘─│┤├┬┴┼", "++++-||++++")
_PLAIN_MARKERS = ("*", "+", "o", "x", "#", "@", "%", "&")


class PnlError(Exception):
    """pnl.csv is missing or cannot be read as a curve; the message says why."""


class Curve(NamedTuple):
    run_id: str
    label: str | None
    dates: list[str]
    cumulative_pnl: list[float]

    @property
    def name(self) -> str:
        return self.label or self.run_id

    @property
    def drawdown(self) -> list[float]:
        return drawdown(self.cumulative_pnl)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "dates": self.dates,
            "cumulative_pnl": self.cumulative_pnl,
            "drawdown": self.drawdown,
        }


def drawdown(values: Sequence[float]) -> list[float]:
    """Each value minus the running maximum so far (0 at a new high, negative below it)."""
    peak = -math.inf
    out: list[float] = []
    for value in values:
        peak = max(peak, value)
        out.append(value - peak)
    return out


def _read_text(path: Path, max_bytes: int | None) -> str:
    """The file's text, never through a symlink (a run folder's files are the script's)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise PnlError(f"{path.name} is missing") from None
    except OSError as exc:
        raise PnlError(f"cannot open {path.name}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PnlError(f"{path.name} is not a regular file")
        if max_bytes is not None and info.st_size > max_bytes:
            raise PnlError(f"{path.name} is over {max_bytes} bytes")
        with os.fdopen(fd, "rb") as handle:
            fd = -1
            raw = handle.read()
    finally:
        if fd >= 0:
            os.close(fd)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def read_pnl(folder: Path, max_bytes: int | None = None) -> tuple[list[str], list[float]]:
    """(dates as written, cumulative_pnl) of a folder's pnl.csv.

    Without a cumulative_pnl column the running sum of pnl is used. Raises PnlError.
    """
    text = _read_text(folder / PNL, max_bytes)
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [cell.strip().lower() for cell in next(reader, [])]
    if "date" not in header:
        raise PnlError(f"{PNL} has no date column")
    cumulative = "cumulative_pnl" in header
    if not cumulative and "pnl" not in header:
        raise PnlError(f"{PNL} has neither a cumulative_pnl nor a pnl column")
    date_at = header.index("date")
    value_at = header.index("cumulative_pnl" if cumulative else "pnl")
    dates: list[str] = []
    values: list[float] = []
    total = 0.0
    for line, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) <= max(date_at, value_at):
            raise PnlError(f"{PNL} line {line}: too few fields")
        cell = row[value_at].strip()
        try:
            value = float(cell)
        except ValueError:
            raise PnlError(f"{PNL} line {line}: {cell!r} is not a number") from None
        if not math.isfinite(value):
            raise PnlError(f"{PNL} line {line}: {cell!r} is not a finite number")
        if not cumulative:
            total += value
            value = total
        dates.append(row[date_at].strip())
        values.append(value)
    if not values:
        raise PnlError(f"{PNL} has no rows")
    return dates, values


def read_curve(run: Run) -> Curve:
    """A run's equity curve; a run without a readable pnl.csv is exit 2 naming it."""
    try:
        dates, values = read_pnl(Path(run.output_dir))
    except PnlError as exc:
        raise UsageError(f"Run {run.run_id} has no readable pnl.csv: {exc}") from None
    return Curve(run.run_id, run.label, dates, values)


# --- sparkline --------------------------------------------------------------------------------


def sparkline(values: Sequence[float], width: int = SPARK_WIDTH, unicode: bool = True) -> str:
    """The curve in `width` characters (each the value at the end of its stretch)."""
    if not values:
        return ""
    count = min(width, len(values))
    points = [
        values[min(len(values) - 1, ((i + 1) * len(values)) // count - 1)] for i in range(count)
    ]
    low, high = min(points), max(points)
    ramp = SPARK_BLOCKS if unicode else SPARK_ASCII
    if high == low:
        return ramp[len(ramp) // 2] * count
    top = len(ramp) - 1
    return "".join(ramp[round((point - low) / (high - low) * top)] for point in points)


# --- terminal and PNG plots ---------------------------------------------------------------------


def _ordinal(text: str) -> int | None:
    try:
        return date.fromisoformat(text[:10]).toordinal()
    except ValueError:
        return None


def _positions(curves: Sequence[Curve]) -> tuple[list[list[float]], list[float], list[str]]:
    """x positions per curve (days when every date parses, else row numbers), and the ticks."""
    days = [[_ordinal(text) for text in curve.dates] for curve in curves]
    if all(day is not None for series in days for day in series):
        xs = [[float(day) for day in series if day is not None] for series in days]
        low = min(series[0] for series in xs)
        high = max(series[-1] for series in xs)
        ticks = [low + (high - low) * i / 4 for i in range(5)] if high > low else [low]
        labels = [date.fromordinal(round(tick)).isoformat() for tick in ticks]
        return xs, ticks, labels
    xs = [[float(i) for i in range(len(curve.dates))] for curve in curves]
    longest = max(curves, key=lambda curve: len(curve.dates))
    last = len(longest.dates) - 1
    positions = sorted({round(last * i / 4) for i in range(5)})
    return xs, [float(tick) for tick in positions], [longest.dates[tick] for tick in positions]


def _thin(xs: list[float], ys: list[float], most: int) -> tuple[list[float], list[float]]:
    """At most about `most` points, keeping each stretch's lowest and highest (the shape)."""
    if len(xs) <= most:
        return xs, ys
    step = max(1, math.ceil(len(xs) / (most // 2)))
    keep_x: list[float] = []
    keep_y: list[float] = []
    for start in range(0, len(xs), step):
        stretch = range(start, min(start + step, len(xs)))
        low = min(stretch, key=lambda i: ys[i])
        high = max(stretch, key=lambda i: ys[i])
        for i in sorted({low, high}):
            keep_x.append(xs[i])
            keep_y.append(ys[i])
    return keep_x, keep_y


def terminal_plot(
    curves: Sequence[Curve], width: int, height: int, with_drawdown: bool, plain: bool
) -> str:
    """The curves overlaid, with a legend; plain: ASCII only, no colours."""
    import plotext as plt

    xs, ticks, labels = _positions(curves)
    plt.clear_figure()
    plt.limitsize(False, False)  # the size asked for, not the (unknown, for a pipe) terminal's
    drawdown_height = max(6, height // 3) if with_drawdown else 0
    equity_height = max(8, height - drawdown_height)
    if with_drawdown:
        plt.subplots(2, 1)
        plt.plotsize(width, equity_height + drawdown_height)  # the whole figure
        plt.subplot(1, 1)
    plt.plotsize(width, equity_height)
    series = [(curve, x) for curve, x in zip(curves, xs, strict=True)]

    def draw(values_of: Any, title: str, legend: bool) -> None:
        if plain:
            plt.theme("clear")
        for number, (curve, x) in enumerate(series):
            thin_x, thin_y = _thin(x, values_of(curve), width * 4)
            marker = _PLAIN_MARKERS[number % len(_PLAIN_MARKERS)] if plain else "braille"
            plt.plot(thin_x, thin_y, label=curve.name if legend else "", marker=marker)
        plt.title(title)
        plt.xticks(ticks, labels)

    draw(lambda curve: curve.cumulative_pnl, "Equity (cumulative pnl)", True)
    if with_drawdown:
        plt.subplot(2, 1)
        plt.plotsize(width, drawdown_height)
        draw(lambda curve: curve.drawdown, "Drawdown", False)
    text: str = plt.build()
    plt.clear_figure()
    if plain:
        text = plt.uncolorize(text).translate(_ASCII_FRAME)
        text = "\n".join(line.rstrip() for line in text.splitlines())
    return text


def png_plot(curves: Sequence[Curve], path: Path, with_drawdown: bool) -> None:
    """Write the plot as a PNG (matplotlib's Agg backend: no display needed)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as pyplot
    except ImportError:
        raise UsageError("--png needs matplotlib: pip install 'btmanager[plot]'") from None
    xs, ticks, labels = _positions(curves)
    rows = 2 if with_drawdown else 1
    figure, axes = pyplot.subplots(
        rows, 1, figsize=(10, 6 if with_drawdown else 4.5), sharex=True, squeeze=False,
        gridspec_kw={"height_ratios": [3, 1] if with_drawdown else [1]},
    )  # fmt: skip
    top = axes[0][0]
    for curve, x in zip(curves, xs, strict=True):
        top.plot(x, curve.cumulative_pnl, label=curve.name, linewidth=1.2)
        if with_drawdown:
            axes[1][0].fill_between(x, curve.drawdown, 0, alpha=0.35, label=curve.name)
    top.set_title("Equity (cumulative pnl)")
    top.legend(loc="best", fontsize="small")
    top.grid(alpha=0.3)
    if with_drawdown:
        axes[1][0].set_title("Drawdown")
        axes[1][0].grid(alpha=0.3)
    bottom = axes[rows - 1][0]
    bottom.set_xticks(ticks)
    bottom.set_xticklabels(labels, rotation=0, fontsize="small")
    figure.tight_layout()
    from btmanager.outfile import check_destination, temporary_for

    check_destination(path)
    temp = temporary_for(path)
    try:
        figure.savefig(temp, format="png", dpi=110)
        temp.replace(path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise UsageError(f"Cannot write {path}: {exc.strerror or exc}") from None
    finally:
        pyplot.close(figure)
