"""Flow stage: packet columns -> one row per bidirectional flow, with NumPy only.

``flows_from_batch`` turns one ``PacketBatch`` into a *partial* ``FlowTable``; ``merge``
joins two partial tables (the earlier one first) and is associative, so chunks and files
can be merged in any grouping (and later in parallel); ``finalize`` closes a whole
capture's table and ``orient`` decides each flow's server side.  ``FlowAggregator``
streams batches through all of that with memory bounded by the number of flows (it pools
small batches up to ``min_packets`` first: one big batch is cheaper than many merges).

Typical use::

    agg = FlowAggregator(idle_timeout_ns=300 * 10**9)
    for batch in read_batches(paths):
        agg.add(batch)
    flows = orient(agg.result(), port_status)

Cost: one sort of packed (hash bits | index) keys per batch, a few gathers and
``reduceat`` passes; no Python loop over packets or flows.  About 0.1 s for a million
packets in 50,000 interleaved flows on one core of the development machine.

Flow key
    The canonical bidirectional key is ``(proto, lower endpoint, higher endpoint)`` where
    an endpoint is ``(address, port)`` compared as (hi, lo, port) of the IPv4-mapped IPv6
    address (the order Community ID uses).  The IP version is part of the key too.

Flow splitting (one key -> several flows), in capture order within the key
    * idle timeout: a packet more than ``idle_timeout_ns`` after the previous packet of
      the key (in either direction: ``abs`` of the difference, so files given out of
      time order do not join) starts a new flow; ``0`` disables it;
    * TCP port reuse: a SYN without ACK after a FIN or RST was seen in the current flow
      starts a new flow (retransmitted SYNs of a live connection do not split).
    Both rules give the same flows however the packets are cut into batches: a partial
    table keeps per key an *open* first row (it may continue the previous chunk's last
    flow) and at most one *soft* row (it starts at the chunk's first bare SYN and joins
    the open row unless the flow it continues had seen FIN/RST); ``merge`` decides those
    edges, ``finalize`` resolves what is left as if nothing came before.  Packets are
    taken in capture order (batch order, then row order), never re-sorted by timestamp.

Time going backwards (out-of-order timestamps), the one rule: packets stay in capture
    order; a jump in either direction larger than the idle timeout starts a new flow; a
    flow's start and end are the minimum and maximum of its packets' timestamps (so
    ``last_ts_ns - first_ts_ns >= 0``, and a capture's span, min of starts to max of ends,
    too).

Columns (one row per flow; dtypes in ``FLOW_DTYPES``)
    ip_version, proto; client_hi/client_lo/client_port, server_hi/server_lo/server_port
    (addresses IPv4-mapped as in ``classifier.capture.columns``); packets_c2s/s2c and
    bytes_c2s/s2c (wire bytes); first_ts_ns/last_ts_ns (the earliest and the latest
    timestamp of the flow's packets: a flow's start and end, so durations are never
    negative even where the capture's clock goes backwards); head_ts_ns/tail_ts_ns (the
    timestamps of its first and last packet in capture order: the idle timeout compares
    neighbours in capture order, also where ``merge`` joins chunks); tcp_flags_c2s/s2c (OR of the TCP flags each way);
    server_rule (index into ``SERVER_RULES``); first_sender (0 client, 1 server: who sent
    the first packet); syn_sender/synack_sender (who sent the first SYN without ACK /
    SYN+ACK, -1 none); syn_start (the first packet is a SYN without ACK); start_kind
    (merge state: ``START_CLOSED``/``START_OPEN``/``START_SOFT``); key_hash (64-bit hash of
    the canonical key: tables are sorted by it, rows of one key in flow order);
    payload_file_c2s/s2c and payload_pkt_c2s/s2c (``PAYLOAD_SLOTS`` columns each: the
    file_index and 1-based pkt_index of the first packets carrying captured payload each
    way, later IP fragments excluded; -1 in pkt where absent), for a later evidence stage;
    evidence_sig/file/pkt_c2s/s2c (the first packet each way that the payload-evidence stage
    recognised: its signature code, ``classifier.evidence``'s numbering, 0 none, and its
    file_index/pkt_index, -1 in pkt where none) and server_name (the first TLS server name
    seen, ``SERVER_NAME_BYTES`` at most, b"" none); said_c2s/s2c (object: what the evidence
    packet each way said, fields extracted by ``classifier.evidence.extract``, None none); all
    are filled only from ``PacketTags`` passed alongside the batches, and merge as "first in
    capture order", like payload refs.

Before ``orient`` (``server_rule == 0``, "unoriented") client is the lower endpoint.

Server side (``orient``), first rule that decides wins:
    ``syn``          the receiver of the first SYN without ACK;
    ``syn-ack``      the sender of the first SYN+ACK (capture began after the SYN);
    ``registry``     the side whose port is ASSIGNED in the registry for the flow's
                     transport while the other's is not;
    ``ephemeral``    the side whose port is below 49152 while the other's is in the
                     dynamic range (>= 49152, RFC 6335);
    ``lower-port``   the side whose port is a system port (< 1024) while the other's is not;
    ``first-packet`` the receiver of the flow's first packet.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from classifier import conn
from classifier.capture.columns import (
    FRAG_LATER,
    FRAG_NONE,
    IPV4_MAPPED_LO_PREFIX,
    PROTO_TCP,
    TRANSPORT_OF_PROTO,
    CaptureStats,
    PacketBatch,
)

TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10

SERVER_RULES: tuple[str, ...] = (
    "unoriented",
    "syn",
    "syn-ack",
    "registry",
    "ephemeral",
    "lower-port",
    "first-packet",
)
"""Names of ``FlowTable.server_rule`` codes, in the order ``orient`` tries them (0: not oriented)."""
(
    RULE_UNORIENTED,
    RULE_SYN,
    RULE_SYN_ACK,
    RULE_REGISTRY,
    RULE_EPHEMERAL,
    RULE_LOWER_PORT,
    RULE_FIRST_PACKET,
) = range(len(SERVER_RULES))

START_CLOSED, START_OPEN, START_SOFT = 0, 1, 2
"""``start_kind``: a flow start fixed whatever came before / may continue the previous
chunk's last flow of the key / joins the open row unless that flow saw FIN or RST."""

SENDER_CLIENT, SENDER_SERVER, SENDER_NONE = 0, 1, -1
PAYLOAD_SLOTS = 3
"""How many payload-carrying packets per direction a flow remembers."""
SERVER_NAME_BYTES = 64
"""Width of the ``server_name`` column (longer TLS server names are cut)."""

ASSIGNED = 1
"""``port_status`` code of a port assigned by IANA (registry stage's status arrays)."""
DYNAMIC_LOW = 49152
SYSTEM_PORTS_END = 1024

FLOW_DTYPES: dict[str, np.dtype] = {
    "ip_version": np.dtype(np.uint8),
    "proto": np.dtype(np.uint8),
    "client_hi": np.dtype(np.uint64),
    "client_lo": np.dtype(np.uint64),
    "client_port": np.dtype(np.uint16),
    "server_hi": np.dtype(np.uint64),
    "server_lo": np.dtype(np.uint64),
    "server_port": np.dtype(np.uint16),
    "packets_c2s": np.dtype(np.int64),
    "packets_s2c": np.dtype(np.int64),
    "bytes_c2s": np.dtype(np.int64),
    "bytes_s2c": np.dtype(np.int64),
    "first_ts_ns": np.dtype(np.int64),
    "last_ts_ns": np.dtype(np.int64),
    "head_ts_ns": np.dtype(np.int64),
    "tail_ts_ns": np.dtype(np.int64),
    "tcp_flags_c2s": np.dtype(np.uint8),
    "tcp_flags_s2c": np.dtype(np.uint8),
    "server_rule": np.dtype(np.uint8),
    "first_sender": np.dtype(np.uint8),
    "syn_sender": np.dtype(np.int8),
    "synack_sender": np.dtype(np.int8),
    "syn_start": np.dtype(np.bool_),
    "start_kind": np.dtype(np.uint8),
    "key_hash": np.dtype(np.uint64),
    "payload_file_c2s": np.dtype((np.uint16, (PAYLOAD_SLOTS,))),
    "payload_pkt_c2s": np.dtype((np.int64, (PAYLOAD_SLOTS,))),
    "payload_file_s2c": np.dtype((np.uint16, (PAYLOAD_SLOTS,))),
    "payload_pkt_s2c": np.dtype((np.int64, (PAYLOAD_SLOTS,))),
    "evidence_sig_c2s": np.dtype(np.uint8),
    "evidence_sig_s2c": np.dtype(np.uint8),
    "evidence_file_c2s": np.dtype(np.uint16),
    "evidence_file_s2c": np.dtype(np.uint16),
    "evidence_pkt_c2s": np.dtype(np.int64),
    "evidence_pkt_s2c": np.dtype(np.int64),
    "server_name": np.dtype(f"S{SERVER_NAME_BYTES}"),
    "said_c2s": np.dtype(object),
    "said_s2c": np.dtype(object),
    # connection columns (classifier.conn): Zeek's states, history, sequence spans
    "ip_bytes_c2s": np.dtype(np.int64),
    "ip_bytes_s2c": np.dtype(np.int64),
    "payload_c2s": np.dtype(np.int64),
    "payload_s2c": np.dtype(np.int64),
    "covered_c2s": np.dtype(np.int64),
    "covered_s2c": np.dtype(np.int64),
    "seq_first_c2s": np.dtype(np.uint32),
    "seq_first_s2c": np.dtype(np.uint32),
    "seq_hi_c2s": np.dtype(np.int64),
    "seq_hi_s2c": np.dtype(np.int64),
    "seq_syn_c2s": np.dtype(np.bool_),
    "seq_syn_s2c": np.dtype(np.bool_),
    "ack_first_c2s": np.dtype(np.uint32),
    "ack_first_s2c": np.dtype(np.uint32),
    "ack_hi_c2s": np.dtype(np.int64),
    "ack_hi_s2c": np.dtype(np.int64),
    "fsm_c": np.dtype(np.uint16),
    "fsm_s": np.dtype(np.uint16),
    "hist_code": np.dtype((np.uint8, (conn.HIST_SLOTS,))),
    "hist_seq": np.dtype((np.uint32, (12,))),
    "hist_cnt": np.dtype((np.int32, (6,))),
    # which capture file: the flow's first packet's file_index; the file group, part of the key
    "file_index": np.dtype(np.uint16),
    "key_group": np.dtype(np.uint16),
}
"""Column name -> dtype of ``FlowTable`` (payload columns are (n, PAYLOAD_SLOTS) matrices)."""

