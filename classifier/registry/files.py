"""Reading registry files safely: regular files only, and never more than a registry can weigh.

A real edition of the registry is about 4 MB as XML (1.1 MB as CSV) and grows about 2 % a year;
``MAX_BYTES`` allows four times that, so decades of growth fit while a 200 MB (or endless) input is
refused at once with one line instead of costing seconds and gigabytes (every parser is linear, so
the cap also bounds the time: a crafted 16 MiB text rendering parses in well under a minute).
Files are opened with ``O_NONBLOCK`` and checked with ``fstat`` before any read, so a FIFO with no
writer, a terminal or ``/dev/zero`` is refused instead of hanging forever.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import RegistryError

MAX_BYTES = 16 << 20
"""Largest registry source accepted (file or download): 4x a real edition's 4 MB XML."""

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def too_big(size: int, limit: int = MAX_BYTES) -> str:
    """The one-line problem for a source over ``limit`` bytes."""
    return f"too large for a registry ({size:,} bytes; a real edition is about 4 MB, the limit is {limit:,})"


def read_regular(path: str | Path, limit: int = MAX_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; ``RegistryError`` (one line) otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise RegistryError("no such file", path=path) from None
    except OSError as exc:
        raise RegistryError(f"cannot read ({exc.strerror})", path=path) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((k for test, k in _KINDS if test(st.st_mode)), "not a regular file")
            raise RegistryError(f"is {kind}, not a registry file", path=path)
        if st.st_size > limit:
            raise RegistryError(too_big(st.st_size, limit), path=path)
        os.set_blocking(fd, True)
        parts: list[bytes] = []
        got = 0
        while got <= limit:  # the file may grow while we read it: never hold more than limit + 1 bytes
            chunk = os.read(fd, min(1 << 20, limit + 1 - got))
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        if got > limit:
            raise RegistryError(too_big(got, limit).replace("(", "(at least ", 1), path=path)
        return b"".join(parts)
    except OSError as exc:
        raise RegistryError(f"cannot read ({exc.strerror})", path=path) from None
    finally:
        os.close(fd)
