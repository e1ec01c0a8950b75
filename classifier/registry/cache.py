"""One-file cache of a compiled registry: a cached load is a single file read plus zero-copy views.

File layout: ``PCREG001`` magic, 8-byte little-endian header length, a JSON header (provenance,
array table), then the raw arrays, then JSON blobs (service names, records) decoded only on use.
Files are written by ``classifier.atomic.atomic_write`` (whole or not at all), so a reader never sees half.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np

from ..atomic import atomic_write  # re-exported: the registry's installs write through it
from ..errors import RegistryError
from .compile import CompiledRegistry
from .files import read_regular
from .model import Provenance, Record

MAGIC = b"PCREG001"
FORMAT_VERSION = 4
"""Bump when the compiler's output changes: older cache files are then ignored and rebuilt."""
MAX_CACHE_BYTES = 256 << 20
"""A cache file larger than this is not one we wrote (a full registry compiles to about 10 MB)."""
_ARRAYS = ("status", "flags", "service", "packed", "name_offsets", "name_ids")
_RECORD_FIELDS = [f.name for f in fields(Record)]


def _compiler() -> str:
    """Identifies the parser/compiler that wrote a cache file; another one ignores it and recompiles."""
    from .. import __version__

    return f"portclass {__version__} cache {FORMAT_VERSION}"


def dumps(reg: CompiledRegistry) -> list[bytes]:
    """Serialise a compiled registry into the cache layout (a list of byte parts)."""
    blobs = {
        "names": json.dumps(reg.service_names.tolist(), ensure_ascii=False).encode(),
        "records": json.dumps(
            [[getattr(r, f) for f in _RECORD_FIELDS] for r in reg.records], ensure_ascii=False
        ).encode(),
    }
    table: dict[str, list] = {}
    body: list[bytes] = []
    offset = 0
    for name in _ARRAYS:
        arr = np.ascontiguousarray(getattr(reg, name))
        raw = arr.tobytes()
        table[name] = [offset, arr.dtype.str, list(arr.shape)]
        body.append(raw)
        offset += len(raw)
        pad = (-offset) % 16
        body.append(b"\0" * pad)
        offset += pad
    for name, raw in blobs.items():
        table[name] = [offset, "json", [len(raw)]]
        body.append(raw)
        offset += len(raw)
    header = json.dumps(
        {"version": FORMAT_VERSION, "compiler": _compiler(), "provenance": asdict(reg.provenance), "table": table}
    ).encode()
    hlen = len(header) + (-(len(header) + 16) % 16)
    header = header.ljust(hlen)
    return [MAGIC, hlen.to_bytes(8, "little"), header, *body]


def save(reg: CompiledRegistry, path: Path) -> None:
    """Write the compiled registry to ``path`` atomically."""
    atomic_write(path, dumps(reg), make_dirs=True)


def source_sha(path: Path) -> str | None:
    """The sha256 of the source a cache file was compiled from, read from its header (any version)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as fh:
            head = fh.read(16)
            if len(head) < 16 or head[:8] != MAGIC:
                return None
            hlen = int.from_bytes(head[8:16], "little")
            sha = json.loads(fh.read(min(hlen, 1 << 20)))["provenance"]["sha256"]
        return sha if isinstance(sha, str) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load(path: Path) -> CompiledRegistry | None:
    """Load a cache file with one read; None if absent, damaged or of another format version."""
    try:
        buf = read_regular(path, MAX_CACHE_BYTES)
    except RegistryError:
        return None
    return loads(buf)


def loads(buf: bytes) -> CompiledRegistry | None:
    """A compiled registry from the bytes ``dumps`` gave (joined); None if damaged or of another format."""
    if len(buf) < 16 or buf[:8] != MAGIC:
        return None
    try:
        hlen = int.from_bytes(buf[8:16], "little")
        head = json.loads(buf[16 : 16 + hlen])
        if head.get("version") != FORMAT_VERSION or head.get("compiler") != _compiler():
            return None
        base = 16 + hlen
        mv = memoryview(buf)
        arrays = {}
        for name in _ARRAYS:
            off, dt, shape = head["table"][name]
            count = int(np.prod(shape)) if shape else 1
            arrays[name] = np.frombuffer(mv, dtype=np.dtype(dt), count=count, offset=base + off).reshape(shape)

        def blob(name: str) -> object:
            off, _, (size,) = head["table"][name]
            return json.loads(bytes(mv[base + off : base + off + size]))

        def records() -> list[Record]:
            return [Record(**dict(zip(_RECORD_FIELDS, row, strict=True))) for row in blob("records")]

        rows: list[list[list[object]]] = []

        def row(j: int) -> Record:
            if not rows:
                rows.append(blob("records"))  # type: ignore[arg-type]
            return Record(**dict(zip(_RECORD_FIELDS, rows[0][j], strict=True)))

        def names() -> np.ndarray:
            return np.array(blob("names"), dtype=str)

        return CompiledRegistry(
            **arrays,
            provenance=Provenance(**head["provenance"]),
            _records_loader=records,
            _row_loader=row,
            _names_loader=names,
            cache_bytes=bytes(buf),
        )
    except (ValueError, KeyError, TypeError):
        return None