# Client/server column pairs that swap when a flow is turned around.
_PAIRS: tuple[tuple[str, str], ...] = (
    ("client_hi", "server_hi"),
    ("client_lo", "server_lo"),
    ("client_port", "server_port"),
    ("packets_c2s", "packets_s2c"),
    ("bytes_c2s", "bytes_s2c"),
    ("tcp_flags_c2s", "tcp_flags_s2c"),
    ("payload_file_c2s", "payload_file_s2c"),
    ("payload_pkt_c2s", "payload_pkt_s2c"),
    ("evidence_sig_c2s", "evidence_sig_s2c"),
    ("evidence_file_c2s", "evidence_file_s2c"),
    ("evidence_pkt_c2s", "evidence_pkt_s2c"),
    ("said_c2s", "said_s2c"),
    ("ip_bytes_c2s", "ip_bytes_s2c"),
    ("payload_c2s", "payload_s2c"),
    ("covered_c2s", "covered_s2c"),
    ("seq_first_c2s", "seq_first_s2c"),
    ("seq_hi_c2s", "seq_hi_s2c"),
    ("seq_syn_c2s", "seq_syn_s2c"),
    ("ack_first_c2s", "ack_first_s2c"),
    ("ack_hi_c2s", "ack_hi_s2c"),
    ("fsm_c", "fsm_s"),
)
_MINUS_ONE = (
    "syn_sender",
    "synack_sender",
    "payload_pkt_c2s",
    "payload_pkt_s2c",
    "evidence_pkt_c2s",
    "evidence_pkt_s2c",
)
"""Columns whose 'none' marker is -1."""
_U64 = np.uint64
_HASH_K = tuple(
    _U64(k)
    for k in (
        0x9E3779B97F4A7C15,
        0xC2B2AE3D27D4EB4F,
        0x165667B19E3779F9,
        0xD6E8FEB86659FD93,
        0xFF51AFD7ED558CCD,
    )
)


