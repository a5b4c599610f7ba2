"""Reading a run folder's files, and writing user-named output files, without being redirected.

A run folder is written by the script, which can put anything there: a symlink to
`/etc/passwd`, a hard link to a file elsewhere, a FIFO, or it can replace the whole folder by a
symlink. Reads therefore walk a relative name one component at a time with `openat` and
O_NOFOLLOW from a descriptor of the run folder, resolving symlinks themselves: a link is
followed only while it stays inside the folder, so no check-then-open race can lead outside.
Then the opened file must be a regular file with a single link (a hard link may be a file from
anywhere). The run folder itself must not be a symlink.

Writes (`-o`, `--junit`) go to a temp file in the destination's folder that is then renamed onto
the destination, so a reader never sees half a file; the destination must be a regular file or a
new name (never a symlink, device, FIFO, socket or directory, which a rename would replace), and an
existing file is replaced only when asked to.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from btmanager.errors import NotFoundError, StorageError, UsageError

# A symlink chain longer than this is refused, as the kernel refuses more than 40 (ELOOP).
_MAX_LINKS = 40
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# Opening a FIFO for reading would block until a writer comes; non-blocking, it opens at once
# and is then refused as not a regular file.
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_DIR_FLAGS = os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC
# A terminal device must not become our controlling terminal by being opened.
_NOCTTY = getattr(os, "O_NOCTTY", 0)
_FILE_FLAGS = os.O_RDONLY | _NOFOLLOW | _CLOEXEC | _NONBLOCK | _NOCTTY
# openat() and friends; elsewhere (Windows) a resolve-then-check fallback is used.
_AT_SUPPORTED = (
    os.open in os.supports_dir_fd and os.readlink in os.supports_dir_fd and _NOFOLLOW != 0
)


class UnsafeFileError(UsageError):
    """A file or folder that is refused: it leads outside the run folder or is not a file.

    `reason` says why without naming the file or where a link points, for reports that name
    the file themselves (validation: "trades.csv: refused: <reason>").
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


class NotRegularFileError(UnsafeFileError):
    """The name leads to a directory, FIFO, device or socket inside the folder."""


