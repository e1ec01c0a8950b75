"""The engine: packet batches in, finished, labelled and judged flows out as they end.

One object every driver uses (file analysis, the Python API, ``portclass live``): it folds
batches into flows with ``classifier.flows`` (partial tables that merge associatively,
``finalize``, ``orient``), runs the payload-evidence scan, and at each *pass* hands out the
flows that ended, labelled (``label.label_ports``) and judged (``evidence.verdict``).  Ended
flows leave the flow table, so memory follows the flows alive at once, not the flows seen.

When a flow ends, in capture time (the *clock*: the timestamp of the last packet read, in
capture order), first rule that holds:

``split``   a later flow of the same key has started (an idle gap inside a batch, or TCP
            port reuse: a bare SYN after FIN/RST), so this one cannot grow any more;
``active``  it has lasted longer than the active timeout (off by default); the rest of it
            comes out later as part 2, 3... (``part``: 0 a whole flow, k >= 1 the k-th part);
``closed``  TCP saw FIN both ways, or RST, and has been quiet for the close grace (late ACKs
            and retransmissions within the grace still join it);
``idle``    no packet for longer than its transport's idle timeout: ``|clock - last packet| >
            timeout`` at a pass.  Capture time going *backwards* (several files given out of
            time order, a clock step) by more than the idle timeout therefore ends, at the next
            pass, every flow alive before the step, as a jump forwards does;
``flush``   the input ended (``flush``).

Passes happen where the flow stage builds rows anyway: every ``min_packets`` packets read
(2^18) for files, at every ``expire`` call for live capture.  Between passes the flow stage's
own rule holds (a packet more than the idle timeout away from the previous one of its key, in
either direction, starts a new flow), so where time steps back and forth the cut can depend on
where the passes fall.  With monotonic capture time the flows are the same as if everything were held to the end
(the idle rule only ends a flow that no later packet could join); ``closed`` and ``active``
are the rules that cut flows a whole-capture view would keep in one row.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields

import numpy as np

from .capture.columns import PROTO_TCP, PROTO_UDP, CaptureStats, PacketBatch
from .flows import (
    START_OPEN,
    START_SOFT,
    TCP_FIN,
    TCP_RST,
    FlowAggregator,
    FlowStage,
    FlowTable,
    PacketTags,
    Pooled,
    _is_sorted,
    _keys_differ,
    canonical,
    finalize,
    merge,
)
from .label import Labels
from .registry.compile import CompiledRegistry

NS = 1_000_000_000
DEFAULT_IDLE_S = 300.0
DEFAULT_CLOSE_GRACE_S = 5.0
"""Zeek's ``tcp_close_delay``: a closed TCP connection stays 5 s for its last ACKs."""

END_REASONS: tuple[str, ...] = ("split", "active", "closed", "idle", "flush")
"""Names of ``Ended.reason`` codes (why the engine let a flow go)."""
R_SPLIT, R_ACTIVE, R_CLOSED, R_IDLE, R_FLUSH = range(len(END_REASONS))

_PROTO_NAMES = {"tcp": PROTO_TCP, "udp": PROTO_UDP, "sctp": 132, "dccp": 33, "icmp": 1, "icmpv6": 58}


@dataclass(frozen=True)
class Timeouts:
    """When flows end: idle timeout (per IP protocol where asked), TCP close grace, active timeout.

    Seconds; 0 turns a rule off (``close_grace_s`` None: a closed TCP flow waits for its idle timeout).

    >>> Timeouts.parse_idle("tcp=300,udp=60").idle_ns(np.array([6, 17, 1])).tolist()
    [300000000000, 60000000000, 300000000000]
    """

    idle_s: float = DEFAULT_IDLE_S
    idle_by_proto: tuple[tuple[int, float], ...] = ()
    close_grace_s: float | None = DEFAULT_CLOSE_GRACE_S
    active_s: float = 0.0

    @classmethod
    def parse_idle(cls, text: str, **kw: object) -> Timeouts:
        """``300`` or ``tcp=300,udp=60[,default=120]`` (seconds) as Timeouts; ValueError when malformed."""
        idle, by = DEFAULT_IDLE_S, []
        for part in str(text).split(","):
            name, eq, value = part.strip().partition("=")
            try:
                secs = float(value if eq else name)
            except ValueError:
                raise ValueError(f"not a number of seconds: {part.strip()!r}") from None
            if not secs >= 0 or secs == float("inf"):
                raise ValueError(f"a timeout must be >= 0 seconds: {part.strip()!r}")
            if not eq or name.strip().lower() == "default":
                idle = secs
            elif name.strip().lower() in _PROTO_NAMES:
                by.append((_PROTO_NAMES[name.strip().lower()], secs))
            else:
                raise ValueError(f"unknown transport {name.strip()!r} (known: {', '.join(_PROTO_NAMES)}, default)")
        return cls(idle_s=idle, idle_by_proto=tuple(by), **kw)  # type: ignore[arg-type]

    @property
    def batch_idle_ns(self) -> int:
        """The idle timeout the flow stage splits on inside a batch (the longest; 0 when any is off)."""
        all_s = [self.idle_s] + [s for _, s in self.idle_by_proto]
        return 0 if min(all_s) == 0 else int(max(all_s) * NS)

    def idle_ns(self, proto: np.ndarray) -> np.ndarray:
        """Idle timeout per flow in ns (0: never idle), from its IP protocol."""
        lut = np.full(256, int(self.idle_s * NS), dtype=np.int64)
        for p, s in self.idle_by_proto:
            lut[p] = int(s * NS)
        return lut[proto]

    @property
    def expires(self) -> bool:
        """Whether any rule may end a flow before the input ends."""
        return bool(self.batch_idle_ns or self.active_s or self.close_grace_s is not None)


