"""Files written whole or not at all: reports, caches, saved captures (``atomic_write``, ``atomic_file``).

The data goes to an anonymous file (``O_TMPFILE``) in the target's directory, which is linked in
under a unique name and renamed over the target only once complete; a process killed even by
SIGKILL while writing leaves nothing behind. Where the filesystem has no ``O_TMPFILE`` (or /proc is
not mounted) a uniquely named ``.NAME.XXXX.tmp`` is used instead and removed on any exception or
signal. Concurrent writers never share a temporary name; the last rename wins, whole.
A target that exists and is not a regular file (``/dev/null``, a FIFO, a terminal) is written to
directly: renaming over a device node would replace the device itself.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from . import interrupt
from .interrupt import deferred

_PROC_FD = Path("/proc/self/fd")


def _is_special(path: Path) -> bool:
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _unique_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")


def _open_anonymous(directory: Path) -> int | None:
    """An unnamed file in ``directory`` (mode 0666 less the umask), or None where that is not supported."""
    if not hasattr(os, "O_TMPFILE") or not _PROC_FD.is_dir():
        return None
    try:
        return os.open(directory, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOSYS):
            return None
        raise


def _open_named(path: Path) -> tuple[int, Path]:
    """A new, uniquely named temporary file beside ``path`` (never one another writer holds)."""
    while True:
        tmp = _unique_name(path)
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666), tmp
        except FileExistsError:
            continue


def _link_anonymous(fd: int, path: Path) -> Path:
    """Link the anonymous file ``fd`` in under a unique name beside ``path`` (linkat through /proc)."""
    proc = os.open(_PROC_FD, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        while True:
            tmp = _unique_name(path)
            try:  # src_dir_fd makes os.link use linkat(AT_SYMLINK_FOLLOW), not link() on the symlink
                os.link(str(fd), tmp, src_dir_fd=proc, follow_symlinks=True)
                return tmp
            except FileExistsError:
                continue
    finally:
        os.close(proc)


def _copy_to_named(fd: int, path: Path) -> Path:
    """Fallback when linking fails: copy the anonymous file into a named temporary file."""
    out, tmp = _open_named(path)
    try:
        size, done = os.fstat(fd).st_size, 0
        while done < size:
            n = os.sendfile(out, fd, done, size - done)
            if n == 0:
                raise OSError(errno.EIO, "short copy", str(path))
            done += n
        os.fsync(out)
    except BaseException:
        os.unlink(tmp)
        raise
    finally:
        os.close(out)
    return tmp


def _link_in(fd: int, tmp: Path | None, path: Path) -> None:
    """Give the finished file its name: link the anonymous file under a unique name, rename over ``path``."""
    if tmp is None:
        try:
            tmp = _link_anonymous(fd, path)
        except OSError:
            tmp = _copy_to_named(fd, path)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_file(
    path: str | Path, *, make_dirs: bool = False, then: Callable[[], None] | None = None
) -> Iterator[BinaryIO]:
    """A binary file object whose contents replace ``path`` only when the block ends without an exception.

    ``make_dirs`` creates missing parent directories (caches do; a report into a missing
    directory is the user's error). An exception or a signal (``KeyboardInterrupt``) inside the
    block leaves ``path`` as it was and no temporary file. ``then`` runs together with the final
    rename, before any signal can arrive (the command line ends its run there).
    """
    with interrupt.raising():
        with _atomic_file(Path(path), make_dirs) as (fh, commit):
            yield fh
            commit(then)


@contextlib.contextmanager
def _atomic_file(path: Path, make_dirs: bool) -> Iterator[tuple[BinaryIO, Callable]]:
    if path.exists() and _is_special(path):
        with open(path, "wb") as fh:
            yield fh, lambda then: then and then()
        return
    if make_dirs:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp, fh = -1, None, None
    try:
        with deferred():  # the temporary file and its name come into being together
            try:
                fd = _open_anonymous(path.parent) if path.parent.is_dir() else None
                if fd is None:
                    fd, tmp = _open_named(path)
            except OSError as exc:  # name the file the user asked for, not the temporary one
                raise OSError(exc.errno, f"cannot write a file in {path.parent} ({exc.strerror})", str(path)) from None
            fh = os.fdopen(fd, "wb")

        def commit(then: Callable[[], None] | None) -> None:
            nonlocal tmp
            assert fh is not None
            fh.flush()
            os.fsync(fd)
            with deferred():  # linked in and renamed, or not at all
                _link_in(fd, tmp, path)
                tmp = None
                if then is not None:
                    then()

        yield fh, commit
    except BaseException:
        with deferred():
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        raise
    finally:
        with deferred():
            if fh is not None:
                with contextlib.suppress(OSError):
                    fh.close()
            elif fd >= 0:
                os.close(fd)


def atomic_write(
    path: str | Path, data: bytes | list[bytes], *, make_dirs: bool = False, then: Callable[[], None] | None = None
) -> None:
    """Write ``data`` (bytes, or a list of parts) to ``path`` whole or not at all (see ``atomic_file``)."""
    with atomic_file(path, make_dirs=make_dirs, then=then) as fh:
        for part in data if isinstance(data, list) else [data]:
            fh.write(part)