@dataclass
class FlowTable:
    """NumPy columns, one row per bidirectional flow (see the module docstring for each).

    >>> t = FlowTable.empty()
    >>> len(t), t.packets_c2s.dtype.name, t.payload_pkt_c2s.shape
    (0, 'int64', (0, 3))
    """

    ip_version: np.ndarray
    proto: np.ndarray
    client_hi: np.ndarray
    client_lo: np.ndarray
    client_port: np.ndarray
    server_hi: np.ndarray
    server_lo: np.ndarray
    server_port: np.ndarray
    packets_c2s: np.ndarray
    packets_s2c: np.ndarray
    bytes_c2s: np.ndarray
    bytes_s2c: np.ndarray
    first_ts_ns: np.ndarray
    last_ts_ns: np.ndarray
    head_ts_ns: np.ndarray
    tail_ts_ns: np.ndarray
    tcp_flags_c2s: np.ndarray
    tcp_flags_s2c: np.ndarray
    server_rule: np.ndarray
    first_sender: np.ndarray
    syn_sender: np.ndarray
    synack_sender: np.ndarray
    syn_start: np.ndarray
    start_kind: np.ndarray
    key_hash: np.ndarray
    payload_file_c2s: np.ndarray
    payload_pkt_c2s: np.ndarray
    payload_file_s2c: np.ndarray
    payload_pkt_s2c: np.ndarray
    evidence_sig_c2s: np.ndarray
    evidence_sig_s2c: np.ndarray
    evidence_file_c2s: np.ndarray
    evidence_file_s2c: np.ndarray
    evidence_pkt_c2s: np.ndarray
    evidence_pkt_s2c: np.ndarray
    server_name: np.ndarray
    said_c2s: np.ndarray
    said_s2c: np.ndarray
    ip_bytes_c2s: np.ndarray
    ip_bytes_s2c: np.ndarray
    payload_c2s: np.ndarray
    payload_s2c: np.ndarray
    covered_c2s: np.ndarray
    covered_s2c: np.ndarray
    seq_first_c2s: np.ndarray
    seq_first_s2c: np.ndarray
    seq_hi_c2s: np.ndarray
    seq_hi_s2c: np.ndarray
    seq_syn_c2s: np.ndarray
    seq_syn_s2c: np.ndarray
    ack_first_c2s: np.ndarray
    ack_first_s2c: np.ndarray
    ack_hi_c2s: np.ndarray
    ack_hi_s2c: np.ndarray
    fsm_c: np.ndarray
    fsm_s: np.ndarray
    hist_code: np.ndarray
    hist_seq: np.ndarray
    hist_cnt: np.ndarray
    file_index: np.ndarray
    key_group: np.ndarray

    def __len__(self) -> int:
        return int(self.key_hash.shape[0])

    @classmethod
    def empty(cls, n: int = 0) -> FlowTable:
        """A table of ``n`` rows with every column allocated (zeros; -1 for 'none' markers)."""
        cols = {name: np.zeros(n, dtype=dt) for name, dt in FLOW_DTYPES.items()}
        for name, dt in FLOW_DTYPES.items():
            if dt == np.dtype(object):
                cols[name].fill(None)
        for name in _MINUS_ONE:
            cols[name].fill(-1)
        conn.init_columns(cols)
        return cls(**cols)

    def columns(self) -> dict[str, np.ndarray]:
        """Column name -> array, in ``FLOW_DTYPES`` order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def concat(cls, tables: Sequence[FlowTable]) -> FlowTable:
        """Rows of ``tables`` one after the other (no merging: see ``merge`` for that)."""
        if not tables:
            return cls.empty()
        if len(tables) == 1:
            return tables[0]
        return cls(**{f.name: np.concatenate([getattr(t, f.name) for t in tables]) for f in fields(cls)})

    def take(self, idx: np.ndarray) -> FlowTable:
        """Rows ``idx`` (integer indices or a boolean mask) as a new table."""
        idx = np.asarray(idx)
        if idx.dtype == np.bool_:
            idx = np.flatnonzero(idx)
        return FlowTable(**{f.name: np.take(getattr(self, f.name), idx, axis=0) for f in fields(self)})

    def copy(self) -> FlowTable:
        """A deep copy (tables returned by this module may share arrays with their inputs)."""
        return FlowTable(**{f.name: getattr(self, f.name).copy() for f in fields(self)})

    def equals(self, other: FlowTable, chunking: bool = False) -> bool:
        """True when every column has the same dtype, shape and values.

        ``chunking=True`` compares the flows of one capture cut into chunks differently: the
        retransmission/hole figures (``conn.CHUNK_DEPENDENT``) are compared without their T and G parts.
        """
        skip = conn.CHUNK_DEPENDENT if chunking else ()
        same = all(
            a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
            for (name, a), b in zip(self.columns().items(), other.columns().values(), strict=True)
            if name not in skip
        )
        if not same or not chunking:
            return same
        mine, theirs = conn.chunk_exact_history(self), conn.chunk_exact_history(other)
        return all(np.array_equal(x, y) for x, y in zip(mine, theirs, strict=True))

    def row(self, i: int) -> dict[str, object]:
        """Row ``i`` as plain Python values, with addresses rendered as text (for tests and debugging)."""
        out: dict[str, object] = {}
        for name, col in self.columns().items():
            v = col[i]
            out[name] = v.tolist() if isinstance(v, np.ndarray) else v.item() if isinstance(v, np.generic) else v
        ver = int(self.ip_version[i])
        out["client"] = words_to_addr(int(self.client_hi[i]), int(self.client_lo[i]), ver)
        out["server"] = words_to_addr(int(self.server_hi[i]), int(self.server_lo[i]), ver)
        out["server_rule_name"] = SERVER_RULES[int(self.server_rule[i])]
        return out

    def total_packets(self) -> np.ndarray:
        """Packets each flow carried, both directions."""
        return self.packets_c2s + self.packets_s2c

    def total_bytes(self) -> np.ndarray:
        """Wire bytes each flow carried, both directions."""
        return self.bytes_c2s + self.bytes_s2c


@dataclass
class PacketTags:
    """Per-packet results of the payload-evidence stage for one batch, for the flow stage to aggregate.

    ``sig`` has one uint8 per packet of the batch (a signature code, 0: nothing recognised);
    ``name_rows`` lists the packets (batch row numbers) that carried a TLS server name and
    ``names`` the names (``S{SERVER_NAME_BYTES}``).  Flows keep, per direction, the first
    packet with a non-zero code, and the first server name, in capture order.

    >>> t = PacketTags.none(3)
    >>> t.sig.tolist(), t.name_rows.size
    ([0, 0, 0], 0)
    """

    sig: np.ndarray
    name_rows: np.ndarray
    names: np.ndarray
    said_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # sorted
    said: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype="S1"))  # what those packets said

    @classmethod
    def none(cls, n: int) -> PacketTags:
        """Tags of ``n`` packets of which nothing was recognised."""
        return cls(np.zeros(n, dtype=np.uint8), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=f"S{SERVER_NAME_BYTES}"))

    def take(self, keep: np.ndarray) -> PacketTags:
        """The tags of the packets where the bool mask ``keep`` is set (renumbered)."""
        newpos = np.cumsum(keep) - 1
        k_name, k_said = keep[self.name_rows], keep[self.said_rows]
        return PacketTags(self.sig[keep], newpos[self.name_rows[k_name]], self.names[k_name],
                          newpos[self.said_rows[k_said]], self.said[k_said])  # fmt: skip

    @classmethod
    def concat(cls, tags: Sequence[PacketTags], sizes: Sequence[int]) -> PacketTags:
        """Tags of consecutive batches of ``sizes`` packets as the tags of their concatenation."""
        base = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        said = [t.said for t in tags if t.said.size]
        return cls(
            np.concatenate([t.sig for t in tags]),
            np.concatenate([t.name_rows + b for t, b in zip(tags, base, strict=True)]),
            np.concatenate([t.names for t in tags]).astype(f"S{SERVER_NAME_BYTES}"),
            np.concatenate([t.said_rows + b for t, b in zip(tags, base, strict=True)]),
            np.concatenate(said) if said else np.zeros(0, dtype="S1"),
        )


# --------------------------------------------------------------------------- helpers


def addr_to_words(addr: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[int, int, int]:
    """``(hi, lo, ip_version)`` of an address in the capture columns' IPv4-mapped layout.

    >>> [hex(w) for w in addr_to_words("192.0.2.1")[:2]]
    ['0x0', '0xffffc0000201']
    """
    ip = ipaddress.ip_address(addr)
    if ip.version == 4:
        return 0, int(IPV4_MAPPED_LO_PREFIX) | int(ip), 4
    v = int(ip)
    return v >> 64, v & 0xFFFF_FFFF_FFFF_FFFF, 6


def words_to_addr(hi: int, lo: int, ip_version: int) -> str:
    """Text form of an address stored as (hi, lo); IPv4 when ``ip_version`` is 4."""
    if ip_version == 4:
        return str(ipaddress.IPv4Address(lo & 0xFFFF_FFFF))
    return str(ipaddress.IPv6Address((hi << 64) | lo))


def make_batch(
    *,
    ts_ns: Sequence[int] | np.ndarray,
    src: Sequence[str] | np.ndarray,
    dst: Sequence[str] | np.ndarray,
    sport: Sequence[int] | np.ndarray | int,
    dport: Sequence[int] | np.ndarray | int,
    proto: Sequence[int] | np.ndarray | int = PROTO_TCP,
    tcp_flags: Sequence[int] | np.ndarray | int = 0,
    wire_len: Sequence[int] | np.ndarray | int = 60,
    payload_len: Sequence[int] | np.ndarray | int = 0,
    frag: Sequence[int] | np.ndarray | int = FRAG_NONE,
    pkt_index: Sequence[int] | np.ndarray | None = None,
    file_index: Sequence[int] | np.ndarray | int = 0,
    tcp_seq: Sequence[int] | np.ndarray | int = 0,
    tcp_ack: Sequence[int] | np.ndarray | int = 0,
    tcp_win: Sequence[int] | np.ndarray | int = 1,
) -> PacketBatch:
    """A ``PacketBatch`` from per-packet values (tests, examples and benchmarks; no raw bytes).

    Addresses are text (one per packet) or an ``(n, 2)`` uint64 array of (hi, lo) words;
    scalars broadcast; ``pkt_index`` defaults to 1..n.

    >>> b = make_batch(ts_ns=[0, 5], src=["192.0.2.1", "192.0.2.2"], dst=["192.0.2.2", "192.0.2.1"],
    ...                sport=[40000, 80], dport=[80, 40000], tcp_flags=[0x02, 0x12])
    >>> len(b), b.ip_version.tolist()
    (2, [4, 4])
    """
    ts = np.asarray(ts_ns, dtype=np.int64)
    n = ts.shape[0]

    def words(addrs: Sequence[str] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if isinstance(addrs, np.ndarray) and addrs.dtype == np.uint64:
            hi, lo = addrs[:, 0].copy(), addrs[:, 1].copy()
            ver = np.where((hi == 0) & ((lo >> _U64(32)) == _U64(0xFFFF)), 4, 6).astype(np.uint8)
            return hi, lo, ver
        triples = [addr_to_words(a) for a in addrs]
        hi = np.array([t[0] for t in triples], dtype=np.uint64)
        lo = np.array([t[1] for t in triples], dtype=np.uint64)
        return hi, lo, np.array([t[2] for t in triples], dtype=np.uint8)

    def col(v: object, dt: type) -> np.ndarray:
        return np.broadcast_to(np.asarray(v, dtype=dt), (n,)).copy()

    sh, sl, sv = words(src)
    dh, dl, _ = words(dst)
    payload = col(payload_len, np.int32)
    return PacketBatch(
        ts_ns=ts,
        wire_len=col(wire_len, np.uint32),
        ip_version=sv,
        src_hi=sh,
        src_lo=sl,
        dst_hi=dh,
        dst_lo=dl,
        proto=col(proto, np.uint8),
        sport=col(sport, np.uint16),
        dport=col(dport, np.uint16),
        tcp_flags=col(tcp_flags, np.uint8),
        frag=col(frag, np.uint8),
        payload_off=np.where(payload > 0, 0, -1).astype(np.int64),
        payload_len=payload,
        pkt_index=np.arange(1, n + 1, dtype=np.int64) if pkt_index is None else col(pkt_index, np.int64),
        file_index=col(file_index, np.uint16),
        data=np.zeros(0, dtype=np.uint8),
        stats=CaptureStats(packets=n),
        tcp_seq=col(np.asarray(tcp_seq) % (1 << 32), np.uint32),
        tcp_ack=col(np.asarray(tcp_ack) % (1 << 32), np.uint32),
        tcp_win=col(tcp_win, np.uint16),
        tcp_len=payload.copy(),
        ip_len=(col(wire_len, np.int64) - 14).clip(0).astype(np.uint32),
    )


def _endpoint_gt(
    a_hi: np.ndarray | None,
    a_lo: np.ndarray,
    a_port: np.ndarray,
    b_hi: np.ndarray | None,
    b_lo: np.ndarray,
    b_port: np.ndarray,
) -> np.ndarray:
    """Boolean mask: endpoint a sorts after endpoint b by (hi, lo, port); hi None means all zero."""
    gt = a_lo > b_lo
    eq = a_lo == b_lo
    eq &= a_port > b_port
    gt |= eq
    if a_hi is not None and b_hi is not None:
        gt &= a_hi == b_hi
        gt |= a_hi > b_hi
    return gt


def _pp_word(
    a_port: np.ndarray, b_port: np.ndarray, proto: np.ndarray, ip_version: np.ndarray, group: np.ndarray | None = None
) -> np.ndarray:
    """Pack (group, a_port, b_port, proto, ip_version) of canonical keys into one uint64."""
    w = a_port.astype(np.uint64) << _U64(32)
    if group is not None:
        w |= group.astype(np.uint64) << _U64(48)
    w |= b_port.astype(np.uint64) << _U64(16)
    w |= proto.astype(np.uint64) << _U64(8)
    w |= ip_version.astype(np.uint64)
    return w


_M32 = _U64(0xFFFF_FFFF)
_Y_V4 = _U64(0x0000_FFFF_0000_FFFF)  # (a_lo >> 32, b_lo >> 32) of two IPv4-mapped addresses


def _finish_hash(h: np.ndarray) -> np.ndarray:
    """Last mixing step of the key hash, in place (tests replace it to force collisions)."""
    t = h >> _U64(31)
    h ^= t
    h *= _HASH_K[0]
    return h


def _key_hash(
    x: np.ndarray,
    w: np.ndarray,
    a_hi: np.ndarray | None = None,
    a_lo: np.ndarray | None = None,
    b_hi: np.ndarray | None = None,
    b_lo: np.ndarray | None = None,
) -> np.ndarray:
    """64-bit hash of canonical keys; IPv4 keys need only x and w (the other terms are 0).

    ``x`` packs the low 32 bits of a_lo (high half) and b_lo (low half); ``w`` is the
    ``_pp_word``.  Multiply-xor: the high bits, which the batch sort uses, mix every input bit.
    """
    h = np.multiply(x, _HASH_K[0])
    t = np.multiply(w, _HASH_K[1])
    h ^= t
    if a_lo is not None and b_lo is not None:
        y = ((a_lo >> _U64(32)) << _U64(32)) | (b_lo >> _U64(32))
        y ^= _Y_V4
        np.multiply(y, _HASH_K[2], out=t)
        h ^= t
    if a_hi is not None and b_hi is not None:
        np.multiply(a_hi, _HASH_K[3], out=t)
        h ^= t
        np.multiply(b_hi, _HASH_K[4], out=t)
        h ^= t
    return _finish_hash(h)


def _select(rev: np.ndarray, mask: np.ndarray, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) = (dst, src) where ``rev`` else (src, dst); ``mask`` is rev as all-ones words."""
    d = src ^ dst
    d &= mask.astype(d.dtype, copy=False)
    return src ^ d, dst ^ d


