"""One task: label one capture file into the dataset's parts, then (timelines) finish its edge.

Runs on a Dask worker (or in the driver's process without ``--dask``).  ``run_task`` reads the file
with the engine and writes flows as they end; for a file of a timeline of several files it keeps the
flows open at its edges (``engine.Edge``) in its result, of which only the key hashes go to the driver
(``keys_of``).  ``finish`` then writes the edge rows no near file can continue and returns the few that
may.  What crosses the network is small: aggregates, key hashes, and the flows that cross files.
"""

from __future__ import annotations

import hashlib
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..capture.columns import CaptureStats
from ..engine import R_FLUSH, Edge, Engine, Timeouts, _last_of_key
from ..flows import START_CLOSED, finalize
from ..registry.compile import CompiledRegistry
from ..report.aggregates import Aggregates
from . import state
from .aggregate import LIMIT, Aggregate
from .parts import PartWriter, dataset_schema

_REGISTRIES: dict[str, CompiledRegistry] = {}
"""Registries decoded on this worker, by the sha256 of their compiled bytes."""


@dataclass(frozen=True)
class TaskSpec:
    """What one task reads and where it writes."""

    path: str
    ident: str  # the input's identity: names its parts
    root: str  # the dataset directory
    timeouts: Timeouts
    evidence: bool = True
    hold_heads: bool = False  # a file after the first of its timeline
    export: bool = False  # a file of a timeline of several: open flows go back instead of being flushed
    limit: int = LIMIT  # worst flows its summary keeps (and sends back)


@dataclass
class TaskResult:
    """What a task sends back: its aggregates, the parts it wrote and its edge (timelines only)."""

    ident: str
    aggregate: Aggregate
    parts: list[str]
    edge: Edge | None = None
    seconds: float = 0.0
    engine: dict[str, int] = field(default_factory=dict)  # flows ended per reason
    first_ns: int | None = None  # the file's first packet's timestamp
    summary: str | None = None  # its summary aggregates' file in the state directory (a file of its own)
    cpu: float = 0.0  # CPU seconds of its process while it ran


@dataclass
class Keys:
    """What the driver needs of a task's edge to decide which of its rows may join another file's."""

    ident: str
    aggregate: Aggregate
    parts: list[str]
    seconds: float
    first_ns: int | None
    clock_ns: int | None
    heads: np.ndarray  # key_hash of the held heads (the first flows of keys near the file's start)
    tails: np.ndarray  # key_hash of each key's last row (may go on in the next file)
    summary: str | None = None  # a file of its own: its stored summary (``aggregate`` is then whole)
    nbytes: int = 0  # its pickled size (what crossed the network)
    summary_bytes: int = 0  # of which its summary aggregates'
    cpu: float = 0.0  # CPU seconds of its process while it ran


@dataclass
class Finished:
    """What a file of a timeline sends back once its edge is finished (``finish``)."""

    ident: str
    edge: Edge  # the rows that may join another file's flows
    parts: list[str]  # the parts ``finish`` wrote
    aggregate: Aggregate  # the whole file's aggregates (its labelling task's and its edge part's)
    summary: str  # the file's stored summary aggregates
    nbytes: int = 0  # its pickled size (what crossed the network)
    summary_bytes: int = 0  # of which the file's summary aggregates'
    cpu: float = 0.0  # CPU seconds of its process while it ran


def keys_of(res: TaskResult, sizes: bool = True) -> Keys:
    """The small summary of a task's result that goes to the driver (the rows stay on the worker).

    A file of a timeline sends its counters only: its summary aggregates go back once its edge is
    finished (``Finished``), whole.  ``sizes``: measure what crosses the network (pickled sizes; a
    run in one process sends nothing and leaves them 0)."""
    z = np.zeros(0, dtype=np.uint64)
    e = res.edge
    if e is None:
        k = Keys(res.ident, res.aggregate, res.parts, res.seconds, res.first_ns, None, z, z, res.summary)
        k.summary_bytes = len(pickle.dumps(res.aggregate.summary)) if sizes else 0
    else:
        t = e.table
        held = t.start_kind != START_CLOSED
        tail = _last_of_key(t) & ~e.done
        counters = Aggregate(res.aggregate.running, res.aggregate.stats, Aggregates(limit=res.aggregate.summary.limit))
        k = Keys(res.ident, counters, res.parts, res.seconds, res.first_ns, e.clock_ns,
                 np.unique(t.key_hash[held]), np.unique(t.key_hash[tail]))  # fmt: skip
    k.cpu = res.cpu
    k.nbytes = len(pickle.dumps(k)) if sizes else 0
    return k