@dataclass
class Ended:
    """Flows the engine let go at one pass, oriented, labelled and judged, by start time."""

    flows: FlowTable
    labels: Labels
    part: np.ndarray  # int32: 0 a whole flow, k >= 1 its k-th part (active timeout)
    reason: np.ndarray  # uint8 code of END_REASONS
    stats: CaptureStats | None = None  # the run's capture counters so far (file names for file_index)

    def __len__(self) -> int:
        return len(self.flows)

    @classmethod
    def empty(cls) -> Ended:
        """No flows."""
        labels = Labels(
            transport=np.zeros(0, np.int8),
            status=np.zeros(0, np.uint8),
            service=np.zeros(0, np.int32),
            flags=np.zeros(0, np.uint8),
            severity=np.zeros(0, np.uint8),
        )
        return cls(FlowTable.empty(), labels, np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.uint8))

    @classmethod
    def concat(cls, chunks: list[Ended]) -> Ended:
        """The chunks one after the other (end order is kept)."""
        if len(chunks) == 1:
            return chunks[0]
        labels = Labels(
            **{f.name: np.concatenate([getattr(c.labels, f.name) for c in chunks]) for f in fields(Labels)}
        )
        return cls(
            FlowTable.concat([c.flows for c in chunks]),
            labels,
            np.concatenate([c.part for c in chunks]),
            np.concatenate([c.reason for c in chunks]),
        )


@dataclass
class Edge:
    """The flows a run over one file left open at its edges, as raw partial rows, for a later join.

    ``table`` (canonical, unoriented, unfinalized where held) holds the *heads*, the first flow of each
    key that started within one idle timeout of the file's first packet (they may continue a flow of
    the previous file of the same timeline) and the flows still alive at the file's last packet (they
    may go on in the next file). ``done`` marks rows whose key had a later flow handed out already
    (they cannot go on). ``Engine.join`` folds edges of consecutive files in order (``classifier.archive``).
    """

    table: FlowTable
    done: np.ndarray  # bool per row
    clock_ns: int | None = None  # the file's last packet's timestamp


@dataclass
class Counters:
    """What the engine did: flows ended per reason, flows alive now and at most."""

    ended: dict[str, int] = field(default_factory=lambda: dict.fromkeys(END_REASONS, 0))
    alive: int = 0
    peak_alive: int = 0
    passes: int = 0