def _packet_keys(
    batch: PacketBatch, groups: np.ndarray | None = None
) -> tuple[np.ndarray, tuple[np.ndarray | None, ...], np.ndarray, bool]:
    """Per packet: rev (it travels b -> a), the exact key words, the key hash, and whether v6 words are used.

    Words are ``(x, w)`` for an all-IPv4 batch and ``(a_hi, a_lo, b_hi, b_lo, w)`` otherwise;
    both give the same hash and the same order for the same key.
    """
    n = len(batch)
    v4 = bool((batch.ip_version == 4).all())
    if v4:
        s32 = batch.src_lo.astype(np.uint32)
        d32 = batch.dst_lo.astype(np.uint32)
        rev = s32 > d32
        eq = s32 == d32
        if eq.any():
            eq &= batch.sport > batch.dport
            rev |= eq
        del eq
    else:
        rev = _endpoint_gt(batch.src_hi, batch.src_lo, batch.sport, batch.dst_hi, batch.dst_lo, batch.dport)
    m8 = rev.view(np.uint8)
    m16 = np.negative(m8.astype(np.uint16))  # 0xffff where rev
    ap, bp = _select(rev, m16, batch.sport, batch.dport)
    w4 = np.empty((n, 4), dtype="<u2")
    w4[:, 0] = (batch.proto.astype(np.uint16) << 8) | batch.ip_version
    w4[:, 1] = bp
    w4[:, 2] = ap
    w4[:, 3] = 0 if groups is None else groups[batch.file_index]  # capture files kept apart
    w = w4.view("<u8").reshape(n).astype(np.uint64, copy=False)  # == _pp_word(ap, bp, proto, ip_version, group)
    del ap, bp
    if v4:
        m32 = m16.astype(np.uint32)
        m32 |= m32 << 16
        a32, b32 = _select(rev, m32, s32, d32)
        x2 = np.empty((n, 2), dtype="<u4")
        x2[:, 0] = b32
        x2[:, 1] = a32
        x = x2.view("<u8").reshape(n).astype(np.uint64, copy=False)
        return rev, (x, w), _key_hash(x, w), False
    m64 = m16.astype(np.uint64)
    m64 |= m64 << _U64(16)
    m64 |= m64 << _U64(32)
    a_lo, b_lo = _select(rev, m64, batch.src_lo, batch.dst_lo)
    a_hi, b_hi = _select(rev, m64, batch.src_hi, batch.dst_hi)
    x = ((a_lo & _M32) << _U64(32)) | (b_lo & _M32)
    return rev, (a_hi, a_lo, b_hi, b_lo, w), _key_hash(x, w, a_hi, a_lo, b_hi, b_lo), True


def _table_hash(t: FlowTable) -> np.ndarray:
    """key_hash of a canonical table's rows computed from its key columns (what batches store)."""
    x = ((t.client_lo & _M32) << _U64(32)) | (t.server_lo & _M32)
    w = _pp_word(t.client_port, t.server_port, t.proto, t.ip_version, t.key_group)
    return _key_hash(x, w, t.client_hi, t.client_lo, t.server_hi, t.server_lo)


def _table_words(t: FlowTable) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """The canonical key words (a_hi, a_lo, b_hi, b_lo, w) of a canonical table's rows."""
    v6 = bool(t.client_hi.any() or t.server_hi.any())
    w = _pp_word(t.client_port, t.server_port, t.proto, t.ip_version, t.key_group)
    if v6:
        return t.client_hi, t.client_lo, t.server_hi, t.server_lo, w
    return None, t.client_lo, None, t.server_lo, w