class UnreadableFileError(UsageError):
    """The file cannot be opened (permissions, I/O error); `reason` is the system's word."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class MissingFileError(NotFoundError):
    """The file (or the folder) does not exist."""


_LEADS_OUT = "a symlink leading out of the run folder"


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def split_name(name: str) -> tuple[str, ...]:
    """The components of a file name relative to a folder ('/' or '\\' separated).

    Absolute names and '..' are refused outright: a name given by a user must say plainly
    that it is inside the folder.
    """
    if not name or "\x00" in name:
        raise UsageError("A file name must not be empty or hold a NUL byte")
    relative = PurePosixPath(name.replace("\\", "/"))
    if relative.is_absolute() or Path(name).is_absolute() or Path(name).drive:
        raise UnsafeFileError(
            f"Refusing {name!r}: file names are relative to the run folder",
            "file names are relative to the run folder",
        )
    if ".." in relative.parts:
        raise UnsafeFileError(
            f"Refusing {name!r}: '..' is not allowed in file names",
            "'..' is not allowed in file names",
        )
    parts = tuple(part for part in relative.parts if part != ".")
    if not parts:
        raise NotRegularFileError(
            f"Refusing {name!r}: it names the folder itself, not a file", "it is a directory"
        )
    return parts


class SafeFolder:
    """An open run folder (a directory descriptor) whose files are read without escaping it.

    Use as a context manager, or call `close()`. `name_for_errors` is how messages name it.
    """

    def __init__(self, folder: Path, *, allow_symlink: bool = False) -> None:
        self.path = Path(os.path.abspath(folder))
        self._fd = -1
        if not _AT_SUPPORTED:
            self._check_folder_fallback(allow_symlink)
            return
        flags = _DIR_FLAGS & ~_NOFOLLOW if allow_symlink else _DIR_FLAGS
        try:
            self._fd = os.open(self.path, flags)
        except FileNotFoundError:
            raise MissingFileError(f"Folder not found: {self.path} (moved or deleted?)") from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(self.path):
                raise UnsafeFileError(
                    f"Refusing to read {self.path}: the folder is a symbolic link"
                ) from None
            if exc.errno == errno.ENOTDIR:
                raise UnsafeFileError(f"{self.path} is not a directory") from None
            raise UsageError(f"Cannot open {self.path}: {exc.strerror or exc}") from None

    def __enter__(self) -> SafeFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # --- reading one file ---------------------------------------------------------------

    def open(self, name: str) -> BinaryIO:
        """The file `name` (relative, '/'-separated), open for binary reading.

        Raises MissingFileError when absent, UnsafeFileError when it leads outside the folder
        (symlink, hard link) or is not a regular file.
        """
        parts = split_name(name)
        if not _AT_SUPPORTED:
            return self._open_fallback(name, parts)
        fd = self._open_fd(name, parts)
        try:
            info = os.fstat(fd)
            self._check_regular(name, info)
            os.set_blocking(fd, True)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def stat(self, name: str) -> os.stat_result | None:
        """The stat of the file `name` as `open` would serve it; None if it does not exist.

        Refused files raise UnsafeFileError, as `open` would.
        """
        try:
            with self.open(name) as handle:
                return os.fstat(handle.fileno())
        except MissingFileError:
            return None

    def _check_regular(self, name: str, info: os.stat_result) -> None:
        if not stat.S_ISREG(info.st_mode):
            kind = _kind(info.st_mode)
            raise NotRegularFileError(f"Refusing {name!r}: it is {kind}", f"it is {kind}")
        if info.st_nlink > 1:
            raise UnsafeFileError(
                f"Refusing {name!r}: it has {info.st_nlink} hard links, so it may be a file "
                "from outside the run folder",
                f"a hard link ({info.st_nlink} links), so it may be a file from outside the "
                "run folder",
            )

    def _open_fd(self, name: str, parts: tuple[str, ...]) -> int:
        """Walk `parts` from the folder with O_NOFOLLOW, resolving symlinks inside it."""
        todo = list(reversed(parts))
        stack = [os.dup(self._fd)]  # the directories from the folder down to where we are
        links = 0
        try:
            while todo:
                part = todo.pop()
                if part in ("", "."):
                    continue
                if part == "..":
                    if len(stack) == 1:
                        raise UnsafeFileError(
                            f"Refusing {name!r}: a symlink in it points outside the run folder",
                            _LEADS_OUT,
                        )
                    os.close(stack.pop())
                    continue
                last = not todo
                try:
                    fd = os.open(part, _FILE_FLAGS if last else _DIR_FLAGS, dir_fd=stack[-1])
                except OSError as exc:
                    target = self._link_target(part, stack[-1], exc, name)
                    links += 1
                    if links > _MAX_LINKS:
                        raise UnsafeFileError(
                            f"Refusing {name!r}: too many levels of symbolic links",
                            "too many levels of symbolic links",
                        ) from None
                    target_parts = PurePosixPath(target).parts
                    if target.startswith("/"):
                        rest = self._inside(target_parts)
                        if rest is None:
                            raise UnsafeFileError(
                                f"Refusing {name!r}: it is a symlink pointing outside the run "
                                f"folder ({target})",
                                _LEADS_OUT,
                            ) from None
                        for fd_ in stack[1:]:
                            os.close(fd_)
                        del stack[1:]
                        target_parts = rest
                    todo.extend(reversed(target_parts))
                    continue
                if last:
                    return fd
                stack.append(fd)
            raise NotRegularFileError(
                f"Refusing {name!r}: it names a folder, not a file", "it is a directory"
            )
        finally:
            for fd_ in stack:
                os.close(fd_)

    def _link_target(self, part: str, dir_fd: int, exc: OSError, name: str) -> str:
        """The target of the symlink `part`, or the error `exc` said as a BtError."""
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            try:
                info = os.stat(part, dir_fd=dir_fd, follow_symlinks=False)
            except OSError:
                info = None
            if info is not None and stat.S_ISLNK(info.st_mode):
                try:
                    return os.readlink(part, dir_fd=dir_fd)
                except OSError as again:  # replaced meanwhile
                    exc = again
            if info is not None and exc.errno == errno.ENOTDIR:
                raise MissingFileError(
                    f"No file {name!r} in {self.path} ({part!r} is not a folder)"
                ) from None
        if exc.errno == errno.ENOENT:
            raise MissingFileError(f"No file {name!r} in {self.path}") from None
        raise UnreadableFileError(
            f"Cannot open {name!r} in {self.path}: {exc.strerror or exc}", exc.strerror or str(exc)
        ) from None

    def _inside(self, target_parts: tuple[str, ...]) -> tuple[str, ...] | None:
        """An absolute symlink target as components below the folder, or None if outside.

        The folder may be named by its path as recorded or by its real path; anything after
        the prefix is walked from the folder descriptor again, so it cannot leave either.
        """
        for root in (self.path, Path(os.path.realpath(self.path))):
            root_parts = PurePosixPath(root.as_posix()).parts
            if target_parts[: len(root_parts)] == root_parts:
                return target_parts[len(root_parts) :]
        return None

    # --- listing --------------------------------------------------------------------------

    def files(self) -> Iterator[tuple[str, os.stat_result]]:
        """Every file `open` would serve, recursively: (relative '/' name, its stat).

        Symlinked folders are not descended into (their files are listed under their real
        names); refused files are left out, so whatever is listed can be read.
        """
        if not _AT_SUPPORTED:
            yield from self._files_fallback()
            return
        for directory, _subdirs, names, dir_fd in os.fwalk(".", dir_fd=self._fd):
            prefix = "" if directory == "." else directory[2:] + "/"
            for filename in names:
                try:
                    info = os.stat(filename, dir_fd=dir_fd, follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISLNK(info.st_mode):
                    try:
                        found = self.stat(prefix + filename)
                    except (UsageError, OSError):
                        continue
                    if found is None:
                        continue
                    info = found
                elif not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
                    continue
                yield prefix + filename, info

    # --- without openat (Windows): resolve, then check --------------------------------------

    def _check_folder_fallback(self, allow_symlink: bool) -> None:
        if not allow_symlink and os.path.islink(self.path):
            raise UnsafeFileError(f"Refusing to read {self.path}: the folder is a symbolic link")
        if not self.path.exists():
            raise MissingFileError(f"Folder not found: {self.path} (moved or deleted?)")
        if not self.path.is_dir():
            raise UnsafeFileError(f"{self.path} is not a directory")

    def _open_fallback(self, name: str, parts: tuple[str, ...]) -> BinaryIO:
        root = Path(os.path.realpath(self.path))
        try:
            real = self.path.joinpath(*parts).resolve(strict=True)
        except FileNotFoundError:
            raise MissingFileError(f"No file {name!r} in {self.path}") from None
        except (OSError, RuntimeError) as exc:
            raise UnreadableFileError(
                f"Cannot open {name!r} in {self.path}: {exc}", str(exc)
            ) from None
        if not real.is_relative_to(root):
            raise UnsafeFileError(
                f"Refusing {name!r}: it is a symlink pointing outside the run folder", _LEADS_OUT
            )
        if real.is_dir():
            raise NotRegularFileError(f"Refusing {name!r}: it is a directory", "it is a directory")
        try:
            handle = open(real, "rb")  # noqa: SIM115 - returned to the caller
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise UnreadableFileError(
                f"Cannot open {name!r} in {self.path}: {reason}", reason
            ) from None
        try:
            self._check_regular(name, os.fstat(handle.fileno()))
        except BaseException:
            handle.close()
            raise
        return handle

    def _files_fallback(self) -> Iterator[tuple[str, os.stat_result]]:
        for directory, subdirs, names in os.walk(self.path):
            subdirs.sort()
            for filename in names:
                relative = (Path(directory) / filename).relative_to(self.path).as_posix()
                try:
                    found = self.stat(relative)
                except (UsageError, OSError):
                    continue
                if found is not None:
                    yield relative, found


def open_in_folder(folder: Path, name: str, *, allow_symlinked_folder: bool = False) -> BinaryIO:
    """Open the file `name` of `folder` for binary reading, refusing what leads outside it.

    For readers of a folder's files (validation, logs, results): raises MissingFileError when
    the file or folder is absent and UnsafeFileError when refused (both exit 2).
    """
    with SafeFolder(folder, allow_symlink=allow_symlinked_folder) as opened:
        return opened.open(name)


# --- writing a user-named output file ------------------------------------------------------


def check_destination(path: str | os.PathLike[str], *, force: bool, option: str) -> None:
    """Refuse a destination that is not a regular file or a new name, or exists without force.

    Called before any work, so a bad `-o`/`--junit` changes nothing; `write_atomic` checks
    again when it writes. Give the path as typed: `out/` names a folder, even a missing one.
    """
    raw = os.fspath(path)
    if raw.endswith(("/", os.sep)) or Path(raw).name in ("", ".", ".."):
        raise UsageError(f"{option} {raw}: give a file name, not a folder")
    try:
        info = os.lstat(raw)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UsageError(f"{option} {raw}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(
            f"{option} {raw}: it is {_kind(info.st_mode)}; give a regular file or a new name"
        )
    if not force:
        raise UsageError(f"{option} {raw}: the file exists; add --force to replace it")


def write_atomic(
    path: Path,
    write: Callable[[BinaryIO], object],
    *,
    force: bool,
    option: str,
    what: str = "",
) -> int:
    """Write a file through `write(handle)`: into a temp file next to it, then renamed onto it.

    Without `force` the file must not exist yet (the temp file is hard-linked to the name,
    which fails if anything appeared there meanwhile). The temp file is removed on any failure.
    Returns the size written. Write errors are StorageError ("Cannot write [<what> ]<path>");
    refusals UsageError.
    """
    import tempfile

    check_destination(path, force=force, option=option)
    named = f"{what} {path}" if what else f"{path} ({option})"
    folder = path.parent
    try:
        # (The name is cut so that the temp name stays within the filesystem's limit.)
        fd, temp_name = tempfile.mkstemp(
            prefix=f".{path.name[:100]}.", suffix=".bt-partial", dir=folder
        )
    except OSError as exc:
        raise StorageError(f"Cannot write {named}: {exc.strerror or exc}") from None
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            size = handle.tell()
            _set_mode(handle.fileno(), path)
        _move_into_place(temp, path, force=force, option=option)
    except BaseException as exc:
        temp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise StorageError(f"Cannot write {named}: {exc.strerror or exc}") from None
        raise
    return size


def _set_mode(fd: int, path: Path) -> None:
    """The mode an ordinary new file would get (mkstemp's is 0600), or that of the file replaced."""
    try:
        mode = stat.S_IMODE(os.lstat(path).st_mode)
    except OSError:
        umask = os.umask(0o022)
        os.umask(umask)
        mode = 0o666 & ~umask
    if hasattr(os, "fchmod"):
        os.fchmod(fd, mode)


def _move_into_place(temp: Path, path: Path, *, force: bool, option: str) -> None:
    if force:
        # Checked again right before the rename, which would replace whatever is there.
        check_destination(path, force=True, option=option)
        os.replace(temp, path)
        return
    try:
        os.link(temp, path)  # fails with EEXIST if the name was taken meanwhile: no clobbering
    except FileExistsError:
        check_destination(path, force=False, option=option)
        raise UsageError(f"{option} {path}: the file exists; add --force to replace it") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV):
            raise
        # A filesystem without hard links: check, then rename (a tiny window remains).
        check_destination(path, force=False, option=option)
        os.replace(temp, path)
        return
    temp.unlink()
