"""The combinations of a sweep: every one (cartesian product), or a random sample.

Keys keep the order they were given in, and the last key varies fastest, so a grid reads like
nested loops. Every key is an axis, fixed values are axes of one value. Nothing is expanded
before its count is known to fit: a range of a billion values costs nothing until then.
"""

from __future__ import annotations

import itertools
import random
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from btmanager.errors import UsageError

DEFAULT_MAX_RUNS = 10_000


@dataclass(frozen=True)
class Space:
    """The keys of a sweep, each with its values, in the order given."""

    axes: tuple[tuple[str, Sequence[str]], ...]

    @property
    def total(self) -> int:
        count = 1
        for _key, values in self.axes:
            count *= len(values)
        return count

    @property
    def varying(self) -> list[str]:
        return [key for key, values in self.axes if len(values) > 1]

    def at(self, index: int) -> dict[str, str]:
        """Combination number `index` (0-based, in product order)."""
        chosen: dict[str, str] = {}
        for key, values in reversed(self.axes):
            index, position = divmod(index, len(values))
            chosen[key] = values[position]
        return {key: chosen[key] for key, _values in self.axes}

    def combinations(self) -> list[dict[str, str]]:
        """Every combination, last key fastest."""
        keys = [key for key, _values in self.axes]
        lists = [list(values) for _key, values in self.axes]
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*lists)]


def build_space(
    file_params: Mapping[str, str] | None,
    grid_file: Path | None,
    assignments: Sequence[str],
) -> Space:
    """The keys of a sweep: --params-file values, then the grid file's [params] and [grid],
    then each `-p KEY=SPEC`; a later source replaces a key's values where the key stands."""
    from btmanager.sweeps.spec import load_grid, parse_assignment_spec

    axes: dict[str, Sequence[str]] = {key: [value] for key, value in (file_params or {}).items()}
    if grid_file is not None:
        grid, fixed = load_grid(grid_file)
        for key, value in fixed.items():
            axes[key] = [value]
        axes.update(grid)
    for text in assignments:
        key, values = parse_assignment_spec(text)
        axes[key] = values
    return Space(tuple(axes.items()))


def choose(
    space: Space, sample: int | None, seed: int | None, max_runs: int
) -> list[dict[str, str]]:
    """The combinations to run: all, or `sample` distinct ones drawn with `seed` (all of them
    when `sample` is at least the count), in product order. More than `max_runs`: refused."""
    if max_runs < 1:
        raise UsageError("--max-runs must be 1 or more")
    total = space.total
    if sample is not None and sample < 1:
        raise UsageError("--random must be 1 or more")
    count = total if sample is None else min(sample, total)
    if count > max_runs:
        drawn = f" (--random {sample} of {total})" if sample is not None else ""
        raise UsageError(
            f"The sweep has {count} combinations{drawn}, more than --max-runs {max_runs}; "
            "nothing was queued (raise --max-runs, or sample with --random N)"
        )
    if sample is None or sample >= total:
        return space.combinations()
    if total > sys.maxsize:
        raise UsageError(f"The sweep has {total} combinations: too many to sample from")
    picked = sorted(random.Random(seed).sample(range(total), sample))
    return [space.at(index) for index in picked]
