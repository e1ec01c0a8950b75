"""Unaligned typed views of a chunk: every byte offset of the buffer reads as an item of any dtype.

Capture headers sit at arbitrary byte offsets, so the readers never copy bytes into fields one
by one: ``at(buf, ">u2")[offsets]`` gathers a big-endian uint16 at every offset in one NumPy
call, and ``block(buf, n)[offsets].view(HEADER)`` copies an ``n``-byte header per packet and
exposes its fields through a structured dtype declared as a table (see ``header``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

PAD = 256
"""Zero bytes kept after a chunk's data, so that reading a fixed-size header never leaves the buffer."""


def at(buf: np.ndarray, dtype: str | np.dtype) -> np.ndarray:
    """A read-only view in which item ``i`` is the ``dtype`` value starting at byte ``i`` of ``buf``."""
    dt = np.dtype(dtype)
    n = max(buf.size - dt.itemsize + 1, 0)
    v = np.ndarray((n,), dt, buf, 0, (1,))
    v.flags.writeable = False
    return v


def header(size: int, fields: Iterable[tuple[str, int, str]]) -> np.dtype:
    """A structured dtype for a ``size``-byte header declared as ``(field, byte offset, dtype)`` rows."""
    rows = list(fields)
    return np.dtype(
        {
            "names": [r[0] for r in rows],
            "offsets": [r[1] for r in rows],
            "formats": [r[2] for r in rows],
            "itemsize": size,
        }
    )


class Views:
    """Cached ``at`` views of one chunk buffer (one per dtype or block size)."""

    __slots__ = ("buf", "_cache")

    def __init__(self, buf: np.ndarray) -> None:
        self.buf = buf
        self._cache: dict[object, np.ndarray] = {}

    def __getitem__(self, dtype: str) -> np.ndarray:
        """The ``at`` view for ``dtype`` (e.g. ``">u2"``), built once per chunk."""
        v = self._cache.get(dtype)
        if v is None:
            v = self._cache[dtype] = at(self.buf, dtype)
        return v

    def gather(self, offsets: np.ndarray, hdr: np.dtype) -> np.ndarray:
        """Copy one ``hdr``-sized header per offset and view it as ``hdr`` (one gather, fields by name)."""
        key = ("V", hdr.itemsize)
        v = self._cache.get(key)
        if v is None:
            v = self._cache[key] = at(self.buf, f"V{hdr.itemsize}")
        return v[offsets].view(hdr)