class Engine:
    """Packet batches -> labelled flows as they end (see the module docstring for the rules).

    >>> eng = Engine(registry)  # doctest: +SKIP
    >>> for batch in read_batches(paths):  # doctest: +SKIP
    ...     for ended in eng.add(batch):
    ...         write(ended)
    >>> write(eng.flush())  # doctest: +SKIP
    """

    def __init__(
        self,
        registry: CompiledRegistry,
        timeouts: Timeouts | None = None,
        *,
        evidence: bool = True,
        min_packets: int = 1 << 16,
        expire: bool = True,
        separate_files: bool = True,
        hold_heads: bool = False,
    ) -> None:
        self.registry = registry
        self.timeouts = timeouts or Timeouts()
        self.evidence = evidence
        self.expire_enabled = expire and self.timeouts.expires
        self.min_packets = int(min_packets)
        self.separate_files = separate_files  # flows of different files never join (``flows.file_groups``)
        self.stats = CaptureStats()
        self.counters = Counters()
        self.clock_ns: int | None = None
        self._agg = FlowAggregator(self.timeouts.batch_idle_ns, self.min_packets, self.separate_files)
        self._alive = FlowTable.empty()
        self._cont_key = np.zeros(0, dtype=np.uint64)  # keys of flows cut by the active timeout
        self._cont_part = np.zeros(0, dtype=np.int32)  # ... and the part number they reached
        self._cont_clock = np.zeros(0, dtype=np.int64)  # ... and when they were cut
        self.hold_heads = hold_heads  # the input may continue an earlier file: heads stay for ``export``
        self._hold_until: int | None = None  # heads: first flows of a key starting up to this time
        self._gone_keys: list[np.ndarray] = []  # keys handed out while heads are held
        self._scan = None
        if evidence:
            from .evidence.match import scan

            self._scan = scan

    # ---------------------------------------------------------------- input

    def add(self, batch: PacketBatch, tags: PacketTags | Pooled | None = None) -> Iterator[Ended]:
        """Fold the next batch (capture order) in; yields the flows that ended (none most of the time).

        ``tags``: the batch's evidence scan when the caller ran it already (``classifier.feed``), or
        the ``Pooled`` flow table another process built from the batches of ``batch.stats`` (``flow_stage``).
        """
        if isinstance(tags, Pooled):
            yield from self._add_pooled(batch.stats, tags)
            return
        if tags is None and self._scan is not None and len(batch):
            tags = self._scan(batch)
        elif self._scan is None:
            tags = None
        yield from self._add_piece(batch, tags)

    def _add_piece(self, batch: PacketBatch, tags: object) -> Iterator[Ended]:
        before = self._agg.pending
        self._agg.add(batch, tags)  # type: ignore[arg-type]
        self.stats = self._agg.stats
        if len(batch):
            if self.hold_heads and self._hold_until is None:
                idle = self.timeouts.batch_idle_ns
                self._hold_until = int(batch.ts_ns[0]) + idle if idle else np.iinfo(np.int64).max
            self.clock_ns = int(batch.ts_ns[-1])
        # a pass when the pool turned into flow rows: as often as flows are built anyway
        if self.expire_enabled and len(batch) and self._agg.pending < before + len(batch):
            ended = self.expire()
            if len(ended):
                yield ended

    def flow_stage(self) -> FlowStage:
        """How this engine pools packets into flow tables, for a process that builds them (``Pooled``)."""
        return FlowStage(self.timeouts.batch_idle_ns, self.min_packets, self.separate_files)

    def _add_pooled(self, stats: CaptureStats, pooled: Pooled) -> Iterator[Ended]:
        """``_add_piece`` of each batch of a pool, at once: the pool's table was built elsewhere."""
        if self._agg.pending:
            raise RuntimeError("a pooled flow table arrived while packets of an earlier pool wait")
        self._agg.stats.merge(stats)
        self._agg.add_table(pooled.table)
        self.stats = self._agg.stats
        if pooled.packets:
            if self.hold_heads and self._hold_until is None:
                idle = self.timeouts.batch_idle_ns
                self._hold_until = pooled.first_ts_ns + idle if idle else np.iinfo(np.int64).max
            self.clock_ns = pooled.last_ts_ns
            if self.expire_enabled:
                ended = self.expire()
                if len(ended):
                    yield ended

    def _end_all(self, code: int) -> Ended:
        """End every flow alive now (a clock step), as ``code``."""
        t = self._absorb()
        reason = np.full(len(t), code, dtype=np.uint8)
        if len(t):
            reason[~_last_of_key(t)] = R_SPLIT
        self._alive = FlowTable.empty()
        self._note_alive()
        return self._label(t, reason)

    def add_table(self, table: FlowTable, stats: CaptureStats) -> None:
        """Fold a partial flow table of the next stretch of packets (made elsewhere, e.g. by workers)."""
        self._agg.add_table(table)
        self._agg.stats.merge(stats)
        self.stats = self._agg.stats
        if len(table):
            self.clock_ns = int(table.tail_ts_ns.max())

    def expire(self, clock_ns: int | None = None) -> Ended:
        """Hand out the flows ended at ``clock_ns`` (default: the last packet read)."""
        clock = self.clock_ns if clock_ns is None else int(clock_ns)
        t = self._absorb()
        self.counters.passes += 1
        if clock is None or not len(t):
            return self._label(FlowTable.empty(), np.zeros(0, np.uint8))
        reason = self._reasons(t, clock)
        gone = reason < R_FLUSH
        if self._hold_until is not None:
            held = _held(t, self._hold_until)
            self._gone_keys.append(t.key_hash[gone & ~held])
            gone &= ~held
        rows = np.flatnonzero(gone)
        out = self._label_rows(t, rows, reason[rows])
        self._alive = t.take(~gone)
        self._note_alive()
        if self._cont_key.size:  # a cut flow that never went on is forgotten after its idle timeout
            stale = (clock - self._cont_clock > self.timeouts.batch_idle_ns) & ~np.isin(
                self._cont_key, self._alive.key_hash
            )
            self._cont_key, self._cont_part = self._cont_key[~stale], self._cont_part[~stale]
            self._cont_clock = self._cont_clock[~stale]
        return out

    def flush(self) -> Ended:
        """Every flow still alive, as ended by the end of input; the engine is empty afterwards."""
        return self._end_all(R_FLUSH)

    def export(self) -> Edge:
        """Instead of ``flush``: the held heads and the flows alive now, raw, for ``join`` (the engine empties)."""
        t = self._absorb()
        done = np.zeros(len(t), dtype=bool)
        if len(t) and self._gone_keys:
            # a held row whose key had a later flow handed out, and no later row here: that key ended
            done = _last_of_key(t) & _held(t, self._hold_until) & np.isin(t.key_hash, np.concatenate(self._gone_keys))
        self._alive, self._gone_keys = FlowTable.empty(), []
        self._note_alive()
        return Edge(t, done, self.clock_ns)

    def join(self, edge: Edge) -> Ended:
        """Fold the edge of the next file of a timeline in (file indices already this engine's);
        returns the flows that ended at its end (those of the previous edge it did not continue,
        its heads that ended, by the usual rules at the edge's clock); call ``flush`` after the last.
        """
        t = self._absorb()
        done_keys = edge.table.key_hash[edge.done]
        self._alive = finalize(merge(t, edge.table, self.timeouts.batch_idle_ns))
        if edge.clock_ns is not None:
            self.clock_ns = edge.clock_ns
        t = self._alive
        if not len(t) or self.clock_ns is None:
            return self._label(FlowTable.empty(), np.zeros(0, np.uint8))
        reason = self._reasons(t, self.clock_ns)
        reason[_last_of_key(t) & np.isin(t.key_hash, done_keys)] = R_SPLIT
        gone = reason < R_FLUSH
        rows = np.flatnonzero(gone)
        out = self._label_rows(t, rows, reason[rows])
        self._alive = t.take(~gone)
        self._note_alive()
        return out

    def snapshot(self) -> Ended:
        """The flows alive now, labelled (they stay in the engine; ``reason`` is flush)."""
        t = self._absorb()
        self._note_alive()
        return self._label(t, np.full(len(t), R_FLUSH, dtype=np.uint8), count=False)

    @property
    def alive(self) -> int:
        """Flow rows held (the last pass's alive flows plus rows of packets not yet passed)."""
        return len(self._alive) + self._agg.rows

    # ---------------------------------------------------------------- internals

    def _absorb(self) -> FlowTable:
        """Fold the rows built since the last pass into the alive table (finalized: nothing comes before)."""
        if self._agg.rows or self._agg.pending:
            part = self._agg.partial()
            stats = self._agg.stats
            self._agg = FlowAggregator(self.timeouts.batch_idle_ns, self.min_packets, self.separate_files)
            self._agg.stats = stats
            merged = merge(self._alive, part, self.timeouts.batch_idle_ns)
            until = self._hold_until
            self._alive = finalize(merged) if until is None else _finalize_unheld(merged, until)
        return self._alive

    def _note_alive(self) -> None:
        self.counters.alive = len(self._alive)
        self.counters.peak_alive = max(self.counters.peak_alive, self.counters.alive)

    def _reasons(self, t: FlowTable, clock: int) -> np.ndarray:
        """Per row of the finalized alive table: why it ends now, R_FLUSH where it stays alive."""
        to = self.timeouts
        reason = np.full(len(t), R_FLUSH, dtype=np.uint8)
        last = _last_of_key(t)
        quiet = clock - t.tail_ts_ns
        idle = to.idle_ns(t.proto)
        reason[last & (idle > 0) & (np.abs(quiet) > idle)] = R_IDLE
        if to.close_grace_s is not None:
            fc, fs = t.tcp_flags_c2s, t.tcp_flags_s2c
            shut = ((fc & fs & TCP_FIN) != 0) | (((fc | fs) & TCP_RST) != 0)
            reason[last & shut & (t.proto == PROTO_TCP) & (quiet > int(to.close_grace_s * NS))] = R_CLOSED
        if to.active_s > 0:
            reason[last & (clock - t.first_ts_ns > int(to.active_s * NS))] = R_ACTIVE
        reason[~last] = R_SPLIT
        return reason

    def _parts(self, kh: np.ndarray, reason: np.ndarray) -> np.ndarray:
        """Part numbers of ended flows (by key hash); remembers the keys of flows cut by the active timeout."""
        part = np.zeros(kh.size, dtype=np.int32)
        if not self._cont_key.size and not (reason == R_ACTIVE).any():
            return part
        order = np.argsort(self._cont_key, kind="stable")
        keys, parts = self._cont_key[order], self._cont_part[order]
        at = np.minimum(np.searchsorted(keys, kh), max(keys.size - 1, 0))
        hit = (keys.size > 0) & (keys[at] == kh) if keys.size else np.zeros(kh.size, dtype=bool)
        prior = np.where(hit, parts[at] if keys.size else 0, 0)
        cut = reason == R_ACTIVE
        part[hit | cut] = (prior + 1)[hit | cut]
        # a continued flow's entry goes once its last part is out; cut ones (re)enter
        drop = np.isin(self._cont_key, kh[hit])
        self._cont_key = np.concatenate([self._cont_key[~drop], kh[cut]])
        self._cont_part = np.concatenate([self._cont_part[~drop], part[cut]])
        self._cont_clock = np.concatenate([self._cont_clock[~drop], np.full(int(cut.sum()), self.clock_ns or 0)])
        return part

    def _label(self, flows: FlowTable, reason: np.ndarray, count: bool = True) -> Ended:
        """Orient, label and judge ended flows; within one pass by start time (then end time, key)."""
        if flows.server_rule.any() or not _is_sorted(flows):
            flows = canonical(flows)  # rows in key order: ties of the time order below keep it
        return self._label_rows(flows, np.arange(len(flows)), reason, count)

    def _label_rows(self, t: FlowTable, rows: np.ndarray, reason: np.ndarray, count: bool = True) -> Ended:
        """``_label`` of rows ``rows`` (ascending) of the canonical table ``t``: one gather, already in time
        order, oriented in place (orientation changes neither start, end nor key hash)."""
        from .pipeline import label_flows

        kh = t.key_hash[rows]
        part = self._parts(kh, reason) if count else np.zeros(rows.size, dtype=np.int32)
        if count:
            for code, n in enumerate(np.bincount(reason, minlength=len(END_REASONS)).tolist()):
                self.counters.ended[END_REASONS[code]] += n
        order = np.lexsort((kh, t.last_ts_ns[rows], t.first_ts_ns[rows]))
        oriented, labels = label_flows(t.take(rows[order]), self.registry, owned=True)
        if self.evidence:
            from .evidence.verdict import verdicts

            verdicts(oriented, labels, self.registry)
        return Ended(oriented, labels, part[order], reason[order], self.stats)


