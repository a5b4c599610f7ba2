"""Validation of a run folder: the built-in checks plus those a rules file asks for.

`validate_dir` checks each file the rules name (trades.csv, summary.csv, pnl.csv,
metadata.json, execution.log and any a rules file adds), then the totals across files. Every
message starts with the file it concerns and says where: file line numbers (header = line 1)
or dates, the first few and a count. Nothing is printed; a missing folder is NotFoundError.

Every file is opened once, through `safe_files.SafeFolder`: a name that leads out of the folder
(a symlink to /etc/passwd, a hard link to a file elsewhere) is never read, only reported
("trades.csv: refused: ..."), so a report cannot quote another file's lines.

Small CSV files are read with the stdlib csv module only, so validating a small folder imports
neither pandas nor pyarrow; big ones get a fast scan first (see readers.fast).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from btmanager.errors import NotFoundError
from btmanager.safe_files import (
    MissingFileError,
    NotRegularFileError,
    SafeFolder,
    UnreadableFileError,
    UnsafeFileError,
)
from btmanager.validation.checks.cross_file import check_totals
from btmanager.validation.checks.execution_log import check_log
from btmanager.validation.checks.metadata import check_metadata
from btmanager.validation.checks.pnl import PnlCheck, check_pnl
from btmanager.validation.checks.run_folder import RunFolder
from btmanager.validation.checks.summary import SummaryCheck, check_summary
from btmanager.validation.checks.trades import TradesCheck, check_trades
from btmanager.validation.report import FileCheck, Report
from btmanager.validation.rules import LOG, METADATA, PNL, SUMMARY, TRADES, Level, Rules, Severity

FAST_BYTES_ENV = "BT_VALIDATE_FAST_BYTES"  # CSV files this big or bigger get a fast scan
DEFAULT_FAST_BYTES = 16 << 20


def validate_dir(
    path: Path,
    rules: Rules | None = None,
    params: Mapping[str, str] | None = None,
    *,
    fast_bytes: int | None = None,
    engine: str | None = None,
    allow_symlinked_folder: bool = False,
) -> Report:
    """Validate a run folder. `params` are the run's -p params (for `capital`).

    `fast_bytes` (default: env BT_VALIDATE_FAST_BYTES, else 16 MiB) is the CSV size from
    which a fast scan is tried; `engine` forces "arrow" or "pandas" for it. A folder that is
    itself a symlink is refused (UnsafeFileError) unless `allow_symlinked_folder`: a run's
    folder may have been replaced by its script, a folder a user names is the one they chose.
    """
    if not path.exists():
        raise NotFoundError(f"Directory not found: {path}")
    if not path.is_dir():
        raise NotFoundError(f"Not a directory: {path}")
    if fast_bytes is None:
        fast_bytes = _env_int(FAST_BYTES_ENV, DEFAULT_FAST_BYTES)
    run = RunFolder(path, rules or Rules(), params or {}, fast_bytes, engine)
    with SafeFolder(path, allow_symlink=allow_symlinked_folder) as folder:
        return _Validation(run, folder).run()


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, ""))
    except ValueError:
        return default


class _Validation:
    """One pass over a folder: each file in the rules' order, then the totals across files."""

    def __init__(self, run: RunFolder, folder: SafeFolder) -> None:
        self.run_folder = run
        self.folder = folder
        self.checks: dict[str, FileCheck] = {}
        # What the checks of the result files keep for the cross-file checks; None when the
        # file is missing or unusable (for trades.csv: when its totals do not cover every row).
        self.trades: TradesCheck | None = None
        self.summary: SummaryCheck | None = None
        self.pnl: PnlCheck | None = None

    def run(self) -> Report:
        for name, level in self.run_folder.rules.files.items():
            check = self.checks[name] = FileCheck(name)
            handle = _open(self.folder, check, level)
            if handle is None:
                continue
            self.run_folder.opened[name] = handle
            try:
                self._check(check)
            except OSError as exc:
                check.error(f"cannot be read ({exc.strerror or exc})")
            finally:
                del self.run_folder.opened[name]
                handle.close()
        if self.summary is not None:
            check_totals(self.checks[SUMMARY], self.summary, self.trades, self.pnl)
        checks = self.checks.values()
        errors = [m for c in checks for m in c.errors]
        return Report(
            valid=not errors,
            errors=errors,
            warnings=[m for c in checks for m in c.warnings],
            file_checks={name: c.to_dict() for name, c in self.checks.items()},
        )

    def _check(self, check: FileCheck) -> None:
        run = self.run_folder
        if check.name == TRADES:
            self.trades = check_trades(run, check)
        elif check.name == SUMMARY:
            self.summary = check_summary(run, check)
        elif check.name == PNL:
            # the default order puts summary.csv first: it may hold the capital
            self.pnl = check_pnl(run, check, self.summary)
        elif check.name == METADATA:
            check_metadata(run, check)
        elif check.name == LOG:
            check_log(run, check)
        else:
            # Only a rules file adds other files: most validations never import their check.
            from btmanager.validation.checks.extra_files import check_extra_file

            check_extra_file(run, check)


def _open(folder: SafeFolder, check: FileCheck, level: Level) -> BinaryIO | None:
    """The file, open for the checks; None when it cannot be read, reported as its level says
    when missing or not a regular file, and always as an error when refused."""
    severity: Severity = "error" if level == "required" else "warning"
    try:
        handle = folder.open(check.name)
    except MissingFileError:
        if level != "optional":
            check.add(severity, f"{level} file is missing")
        return None
    except NotRegularFileError:
        check.exists = True
        check.add(severity, "not a regular file")
        return None
    except UnsafeFileError as exc:
        check.exists = True
        check.error(f"refused: {exc.reason}")
        return None
    except UnreadableFileError as exc:
        check.exists = True
        check.error(f"cannot be read ({exc.reason})")
        return None
    check.exists = True
    check.size = os.fstat(handle.fileno()).st_size
    return handle