def finish(res: TaskResult, spec: TaskSpec, blob: bytes, sha256: str, head_keys: np.ndarray,
           tail_keys: np.ndarray, sizes: bool = True) -> Finished:  # fmt: skip
    """Write the edge rows no other file can continue (part ``<ident>.edge``); return the others, and
    the file's whole aggregates (also stored in the state directory, as the driver needs them).
    ``sizes`` as for ``keys_of``.

    Given back: every held row of a key in ``head_keys`` or ``tail_keys`` (a key's held rows go
    together: a soft row must meet its open row), and the last row of a key in ``tail_keys``.  A
    given row followed by a row written here is marked done (its key went on in this file).
    """
    c0 = time.process_time()
    e = res.edge
    assert e is not None
    t = e.table
    held = t.start_kind != START_CLOSED
    last = _last_of_key(t)
    kh = t.key_hash
    in_tail = np.isin(kh, tail_keys)
    give = (held & (np.isin(kh, head_keys) | in_tail)) | (last & in_tail)
    given = t.take(give)
    done = e.done[give] | (_last_of_key(given) & ~last[give])
    registry = registry_from(blob, sha256)
    eng = Engine(registry, spec.timeouts, evidence=spec.evidence)
    eng.stats = CaptureStats(files=[spec.path])
    rest = finalize(t.take(~give))
    ended = eng._label(rest, np.full(len(rest), R_FLUSH, dtype=np.uint8), count=False)
    agg = Aggregate.new(spec.limit)
    agg.add(ended)
    writer = PartWriter(spec.root, f"{spec.ident}.edge", dataset_schema(registry), registry)
    try:
        writer.add(ended)
        parts = writer.close()
    except BaseException:
        writer.abort()
        raise
    whole = Aggregate(summary=Aggregates(limit=spec.limit)).merge(res.aggregate).merge(agg)
    fin = Finished(spec.ident, Edge(given, done, e.clock_ns), parts, whole,
                   state.save_summary(Path(spec.root), spec.ident, whole.summary))  # fmt: skip
    fin.cpu = time.process_time() - c0
    if sizes:
        fin.summary_bytes = len(pickle.dumps(whole.summary))
        fin.nbytes = len(pickle.dumps(fin))
    return fin


def registry_from(blob: bytes, sha256: str) -> CompiledRegistry:
    """The registry the driver sent, checked: its bytes must have the sha256 the driver computed."""
    reg = _REGISTRIES.get(sha256)
    if reg is not None:
        return reg
    from ..registry import cache

    if hashlib.sha256(blob).hexdigest() != sha256:
        raise RuntimeError(f"registry received does not match its sha256 {sha256[:16]}: refusing to label")
    reg = cache.loads(blob)
    if reg is None:
        raise RuntimeError("registry received cannot be decoded by this worker's portclass")
    _REGISTRIES.clear()  # one edition at a time
    _REGISTRIES[sha256] = reg
    return reg


def run_task(spec: TaskSpec, blob: bytes, sha256: str) -> TaskResult:
    """Read ``spec.path`` with the engine, writing flows as they end; see the module docstring."""
    from ..capture.reader import read_batches
    from ..pipeline import CHUNK_BYTES

    t0, c0 = time.perf_counter(), time.process_time()
    registry = registry_from(blob, sha256)
    eng = Engine(registry, spec.timeouts, evidence=spec.evidence, hold_heads=spec.hold_heads)
    agg = Aggregate.new(spec.limit)
    writer = PartWriter(spec.root, spec.ident, dataset_schema(registry), registry)
    try:
        first = None
        for batch in read_batches([spec.path], CHUNK_BYTES, errors="warn"):
            if first is None and len(batch):
                first = int(batch.ts_ns[0])
            for ended in eng.add(batch):
                agg.add(ended)
                writer.add(ended)
        edge = None
        if spec.export:
            last = eng.expire()  # a pass at the file's last packet: what ended there is this task's
            agg.add(last)
            writer.add(last)
            edge = eng.export()
        else:
            last = eng.flush()
            agg.add(last)
            writer.add(last)
        parts = writer.close()
    except BaseException:
        writer.abort()
        raise
    agg.stats = eng.stats
    summary = None if spec.export else state.save_summary(Path(spec.root), spec.ident, agg.summary)
    return TaskResult(spec.ident, agg, parts, edge, time.perf_counter() - t0, dict(eng.counters.ended), first,
                      summary, time.process_time() - c0)  # fmt: skip
