"""Sweep specs and grids: lists, exact decimal ranges, escapes, grid files, order, sampling.

The CLI tests check that every bad spec is one `Error:` line, exit 2, and nothing queued.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from btmanager.errors import UsageError
from btmanager.sweeps.grid import Space, build_space, choose
from btmanager.sweeps.spec import load_grid, parse_spec
from btmanager.sweeps.submit import render_label
from tests.conftest import BtRunner


def values(spec: str) -> list[str]:
    return list(parse_spec("k", spec))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("a,b,c", ["a", "b", "c"]),
        ("1:5:1", ["1", "2", "3", "4", "5"]),
        ("1:10:4", ["1", "5", "9"]),  # STOP only when reached
        ("0.1:0.3:0.1", ["0.1", "0.2", "0.3"]),  # exact, no 0.30000000000000004
        ("0:1:0.25", ["0.00", "0.25", "0.50", "0.75", "1.00"]),
        ("1:2:0.5", ["1.0", "1.5", "2.0"]),
        ("-1:1:1", ["-1", "0", "1"]),
        ("5:5:1", ["5"]),
        ("x", ["x"]),
        ("", [""]),
        ("09\\:30", ["09:30"]),  # \: is a colon
        ("09:30", ["09:30"]),  # one colon: a fixed value
        ("a\\,b", ["a,b"]),  # \, is a comma: one value
        ("a\\,b,c", ["a,b", "c"]),
        ("09:30:00,10:00:00", ["09:30:00", "10:00:00"]),  # inside a list: literal
        ("1:2:3:4", ["1:2:3:4"]),  # not two colons: a fixed value
        ("C:\\dir", ["C:\\dir"]),  # other backslashes stay
    ],
)
def test_spec_values(spec: str, expected: list[str]) -> None:
    assert values(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("1:10:0", "STEP must be greater than 0"),
        ("1:10:-1", "STEP must be greater than 0"),
        ("a:b:1", "must be three decimal numbers"),
        ("09:30:00", "STEP must be greater than 0"),  # a time without escapes
        ("10:1:1", "STOP is less than START"),
        ("1:nan:1", "decimal numbers"),
        ("1,,2", "an item is empty"),
        ("1,", "an item is empty"),
        (",", "an item is empty"),
    ],
)
def test_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        values(spec)


def test_a_huge_range_is_counted_not_expanded() -> None:
    big = parse_spec("k", "1:1000000000000:1")
    assert len(big) == 1_000_000_000_000
    assert big[-1] == "1000000000000"
    space = Space((("k", big),))
    with pytest.raises(UsageError, match="1000000000000 combinations, more than --max-runs 10"):
        choose(space, None, None, 10)


def test_order_last_key_fastest_and_overrides_keep_place(tmp_path: Path) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text(
        '[params]\nsymbol = "SPY"\nflag = true\n\n'
        "[grid]\nfast = [5, 10]\nslow = {start = 50, stop = 100, step = 50}\n"
        'when = "09\\\\:30,10\\\\:00"\n'
    )
    space = build_space({"capital": "1000", "fast": "0"}, grid, ["slow=7,8", "extra=x"])
    assert [key for key, _ in space.axes] == [
        "capital", "fast", "symbol", "flag", "slow", "when", "extra",
    ]  # fmt: skip
    combos = choose(space, None, None, 100)
    assert len(combos) == 2 * 2 * 2
    assert [(c["fast"], c["slow"], c["when"]) for c in combos] == [
        ("5", "7", "09:30"), ("5", "7", "10:00"), ("5", "8", "09:30"), ("5", "8", "10:00"),
        ("10", "7", "09:30"), ("10", "7", "10:00"), ("10", "8", "09:30"), ("10", "8", "10:00"),
    ]  # fmt: skip
    assert combos[0]["flag"] == "true" and combos[0]["capital"] == "1000"


def test_grid_file_errors(tmp_path: Path) -> None:
    cases = {
        "[grid]\nfast = [1]\n[other]\nx = 1\n": "Unknown key 'other'",
        "[grid]\nfast = {start = 1, stop = 3, step = 1, by = 2}\n": "Unknown key 'by'",
        "[grid]\nfast = {start = 1, stop = 3}\n": "missing step",
        "[grid]\nfast = []\n": "empty list",
        "[grid]\nfast = [[1, 2]]\n": "not a list",
        "[grid]\nfast = {start = 3, stop = 1, step = 1}\n": "STOP is less than START",
        "[params]\nx = {a = 1}\n": "not a table",
        '[grid]\n"bad key" = [1]\n': "Invalid parameter key",
        "[grid\n": "not valid TOML",
    }
    for text, message in cases.items():
        path = tmp_path / "g.toml"
        path.write_text(text)
        with pytest.raises(UsageError, match=message):
            load_grid(path)
    with pytest.raises(UsageError, match="not found"):
        load_grid(tmp_path / "missing.toml")


def test_grid_file_decimal_ranges_from_floats(tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    path.write_text("[grid]\nx = {start = 0.1, stop = 0.3, step = 0.1}\n")
    grid, fixed = load_grid(path)
    assert list(grid["x"]) == ["0.1", "0.2", "0.3"] and fixed == {}


def test_random_sampling_is_distinct_reproducible_and_in_grid_order() -> None:
    space = build_space(None, None, ["a=1:20:1", "b=x,y,z"])
    first = choose(space, 15, 42, 1000)
    again = choose(space, 15, 42, 1000)
    other = choose(space, 15, 43, 1000)
    assert first == again and first != other
    keys = [(c["a"], c["b"]) for c in first]
    assert len(set(keys)) == 15
    everything = choose(space, None, None, 1000)
    positions = [everything.index(c) for c in first]
    assert positions == sorted(positions)
    assert choose(space, 500, 1, 1000) == everything  # N >= count: all of them
    with pytest.raises(UsageError, match="--random 70 of 60"):
        choose(build_space(None, None, ["a=1:60:1"]), 70, 1, 50)


def test_label_templates() -> None:
    assert render_label("ma-{fast}-{slow}", {"fast": "5", "slow": "50"}) == "ma-5-50"
    assert render_label("{{literal}} {x.y}", {"x.y": "1"}) == "{literal} 1"
    with pytest.raises(UsageError, match=r"names \{nope\}"):
        render_label("r-{nope}", {"fast": "5"})


# --- the command ----------------------------------------------------------------------------


SCRIPT = "import sys\nprint(sys.argv[1:])\n"


@pytest.mark.parametrize(
    "args",
    [
        ["-p", "x=1:10:0"],
        ["-p", "x=a:b:1"],
        ["-p", "x=10:1:1"],
        ["-p", "x=1,,2"],
        ["-p", "x=1:20001:1", "-p", "y=a"],  # over the default --max-runs
        ["-p", "x=1:5:1", "--max-runs", "4"],
        ["-p", "x=1,2", "--label", "run-{y}"],
        ["-p", "x=1,2", "--grid", "nothing.toml"],
        ["-p", "x=1,2", "--random", "0"],
        ["-p", "x=1,2", "--max-parallel", "0"],
        ["-p", "x=1,2", "--after", "nope"],
    ],
)
def test_bad_sweeps_exit_2_and_queue_nothing(bt: BtRunner, args: list[str]) -> None:
    (bt.cwd / "s.py").write_text(SCRIPT)
    result = bt("sweep", "s.py", *args, "--json")
    assert result.code == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    listed = bt("list", "--json")
    assert listed.code == 0 and listed.json()["total"] == 0
    sweeps = bt("sweeps", "--json")
    assert sweeps.json() == {"sweeps": []}


def test_max_runs_error_names_the_count(bt: BtRunner) -> None:
    (bt.cwd / "s.py").write_text(SCRIPT)
    result = bt("sweep", "s.py", "-p", "x=1:100:1", "-p", "y=a,b", "--max-runs", "150")
    assert result.code == 2
    assert "200 combinations" in result.stderr and "150" in result.stderr


def test_dry_run_prints_the_combinations_in_order(bt: BtRunner, tmp_path: Path) -> None:
    (bt.cwd / "s.py").write_text(SCRIPT)
    grid = bt.cwd / "grid.toml"
    grid.write_text('[grid]\nb = ["x", "y"]\n[params]\nfixed = 1\n')
    result = bt(
        "sweep", "s.py", "--grid", "grid.toml", "-p", "a=0.1:0.3:0.1",
        "-p", "t=09\\:30", "--dry-run", "--json",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    document = result.json()
    assert document["count"] == 6
    assert document["params"] == [
        {"fixed": "1", "b": b, "a": a, "t": "09:30"}
        for b in ("x", "y")
        for a in ("0.1", "0.2", "0.3")
    ]
    assert bt("list", "--json").json()["total"] == 0
    plain = bt("sweep", "s.py", "-p", "a=1,2", "--dry-run")
    assert plain.code == 0 and plain.stdout.splitlines()[0].startswith("2 runs")


def test_random_dry_run_is_reproducible_through_the_cli(bt: BtRunner) -> None:
    (bt.cwd / "s.py").write_text(SCRIPT)
    args = ("sweep", "s.py", "-p", "a=1:50:1", "-p", "b=1:50:1", "--random", "7", "--dry-run")
    first = bt(*args, "--seed", "5", "--json").json()
    second = bt(*args, "--seed", "5", "--json").json()
    third = bt(*args, "--seed", "6", "--json").json()
    assert first == second and first["count"] == 7 and first != third
    assert len({(p["a"], p["b"]) for p in first["params"]}) == 7
