"""Reads never leave a run folder; `-o`/`--junit` write only to a regular file or a new one.

Through the real `bt`: a symlinked or hard-linked execution.log or result file, a run folder
replaced by a symlink, FIFOs, and destinations that are symlinks, folders, FIFOs, existing
files or (as root, scratch nodes under tmp_path) character devices.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.conftest import BtRunner
from tests.helpers import Result
from tests.scripts import NO_OUTPUTS, write

SECRET = "top secret, outside the run folder\n"


def assert_refused(result: Result, *fragments: str) -> None:
    assert result.code == 2, (result.code, result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert SECRET.strip() not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


@pytest.fixture
def run_folder(bt: BtRunner, tmp_path: Path) -> Path:
    """A finished run's folder with a data file, and a secret file outside it."""
    write(bt.cwd, "s.py", NO_OUTPUTS + "\nprint('hello from the script')\n")
    status = bt("run", "s.py", "--no-validate", "--json").json()
    folder = Path(status["output_dir"])
    (folder / "data.csv").write_text("a,b\n1,2\n")
    (tmp_path / "secret.txt").write_text(SECRET)
    return folder


LOG_READS = (("logs", "latest"), ("logs", "latest", "--json"), ("logs", "latest", "-f"),
             ("logs", "latest", "-n", "1"), ("results", "latest", "execution.log"))  # fmt: skip


def _replace_log(folder: Path, how: str, secret: Path) -> None:
    log = folder / "execution.log"
    log.unlink()
    if how == "symlink":
        log.symlink_to(secret)
    elif how == "relative-symlink":
        log.symlink_to(os.path.relpath(secret, folder))
    else:
        os.link(secret, log)


@pytest.mark.parametrize("how", ["symlink", "relative-symlink", "hardlink"])
def test_log_leading_outside_is_refused(
    bt: BtRunner, run_folder: Path, tmp_path: Path, how: str
) -> None:
    _replace_log(run_folder, how, tmp_path / "secret.txt")
    for args in LOG_READS:
        assert_refused(bt(*args), "execution.log")
    names = [f["name"] for f in bt("results", "latest", "--json").json()["files"]]
    assert "execution.log" not in names and "data.csv" in names


def test_symlink_inside_the_folder_is_served(bt: BtRunner, run_folder: Path) -> None:
    log = run_folder / "execution.log"
    log.rename(run_folder / "real.log")
    log.symlink_to("real.log")
    assert bt("logs", "latest", "-n", "1").stdout == "hello from the script\n"
    (run_folder / "sub").mkdir()
    (run_folder / "sub" / "up.csv").symlink_to("../data.csv")
    (run_folder / "abs.csv").symlink_to(run_folder / "data.csv")
    for name in ("sub/up.csv", "abs.csv"):
        assert bt("results", "latest", name).stdout == "a,b\n1,2\n", name


def test_run_folder_replaced_by_a_symlink_is_refused(
    bt: BtRunner, run_folder: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "passwd").write_text(SECRET)
    (elsewhere / "execution.log").write_text(SECRET)
    run_folder.rename(tmp_path / "moved")
    run_folder.symlink_to(elsewhere)
    for args in (*LOG_READS, ("results", "latest", "passwd"), ("results", "latest")):
        assert_refused(bt(*args), "symbolic link")


