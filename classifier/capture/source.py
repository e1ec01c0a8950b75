"""Capture bytes from disk: which paths are captures, and reading them (plain or gzip) into buffers.

Files are recognised by their first bytes, never by their names: pcap magics (both byte
orders, micro- and nanosecond), the pcapng section header, or gzip (1f 8b) whose first
decompressed bytes are one of those.
"""

from __future__ import annotations

import gzip
import io
import mmap
import os
import stat
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CaptureError
from .pcap import is_pcap
from .pcapng import is_pcapng
from .views import PAD

GZIP_MAGIC = b"\x1f\x8b"
_MAP_POPULATE = getattr(mmap, "MAP_POPULATE", 0)
"""Map pages in one go (Linux): cheaper than one page fault per 4 KiB on first touch."""
USE_MMAP = True
"""Map regular files rather than copying them (tests turn it off to check both paths agree)."""
MMAP_MIN = 1 << 20
"""Shortest window worth mapping; the end of a file closer than this is copied (it needs zero padding)."""


def pread_into(fd: int, mv: memoryview, offset: int) -> int:
    """Fill ``mv`` from ``fd`` at file offset ``offset`` with ``os.preadv``; bytes read (fewer only at the end)."""
    got = 0
    while got < len(mv):
        n = os.preadv(fd, [mv[got:]], offset + got)
        if not n:
            break
        got += n
    return got


class SourceDamage(Exception):
    """The byte stream broke (corrupt or cut gzip data): what was read before it stays valid."""


def _describe(head: bytes) -> str:
    shown = " ".join(f"{b:02x}" for b in head[:4])
    return f"starts with {shown}" if head else "is empty"


