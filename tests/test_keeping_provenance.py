"""Provenance recorded at creation: script hash and copy, git state, interpreter, machine."""

from __future__ import annotations

import getpass
import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from btmanager.provenance import collect
from tests.conftest import BtRunner
from tests.scripts import VALID, write

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}  # fmt: skip
    done = subprocess.run(
        ["git", "-C", str(repo), *args], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def _source(status: dict[str, Any]) -> Path:
    return Path(status["output_dir"]) / ".bt" / "source"


def test_provenance_outside_a_git_tree(bt: BtRunner) -> None:
    script = write(bt.cwd, "s.py", VALID)
    status = bt("run", "s.py", "--json").json()
    provenance = status["provenance"]
    assert provenance["script_sha256"] == hashlib.sha256(script.read_bytes()).hexdigest()
    assert provenance["git"] is None
    assert provenance["bt_version"]
    assert provenance["hostname"] == os.uname().nodename
    assert provenance["user"] == getpass.getuser()
    assert provenance["platform"].startswith(os.uname().sysname)
    assert provenance["python"].split()[0] == ".".join(map(str, os.sys.version_info[:3]))
    copy = _source(status) / "s.py"
    assert copy.read_bytes() == script.read_bytes()
    assert not (_source(status) / "git.diff").exists()
    assert bt("status", "latest", "--json").json()["provenance"] == provenance
    assert "Source       sha256 " in bt("status", "latest").stdout
    # bt's own files stay out of the results listing.
    names = [item["name"] for item in bt("results", "latest", "--json").json()["files"]]
    assert not any(name.startswith(".bt") for name in names)


@needs_git
def test_provenance_of_a_script_in_a_git_repository(bt: BtRunner) -> None:
    repo = bt.cwd / "project"
    (repo / "strategies").mkdir(parents=True)
    script = write(repo / "strategies", "s.py", VALID)
    _git(repo, "init", "-q", "-b", "research")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "first")
    commit = _git(repo, "rev-parse", "HEAD")

    clean = bt("run", "project/strategies/s.py", "--json").json()
    assert clean["provenance"]["git"] == {
        "commit": commit, "branch": "research", "dirty": False, "root": str(repo),
    }  # fmt: skip
    assert not (_source(clean) / "git.diff").exists()

    script.write_text(VALID + "\n# tuned\n")
    (repo / "notes.txt").write_text("untracked files do not make the tree dirty\n")
    dirty = bt("run", "project/strategies/s.py", "--json").json()
    git = dirty["provenance"]["git"]
    assert git["dirty"] is True and git["commit"] == commit
    diff = (_source(dirty) / "git.diff").read_text()
    assert "+# tuned" in diff and "strategies/s.py" in diff
    assert (_source(dirty) / "s.py").read_text().endswith("# tuned\n")
    assert "(research, dirty)" in bt("status", "latest").stdout


@needs_git
def test_a_repository_without_commits_or_git_failing(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    script = write(repo, "s.py", "pass\n")
    found = collect(script, tmp_path / "state", os.environ)
    assert found["git"] is not None and found["git"]["commit"] is None
    # A `.git` that git cannot read: no git state, and no failure.
    broken = tmp_path / "broken"
    (broken / ".git").mkdir(parents=True)
    other = write(broken, "s.py", "pass\n")
    assert collect(other, tmp_path / "state2", os.environ)["git"] is None


def test_missing_git_is_fine(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    script = write(tmp_path, "s.py", "pass\n")
    environ = {"PATH": str(tmp_path / "no-such-bin")}
    old = os.environ["PATH"]
    os.environ["PATH"] = environ["PATH"]
    try:
        found = collect(script, tmp_path / "state", environ)
    finally:
        os.environ["PATH"] = old
    assert found["git"] is None
    assert found["script_sha256"] == hashlib.sha256(b"pass\n").hexdigest()
