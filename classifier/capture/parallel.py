"""Read one large capture file with two processes: the parent reads the first half, a forked child the second.

Each side reads, decodes, scans and folds its byte range into a *partial* ``FlowTable``
(``flows.merge`` is exact and associative), and the parent merges ``merge(first, second)``.
Exactly the sequential result, by construction:

* **Split at a chunk boundary.**  ``read_batches`` cuts a file into chunks whose bases are
  determined by the records (chunk ``k + 1`` starts at the last record start at or before
  ``base_k + chunk_bytes``).  ``plan_split`` computes the base of chunk ``j`` (about half
  the file) from a few small windows: in each, a record start is guessed with the walk
  module's ``guess_starts`` and chained forward.  So both sides see exactly the chunks a
  sequential read sees (a chunk that ends early because a later IP fragment's look-ahead
  window runs past it shifts the chain: the check below then falls back).  Post hoc, the parent's own chain of
  chunks must land exactly on the child's start, with the same pcapng section state
  (interfaces); otherwise the child's work is discarded and the parent reads on by itself.
* **Packet numbers.**  The child counts from 1; its ``pkt_index`` references (payload and
  evidence columns) and the packet numbers in its warnings are shifted by the parent's
  count afterwards.
* **IP fragments.**  A later fragment in the child's range that matched no first fragment
  *before* it there may belong to a datagram whose first fragment lies in the parent's
  range.  The child holds back the chunks with such fragments (flow columns and tags, not
  folded) with the datagram keys; the parent resolves them against its final
  ``FragmentTable`` (within the last ``capacity`` first fragments before each) and
  folds those chunks in order.
* **Warnings and counts** are the per-chunk ones of a sequential read, parent's first.
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
import pickle
import re
import stat
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..flows import (
    _FLOW_INPUTS,
    FlowAggregator,
    FlowTable,
    PacketTags,
    flows_from_batch,
    merge,
)
from . import pcapng
from .columns import FRAG_LATER, CaptureStats, PacketBatch
from .fragments import VALUE, FragmentTable
from .reader import DEFAULT_CHUNK_BYTES, MIN_CHUNK_BYTES, Span, _BufferPool, _open_format, _Pcap, _read_file
from .source import GZIP_MAGIC, pread_into
from .views import PAD, at
from .walk import LANE_BYTES, Chain, guess_starts, walk, walk_sequential

_WINDOW = 256 << 10
"""Bytes read on each side of a chunk end to find the record that straddles it."""
_CHILD_COST = 1.2
"""The child's time per byte relative to the parent's (it also pickles its table for the parent)."""
Scan = Callable[[PacketBatch], PacketTags]
last_mode = ""
"""How the last ``read_flows`` went (for tests): "sequential", "parallel" or "fallback" (child's work discarded)."""


@dataclass
class Plan:
    """Where the second process starts, and the container state it assumes there."""

    split: int
    fmt: Any  # reader._Pcap / reader._Pcapng as of ``split`` (and ``tail``)
    tail: int | None = None  # the child stops here and the parent reads from here to the end


def _pread(fd: int, lo: int, hi: int) -> np.ndarray:
    """File bytes ``[lo, hi)`` with ``PAD`` zero bytes after them."""
    buf = np.zeros(hi - lo + PAD, np.uint8)
    got = pread_into(fd, memoryview(buf)[: hi - lo], lo)
    return buf[: got + PAD] if got < hi - lo else buf


def _last_record_at_or_before(fd: int, chain: Chain, target: int, lo_min: int, total: int) -> int | None:
    """Offset of the last record starting at or before ``target`` (a guess, checked later), or None."""
    lo = max(target - _WINDOW, lo_min)
    hi = min(target + _WINDOW, total)
    buf = _pread(fd, lo, hi)
    n = buf.size - PAD
    t = target - lo
    if n <= t:
        return None
    u32 = at(buf, chain.byteorder + "u4")
    g = guess_starts(buf, u32, 0, t, chain, max(2, t // (16 << 10)))
    if g.size == 0:
        return None
    for first in g[:4].tolist():  # the first guess that chains without damage through most others
        w = walk(buf, u32, first, n, chain)
        if w.status == "damage":
            continue
        starts = np.concatenate([w.pos, [w.stop]]) if w.status == "partial" else w.pos
        i = np.minimum(np.searchsorted(starts, g), starts.size - 1)
        if starts.size and (starts[i] == g).mean() >= 0.5:
            break
    else:
        return None
    before = starts[starts <= t]
    if before.size == 0 or (w.stop <= t and w.status != "partial"):
        return None
    return lo + int(before[-1])


def _pcapng_head_state(fd: int, fmt: Any, total: int) -> bool:
    """Fill ``fmt.sec`` from the blocks before the first packet block (False when that fails)."""
    buf = _pread(fd, 0, min(total, _WINDOW))
    n = buf.size - PAD
    bo = fmt.sec.byteorder
    w = walk_sequential(buf, 0, n, pcapng.chain(bo))
    u32 = at(buf, bo + "u4")
    types = u32[w.pos] if w.pos.size else np.empty(0, np.uint32)
    pk = np.flatnonzero(pcapng.is_packet_block(types))
    if pk.size == 0:
        return False
    first = int(w.pos[pk[0]])
    cb = pcapng.parse_chunk(buf, 0, first, fmt.sec)
    return cb.status == "end" and cb.stop == first


def plan_split(path: str | os.PathLike[str], chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Plan | None:
    """Where to split a large plain pcap/pcapng file for two processes (None: read it sequentially)."""
    cap = max(chunk_bytes, MIN_CHUNK_BYTES)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or not hasattr(os, "preadv"):
            return None
        total = st.st_size
        if total < 2 * cap:  # under two chunks: forking and merging would cost more than they save
            return None
        head = os.pread(fd, 64, 0)
        if head[:2] == GZIP_MAGIC:
            return None
        try:
            fmt = _open_format(head, Path(path), LANE_BYTES)
        except Exception:  # noqa: BLE001 - not a capture: the sequential read reports it
            return None
        if isinstance(fmt, _Pcap):
            chain = fmt.chain
        else:
            if not _pcapng_head_state(fd, fmt, total):
                return None
            chain = pcapng.chain(fmt.sec.byteorder)
        bases = [0]
        while bases[-1] + cap + PAD + _WINDOW <= total:
            # the next chunk starts at the last record starting at or before the end of this chunk's window
            nxt = _last_record_at_or_before(fd, chain, bases[-1] + cap, max(bases[-1], fmt.start), total)
            if nxt is None or nxt <= bases[-1]:
                break
            bases.append(nxt)
        # the child reads chunks [a, b) (b may be the end of the file), the parent the rest; the parent
        # also merges and finishes, so it gets a little more than half
        best = None
        ends = bases[1:] + [total]
        for a in bases[1:]:
            for b in ends:
                if b > a:
                    cost = max(total - (b - a), _CHILD_COST * (b - a))
                    if best is None or cost < best[0]:
                        best = (cost, a, b)
        if best is None:
            return None
        return Plan(best[1], fmt, best[2] if best[2] < total else None)
    finally:
        os.close(fd)


class _ChildFragments(FragmentTable):
    """The child's fragment table: later fragments without a first fragment before them are held back.

    They are kept as rows (ports of a first fragment after them in the chunk, if any, else
    zero) and described in ``pending`` for the parent to resolve.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def attribute(
        self,
        s: Any,
        first_rows: np.ndarray,
        later_rows: np.ndarray,
        pos: np.ndarray | None = None,
        horizon: int | None = None,
    ) -> np.ndarray:
        added = self.added
        got = super().attribute(s, first_rows, later_rows, pos, horizon)
        held = ~self.before_hit
        if self.cut >= 0:
            held &= later_rows < self.cut  # the rest is read again with the next chunk
        if held.any():
            rows = later_rows[held]
            after_hit = got[held].copy()
            miss = rows[~after_hit]
            s.sport[miss] = 0
            s.dport[miss] = 0
            s.nh[miss] = s.fproto[miss]
            s.flags[miss] = 0
            s.poff[miss] = -1
            s.plen[miss] = 0
            s.frag[miss] = FRAG_LATER
            after = np.zeros(rows.size, VALUE)
            after["sport"], after["dport"], after["proto"] = s.sport[rows], s.dport[rows], s.nh[rows]
            before = added + np.searchsorted(first_rows, rows)  # first fragments before each (for the window)
            self.pending.append((rows.astype(np.int64), self._keys(s, rows), after, after_hit, before))
            got[held] = True
        return got


def _slim(batch: PacketBatch) -> PacketBatch:
    """The flow columns of a batch (no raw bytes)."""
    return PacketBatch(
        **{name: getattr(batch, name) for name in _FLOW_INPUTS},
        payload_off=np.full(len(batch), -1, np.int64),
        data=np.zeros(0, np.uint8),
    )


def _read_part(
    path: str,
    span: Span,
    frags: FragmentTable,
    chunk_bytes: int,
    lane_bytes: int,
    idle_timeout_ns: int,
    scan: Scan | None,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[tuple[Any, ...]], CaptureStats]:
    """Read ``span`` of ``path``: partial tables (and held-back chunks, for the child) in order, and the counts."""
    parts: list[tuple[Any, ...]] = []
    stats = CaptureStats()
    agg = FlowAggregator(idle_timeout_ns)
    held = isinstance(frags, _ChildFragments)
    first = span.packets + 1
    new = [str(path)] if span.begin == 0 else []  # only the part that opens the file lists it
    try:
        for batch in _read_file(Path(path), 0, new, chunk_bytes, frags, lane_bytes, _BufferPool(), span):
            tags = scan(batch) if scan is not None else None
            stats.merge(batch.stats)
            if held and frags.pending:  # type: ignore[attr-defined]
                rows, keys, after, after_hit, before = frags.pending.pop()  # type: ignore[attr-defined]
                if agg.rows or agg.pending:
                    parts.append(("table", agg.partial()))
                    agg = FlowAggregator(idle_timeout_ns)
                where = np.searchsorted(batch.pkt_index, rows + first)
                parts.append(("held", _slim(batch), tags, where, keys, after, after_hit, before))
            else:
                agg.add(batch, tags)
            first += batch.stats.packets
            if progress is not None:
                progress(int(batch.stats.bytes))
    except KeyboardInterrupt:
        if held:
            raise
        span.interrupted = True
    if agg.rows or agg.pending:
        parts.append(("table", agg.partial()))
    return parts, stats


def _token(n: int) -> str:
    return f"\x00{n}\x00"


def _child(
    conn: Any,
    shm: int | None,
    path: str,
    span: Span,
    chunk_bytes: int,
    lane_bytes: int,
    timeout: int,
    scan: Scan | None,
) -> None:
    try:
        frags = _ChildFragments()
        parts, stats = _read_part(path, span, frags, chunk_bytes, lane_bytes, timeout, scan)
        sec = getattr(span.fmt, "sec", None)
        result = ("ok", parts, stats, span.packets, span.reached, sec, frags.keys, frags.values)
        if shm is None:
            conn.send(result)
        else:  # through memory: a pipe moves ~16 MB in 64 KiB steps, each waking the parent
            data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(shm, "wb", closefd=False) as f:
                f.write(data)
            conn.send(("shm", len(data)))
    except BaseException as e:  # noqa: BLE001 - any failure: the parent reads this range itself
        conn.send(("error", repr(e)))
    finally:
        conn.close()


def _receive(conn: Any, shm: int | None) -> tuple[Any, ...]:
    """The child's result (an "error" tuple when it died)."""
    try:
        got = conn.recv()
    except (EOFError, OSError):
        return ("error", "child process died")
    if got[0] == "shm" and shm is not None:
        with mmap.mmap(shm, got[1], prot=mmap.PROT_READ) as m:
            got = pickle.loads(m)
    return got


def _renumber(t: FlowTable, offset: int) -> FlowTable:
    for name in ("payload_pkt_c2s", "payload_pkt_s2c", "evidence_pkt_c2s", "evidence_pkt_s2c"):
        col = getattr(t, name)
        col[col >= 0] += offset
    return t


def _resolve(part: tuple[Any, ...], table: FragmentTable, offset: int, timeout: int, stats: CaptureStats) -> FlowTable:
    """Flows of a held-back child chunk once its fragments are resolved against the parent's fragment table."""
    _, batch, tags, where, keys, after, after_hit, before = part
    nt = len(table)
    last = {k.tobytes(): i for i, k in enumerate(table.keys)}  # most recent entry of each key
    keep = np.ones(len(batch), bool)
    for i in range(where.size):
        r = int(where[i])
        hit = last.get(keys[i].tobytes())
        if hit is not None and hit >= nt - (table.capacity - int(before[i])):  # among the last ``capacity``
            v = table.values[hit]
            batch.sport[r], batch.dport[r], batch.proto[r] = v["sport"], v["dport"], v["proto"]
        elif not after_hit[i]:
            keep[r] = False
            stats.fragments_unattributed += 1
    batch.pkt_index += offset
    if not keep.all():
        idx = np.flatnonzero(keep)
        batch = PacketBatch(
            **{n: getattr(batch, n)[idx] for n in _FLOW_INPUTS}, payload_off=batch.payload_off[idx], data=batch.data
        )
        if tags is not None:
            tags = tags.take(keep)
    return flows_from_batch(batch, timeout, tags)


def read_flows(
    path: str | os.PathLike[str],
    idle_timeout_ns: int,
    scan: Scan | None = None,
    progress: Callable[[int], None] | None = None,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    lane_bytes: int = LANE_BYTES,
    plan: Plan | None = None,
) -> tuple[FlowTable, CaptureStats, bool]:
    """Partial flow table, counts and whether Ctrl-C stopped it, for one file; two processes with a ``plan``.

    Equal to folding ``read_batches([path], chunk_bytes)`` into a ``FlowAggregator`` (then
    ``partial()``).  ``plan`` defaults to ``plan_split(path, chunk_bytes)``; without a
    plan the file is read sequentially here.  With one, the parent reads ``[0, split)``
    (then ``[tail, end)`` ahead of time, as the child does with ``[split, tail)``).
    """
    global last_mode
    path = str(path)
    chunk_bytes = max(chunk_bytes, MIN_CHUNK_BYTES)
    timeout = int(idle_timeout_ns)
    plan = plan if plan is not None else plan_split(path, chunk_bytes)
    frags = FragmentTable()
    span = Span()
    last_mode = "sequential"
    if plan is None:
        parts, stats = _read_part(path, span, frags, chunk_bytes, lane_bytes, timeout, scan, progress)
        return (parts[0][1] if parts else FlowTable.empty()), stats, span.interrupted

    def fresh(begin: int, stop: int | None) -> Span:
        fmt = deepcopy(plan.fmt)
        warned = {fmt.hdr.linktype} if isinstance(fmt, _Pcap) else {i.linktype for i in fmt.sec.interfaces}
        return Span(begin=begin, fmt=fmt, warned=warned, stop=stop, number=_token)

    ctx = multiprocessing.get_context("fork")
    conn, child_conn = ctx.Pipe(duplex=False)
    shm = os.memfd_create("portclass-part", os.MFD_CLOEXEC) if hasattr(os, "memfd_create") else None
    proc = ctx.Process(
        target=_child,
        args=(child_conn, shm, path, fresh(plan.split, plan.tail), chunk_bytes, lane_bytes, timeout, scan),
        daemon=True,
    )
    proc.start()
    child_conn.close()
    span.stop = plan.split
    received = False
    try:
        parts, stats = _read_part(path, span, frags, chunk_bytes, lane_bytes, timeout, scan, progress)
        table = parts[0][1] if parts else FlowTable.empty()
        head_bytes = int(stats.bytes)
        last_mode = "fallback"
        if not span.reached or span.interrupted:
            return table, stats, span.interrupted  # the parent read everything there is (or was stopped)
        got: tuple[Any, ...] = ("discarded",)
        tail: tuple[list[tuple[Any, ...]], CaptureStats, _ChildFragments] | None = None
        if _same_state(span.fmt, plan.fmt):
            if plan.tail is not None:
                tfrags = _ChildFragments()
                try:
                    tparts, tstats = _read_part(
                        path, fresh(plan.tail, None), tfrags, chunk_bytes, lane_bytes, timeout, scan
                    )
                except KeyboardInterrupt:
                    return table, stats, True
                tail = (tparts, tstats, tfrags)
            got = _receive(conn, shm)
            received = True
        if got[0] != "ok":  # read the second range here after all (the parent's state is the true one)
            span.stop, span.begin = None, plan.split
            more, st2 = _read_part(path, span, frags, chunk_bytes, lane_bytes, timeout, scan, progress)
            for p in more:
                table = merge(table, p[1], timeout)
            return table, stats.merge(st2), span.interrupted
        _, cparts, cstats, cpackets, creached, csec, ckeys, cvalues = got
        last_mode = "parallel"
        table = _fold(table, cparts, cstats, frags, span.packets, timeout)
        stats.merge(cstats)
        if plan.tail is not None and creached:  # else the child read on to the end of the file
            offset = span.packets + cpackets
            both = FragmentTable(frags.capacity)
            both.keys = np.concatenate([frags.keys, ckeys])[-both.capacity :]
            both.values = np.concatenate([frags.values, cvalues])[-both.capacity :]
            if tail is not None and (csec is None or csec == plan.fmt.sec):
                table = _fold(table, tail[0], tail[1], both, offset, timeout)
                stats.merge(tail[1])
            else:  # the child's range changed the pcapng state: read the tail again from the true one
                last_mode = "parallel+reread"
                rest = fresh(plan.tail, None)
                rest.number, rest.packets = str, offset
                if csec is not None:
                    rest.fmt.sec = csec
                    rest.warned = {i.linktype for i in csec.interfaces}
                more, st2 = _read_part(path, rest, both, chunk_bytes, lane_bytes, timeout, scan)
                for p in more:
                    table = merge(table, p[1], timeout)
                stats.merge(st2)
        if progress is not None:
            progress(int(stats.bytes) - head_bytes)
        return table, stats, False
    finally:
        if not received and proc.is_alive():
            proc.terminate()
        proc.join()
        conn.close()
        if shm is not None:
            os.close(shm)


def _fold(
    table: FlowTable, parts: list[tuple[Any, ...]], stats: CaptureStats, frags: FragmentTable, offset: int, timeout: int
) -> FlowTable:
    """Merge the parts of a range read ahead (numbered from 1) after ``table``; fixes ``stats`` in place."""
    stats.warnings = [re.sub("\x00(\\d+)\x00", lambda m: str(int(m.group(1)) + offset), w) for w in stats.warnings]
    for p in parts:
        t = _renumber(p[1], offset) if p[0] == "table" else _resolve(p, frags, offset, timeout, stats)
        table = merge(table, t, timeout)
    return table


def _same_state(a: Any, b: Any) -> bool:
    """Whether the container state the parent reached equals the one the child assumed."""
    if isinstance(a, _Pcap) or isinstance(b, _Pcap):
        return isinstance(a, _Pcap) and isinstance(b, _Pcap)
    return a is not None and b is not None and a.sec == b.sec