def sniff(path: Path) -> str | None:
    """``"pcap"``, ``"pcapng"`` or None for a file that is not a (possibly gzipped) capture."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            if head[:2] == GZIP_MAGIC:
                f.seek(0)
                try:
                    with gzip.GzipFile(fileobj=f) as g:
                        head = g.read(4)
                except (OSError, EOFError, zlib.error):
                    return None
    except OSError:
        return None
    if is_pcap(head):
        return "pcap"
    if is_pcapng(head):
        return "pcapng"
    return None


def is_directory(path: str | os.PathLike[str]) -> bool:
    """``Path.is_dir`` that says False where the path cannot even be looked at (too long, no permission...).

    Opening it then reports the problem as a one-line ``CaptureError`` like any unreadable input.
    """
    try:
        return Path(path).is_dir()
    except (OSError, ValueError):
        return False


def capture_files(paths: Sequence[str | os.PathLike[str]]) -> Iterator[Path]:
    """Files to read, in order: named files as given, directories walked recursively (captures only, sorted).

    A directory without any capture yields the directory itself, so that opening it reports
    the problem like any other unreadable input.  Symbolic links to directories are not followed.
    """
    for p in paths:
        path = Path(p)
        if is_directory(path):
            found = []
            for root, dirs, files in os.walk(path):
                dirs.sort()
                found += [Path(root) / f for f in files]
            captures = [f for f in sorted(found) if f.is_file() and sniff(f) is not None]
            yield from captures or [path]
        else:
            yield path


@dataclass
class Chunk:
    """File bytes ``[base, base + end)`` at ``buf[0:end]``, with at least ``PAD`` readable bytes after them."""

    buf: np.ndarray
    end: int
    eof: bool  # nothing follows in the file
    broken: str = ""  # why the stream stopped early (damaged gzip), else ""


class Source:
    """A capture file read chunk by chunk: regular files are mapped, gzip and pipes are streamed.

    ``chunk(base, size)`` returns the bytes from file offset ``base``.  For a regular file
    each chunk is an ``mmap`` window (no copy: ~10 ms per 300 MB instead of ~60 ms for
    ``readinto``); the last one, whose padding would run past the end of the file, is read
    into a zero-padded buffer instead.  Streams keep the unconsumed tail of the previous
    chunk and append to it.  (A mapped file that another process truncates while it is read
    would fault; captures still being rewritten in place can be read with ``USE_MMAP = False``.)
    """

    def __init__(self, path: Path, use_mmap: bool | None = None) -> None:
        self.path = path
        if is_directory(path):
            raise CaptureError("directory holds no pcap or pcapng capture", path=path)
        try:
            self._raw = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
            st = os.fstat(self._raw.fileno())
        except (OSError, ValueError) as e:  # ValueError: a NUL byte in the name
            raise CaptureError(f"cannot open: {getattr(e, 'strerror', None) or e}", path=path) from None
        regular = stat.S_ISREG(st.st_mode)
        src: io.RawIOBase | io.BufferedReader = self._raw if regular else io.BufferedReader(self._raw)
        try:
            if regular:
                head = self._raw.read(2)
                self._raw.seek(0)
            else:
                head = src.peek(2)[:2]  # type: ignore[union-attr]
        except OSError as e:
            self._raw.close()
            raise CaptureError(f"cannot read: {e.strerror or e}", path=path) from None
        self.compressed = head == GZIP_MAGIC
        self.size: int | None = st.st_size if regular and not self.compressed else None
        use_mmap = USE_MMAP if use_mmap is None else use_mmap
        self.use_mmap = use_mmap and self.size is not None and os.name == "posix"
        self._last_base = -1
        self._stream: io.RawIOBase | io.BufferedReader | gzip.GzipFile | None = None
        if self.size is None:
            self._stream = gzip.GzipFile(fileobj=src, mode="rb") if self.compressed else src
        self._carry = np.empty(0, np.uint8)
        self._carry_base = 0

    def consumed(self, base: int) -> int:
        """Bytes of the file on disk consumed when everything before ``base`` is (compressed for gzip)."""
        if self.compressed:
            try:
                return self._raw.tell()
            except (OSError, ValueError):
                return 0
        return base

    def chunk(self, base: int, size: int, alloc: Callable[[int], np.ndarray]) -> Chunk:
        """Bytes from file offset ``base`` (at most ``size`` of them); ``alloc(n)`` gives a buffer of >= n bytes."""
        if self.size is not None:
            retry = base == self._last_base  # the previous chunk held no complete record: copy this one
            self._last_base = base
            return self._chunk_file(base, size, alloc, not retry)
        return self._chunk_stream(base, size, alloc)

    def _chunk_file(self, base: int, size: int, alloc: Callable[[int], np.ndarray], map_ok: bool) -> Chunk:
        total = self.size or 0
        if self.use_mmap and map_ok:
            # map a window that leaves PAD real bytes after it; near the end of the file the window
            # shrinks so that only the last stretch (under MMAP_MIN bytes) is copied
            n = min(size, total - PAD - base)
            if n == size or n >= MMAP_MIN:
                aligned = base - base % mmap.ALLOCATIONGRANULARITY
                try:
                    m = mmap.mmap(
                        self._raw.fileno(),
                        base - aligned + n + PAD,
                        flags=mmap.MAP_SHARED | _MAP_POPULATE,
                        prot=mmap.PROT_READ,
                        offset=aligned,
                    )
                except (OSError, ValueError):
                    self.use_mmap = False
                else:
                    return Chunk(np.frombuffer(m, np.uint8)[base - aligned :], n, False)
        n = max(min(size, total - base), 0)
        buf = alloc(n + PAD)
        try:
            got = self._read_at(memoryview(buf)[:n], base) if n else 0
        except OSError as e:  # an I/O error: what was read before it stays valid
            buf[:PAD] = 0
            return Chunk(buf, 0, True, f"read error ({e.strerror or e})")
        buf[got : got + PAD] = 0
        return Chunk(buf, got, base + got >= total)

    def _read_at(self, mv: memoryview, offset: int) -> int:
        """Fill ``mv`` from file offset ``offset`` (fewer bytes only at the end of the file)."""
        if hasattr(os, "preadv"):
            return pread_into(self._raw.fileno(), mv, offset)
        self._raw.seek(offset)
        got = 0
        while got < len(mv):
            n = self._raw.readinto(mv[got:])
            if not n:
                break
            got += n
        return got

    def _chunk_stream(self, base: int, size: int, alloc: Callable[[int], np.ndarray]) -> Chunk:
        keep = self._carry[base - self._carry_base :]
        buf = alloc(keep.size + size + PAD)
        buf[: keep.size] = keep
        pos = keep.size
        broken = ""
        try:
            pos += self._fill(memoryview(buf)[pos : keep.size + size])
        except SourceDamage as e:
            broken, got = e.args[0], e.args[1]
            pos += got
        buf[pos : pos + PAD] = 0
        eof = pos < keep.size + size or bool(broken)
        self._carry = buf[:pos]
        self._carry_base = base
        return Chunk(buf, pos, eof, broken)

    def _fill(self, mv: memoryview) -> int:
        got = 0
        size = len(mv)
        assert self._stream is not None
        while got < size:
            try:  # one decompression step at a time: a damaged stream keeps every byte before the damage
                n = self._stream.readinto1(mv[got:])
            except (OSError, EOFError, zlib.error) as e:
                what = "gzip stream cut short" if isinstance(e, EOFError) else f"gzip stream damaged ({e})"
                raise SourceDamage(what, got) from None
            if not n:
                break
            got += n
        return got

    def close(self) -> None:
        """Close the file (and the decompressor)."""
        try:
            if self._stream is not None and self._stream is not self._raw:
                self._stream.close()
        finally:
            self._raw.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def describe_head(head: bytes) -> str:
    """A short description of what a non-capture file starts with (for error messages)."""
    return _describe(head)