def test_result_files_leading_outside_are_refused_and_not_listed(
    bt: BtRunner, run_folder: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    (run_folder / "out.csv").symlink_to(secret)
    (run_folder / "rel.csv").symlink_to(os.path.relpath(secret, run_folder))
    (run_folder / "sub").mkdir()
    (run_folder / "sub" / "deep.csv").symlink_to("../../../secret.txt")
    (run_folder / "dirlink").symlink_to(tmp_path)
    (run_folder / "loop.csv").symlink_to("loop.csv")
    os.link(secret, run_folder / "hard.csv")
    os.mkfifo(run_folder / "pipe")
    target = tmp_path / "copy.csv"
    for name in ("out.csv", "rel.csv", "sub/deep.csv", "dirlink/secret.txt", "loop.csv",
                 "hard.csv", "pipe", "sub"):  # fmt: skip
        assert_refused(bt("results", "latest", name), name)
        assert_refused(bt("results", "latest", name, "-o", str(target)), name)
        assert not target.exists()
    listing = bt("results", "latest", "--json").json()["files"]
    names = sorted(f["name"] for f in listing)
    assert names == ["data.csv", "execution.log", "run.json"]
    # Whatever is listed can be downloaded.
    for name in names:
        assert bt("results", "latest", name).code == 0, name


def test_output_destinations(bt: BtRunner, run_folder: Path, tmp_path: Path) -> None:
    """-o writes a new file or, with --force, replaces a regular one; nothing else."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / "link.csv"
    link.symlink_to(victim)
    dangling = tmp_path / "dangling.csv"
    dangling.symlink_to(tmp_path / "nowhere.csv")
    folder = tmp_path / "folder"
    folder.mkdir()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    existing = tmp_path / "existing.csv"
    existing.write_text("old")
    cases = {
        str(link): "symbolic link",
        str(dangling): "symbolic link",
        str(folder): "directory",
        str(tmp_path / "new-folder") + "/": "not a folder",
        ".": "not a folder",
        str(fifo): "FIFO",
        str(existing): "--force",
        str(tmp_path / "missing" / "x.csv"): "No such file",
    }
    for destination, fragment in cases.items():
        assert_refused(bt("results", "latest", "data.csv", "-o", destination), fragment)
        assert_refused(bt("validate", str(run_folder), "--junit", destination, "--json"), fragment)
    for force_too in ("symbolic link", "directory", "FIFO"):
        destination = next(d for d, f in cases.items() if f == force_too)
        assert_refused(bt("results", "latest", "data.csv", "-o", destination, "--force"))
        assert_refused(bt("validate", str(run_folder), "--junit", destination, "--force"))
    assert link.is_symlink() and victim.read_text() == "keep me"
    assert dangling.is_symlink() and not (tmp_path / "nowhere.csv").exists()
    assert folder.is_dir() and list(folder.iterdir()) == []
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert existing.read_text() == "old"
    assert not (tmp_path / "new-folder").exists()
    # --force replaces a regular file; a new name needs none.
    assert bt("results", "latest", "data.csv", "-o", str(existing), "--force").code == 0
    assert existing.read_text() == "a,b\n1,2\n"
    assert bt("results", "latest", "data.csv", "-o", str(tmp_path / "new.csv")).code == 0
    assert (tmp_path / "new.csv").read_text() == "a,b\n1,2\n"
    report = tmp_path / "report.xml"
    assert bt("validate", str(run_folder), "--junit", str(report)).code == 1  # invalid folder
    assert report.read_text().startswith("<?xml")
    assert_refused(bt("validate", str(run_folder), "--junit", str(report)), "--force")
    assert bt("validate", str(run_folder), "--junit", str(report), "--force").code == 1
    # No temp files left behind by the refusals.
    assert not [p for p in tmp_path.rglob("*partial*")]
    assert_refused(bt("results", "latest", "--force"), "--force")


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_output_to_a_device_is_refused(bt: BtRunner, run_folder: Path, tmp_path: Path) -> None:
    # A scratch node with /dev/full's numbers, never the real /dev.
    device = tmp_path / "full"
    os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 7))
    for args in (("results", "latest", "data.csv", "-o", str(device)),
                 ("results", "latest", "data.csv", "-o", str(device), "--force"),
                 ("validate", str(run_folder), "--junit", str(device), "--force")):  # fmt: skip
        assert_refused(bt(*args), "character device")
        assert stat.S_ISCHR(device.lstat().st_mode)
    # A device inside the run folder is neither listed nor served.
    os.mknod(run_folder / "dev", stat.S_IFCHR | 0o600, os.makedev(1, 7))
    assert_refused(bt("results", "latest", "dev"), "character device")
    names = [f["name"] for f in bt("results", "latest", "--json").json()["files"]]
    assert "dev" not in names


def test_open_in_folder_for_other_readers(tmp_path: Path) -> None:
    """The entry point other readers (validation) use: same rules, plain exceptions."""
    from btmanager.safe_files import MissingFileError, SafeFolder, UnsafeFileError, open_in_folder

    folder = tmp_path / "run"
    (folder / "sub").mkdir(parents=True)
    (folder / "trades.csv").write_text("a\n")
    (tmp_path / "secret.txt").write_text(SECRET)
    (folder / "sub" / "back.csv").symlink_to("../trades.csv")
    (folder / "out.csv").symlink_to(tmp_path / "secret.txt")
    (folder / "a").symlink_to("b")
    (folder / "b").symlink_to("a")
    with open_in_folder(folder, "sub/back.csv") as handle:
        assert handle.read() == b"a\n"
    for name, error in (("out.csv", UnsafeFileError), ("a", UnsafeFileError),
                        ("../secret.txt", UnsafeFileError), ("/etc/passwd", UnsafeFileError),
                        ("missing.csv", MissingFileError), ("trades.csv/x", MissingFileError)):  # fmt: skip
        with pytest.raises(error):
            open_in_folder(folder, name)
    with SafeFolder(folder) as opened:
        assert opened.stat("missing.csv") is None
        found = opened.stat("trades.csv")
        assert found is not None and found.st_size == 2
    link = tmp_path / "link"
    link.symlink_to(folder)
    with pytest.raises(UnsafeFileError):
        open_in_folder(link, "trades.csv")
    with open_in_folder(link, "trades.csv", allow_symlinked_folder=True) as handle:
        assert handle.read() == b"a\n"
    with pytest.raises(MissingFileError):
        open_in_folder(tmp_path / "nowhere", "trades.csv")
