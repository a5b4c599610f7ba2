"""Validation reads only the run folder's own files, and rules files are bounded.

Through the real `bt validate`: a result file that is a symlink or hard link to a file outside
the folder, a symlinked subfolder leading out, FIFOs and (as root, scratch nodes under
tmp_path, never the real /dev) devices are reported as errors of the report, never read: not a
line of them is echoed, and the exit code is 1 (the folder was validated; the file is bad). A run
folder replaced by a symlink is exit 2, as for `bt results`; a folder the user names through a
symlink is validated. A rules file nested 100 000 deep or endless is exit 2, one line.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BtRunner
from tests.helpers import Result
from tests.scripts import VALID, write
from tests.validation_fixtures import write_valid_run

MARK = "SECRET-MARKER-7f3a"
# What validation would echo if it read it: a header (the report lists the columns) and cells
# (bad values are quoted), more than the minimum sizes of the result files.
SECRET = "".join(f"root:x:0:0:{MARK}-{i}:/root:/bin/bash,{MARK}\n" for i in range(8))
LEADS_OUT = "refused: a symlink leading out of the run folder"
HARD_LINK = "refused: a hard link (2 links), so it may be a file from outside the run folder"
RESULT_FILES = ("trades.csv", "summary.csv", "pnl.csv", "metadata.json", "execution.log")
EXTRA = "positions.csv"
RULES = f'[files]\nrequired = ["{EXTRA}"]\n'


def validate(bt: BtRunner, *args: str) -> dict[str, Any]:
    """`bt validate ARGS --json`, which must report an invalid folder (exit 1), no secret."""
    result = bt("validate", *args, "--json", timeout=60)
    assert result.code == 1, (result.code, result.stdout, result.stderr)
    assert result.stderr == ""
    assert MARK not in result.stdout
    report: dict[str, Any] = result.json()
    return report


def assert_usage_error(result: Result, *fragments: str) -> None:
    assert result.code == 2, (result.code, result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert MARK not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


@pytest.fixture
def folder(bt: BtRunner, tmp_path: Path) -> Path:
    """A valid run folder with a rules file asking for positions.csv, and a secret outside."""
    run = write_valid_run(tmp_path / "out")
    (run / EXTRA).write_text("symbol,qty\nNIFTY,50\n")
    (bt.cwd / "bt.toml").write_text(RULES)
    (tmp_path / "outside").mkdir()
    return run


def _secret(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "outside" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(SECRET)
    return path


@pytest.mark.parametrize("how", ["symlink", "relative-symlink", "hardlink"])
def test_files_leading_outside_are_refused_not_read(
    bt: BtRunner, folder: Path, tmp_path: Path, how: str
) -> None:
    for name in (*RESULT_FILES, EXTRA):
        secret = _secret(tmp_path, name)
        (folder / name).unlink()
        if how == "symlink":
            (folder / name).symlink_to(secret)
        elif how == "relative-symlink":
            (folder / name).symlink_to(os.path.relpath(secret, folder))
        else:
            os.link(secret, folder / name)
    report = validate(bt, str(folder))
    expected = HARD_LINK if how == "hardlink" else LEADS_OUT
    for name in (*RESULT_FILES, EXTRA):
        check = report["file_checks"][name]
        # The only finding about the file: nothing of its contents was looked at.
        assert check["errors"] == [f"{name}: {expected}"], check
        assert check["warnings"] == [] and check["columns"] is None and check["size"] is None
        assert check["exists"] is True
    assert report["valid"] is False


def test_links_inside_are_followed_and_subfolders_leading_out_refused(
    bt: BtRunner, folder: Path, tmp_path: Path
) -> None:
    (folder / "data").mkdir()
    (folder / "trades.csv").rename(folder / "data" / "trades.csv")
    (folder / "trades.csv").symlink_to("data/trades.csv")
    (folder / "pnl.csv").rename(folder / "data" / "pnl.csv")
    (folder / "pnl.csv").symlink_to(folder / "data" / "pnl.csv")  # absolute, inside
    assert bt("validate", str(folder), "--json").json()["valid"] is True
    # A subfolder that is a symlink leading out, and a link climbing out with '..'.
    _secret(tmp_path, "deep.csv")
    (folder / "sub").symlink_to(tmp_path / "outside")
    (folder / "data" / "up.csv").symlink_to("../../outside/deep.csv")
    (bt.cwd / "bt.toml").write_text(
        RULES.replace(f'"{EXTRA}"', f'"{EXTRA}", "sub/deep.csv", "data/up.csv"')
    )
    report = validate(bt, str(folder))
    assert report["errors"] == [f"sub/deep.csv: {LEADS_OUT}", f"data/up.csv: {LEADS_OUT}"]
    assert report["warnings"] == []


def test_fifos_are_reported_without_waiting(bt: BtRunner, folder: Path, tmp_path: Path) -> None:
    (folder / "trades.csv").unlink()
    os.mkfifo(folder / "trades.csv")
    fifo_outside = tmp_path / "outside" / "pipe"
    os.mkfifo(fifo_outside)
    (folder / "execution.log").unlink()
    (folder / "execution.log").symlink_to(fifo_outside)
    report = validate(bt, str(folder))  # a FIFO opened for reading would block: bounded here
    assert report["file_checks"]["trades.csv"]["errors"] == ["trades.csv: not a regular file"]
    assert report["file_checks"]["execution.log"]["errors"] == [f"execution.log: {LEADS_OUT}"]


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_devices_are_reported_not_read(bt: BtRunner, folder: Path, tmp_path: Path) -> None:
    # Scratch nodes with the numbers of /dev/full and /dev/zero, never the real /dev.
    full, zero = os.makedev(1, 7), os.makedev(1, 5)
    (folder / "trades.csv").unlink()
    os.mknod(folder / "trades.csv", stat.S_IFCHR | 0o600, full)
    zero_outside = tmp_path / "outside" / "zero"
    os.mknod(zero_outside, stat.S_IFCHR | 0o600, zero)
    (folder / "pnl.csv").unlink()
    (folder / "pnl.csv").symlink_to(zero_outside)
    os.mknod(folder / "zero", stat.S_IFCHR | 0o600, zero)
    (folder / "metadata.json").unlink()
    (folder / "metadata.json").symlink_to("zero")  # inside, but a device
    (folder / EXTRA).unlink()
    os.link(zero_outside, folder / EXTRA)  # a hard link to a device elsewhere
    report = validate(bt, str(folder))
    checks = report["file_checks"]
    assert checks["trades.csv"]["errors"] == ["trades.csv: not a regular file"]
    assert checks["pnl.csv"]["errors"] == [f"pnl.csv: {LEADS_OUT}"]
    assert checks["metadata.json"]["warnings"] == ["metadata.json: not a regular file"]
    assert checks[EXTRA]["errors"] == [f"{EXTRA}: not a regular file"]
    for name in ("trades.csv", "pnl.csv", "metadata.json", EXTRA):
        assert checks[name]["size"] is None


def test_big_files_leading_outside_never_reach_the_fast_scan(
    bt: BtRunner, folder: Path, tmp_path: Path
) -> None:
    secret = _secret(tmp_path, "big.csv")
    (folder / "trades.csv").unlink()
    (folder / "trades.csv").symlink_to(secret)
    (folder / "pnl.csv").unlink()
    os.link(_secret(tmp_path, "pnl.csv"), folder / "pnl.csv")
    for engine in ("arrow", "pandas"):
        env = {"BT_VALIDATE_FAST_BYTES": "0", "BT_VALIDATE_ENGINE": engine}
        result = bt("validate", str(folder), "--json", **env)
        assert result.code == 1 and MARK not in result.stdout, result.stdout
        assert f"trades.csv: {LEADS_OUT}" in result.json()["errors"]
        assert f"pnl.csv: {HARD_LINK}" in result.json()["errors"]


def _finished_run(bt: BtRunner) -> Path:
    write(bt.cwd, "s.py", VALID)
    status = bt("run", "s.py", "--json").json()
    assert status["status"] == "completed", status
    return Path(status["output_dir"])


def _stored_metrics(bt: BtRunner) -> dict[str, float]:
    with sqlite3.connect(bt.results / "bt.sqlite3") as db:
        return dict(db.execute("SELECT name, value FROM metrics").fetchall())


def test_validating_a_run_never_reads_outside(bt: BtRunner, tmp_path: Path) -> None:
    run = _finished_run(bt)
    assert "total_pnl" in _stored_metrics(bt)
    secret = _secret(tmp_path, "summary.csv")
    secret.write_text(f"metric,value\ntotal_pnl,265.5\nwin_rate,0.6\nmax_drawdown,-50\n{MARK},7\n")
    (run / "summary.csv").unlink()
    os.link(secret, run / "summary.csv")
    (run / "trades.csv").unlink()
    (run / "trades.csv").symlink_to(_secret(tmp_path, "trades.csv"))
    report = validate(bt, "latest")
    assert f"trades.csv: {LEADS_OUT}" in report["errors"]
    assert f"summary.csv: {HARD_LINK}" in report["errors"]
    status = bt("status", "latest", "--json")
    assert MARK not in status.stdout
    assert status.json()["status"] == "failed"
    # Nor are the other file's numbers stored as the run's metrics.
    assert _stored_metrics(bt) == {}


def test_run_folder_replaced_by_a_symlink(bt: BtRunner, tmp_path: Path) -> None:
    run = _finished_run(bt)
    elsewhere = write_valid_run(tmp_path / "elsewhere")
    run.rename(tmp_path / "moved")
    run.symlink_to(elsewhere)
    assert_usage_error(bt("validate", "latest"), "symbolic link")
    assert_usage_error(bt("validate", "latest", "--json"), "symbolic link")
    assert bt("status", "latest", "--json").json()["status"] == "completed"  # nothing stored
    # Named by the user, the folder is the one they chose; its files still must not lead out.
    assert bt("validate", str(run), "--json").json()["valid"] is True
    (elsewhere / "trades.csv").unlink()
    (elsewhere / "trades.csv").symlink_to(_secret(tmp_path, "trades.csv"))
    link = tmp_path / "link"
    link.symlink_to(elsewhere)
    for named in (str(run), str(link), str(link) + "/"):
        assert f"trades.csv: {LEADS_OUT}" in validate(bt, named)["errors"]


# --- rules files ------------------------------------------------------------------------------


def _deep_toml(depth: int) -> str:
    return "a = " + "[" * depth + "]" * depth + "\n"


ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")


@pytest.mark.parametrize(
    ("name", "content", "fragments"),
    [
        ("deep.toml", _deep_toml(100_000), ("Rules file deep.toml", "nested too deeply")),
        ("deep40.toml", _deep_toml(40), ("Rules file deep40.toml", "nested too deeply")),
        ("big.toml", "# " + "x" * (1024 * 1024) + "\n", ("Rules file big.toml", "too large")),
        pytest.param("zero", None, ("Rules file zero", "too large"), marks=ROOT_ONLY),
    ],
    ids=["deep-100000", "deep-40", "too-large", "device"],
)
def test_rules_files_are_bounded(
    bt: BtRunner, tmp_path: Path, name: str, content: str | None, fragments: tuple[str, ...]
) -> None:
    folder = write_valid_run(tmp_path / "out")
    write(bt.cwd, "s.py", VALID)
    if content is None:  # a scratch node with /dev/zero's numbers: endless
        os.mknod(bt.cwd / name, stat.S_IFCHR | 0o600, os.makedev(1, 5))
    else:
        (bt.cwd / name).write_text(content)
    assert_usage_error(bt("validate", str(folder), "--rules", name), *fragments)
    assert_usage_error(bt("run", "s.py", "--rules", name), *fragments)
    assert not bt.results.exists() or not list(bt.results.glob("run_*"))
    if content is not None:
        (bt.cwd / name).rename(bt.cwd / "bt.toml")
        bt_toml = tuple(f.replace(f"Rules file {name}", "Rules file bt.toml") for f in fragments)
        assert_usage_error(bt("validate", str(folder)), *bt_toml)


def test_a_nul_byte_in_a_file_name_of_the_rules(bt: BtRunner, tmp_path: Path) -> None:
    folder = write_valid_run(tmp_path / "out")
    write(bt.cwd, "s.py", VALID)
    (bt.cwd / "bt.toml").write_text('[files]\nrequired = ["a\\u0000b.csv"]\n')
    fragments = ("Rules file bt.toml", "must be a relative path inside the run folder")
    assert_usage_error(bt("validate", str(folder)), *fragments)
    assert_usage_error(bt("run", "s.py"), *fragments)
    assert not bt.results.exists() or not list(bt.results.glob("run_*"))
