"""The archive's inputs: capture files found under the paths, their identity, and their timelines.

A *timeline* is a run of files that continue one another (a flow open at the end of one may go on in
the next): consecutive parts of a dumpcap or tcpdump ring buffer (``classifier.flows.continues``), or
every file when the user says so (``--timeline``, ordered by first packet time).  Any other file is a
timeline of its own.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..capture.source import capture_files
from ..flows import continues


@dataclass(frozen=True)
class Input:
    """One capture file and its identity (what names its parts: a changed file is a new input)."""

    path: str
    size: int
    mtime_ns: int

    @property
    def ident(self) -> str:
        """``<sha256(path)[:16]>-<size>-<mtime_ns>``: stable across runs, new when the file changes."""
        h = hashlib.sha256(os.path.abspath(self.path).encode()).hexdigest()[:16]
        return f"{h}-{self.size}-{self.mtime_ns}"


def discover(paths: Sequence[str | os.PathLike[str]]) -> list[Input]:
    """Capture files under ``paths`` in the reader's order (named files as given, directories sorted)."""
    out = []
    for p in capture_files(paths):
        st = os.stat(p)
        out.append(Input(str(p), st.st_size, st.st_mtime_ns))
    return out


def first_packet_ns(path: str) -> int:
    """Timestamp of a capture's first packet with ports (the end of time when it has none)."""
    from ..capture.reader import read_batches

    for batch in read_batches([path], 1 << 16, errors="warn"):
        if len(batch):
            return int(batch.ts_ns[0])
    return 1 << 62


def timelines(inputs: Sequence[Input], one: bool = False) -> list[list[Input]]:
    """Group files into timelines: ring-buffer runs (or all of them when ``one``, by first packet time)."""
    if one:
        return [sorted(inputs, key=lambda i: (first_packet_ns(i.path), i.path))] if inputs else []
    out: list[list[Input]] = []
    for i in inputs:  # a loop over files
        if out and continues(out[-1][-1].path, i.path):
            out[-1].append(i)
        else:
            out.append([i])
    return out


def timeline_id(files: Sequence[Input]) -> str:
    """A timeline's name: its first file's path (a ring buffer keeps it while it grows)."""
    return hashlib.sha256(os.path.abspath(files[0].path).encode()).hexdigest()[:16]


def rel(path: str | Path, root: str | Path) -> str:
    """``path`` relative to ``root`` (for messages)."""
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)
