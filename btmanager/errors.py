"""The one error family of btmanager.

Core code raises these; only the CLI layer catches them, prints one `Error: ...` line on stderr
and exits with the error's exit code.
"""

from __future__ import annotations

from btmanager import exitcodes


class BtError(Exception):
    """A problem the user can act on. The message is shown as `Error: <message>`."""

    exit_code: int = exitcodes.USAGE


class UsageError(BtError):
    """Bad input: an invalid parameter, option value or file."""


class NotFoundError(BtError):
    """A run, script or file that does not exist."""


class NoRegistry(NotFoundError):
    """The registry file does not exist (and the caller asked not to create it)."""


class AmbiguousRunError(BtError):
    """A run id prefix that matches more than one run."""


class RegistryError(BtError):
    """The registry database is corrupt, locked for too long, or cannot be written."""


class StorageError(BtError):
    """The results folder cannot be written (read-only, disk full, permissions)."""


class RulesError(BtError):
    """A malformed validation rules file."""


class RefusedError(BtError):
    """A request the user made correctly but that bt will not carry out as things stand
    (e.g. removing a run that is still running): exit 1, like a refused cancel."""

    exit_code = exitcodes.FAILED
