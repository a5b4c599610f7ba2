"""The bearer token of `bt serve`: from BT_SERVE_TOKEN, else `<results>/serve.token`.

The file is made owner-only on first start (and its token shown once, by the command); later
starts read it. Comparison is constant-time.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from btmanager.errors import StorageError, UsageError

TOKEN_ENV = "BT_SERVE_TOKEN"
TOKEN_FILE = "serve.token"
TOKEN_MODE = 0o600


@dataclass(frozen=True)
class Token:
    value: str
    source: str  # "env", "file" or "new"
    path: Path | None


def load_token(results_dir: Path, environ: dict[str, str] | None = None) -> Token:
    """The token to require. BT_SERVE_TOKEN is taken out of this process's environment, so the
    workers and scripts it starts never inherit it."""
    env = os.environ if environ is None else environ
    given = env.pop(TOKEN_ENV, None)
    if given is not None:
        value = given.strip()
        if len(value) < 16 or any(ch.isspace() for ch in value):
            raise UsageError(f"{TOKEN_ENV} must be at least 16 characters, without spaces")
        return Token(value, "env", None)
    path = results_dir / TOKEN_FILE
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"Cannot create {results_dir}: {exc.strerror or exc}") from None
    value = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, TOKEN_MODE)
    except FileExistsError:
        return Token(_read_token(path), "file", path)
    except OSError as exc:
        raise StorageError(f"Cannot write {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(value + "\n")
    return Token(value, "new", path)


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _read_token(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except OSError as exc:
        raise StorageError(
            f"Cannot read {path}: {exc.strerror or exc} (it must be a regular file, not a link)"
        ) from None
    with os.fdopen(fd, "r", encoding="ascii", errors="replace") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise StorageError(f"{path} is not a regular file")
        if info.st_mode & 0o077:
            # Made or copied with a loose umask: the token is a password, keep it owner-only.
            os.fchmod(handle.fileno(), TOKEN_MODE)
        value = handle.read(4096).strip()
    if len(value) < 16 or any(ch.isspace() for ch in value):
        raise UsageError(f"{path} holds no usable token; delete it to have a new one made")
    return value


def token_matches(expected: str, header: str | None) -> bool:
    """Does an Authorization header carry the token (`Bearer TOKEN`)? Constant-time."""
    if not header:
        return False
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or `localhost`: only this machine can connect."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