def _words_differ(words: Iterable[np.ndarray | None], i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Mask over pairs (i, j): the canonical key words differ."""
    out = np.zeros(i.shape[0], dtype=bool)
    for w in words:
        if w is not None:
            out |= w[i] != w[j]
    return out


def _total_order(h: np.ndarray, words: Sequence[np.ndarray | None], tiebreak: np.ndarray) -> np.ndarray:
    """Stable order by (hash, a_hi, a_lo, b_hi, b_lo, w, tiebreak): the slow path when hashes collide."""
    keys = [tiebreak] + [w for w in reversed(words) if w is not None] + [h]
    return np.lexsort(keys)


# --------------------------------------------------------------------------- batch -> flows


def flows_from_batch(
    batch: PacketBatch, idle_timeout_ns: int, tags: PacketTags | None = None, groups: np.ndarray | None = None
) -> FlowTable:
    """One batch's packets as a partial flow table (rows sorted by key, then flow order).

    Merge partial tables of consecutive batches with ``merge`` and close the whole
    capture's table with ``finalize`` (``FlowAggregator`` does both).  ``tags`` (the
    evidence stage's per-packet results for this batch) fill the evidence columns.  ``groups``
    (uint16 per file_index) makes the file's group part of the flow key: flows of different groups
    never merge (None: one group, files merge).

    >>> b = make_batch(ts_ns=[0, 10, 20], src=["192.0.2.1", "192.0.2.2", "192.0.2.1"],
    ...                dst=["192.0.2.2", "192.0.2.1", "192.0.2.2"], sport=[50000, 80, 50000],
    ...                dport=[80, 50000, 80], tcp_flags=[0x02, 0x12, 0x10], wire_len=[60, 60, 54])
    >>> t = finalize(flows_from_batch(b, idle_timeout_ns=0))
    >>> len(t), int(t.packets_c2s[0] + t.packets_s2c[0]), int(t.total_bytes()[0])
    (1, 3, 174)
    """
    n = len(batch)
    if n == 0:
        return FlowTable.empty()
    timeout = int(idle_timeout_ns)
    if timeout < 0:
        raise ValueError(f"idle_timeout_ns must be >= 0, not {timeout}")

    # ---- canonical key per packet: endpoint a is the lower (hi, lo, port)
    rev, words, h, v6 = _packet_keys(batch, groups)

    # ---- group packets by key, capture order within a key: one sort of (hash bits | index)
    nbits = max(1, (n - 1).bit_length())
    low = _U64((1 << nbits) - 1)
    sk = h & ~low
    sk |= np.arange(n, dtype=np.uint64)
    sk.sort()
    order = (sk & low).view(np.int64)
    hs = sk >> _U64(nbits)
    newkey = np.empty(n, dtype=bool)
    newkey[0] = True
    np.not_equal(hs[1:], hs[:-1], out=newkey[1:])
    del sk, hs
    # exact check: every packet's key words equal its group's first packet's
    gid_s = np.cumsum(newkey, dtype=np.int32)
    gid_s -= 1
    gid = np.empty(n, dtype=np.int32)
    gid[order] = gid_s
    del gid_s
    rep = order[np.flatnonzero(newkey)]
    collide = any(wd is not None and bool((wd != wd[rep][gid]).any()) for wd in words)
    del gid, rep
    if collide:  # packets of different keys share hash bits: exact (slower) grouping
        order = _total_order(h, words, np.arange(n))
        newkey[1:] = _words_differ(words, order[1:], order[:-1])

    # ---- flow boundaries: key change, idle timeout, FIN/RST -> bare SYN
    ts_s = batch.ts_ns[order]
    brk = newkey.copy()
    if timeout > 0 and n > 1:
        gap = ts_s[1:] - ts_s[:-1]
        np.abs(gap, out=gap)
        brk[1:] |= gap > timeout
        del gap
    flags_s = batch.tcp_flags[order]
    synf = np.flatnonzero(flags_s & TCP_SYN)
    finrst = np.flatnonzero(flags_s & (TCP_FIN | TCP_RST))
    synf = synf[batch.proto[order[synf]] == PROTO_TCP]
    finrst = finrst[batch.proto[order[finrst]] == PROTO_TCP]
    ack = (flags_s[synf] & TCP_ACK) != 0
    bare = synf[~ack]  # SYN without ACK
    synack = synf[ack]
    key_pos = np.flatnonzero(newkey)
    soft_pos = np.zeros(0, dtype=np.int64)
    if bare.size:
        seg_pos = np.flatnonzero(brk)
        seg_start = seg_pos[np.searchsorted(seg_pos, bare, side="right") - 1]
        prev_bare = np.empty_like(bare)
        prev_bare[0] = -1
        prev_bare[1:] = bare[:-1]
        since = np.maximum(seg_start, prev_bare)
        fin_between = np.searchsorted(finrst, bare) - np.searchsorted(finrst, since)
        hard = (bare != seg_start) & (fin_between > 0)
        brk[bare[hard]] = True
        # the first bare SYN of a key's run, still inside its open leading flow: soft split
        run_start = key_pos[np.searchsorted(key_pos, bare, side="right") - 1]
        first_in_run = np.ones(bare.size, dtype=bool)
        first_in_run[1:] = run_start[1:] != run_start[:-1]
        cand = first_in_run & (bare != run_start)
        if cand.any():
            brk_pos = np.flatnonzero(brk)
            last_brk = brk_pos[np.searchsorted(brk_pos, bare[cand], side="right") - 1]
            soft_pos = bare[cand][last_brk == run_start[cand]]
            brk[soft_pos] = True

    starts = np.flatnonzero(brk)
    rows = starts.size
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:]
    ends[-1] = n
    out = FlowTable.empty(rows)

    # ---- per-row aggregates
    rev_s = rev[order]
    count = ends - starts
    p_rev = np.add.reduceat(rev_s.view(np.uint8), starts, dtype=np.int64)
    wl_s = batch.wire_len[order]
    b_all = np.add.reduceat(wl_s, starts, dtype=np.int64)
    wl_s *= rev_s
    b_rev = np.add.reduceat(wl_s, starts, dtype=np.int64)
    del wl_s
    out.packets_c2s = count - p_rev
    out.packets_s2c = p_rev
    out.bytes_c2s = b_all - b_rev
    out.bytes_s2c = b_rev
    f_rev = flags_s * rev_s
    out.tcp_flags_s2c = np.bitwise_or.reduceat(f_rev, starts)
    flags_s ^= f_rev  # leaves the a -> b packets' flags
    out.tcp_flags_c2s = np.bitwise_or.reduceat(flags_s, starts)
    del f_rev, flags_s
    out.head_ts_ns = ts_s[starts]
    out.tail_ts_ns = ts_s[ends - 1]
    out.first_ts_ns = np.minimum.reduceat(ts_s, starts)
    out.last_ts_ns = np.maximum.reduceat(ts_s, starts)
    out.first_sender = rev_s[starts].view(np.uint8)

    first = order[starts]
    out.ip_version = batch.ip_version[first]
    out.proto = batch.proto[first]
    out.key_hash = h[first]
    if v6:
        a_hi, a_lo, b_hi, b_lo, w = words
        assert a_hi is not None and a_lo is not None and b_hi is not None and b_lo is not None
        out.client_hi, out.client_lo = a_hi[first], a_lo[first]
        out.server_hi, out.server_lo = b_hi[first], b_lo[first]
    else:
        x, w = words
        assert x is not None
        xr = x[first]
        out.client_lo = IPV4_MAPPED_LO_PREFIX | (xr >> _U64(32))
        out.server_lo = IPV4_MAPPED_LO_PREFIX | (xr & _M32)
    assert w is not None
    wr = w[first]
    out.client_port = ((wr >> _U64(32)) & _U64(0xFFFF)).astype(np.uint16)
    out.server_port = ((wr >> _U64(16)) & _U64(0xFFFF)).astype(np.uint16)
    out.key_group = (wr >> _U64(48)).astype(np.uint16)
    out.file_index = batch.file_index[first]

    kind = out.start_kind
    kind[np.searchsorted(starts, key_pos)] = START_OPEN
    if soft_pos.size:
        kind[np.searchsorted(starts, soft_pos)] = START_SOFT

    if bare.size:
        r = np.searchsorted(starts, bare, side="right") - 1
        out.syn_start[r[starts[r] == bare]] = True
        _first_sender_of(out.syn_sender, r, rev_s[bare])
    if synack.size:
        r = np.searchsorted(starts, synack, side="right") - 1
        _first_sender_of(out.synack_sender, r, rev_s[synack])

    _payload_refs(batch, order, starts, rev_s, out)
    conn.batch_columns(batch, order, starts, rev_s, out)
    if tags is not None:
        _evidence_refs(batch, tags, order, starts, rev_s, out)
    return out


def _first_sender_of(target: np.ndarray, row: np.ndarray, rev: np.ndarray) -> None:
    """Set ``target[row]`` to the sender (0 a/client, 1 b/server) of each row's first listed packet."""
    first = np.ones(row.size, dtype=bool)
    first[1:] = row[1:] != row[:-1]
    target[row[first]] = rev[first]


def _payload_refs(batch: PacketBatch, order: np.ndarray, starts: np.ndarray, rev_s: np.ndarray, out: FlowTable) -> None:
    """Fill the payload_file/payload_pkt columns: the first packets with payload, each way."""
    has = batch.payload_len > 0
    has &= batch.frag != FRAG_LATER
    if not has.any():
        return
    has_s = has[order]
    del has
    back_s = has_s & rev_s
    n_back = np.add.reduceat(back_s.view(np.uint8), starts, dtype=np.int64)
    n_all = np.add.reduceat(has_s.view(np.uint8), starts, dtype=np.int64)
    has_s ^= back_s  # leaves the a -> b payload packets
    for mask, count, fcol, pcol in (
        (has_s, n_all - n_back, out.payload_file_c2s, out.payload_pkt_c2s),
        (back_s, n_back, out.payload_file_s2c, out.payload_pkt_s2c),
    ):
        pos = np.flatnonzero(mask)  # this way's payload packets, row after row
        before = np.cumsum(count)
        before -= count
        pflat, fflat = pcol.reshape(-1), fcol.reshape(-1)
        for k in range(PAYLOAD_SLOTS):
            rows = np.flatnonzero(count > k)
            if not rows.size:
                break
            src = order[pos[before[rows] + k]]
            dest = rows * PAYLOAD_SLOTS + k
            pflat[dest] = batch.pkt_index[src]
            fflat[dest] = batch.file_index[src]


def _evidence_refs(
    batch: PacketBatch, tags: PacketTags, order: np.ndarray, starts: np.ndarray, rev_s: np.ndarray, out: FlowTable
) -> None:
    """Fill the evidence columns: per row and direction the first tagged packet; the first server name."""
    if tags.sig.shape[0] != len(batch):
        raise ValueError(f"tags cover {tags.sig.shape[0]} packets, the batch has {len(batch)}")
    pos = np.flatnonzero(tags.sig[order])  # tagged packets in sorted order (few)
    if not pos.size:
        return
    row = np.searchsorted(starts, pos, side="right") - 1
    src_all = order[pos]
    back = rev_s[pos]
    for way, scol, fcol, pcol in (
        (False, out.evidence_sig_c2s, out.evidence_file_c2s, out.evidence_pkt_c2s),
        (True, out.evidence_sig_s2c, out.evidence_file_s2c, out.evidence_pkt_s2c),
    ):
        sel = back == way
        r, src = row[sel], src_all[sel]
        first = np.ones(r.size, dtype=bool)
        first[1:] = r[1:] != r[:-1]
        src, r = src[first], r[first]
        scol[r] = tags.sig[src]
        fcol[r] = batch.file_index[src]
        pcol[r] = batch.pkt_index[src]
        if tags.said_rows.size:  # what that packet said, where the evidence stage extracted something
            at = np.minimum(np.searchsorted(tags.said_rows, src), tags.said_rows.size - 1)
            hit = tags.said_rows[at] == src
            (out.said_s2c if way else out.said_c2s)[r[hit]] = tags.said[at[hit]].astype(object)
    if tags.name_rows.size:
        # where each named packet sits among the tagged ones (a name comes only with a code)
        k = np.argsort(src_all, kind="stable")
        at = np.searchsorted(src_all[k], tags.name_rows)
        at = np.minimum(at, k.size - 1)
        ok = src_all[k[at]] == tags.name_rows
        spos, names = k[at[ok]], tags.names[ok]
        o = np.argsort(spos, kind="stable")
        r = row[spos[o]]
        first = np.ones(r.size, dtype=bool)
        first[1:] = r[1:] != r[:-1]
        out.server_name[r[first]] = names[o[first]]


# --------------------------------------------------------------------------- merging


def _is_sorted(t: FlowTable) -> bool:
    """True when rows are in key_hash order (the order every function here returns)."""
    kh = t.key_hash
    return bool(kh.size < 2 or (kh[1:] >= kh[:-1]).all())


def canonical(table: FlowTable) -> FlowTable:
    """The table with client = lower endpoint again (server_rule 0), sorted by key.

    >>> canonical(FlowTable.empty()).server_rule.size
    0
    """
    t = table
    if t.server_rule.any():
        gt = _endpoint_gt(t.client_hi, t.client_lo, t.client_port, t.server_hi, t.server_lo, t.server_port)
        t = _swap_rows(t, gt)
        t.server_rule = np.zeros(len(t), dtype=np.uint8)
    if not _is_sorted(t):
        t = t.take(_total_order(t.key_hash, _table_words(t), np.arange(len(t))))
    return t


def _swap_rows(t: FlowTable, mask: np.ndarray) -> FlowTable:
    """Copy of ``t`` with client and server exchanged on the rows in ``mask``."""
    cols = t.columns()
    if mask.any():
        for c, s in _PAIRS:
            m = mask[:, None] if cols[c].ndim == 2 else mask
            cols[c], cols[s] = np.where(m, cols[s], cols[c]), np.where(m, cols[c], cols[s])
        cols["first_sender"] = cols["first_sender"] ^ mask.astype(np.uint8)
        for name in ("syn_sender", "synack_sender"):
            v = cols[name]
            cols[name] = np.where(mask & (v >= 0), 1 - v, v).astype(np.int8)
        conn.swap_columns(cols, mask)
    return FlowTable(**cols)


def _swap_rows_inplace(t: FlowTable, mask: np.ndarray) -> FlowTable:
    """``_swap_rows`` done on ``t`` itself (its arrays are the caller's own)."""
    idx = np.flatnonzero(mask)
    if idx.size:
        for c, s in _PAIRS:
            a, b = _rowwise(getattr(t, c)), _rowwise(getattr(t, s))
            tmp = a[idx]
            a[idx] = b[idx]
            b[idx] = tmp
        t.first_sender[idx] ^= np.uint8(1)
        for name in ("syn_sender", "synack_sender"):
            v = getattr(t, name)
            w = v[idx]
            v[idx] = np.where(w >= 0, 1 - w, w)
        conn.swap_columns(vars(t), mask, inplace=True)
    return t


def _fold(t: FlowTable, head: np.ndarray, src: FlowTable, rows: np.ndarray) -> None:
    """In place: fold rows ``rows`` of ``src`` into rows ``head`` of ``t`` (later flow parts; heads unique)."""
    if not head.size:
        return
    conn.fold(t, head, src, rows)
    for name in ("packets_c2s", "packets_s2c", "bytes_c2s", "bytes_s2c"):
        getattr(t, name)[head] += np.take(getattr(src, name), rows)
    for name in ("tcp_flags_c2s", "tcp_flags_s2c"):
        getattr(t, name)[head] |= np.take(getattr(src, name), rows)
    t.tail_ts_ns[head] = np.take(src.tail_ts_ns, rows)
    t.first_ts_ns[head] = np.minimum(t.first_ts_ns[head], np.take(src.first_ts_ns, rows))
    t.last_ts_ns[head] = np.maximum(t.last_ts_ns[head], np.take(src.last_ts_ns, rows))
    for name in ("syn_sender", "synack_sender"):
        col = getattr(t, name)
        hv = col[head]
        col[head] = np.where(hv >= 0, hv, np.take(getattr(src, name), rows))
    # evidence: the head's own where it has one (it came first), else the folded row's
    for sname, fname, pname, said in (
        ("evidence_sig_c2s", "evidence_file_c2s", "evidence_pkt_c2s", "said_c2s"),
        ("evidence_sig_s2c", "evidence_file_s2c", "evidence_pkt_s2c", "said_s2c"),
    ):
        take = np.flatnonzero(getattr(t, sname)[head] == 0)
        if take.size:
            h, r = head[take], rows[take]
            for name in (sname, fname, pname, said):
                getattr(t, name)[h] = np.take(getattr(src, name), r)
    take = np.flatnonzero(t.server_name[head] == b"")
    if take.size:
        t.server_name[head[take]] = np.take(src.server_name, rows[take])
    # payload refs: the head's filled slots, then the folded row's, PAYLOAD_SLOTS at most
    h_base = head * PAYLOAD_SLOTS
    r_base = rows * PAYLOAD_SLOTS
    for fname, pname in (("payload_file_c2s", "payload_pkt_c2s"), ("payload_file_s2c", "payload_pkt_s2c")):
        pflat, fflat = getattr(t, pname).reshape(-1), getattr(t, fname).reshape(-1)
        sp, sf = getattr(src, pname).reshape(-1), getattr(src, fname).reshape(-1)
        filled = np.zeros(head.size, dtype=np.int64)
        for j in range(PAYLOAD_SLOTS):
            filled += pflat[h_base + j] >= 0
        for j in range(PAYLOAD_SLOTS):
            room = np.flatnonzero(filled + j < PAYLOAD_SLOTS)
            if not room.size:
                break
            si = r_base[room] + j
            v = sp[si]
            ok = v >= 0
            dest = h_base[room[ok]] + filled[room[ok]] + j
            pflat[dest] = v[ok]
            fflat[dest] = sf[si[ok]]


_KEY_COLUMNS = (
    "ip_version",
    "proto",
    "client_hi",
    "client_lo",
    "client_port",
    "server_hi",
    "server_lo",
    "server_port",
    "key_group",
)


def _keys_differ(t1: FlowTable, i: np.ndarray, t2: FlowTable, j: np.ndarray) -> np.ndarray:
    """Mask over pairs: row i of t1 and row j of t2 have different flow keys."""
    out = np.zeros(i.shape[0], dtype=bool)
    for name in _KEY_COLUMNS:
        out |= np.take(getattr(t1, name), i) != np.take(getattr(t2, name), j)
    return out


def _rowwise(col: np.ndarray) -> np.ndarray:
    """1-D view of a column (matrix rows as opaque items) so fancy indexing stays fast."""
    if col.ndim == 1:
        return col
    return col.view(np.dtype((np.void, col.itemsize * col.shape[1]))).reshape(col.shape[0])


def _edge_plan(
    ta: FlowTable, left: np.ndarray, tb: FlowTable, r0: np.ndarray, r1: np.ndarray, has_r1: np.ndarray, timeout: int
) -> dict[str, np.ndarray]:
    """Decide the joins where each key's rows in ``ta`` meet its rows in ``tb``.

    Per edge: ``left`` (row of ta) is the last flow before the edge, ``r0`` (row of tb,
    start_kind open) the first after it and, where ``has_r1``, ``r1`` its soft successor.
    Returns masks over edges: join0 (r0 folds into left), r1_into_r0, r1_into_l, and the
    new start_kind of r0 and of r1.
    """
    gap_ok = np.ones(left.size, dtype=bool)
    if timeout > 0:
        gap_ok = np.abs(tb.head_ts_ns[r0] - ta.tail_ts_ns[left]) <= timeout
    l_fin = ((ta.tcp_flags_c2s[left] | ta.tcp_flags_s2c[left]) & (TCP_FIN | TCP_RST)) != 0
    # whether the flow L ends in saw FIN/RST is L's own flags, except for an open row that
    # neither saw FIN/RST nor starts with a bare SYN: it may continue a flow that did
    l_undecided = (ta.start_kind[left] == START_OPEN) & ~l_fin & ~ta.syn_start[left]
    r0_syn = tb.syn_start[r0]
    join0 = gap_ok & (~r0_syn | (~l_fin & ~l_undecided))
    soft0 = gap_ok & r0_syn & l_undecided
    r0_kind = np.where(soft0, START_SOFT, START_CLOSED).astype(np.uint8)
    r1_into_r0 = has_r1 & ~gap_ok  # r0 starts afresh (no FIN/RST in it): its soft row joins it
    r1_into_l = has_r1 & join0 & ~l_fin & ~l_undecided
    r1_kind = np.where(has_r1 & join0 & l_fin, START_CLOSED, START_SOFT).astype(np.uint8)
    return {
        "join0": join0,
        "r1_into_r0": r1_into_r0,
        "r1_into_l": r1_into_l,
        "r0_kind": r0_kind,
        "r1_kind": r1_kind,
    }


def merge(a: FlowTable, b: FlowTable, idle_timeout_ns: int) -> FlowTable:
    """Join the partial tables of two consecutive stretches of packets (``a`` first).

    Associative: ``merge(merge(x, y), z)`` equals ``merge(x, merge(y, z))`` column for
    column, so chunks and files may be combined in any grouping (keep their order).  The
    result is unoriented (client = lower endpoint); call ``finalize`` then ``orient``.

    >>> b1 = make_batch(ts_ns=[0], src=["192.0.2.1"], dst=["192.0.2.2"], sport=5000, dport=53, proto=17)
    >>> b2 = make_batch(ts_ns=[9], src=["192.0.2.2"], dst=["192.0.2.1"], sport=53, dport=5000, proto=17)
    >>> t = merge(flows_from_batch(b1, 0), flows_from_batch(b2, 0), idle_timeout_ns=0)
    >>> len(t), int(t.packets_c2s[0]), int(t.packets_s2c[0])
    (1, 1, 1)
    """
    timeout = int(idle_timeout_ns)
    a, b = canonical(a), canonical(b)
    na, nb = len(a), len(b)
    if na == 0:
        return b
    if nb == 0:
        return a
    akh, bkh = a.key_hash, b.key_hash
    ins = np.searchsorted(akh, bkh, side="right")
    # each key's first row in b, and a's last row with the same hash (if any)
    bfirst = np.ones(nb, dtype=bool)
    np.not_equal(bkh[1:], bkh[:-1], out=bfirst[1:])
    jb = np.flatnonzero(bfirst)
    ia = ins[jb] - 1
    cross = (ia >= 0) & (akh[np.maximum(ia, 0)] == bkh[jb])
    jb, ia = jb[cross], ia[cross]
    ea = np.flatnonzero(akh[1:] == akh[:-1])
    eb = np.flatnonzero(~bfirst)
    if _keys_differ(a, ea, a, ea + 1).any() or _keys_differ(b, eb - 1, b, eb).any() or _keys_differ(a, ia, b, jb).any():
        return _merge_exact(a, b, timeout)  # two keys share a 64-bit hash

    r0 = jb[b.start_kind[jb] == START_OPEN]
    left = ins[r0] - 1
    nxt = np.minimum(r0 + 1, nb - 1)
    has_r1 = (r0 + 1 < nb) & ~bfirst[nxt] & (b.start_kind[nxt] == START_SOFT)
    plan = _edge_plan(a, left, b, r0, nxt, has_r1, timeout)
    join0, r1_into_r0, r1_into_l = plan["join0"], plan["r1_into_r0"], plan["r1_into_l"]

    # ---- assemble: a's rows and b's kept rows interleaved by key, then fold the joins in
    n = na + nb
    pos_b = ins + np.arange(nb)
    pos_a = np.arange(na) + np.searchsorted(ins, np.arange(na), side="right")
    gone = np.concatenate([r0[join0], nxt[r1_into_r0 | r1_into_l]])
    keep_b = np.ones(nb, dtype=bool)
    keep_b[gone] = False
    kb = np.flatnonzero(keep_b)
    shift = np.zeros(n, dtype=np.int64)
    shift[pos_b[gone]] = 1
    np.cumsum(shift, out=shift)
    fa = pos_a - shift[pos_a]
    fb_all = pos_b - shift[pos_b]
    fb = fb_all[kb]
    cols = {}
    for name, acol in a.columns().items():
        out = np.empty((n - gone.size,) + acol.shape[1:], dtype=acol.dtype)
        ov = _rowwise(out)
        ov[fa] = _rowwise(acol)
        ov[fb] = np.take(_rowwise(getattr(b, name)), kb)
        cols[name] = out
    m = FlowTable(**cols)
    fl = fa[left]
    _fold(m, fl[join0], b, r0[join0])
    _fold(m, fb_all[r0[r1_into_r0]], b, nxt[r1_into_r0])
    _fold(m, fl[r1_into_l], b, nxt[r1_into_l])
    kept0 = ~join0
    m.start_kind[fb_all[r0[kept0]]] = plan["r0_kind"][kept0]
    kept1 = has_r1 & ~(r1_into_r0 | r1_into_l)
    m.start_kind[fb_all[nxt[kept1]]] = plan["r1_kind"][kept1]
    return m


def _merge_exact(a: FlowTable, b: FlowTable, timeout: int) -> FlowTable:
    """``merge`` when 64-bit key hashes collide: order rows by the exact key (slower)."""
    na, nb = len(a), len(b)
    n = na + nb
    both = FlowTable.concat([a, b])
    words = _table_words(both)
    order = _total_order(both.key_hash, words, np.arange(n))
    m = both.take(order)
    is_b = order >= na
    same = np.zeros(n, dtype=bool)
    same[1:] = m.key_hash[1:] == m.key_hash[:-1]
    same[1:] &= ~_keys_differ(m, np.arange(n - 1), m, np.arange(1, n))
    r0 = np.flatnonzero(same[1:] & is_b[1:] & ~is_b[:-1]) + 1
    r0 = r0[m.start_kind[r0] == START_OPEN]
    nxt = np.minimum(r0 + 1, n - 1)
    has_r1 = (r0 + 1 < n) & same[nxt] & (m.start_kind[nxt] == START_SOFT)
    left = r0 - 1
    plan = _edge_plan(m, left, m, r0, nxt, has_r1, timeout)
    join0, r1_into_r0, r1_into_l = plan["join0"], plan["r1_into_r0"], plan["r1_into_l"]
    src = m.copy()  # fold from the rows as they were
    _fold(m, left[join0], src, r0[join0])
    _fold(m, r0[r1_into_r0], src, nxt[r1_into_r0])
    _fold(m, left[r1_into_l], src, nxt[r1_into_l])
    kept0 = ~join0
    m.start_kind[r0[kept0]] = plan["r0_kind"][kept0]
    kept1 = has_r1 & ~(r1_into_r0 | r1_into_l)
    m.start_kind[nxt[kept1]] = plan["r1_kind"][kept1]
    keep = np.ones(n, dtype=bool)
    keep[r0[join0]] = False
    keep[nxt[r1_into_r0 | r1_into_l]] = False
    return m.take(np.flatnonzero(keep))


def finalize(table: FlowTable) -> FlowTable:
    """Close a whole capture's table: soft rows join their open row, every row becomes closed.

    Call it once, on the merge of all the capture's chunks: a finalized table cannot
    continue an earlier one (its first rows no longer join anything before them).

    >>> len(finalize(FlowTable.empty()))
    0
    """
    t = canonical(table)
    if len(t) == 0:
        return t
    soft = np.flatnonzero(t.start_kind == START_SOFT)
    soft = soft[soft > 0]
    if not soft.size:  # nothing to fold: the rows as they are, closed (a new start_kind column only)
        return replace(t, start_kind=np.zeros(len(t), dtype=FLOW_DTYPES["start_kind"]))
    head = soft - 1
    fin = ((t.tcp_flags_c2s[head] | t.tcp_flags_s2c[head]) & (TCP_FIN | TCP_RST)) != 0
    ok = (t.key_hash[head] == t.key_hash[soft]) & ~fin
    ok &= ~_keys_differ(t, head, t, soft)
    src = t.take(soft[ok])
    keep = np.ones(len(t), dtype=bool)
    keep[soft[ok]] = False
    at = np.cumsum(keep) - 1  # row numbers after the soft rows left
    t = t.take(keep)
    _fold(t, at[head[ok]], src, np.arange(len(src)))
    t.start_kind[:] = START_CLOSED
    return t


# --------------------------------------------------------------------------- server side


def orient(table: FlowTable, port_status: np.ndarray | None, *, owned: bool = False) -> FlowTable:
    """Decide each flow's server side (rules in ``SERVER_RULES`` order) and record the rule.

    ``port_status`` is the registry stage's ``(4, 65536)`` uint8 array (tcp, udp, sctp,
    dccp; ``ASSIGNED == 1``) or None to skip the ``registry`` rule.  ``owned``: ``table`` is
    unoriented and no one else holds its arrays, so its rows are turned around in place, in the
    order they are (no copy of every column, no sort by key).

    >>> b = make_batch(ts_ns=[0, 1], src=["192.0.2.9", "198.51.100.7"], dst=["198.51.100.7", "192.0.2.9"],
    ...                sport=[53, 61000], dport=[61000, 53], proto=17)
    >>> t = orient(finalize(flows_from_batch(b, 0)), None)
    >>> t.row(0)["server"], int(t.server_port[0]), t.row(0)["server_rule_name"]
    ('192.0.2.9', 53, 'ephemeral')
    """
    t = table if owned and not table.server_rule.any() else canonical(table)
    n = len(t)
    swap = np.zeros(n, dtype=bool)
    rule = np.zeros(n, dtype=np.uint8)
    todo = np.ones(n, dtype=bool)

    def decide(mask: np.ndarray, swap_if: np.ndarray, code: int) -> None:
        m = todo & mask
        swap[m] = swap_if[m]
        rule[m] = code
        todo[m] = False

    decide(t.syn_sender >= 0, t.syn_sender == SENDER_SERVER, RULE_SYN)
    decide(t.synack_sender >= 0, t.synack_sender == SENDER_CLIENT, RULE_SYN_ACK)
    cp, sp = t.client_port, t.server_port
    if port_status is not None:
        ps = np.asarray(port_status)
        if ps.ndim != 2 or ps.shape[1] != 65536 or ps.shape[0] < len(set(TRANSPORT_OF_PROTO.values())):
            raise ValueError(f"port_status must have shape (4, 65536), not {ps.shape}")
        lut = np.full(256, -1, dtype=np.int64)
        for proto, ti in TRANSPORT_OF_PROTO.items():
            lut[proto] = ti
        ti = lut[t.proto]
        known = ti >= 0
        tix = np.where(known, ti, 0)
        c_asg = (ps[tix, cp] == ASSIGNED) & known
        s_asg = (ps[tix, sp] == ASSIGNED) & known
        decide(c_asg != s_asg, c_asg, RULE_REGISTRY)
    c_dyn, s_dyn = cp >= DYNAMIC_LOW, sp >= DYNAMIC_LOW
    decide(c_dyn != s_dyn, s_dyn, RULE_EPHEMERAL)
    c_sys, s_sys = cp < SYSTEM_PORTS_END, sp < SYSTEM_PORTS_END
    decide(c_sys != s_sys, c_sys, RULE_LOWER_PORT)
    decide(np.ones(n, dtype=bool), t.first_sender == SENDER_SERVER, RULE_FIRST_PACKET)
    out = _swap_rows_inplace(t, swap) if owned and t is table else _swap_rows(t, swap)
    out.server_rule = rule
    return out


# --------------------------------------------------------------------------- streaming


_FLOW_INPUTS = (
    "ts_ns",
    "wire_len",
    "ip_version",
    "src_hi",
    "src_lo",
    "dst_hi",
    "dst_lo",
    "proto",
    "sport",
    "dport",
    "tcp_flags",
    "frag",
    "payload_len",
    "pkt_index",
    "file_index",
    "tcp_seq",
    "tcp_ack",
    "tcp_win",
    "tcp_len",
    "ip_len",
)
"""The PacketBatch columns the flow stage reads (not data/payload_off)."""


def concat_batches(batches: Sequence[PacketBatch]) -> PacketBatch:
    """The flow-relevant columns of consecutive batches as one batch (no raw bytes: payload_off is -1).

    Flows of the result equal the merge of the batches' flows; it exists because one large
    batch costs less than many small ones merged.

    >>> b = make_batch(ts_ns=[1], src=["192.0.2.1"], dst=["192.0.2.2"], sport=1, dport=2)
    >>> len(concat_batches([b, b]))
    2
    """
    cols = {name: np.concatenate([getattr(b, name) for b in batches]) for name in _FLOW_INPUTS}
    n = cols["ts_ns"].shape[0]
    stats = CaptureStats()
    for b in batches:
        stats.merge(b.stats)
    return PacketBatch(
        **cols, payload_off=np.full(n, -1, dtype=np.int64), data=np.zeros(0, dtype=np.uint8), stats=stats
    )


_DUMPCAP_RING = re.compile(r"^(?P<stem>.+)_(?P<num>\d{5,})_(?P<stamp>\d{14})(?P<ext>\.[^.]+)?$")
"""dumpcap's ring buffer / multiple-file names: ``prefix_00001_20240101120000.pcapng``."""
_TCPDUMP_RING = re.compile(r"^(?P<stem>.*\D)(?P<num>\d+)$")
"""tcpdump -C/-W names: ``dump.pcap``, ``dump.pcap1``, ``dump.pcap2`` (or ``dump.pcap0``... with -W)."""


def continues(prev: str, cur: str) -> bool:
    """True when capture file ``cur`` is the next part of ``prev`` in a dumpcap or tcpdump ring buffer.

    >>> continues("/c/x_00001_20240101120000.pcapng", "/c/x_00002_20240101120500.pcapng")
    True
    >>> continues("/c/dump.pcap", "/c/dump.pcap1"), continues("/c/dump.pcap1", "/c/dump.pcap2")
    (True, True)
    >>> continues("/c/http1.pcap", "/c/http2.pcap")
    False
    """
    p, c = Path(prev), Path(cur)
    if p.parent != c.parent:
        return False
    a, b = _DUMPCAP_RING.match(p.name), _DUMPCAP_RING.match(c.name)
    if a and b:
        return (a["stem"], a["ext"]) == (b["stem"], b["ext"]) and int(b["num"]) == int(a["num"]) + 1
    if c.name == p.name + "1" or c.name == p.name + "0":
        return True
    a, b = _TCPDUMP_RING.match(p.name), _TCPDUMP_RING.match(c.name)
    return bool(a and b and a["stem"] == b["stem"] and int(b["num"]) == int(a["num"]) + 1)


def file_groups(files: Sequence[str], merge: bool = False) -> np.ndarray:
    """Group number per capture file (uint16, by file_index): flows never join across groups.

    Each file is its own group, except the next part of a dumpcap/tcpdump ring buffer (``continues``)
    which joins the group of the part before it; ``merge`` puts every file in one group (the user says
    the files are consecutive parts of one timeline: ``--merge-files``).
    """
    g = np.zeros(len(files), dtype=np.uint16)
    if merge:
        return g
    for i in range(1, len(files)):  # a loop over files, not packets
        g[i] = g[i - 1] if continues(files[i - 1], files[i]) else min(i, 0xFFFF)
    return g


def group_lut(files: Sequence[str]) -> np.ndarray:
    """Group per file_index (uint16, all 2^16 indices) of the files seen so far (``file_groups``)."""
    out = np.arange(1 << 16, dtype=np.uint16)  # a file not listed yet is its own group
    g = file_groups(files)[: 1 << 16]
    out[: g.size] = g
    return out


def pool_flows(
    pool: Sequence[PacketBatch], tags: Sequence[PacketTags | None], idle_timeout_ns: int, groups: np.ndarray | None
) -> FlowTable:
    """``flows_from_batch`` of pooled consecutive batches (and their tags) as one batch."""
    batch = pool[0] if len(pool) == 1 else concat_batches(pool)
    merged: PacketTags | None = None
    if any(t is not None for t in tags):
        sizes = [len(b) for b in pool]
        full = [t if t is not None else PacketTags.none(k) for t, k in zip(tags, sizes, strict=True)]
        merged = full[0] if len(full) == 1 else PacketTags.concat(full, sizes)
    return flows_from_batch(batch, idle_timeout_ns, merged, groups)


@dataclass(frozen=True)
class FlowStage:
    """How an engine's ``FlowAggregator`` pools packets into partial tables, so that another process
    can build the very same tables (``classifier.feed``): pools close at ``min_packets`` packets."""

    idle_timeout_ns: int
    min_packets: int
    separate_files: bool


@dataclass
class Pooled:
    """A pool's partial flow table built elsewhere (``pool_flows`` of the batches of ``stats``), in
    place of those batches: what ``FlowAggregator`` would have built from them."""

    table: FlowTable
    packets: int
    first_ts_ns: int  # the pool's first and last packet's timestamps
    last_ts_ns: int


class FlowAggregator:
    """Stream batches into flows with memory bounded by the number of flows, not packets.

    Small batches are pooled (their flow columns only, ``min_packets`` at most, ~66 bytes
    a packet) and turned into flows together, since one large ``flows_from_batch`` costs
    less than merging many small tables; 2^18 packets by default, which keeps the flow step's
    working memory small (peak ~450 MiB over a 3 GB capture) at little cost.  Partial tables
    then wait on a stack whose sizes shrink geometrically, so many short flows cost
    O(rows log rows) in merges and few long flows merge each pool into a table of about the
    number of flows.

    >>> agg = FlowAggregator(idle_timeout_ns=60 * 10**9)
    >>> agg.add(make_batch(ts_ns=[0], src=["192.0.2.1"], dst=["192.0.2.2"], sport=40000, dport=22))
    >>> agg.add(make_batch(ts_ns=[5], src=["192.0.2.2"], dst=["192.0.2.1"], sport=22, dport=40000))
    >>> t = agg.result()
    >>> len(t), int(t.total_packets()[0])
    (1, 2)
    """

    def __init__(self, idle_timeout_ns: int = 0, min_packets: int = 1 << 18, separate_files: bool = False) -> None:
        self.idle_timeout_ns = int(idle_timeout_ns)
        self.separate_files = separate_files  # flows of different files never join (``file_groups``)
        self.min_packets = int(min_packets)
        self._stack: list[FlowTable] = []
        self._pool: list[PacketBatch] = []
        self._tags: list[PacketTags | None] = []
        self._pooled = 0
        self.stats = CaptureStats()

    def add(self, batch: PacketBatch, tags: PacketTags | None = None) -> None:
        """Fold one batch (the next in capture order) into the running flows.

        ``tags`` are the evidence stage's per-packet results for this batch (optional).
        """
        self.stats.merge(batch.stats)
        n = len(batch)
        if not n:
            return
        if n >= self.min_packets and not self._pool:
            self.add_table(flows_from_batch(batch, self.idle_timeout_ns, tags, self._groups()))
            return
        slim = PacketBatch(
            **{name: getattr(batch, name) for name in _FLOW_INPUTS},
            payload_off=batch.payload_off,
            data=np.zeros(0, dtype=np.uint8),
        )  # drops the reference to the chunk's raw bytes
        self._pool.append(slim)
        self._tags.append(tags)
        self._pooled += n
        if self._pooled >= self.min_packets:
            self._flush()

    def _flush(self) -> None:
        """Turn the pooled packets into a partial table."""
        if not self._pool:
            return
        pool, tags = self._pool, self._tags
        self._pool, self._tags, self._pooled = [], [], 0
        self.add_table(pool_flows(pool, tags, self.idle_timeout_ns, self._groups()))

    def _groups(self) -> np.ndarray | None:
        """Group per file_index of the files seen so far (None: files merge)."""
        return group_lut(self.stats.files) if self.separate_files else None

    def add_table(self, part: FlowTable) -> None:
        """Fold a partial table of the next stretch of packets (e.g. made by a worker)."""
        self._flush()
        self._stack.append(part)
        while len(self._stack) >= 2 and len(self._stack[-2]) <= 2 * len(self._stack[-1]):
            b = self._stack.pop()
            a = self._stack.pop()
            self._stack.append(merge(a, b, self.idle_timeout_ns))

    @property
    def rows(self) -> int:
        """Partial flow rows currently held (pooled packets not counted)."""
        return sum(len(t) for t in self._stack)

    @property
    def pending(self) -> int:
        """Packets pooled but not yet turned into flow rows."""
        return self._pooled

    def partial(self) -> FlowTable:
        """Everything so far as one partial table (can still be merged with what follows)."""
        self._flush()
        acc = FlowTable.empty()
        for t in self._stack:
            acc = merge(acc, t, self.idle_timeout_ns)
        self._stack = [acc] if len(acc) else []
        return acc

    def result(self) -> FlowTable:
        """The finalized flows of everything added (unoriented: pass it to ``orient``)."""
        return finalize(self.partial())
