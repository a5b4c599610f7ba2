"""Where a run came from: the script's hash and a copy of it, git state, interpreter, machine.

Collected when a run is created, on the start-up path of every foreground `bt run`, so it is
kept cheap: the script is read once (hashed while it is copied), `git` is started only when a
`.git` is found above the script (one call, plus one for the diff of a dirty tree), each call
is bounded by a short time-out, and a missing or failing `git` just leaves `git` null.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, NamedTuple

from btmanager import __version__

SOURCE_DIR = "source"  # under <run>/.bt/: the copy of the script, and git.diff
DIFF_FILE = "git.diff"
GIT_TIMEOUT = 2.0  # seconds per git call: a hung network filesystem must not hang `bt run`
# Scripts are small text files; a big executable is hashed but not copied into every run.
MAX_COPY_BYTES = 16 << 20


class SavedSource(NamedTuple):
    """A script copy saved with an earlier run (`bt rerun --exact` runs it): the git state it
    came from is that run's, not that of wherever the copy lies."""

    git: dict[str, Any] | None
    diff: Path | None  # that run's git.diff, if it had one


def collect(
    script: Path, state_dir: Path, environ: Mapping[str, str], saved: SavedSource | None = None
) -> dict[str, Any]:
    """The provenance of a run of `script`; copies it (and a dirty tree's diff) into
    `state_dir/source/`. Never fails the run: what cannot be found is null."""
    source = state_dir / SOURCE_DIR
    try:
        state_dir.mkdir(exist_ok=True, mode=0o700)  # bt's own files: owner-only
        source.mkdir(exist_ok=True, mode=0o700)
        writable = True
    except OSError:
        writable = False  # nowhere to copy to: hash only
    digest = _hash_and_copy(script, source / script.name if writable else None)
    git: dict[str, Any] | None
    if saved is not None:
        git = saved.git
        if saved.diff is not None and writable:
            _hash_and_copy(saved.diff, source / DIFF_FILE)
    else:
        try:
            git = git_state(script.parent, source if writable else None)
        except OSError:
            git = None  # a folder above the script we may not look into
    uname = os.uname()
    return {
        "script_sha256": digest,
        "git": git,
        "python": _python(environ),
        "platform": f"{uname.sysname}-{uname.release}-{uname.machine}",
        "hostname": uname.nodename,
        "user": _user(environ),
        "bt_version": __version__,
    }


def _hash_and_copy(script: Path, copy: Path | None) -> str | None:
    """The script's sha256, read once; copied to `copy` on the way if it is small enough.
    A copy that cannot be written is dropped, the hash still computed."""
    digest = _sha256()
    try:
        with open(script, "rb") as reader:
            writer: IO[bytes] | None = None
            info = os.fstat(reader.fileno())
            if copy is not None and info.st_size <= MAX_COPY_BYTES:
                # Owner-only, executable if the script was (an --exact rerun runs the copy).
                writer = _open_copy(copy, info.st_mode & 0o700)
            while chunk := reader.read(1 << 20):
                digest.update(chunk)
                if writer is not None:
                    try:
                        writer.write(chunk)
                    except OSError:
                        _drop_copy(writer, copy)
                        writer = None
            if writer is not None:
                try:
                    writer.close()
                except OSError:
                    _drop_copy(writer, copy)
    except OSError:
        return None
    return str(digest.hexdigest())


def _open_copy(copy: Path, mode: int) -> IO[bytes] | None:
    try:
        fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode or 0o600)
        return os.fdopen(fd, "wb")  # closed by the caller, which may drop it
    except OSError:
        return None


def _drop_copy(writer: IO[bytes], copy: Path | None) -> None:
    try:
        writer.close()
    except OSError:
        pass
    if copy is not None:
        copy.unlink(missing_ok=True)


def _sha256() -> Any:
    # hashlib loads OpenSSL's bindings (~3 ms on every foreground start-up); CPython's own
    # implementation is plenty for one script file.
    try:
        from _sha256 import sha256  # type: ignore[import-not-found]  # CPython 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # type: ignore[import-not-found]  # CPython 3.12+
        except ImportError:
            from hashlib import sha256
    return sha256()


def _python(env: Mapping[str, str]) -> str:
    """The interpreter that runs a .py script: $BT_PYTHON as given, else bt's own."""
    chosen = env.get("BT_PYTHON")
    if chosen:
        return chosen
    info = sys.version_info
    return f"{info.major}.{info.minor}.{info.micro} ({sys.executable})"


def _user(env: Mapping[str, str]) -> str | None:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError, OSError):
        return env.get("USER") or env.get("LOGNAME") or env.get("USERNAME")


def find_work_tree(folder: Path) -> Path | None:
    """The nearest folder at or above `folder` holding `.git` (a folder, or a file for
    worktrees and submodules): a few stat calls, no process."""
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def git_state(folder: Path, source: Path | None) -> dict[str, Any] | None:
    """{"commit", "branch", "dirty", "root"} of the work tree holding `folder`, or None (not
    in one, no git, git failed or took too long). A dirty tree's `git diff HEAD` is saved in
    `source/git.diff`."""
    root = find_work_tree(folder)
    if root is None:
        return None
    # Untracked files do not make the tree dirty (as for `git describe --dirty`), and skipping
    # them keeps the call fast in big trees.
    status = _git(root, "status", "--porcelain=v2", "--branch", "--untracked-files=no")
    if status is None:
        return None
    commit: str | None = None
    branch: str | None = None
    dirty = False
    for line in status.splitlines():
        if line.startswith("# branch.oid "):
            value = line.split(" ", 2)[2]
            commit = None if value == "(initial)" else value
        elif line.startswith("# branch.head "):
            value = line.split(" ", 2)[2]
            branch = None if value == "(detached)" else value
        elif line and not line.startswith("#"):
            dirty = True
    if dirty and source is not None and commit is not None:
        # Straight into the file: a big diff never passes through memory.
        try:
            with open(source / DIFF_FILE, "wb") as diff:
                if _git(root, "diff", "--no-color", "--no-ext-diff", "HEAD", out=diff) is None:
                    diff.truncate(0)
        except OSError:
            pass
    return {"commit": commit, "branch": branch, "dirty": dirty, "root": str(root)}


def _git(root: Path, *args: str, out: IO[bytes] | None = None) -> str | None:
    """git's output (None: no git, an error, or the time-out); with `out`, written there."""
    import subprocess

    env = dict(os.environ)
    env["GIT_OPTIONAL_LOCKS"] = "0"  # `git status` must not take the index lock of the user's repo
    env["LC_ALL"] = "C"
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args],
            stdout=out if out is not None else subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            timeout=GIT_TIMEOUT,
            env=env,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None  # no git, or too slow
    if done.returncode != 0:
        return None
    return (done.stdout or b"").decode("utf-8", "surrogateescape")
