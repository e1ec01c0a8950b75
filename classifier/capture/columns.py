"""Packet columns: the plain-data contract between the capture stage and the flow stage.

A capture reader turns bytes into ``PacketBatch`` objects, one per chunk; every field is a
NumPy array with one row per packet, so later stages never touch per-packet Python objects.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

# IP protocol numbers of the transports that carry ports, in registry array order.
PROTO_TCP, PROTO_UDP, PROTO_SCTP, PROTO_DCCP = 6, 17, 132, 33
TRANSPORT_OF_PROTO: dict[int, int] = {PROTO_TCP: 0, PROTO_UDP: 1, PROTO_SCTP: 2, PROTO_DCCP: 3}
"""IP protocol number -> index into ``classifier.registry.model.TRANSPORTS``."""

FRAG_NONE, FRAG_FIRST, FRAG_LATER = 0, 1, 2

TS_LIMIT_NS = 1 << 62
"""Packet timestamps lie in [-TS_LIMIT_NS, TS_LIMIT_NS) ns since the epoch (years 1823 to 2116), so the
difference of any two fits in int64; readers report a packet whose timestamp does not as damage."""

IPV4_MAPPED_HI = np.uint64(0)
IPV4_MAPPED_LO_PREFIX = np.uint64(0xFFFF_0000_0000)
"""IPv4 addresses are stored as IPv4-mapped IPv6 (::ffff:a.b.c.d): hi = 0, lo = prefix | addr."""


@dataclass
class CaptureStats:
    """Counts a reader keeps while decoding; they merge by addition across chunks and files."""

    packets: int = 0
    bytes: int = 0
    ip_packets: int = 0
    no_ports: Counter = field(default_factory=Counter)  # IP protocol name -> packets without ports
    non_ip: int = 0
    malformed: int = 0
    skipped_linktype: Counter = field(default_factory=Counter)  # "LINKTYPE_NAME (n)" -> packets
    fragments_unattributed: int = 0
    truncated: int = 0
    warnings: list[str] = field(default_factory=list)  # one line each, with file/packet/offset
    files: list[str] = field(default_factory=list)

    def merge(self, other: CaptureStats) -> CaptureStats:
        """Add ``other`` into self and return self (associative, so chunks can merge in any grouping)."""
        self.packets += other.packets
        self.bytes += other.bytes
        self.ip_packets += other.ip_packets
        self.no_ports.update(other.no_ports)
        self.non_ip += other.non_ip
        self.malformed += other.malformed
        self.skipped_linktype.update(other.skipped_linktype)
        self.fragments_unattributed += other.fragments_unattributed
        self.truncated += other.truncated
        self.warnings.extend(other.warnings)
        self.files.extend(other.files)
        return self


@dataclass
class PacketBatch:
    """Columns of the packets in one chunk that carry a transport with ports.

    Only packets whose transport ports are known (TCP, UDP, SCTP, DCCP, including later IP
    fragments attributed to their datagram's ports) appear as rows; everything else is
    counted in ``stats``.  ``data`` holds the chunk's raw bytes so that later stages can
    look at payloads through ``payload_off``/``payload_len`` without copying.
    """

    ts_ns: np.ndarray  # int64, capture time in ns since the epoch, within +-TS_LIMIT_NS
    wire_len: np.ndarray  # uint32, original frame length: the bytes flows count (as tshark)
    ip_version: np.ndarray  # uint8, 4 or 6
    src_hi: np.ndarray  # uint64, source address high 64 bits (0 for IPv4)
    src_lo: np.ndarray  # uint64, source address low 64 bits (0xffff_xxxxxxxx for IPv4)
    dst_hi: np.ndarray  # uint64
    dst_lo: np.ndarray  # uint64
    proto: np.ndarray  # uint8, IP protocol number (6, 17, 132, 33)
    sport: np.ndarray  # uint16
    dport: np.ndarray  # uint16
    tcp_flags: np.ndarray  # uint8, TCP flags byte (FIN=1 SYN=2 RST=4 PSH=8 ACK=16 ...), 0 otherwise
    frag: np.ndarray  # uint8, FRAG_NONE / FRAG_FIRST / FRAG_LATER
    payload_off: np.ndarray  # int64, offset of the transport payload in ``data`` (-1: none)
    payload_len: np.ndarray  # int32, captured payload bytes available at payload_off
    pkt_index: np.ndarray  # int64, 1-based packet number within its file
    file_index: np.ndarray  # uint16, index into stats.files
    data: np.ndarray  # uint8, raw bytes of the chunk
    stats: CaptureStats = field(default_factory=CaptureStats)
    # TCP header fields for the connection stage (0 for other transports); None -> zeros
    tcp_seq: np.ndarray | None = None  # uint32, sequence number
    tcp_ack: np.ndarray | None = None  # uint32, acknowledgment number
    tcp_win: np.ndarray | None = None  # uint16, window field (unscaled); 1 when not captured
    tcp_len: np.ndarray | None = None  # int32, transport payload bytes by the IP length (tshark's tcp.len/udp length)
    ip_len: np.ndarray | None = None  # uint32, IP total length (Zeek's ip_bytes), 0 for later fragments unknown

    def __post_init__(self) -> None:
        n = self.ts_ns.shape[0]
        for name, dt, fill in _OPTIONAL_COLUMNS:
            if getattr(self, name) is None:
                setattr(self, name, np.full(n, fill, dtype=dt))

    def __len__(self) -> int:
        return int(self.ts_ns.shape[0])


_OPTIONAL_COLUMNS = (
    ("tcp_seq", np.uint32, 0),
    ("tcp_ack", np.uint32, 0),
    ("tcp_win", np.uint16, 1),
    ("tcp_len", np.int32, 0),
    ("ip_len", np.uint32, 0),
)
"""Columns a batch may be built without (tests, old callers): name, dtype, value when absent."""
