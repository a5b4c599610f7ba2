"""Which scripts HTTP clients may run: only files inside the allowed folders.

The script is found as `bt run` finds it, then its real path (symlinks resolved) must lie in
one of the folders; the run is recorded with that real path, so what runs is what was checked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath

from btmanager.command import resolve_script
from btmanager.errors import BtError


class ForbiddenScript(BtError):
    """A script outside the folders `bt serve` allows (HTTP 403)."""


def _inside(path: Path, folders: Sequence[Path]) -> bool:
    return any(path == folder or path.is_relative_to(folder) for folder in folders)


def allowed_script(
    script: str, cwd: Path, folders: Sequence[Path], environ: Mapping[str, str]
) -> Path:
    """The real path of `script` if it lies inside `folders`; ForbiddenScript if not."""
    refused = ForbiddenScript(
        f"Refusing {script!r}: only scripts inside {', '.join(map(str, folders))} can be run "
        "over HTTP (see BACKTEST_SCRIPTS_DIR)"
    )
    given = PurePath(script)
    if "\x00" in script:
        raise refused
    if given.is_absolute() or ".." in given.parts:
        # Said before looking, so no answer tells whether a file outside exists.
        target = Path(os.path.realpath(Path(os.path.normpath(cwd / given))))
        if not _inside(target, folders):
            raise refused
    found = resolve_script(script, cwd, environ)
    real = found.resolve()
    if not _inside(real, folders) or not real.is_file():
        raise refused
    return real