def _last_of_key(t: FlowTable) -> np.ndarray:
    """Mask of each key's last row in a canonical (key-sorted) table: the only rows that may still grow."""
    n = len(t)
    last = np.ones(n, dtype=bool)
    if n > 1:
        i = np.arange(n - 1)
        last[:-1] = (t.key_hash[1:] != t.key_hash[:-1]) | _keys_differ(t, i, t, i + 1)
    return last


def _held(t: FlowTable, until: int | None) -> np.ndarray:
    """Mask of held heads in a table: a key's first (open) row starting by ``until`` and its soft successor."""
    head = (t.start_kind == START_OPEN) & (t.head_ts_ns <= (until if until is not None else -1))
    nxt = np.flatnonzero(head[:-1]) + 1
    nxt = nxt[(t.start_kind[nxt] == START_SOFT) & (t.key_hash[nxt] == t.key_hash[nxt - 1])]
    head[nxt] = True
    return head


def _finalize_unheld(t: FlowTable, until: int) -> FlowTable:
    """``finalize`` except the held heads (``_held``), which stay open to join an earlier file's flows."""
    t = canonical(t)
    keep = _held(t, until)
    if not keep.any():
        return finalize(t)
    # held rows come first within their key: stable by key, held before the rest
    return canonical(FlowTable.concat([t.take(keep), finalize(t.take(~keep))]))
