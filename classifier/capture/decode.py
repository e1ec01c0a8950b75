"""Vectorised header decoding: packets of one chunk -> ``PacketBatch`` columns and ``CaptureStats``.

Each packet has a cursor (byte offset of the header to decode next), an end (last captured
byte, narrowed to the IP datagram's end) and a kind (``linktypes.K``).  Decoding runs in rounds:
every round groups the packets by kind and runs that kind's handler on the group at once, with
NumPy gathers at ``cursor + field offset``; a handler advances the cursor and sets the next kind
from a lookup table.  So the Python loop is over header kinds (Ethernet, VLAN, IPv4, ...) and
rounds (one per header layer), never over packets.

Tunnels are decoded to the innermost packet, as ``tshark -z conv,tcp`` does for IP-level
tunnels: IP in IP (4, 41), GRE (47, including PPTP's PPP and ERSPAN), GTP-U (UDP 2152) and
VXLAN (UDP 4789).  The row takes the innermost TCP/UDP/SCTP/DCCP layer: a UDP tunnel whose
inner packet has no ports (ICMP in GTP-U, ARP in VXLAN) keeps its outer UDP row.  ICMP errors
that quote a packet are ICMP (no ports), not the quoted flow; Teredo is not opened.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from .columns import (
    FRAG_FIRST,
    FRAG_LATER,
    FRAG_NONE,
    IPV4_MAPPED_LO_PREFIX,
    CaptureStats,
    PacketBatch,
)
from .fragments import FragmentTable
from .linktypes import (
    ADDRESS_FAMILIES,
    ETHER_MAX_LENGTH,
    ETHERTYPES,
    IP_PROTOCOLS,
    IPV4_EXTENSIONS,
    IPV6_EXTENSIONS,
    LINKTYPES,
    N_KINDS,
    PORT_TRANSPORTS,
    PPP_PROTOCOLS,
    TERMINALS,
    UDP_TUNNELS,
    K,
    ip_protocol_name,
    linktype_label,
    lut,
)
from .views import Views, header

FAST_PATH = True
"""Take Ethernet/IPv4/TCP-UDP packets in one step (tests turn it off to check it changes nothing)."""

MAX_ROUNDS = 24
"""Header layers decoded at most (VLAN/MPLS stacks and tunnels included); deeper is malformed."""

# ---- headers, declared as (field, offset, dtype) tables -------------------------------------
IPV4_HEADER = header(
    20,
    [
        ("vhl", 0, "u1"),
        ("len", 2, ">u2"),
        ("id", 4, ">u2"),
        ("frag", 6, ">u2"),
        ("proto", 9, "u1"),
        ("src", 12, ">u4"),
        ("dst", 16, ">u4"),
    ],
)
IPV6_HEADER = header(
    40,
    [
        ("vtc", 0, "u1"),
        ("plen", 4, ">u2"),
        ("nh", 6, "u1"),
        ("src_hi", 8, ">u8"),
        ("src_lo", 16, ">u8"),
        ("dst_hi", 24, ">u8"),
        ("dst_lo", 32, ">u8"),
    ],
)

ETHER_IPV4_L4 = header(
    48,
    [
        ("type_vhl", 12, ">u4"),  # ethertype, IP version/IHL, TOS
        ("len_id", 16, ">u4"),  # IP total length, identification
        ("frag_proto", 20, ">u4"),  # flags/fragment offset, TTL, protocol
        ("src", 26, ">u4"),
        ("dst", 30, ">u4"),
        ("ports", 34, ">u4"),
        ("tcp_w", 46, ">u2"),  # TCP data offset and flags
    ],
)
"""The commonest stack, Ethernet + IPv4 without options + TCP/UDP, as one header (the fast path)."""

# ---- lookup arrays built from the linktypes tables ------------------------------------------
_ETHER_NEXT = lut(ETHERTYPES, 1 << 16, K.NONIP)
_ETHER_NEXT[: ETHER_MAX_LENGTH + 1] = K.LLC  # 802.3 length field: LLC header follows
_TYPE_NEXT = lut(ETHERTYPES, 1 << 16, K.NONIP)  # protocol fields that are never lengths
_PPP_NEXT = lut(PPP_PROTOCOLS, 1 << 16, K.NONIP)
_AF_NEXT = lut(ADDRESS_FAMILIES, 256, K.NONIP)
_IP_NEXT = lut(IP_PROTOCOLS, 256, K.NOPORTS)
_IP4_NEXT = _IP_NEXT.copy()
_IP4_NEXT[list(IPV4_EXTENSIONS)] = K.IPEXT
_IP6_NEXT = _IP_NEXT.copy()
_IP6_NEXT[list(IPV6_EXTENSIONS)] = K.IPEXT
_HAS_PORTS = np.zeros(256, bool)
_HAS_PORTS[list(PORT_TRANSPORTS)] = True
_L4_HEADER_LEN = np.zeros(256, np.int64)
_L4_HEADER_LEN[[17, 132]] = [8, 12]  # TCP and DCCP carry their own length
_LINK_FIRST = np.full(1 << 16, int(K.SKIP), np.uint8)
for _lt, (_name, _kind) in LINKTYPES.items():
    _LINK_FIRST[_lt] = int(_kind)
_TUNNEL_PORT = np.zeros(1 << 16, np.uint8)
for _port, _kind in UDP_TUNNELS.items():
    _TUNNEL_PORT[_port] = int(_kind)

_I64 = np.int64
Index = slice | np.ndarray
"""Which packets a handler works on: ``slice(None)`` for all of them, else an index array."""
_ROW_FIELDS = ("ipver", "src_hi", "src_lo", "dst_hi", "dst_lo", "nh", "sport", "dport", "flags", "frag", "fid")
_ROW_FIELDS += ("fproto", "poff", "plen", "seq", "ack", "win", "tlen", "iplen", "ipend")


@dataclass
class RawPackets:
    """Per-packet columns a format reader hands to ``decode_chunk``."""

    pkt: np.ndarray  # int64 offset of each packet's first byte in the chunk buffer
    caplen: np.ndarray  # int64 captured bytes
    wire_len: np.ndarray  # uint32 original length on the wire
    ts_ns: np.ndarray  # int64 nanoseconds since the epoch
    linktype: int | np.ndarray  # one link type for the chunk, or int64 per packet (-1: no interface)
    first_index: int  # 1-based number of the first packet within its file
    rec: np.ndarray | None = None  # int64 offset of each packet's record (block) in the chunk buffer


class _State:
    """Per-packet decoding state and output columns for one chunk."""

    def __init__(self, buf: np.ndarray, raw: RawPackets) -> None:
        n = raw.pkt.size
        self.n = n
        self.v = Views(buf)
        self.u8 = buf
        self.cur = raw.pkt.astype(_I64, copy=True)
        self.end = self.cur + raw.caplen
        self.kind = np.empty(n, np.uint8)
        self.nh = np.zeros(n, np.uint8)  # IP protocol / extension header at the cursor
        self.ipver = np.zeros(n, np.uint8)
        self.src_hi = np.empty(n, np.uint64)
        self.src_lo = np.empty(n, np.uint64)
        self.dst_hi = np.empty(n, np.uint64)
        self.dst_lo = np.empty(n, np.uint64)
        self.sport = np.empty(n, np.uint16)
        self.dport = np.empty(n, np.uint16)
        self.flags = np.empty(n, np.uint8)
        self.frag = np.zeros(n, np.uint8)
        self.fid = np.zeros(n, np.uint32)  # IP identification of fragments
        self.fproto = np.zeros(n, np.uint8)  # protocol named by the fragmented header
        self.poff = np.empty(n, _I64)
        self.plen = np.empty(n, np.int32)
        self.seq = np.zeros(n, np.uint32)  # TCP sequence / acknowledgment numbers, window field
        self.ack = np.zeros(n, np.uint32)
        self.win = np.ones(n, np.uint16)
        self.tlen = np.zeros(n, np.int32)  # transport payload bytes by the IP length (tshark's tcp.len)
        self.iplen = np.zeros(n, np.uint32)  # IP total length of the innermost IP header
        self.ipend = np.zeros(n, _I64)  # end of the IP datagram by its length field (within the wire length)
        self.wend = self.cur + raw.wire_len  # where the frame ended on the wire (past what was captured)
        self.fast = FAST_PATH
        self.isip = np.zeros(n, bool)
        self.outer: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []

    def save_outer(self, rows: np.ndarray) -> None:
        """Remember the outer UDP row of packets entering a UDP tunnel (GTP-U, VXLAN)."""
        self.outer.append((rows, {f: getattr(self, f)[rows] for f in _ROW_FIELDS}))

    def restore_outer(self) -> None:
        """Tunnelled packets whose inner packet has no ports keep their outer UDP row (innermost ports win)."""
        for rows, saved in reversed(self.outer):  # deepest tunnel first
            k = self.kind[rows]
            back = (k != K.DONE) & (k != K.FRAG)
            if back.any():
                sel = rows[back]
                for f, values in saved.items():
                    getattr(self, f)[sel] = values[back]
                self.kind[sel] = K.DONE


# ---- link layers ------------------------------------------------------------------------------
def _ether(s: _State, ix: Index) -> None:
    """Ethernet II: the ethertype (or an 802.3 length, then LLC) says what follows the 14 bytes."""
    c, e = s.cur[ix], s.end[ix]
    k = _ETHER_NEXT[s.v[">u2"][c + 12]]
    s.kind[ix] = np.where(c + 14 <= e, k, np.uint8(K.TRUNCATED))
    s.cur[ix] = c + 14


def _vlan(s: _State, ix: Index) -> None:
    """802.1Q / 802.1ad tag: 4 bytes, then the next ethertype (stacked tags come round again)."""
    c, e = s.cur[ix], s.end[ix]
    k = _ETHER_NEXT[s.v[">u2"][c + 2]]
    s.kind[ix] = np.where(c + 4 <= e, k, np.uint8(K.TRUNCATED))
    s.cur[ix] = c + 4


def _llc(s: _State, ix: Index) -> None:
    """802.2 LLC: only SNAP (AA AA 03, OUI 0) carries an ethertype; everything else is non-IP."""
    c, e = s.cur[ix], s.end[ix]
    snap = (s.v[">u4"][c] == 0xAAAA0300) & (s.v[">u2"][c + 4] == 0)
    k = np.where(snap, _TYPE_NEXT[s.v[">u2"][c + 6]], np.uint8(K.NONIP))
    s.kind[ix] = np.where(snap & (c + 8 > e), np.uint8(K.TRUNCATED), k)
    s.cur[ix] = c + 8


def _mpls(s: _State, ix: Index) -> None:
    """One MPLS label stack entry; after the bottom of the stack, IP is told by its version nibble."""
    c, e = s.cur[ix], s.end[ix]
    bottom = (s.u8[c + 2] & 1) != 0
    k = np.where(bottom, np.uint8(K.IPVER), np.uint8(K.MPLS))
    s.kind[ix] = np.where(c + 4 <= e, k, np.uint8(K.TRUNCATED))
    s.cur[ix] = c + 4


def _pppoe(s: _State, ix: Index) -> None:
    """PPPoE session header (version/type 0x11, code 0) followed by the PPP protocol field."""
    c, e = s.cur[ix], s.end[ix]
    session = s.v[">u2"][c] == 0x1100
    k = np.where(session, _PPP_NEXT[s.v[">u2"][c + 6]], np.uint8(K.NONIP))
    s.kind[ix] = np.where(c + 8 <= e, k, np.uint8(K.TRUNCATED))
    s.cur[ix] = c + 8


def _ppp(s: _State, ix: Index) -> None:
    """PPP, with or without the HDLC address/control bytes and protocol-field compression."""
    c, e = s.cur[ix], s.end[ix]
    b0 = s.u8[c]
    chdlc = (b0 == 0x0F) | (b0 == 0x8F)  # Cisco HDLC framing in a PPP_HDLC capture
    c2 = c + np.where((b0 == 0xFF) & (s.u8[c + 1] == 0x03), 2, 0)
    short = (s.u8[c2] & 1) != 0  # protocol field compressed to one odd byte
    proto = np.where(short, s.u8[c2].astype(np.uint16), s.v[">u2"][c2])
    nxt = c2 + np.where(short, 1, 2)
    k = np.where(nxt <= e, _PPP_NEXT[proto], np.uint8(K.TRUNCATED))
    s.kind[ix] = np.where(chdlc, np.uint8(K.CHDLC), k)
    s.cur[ix] = np.where(chdlc, c, nxt)


def _chdlc(s: _State, ix: Index) -> None:
    """Cisco HDLC: address, control, then an ethertype."""
    c, e = s.cur[ix], s.end[ix]
    k = _TYPE_NEXT[s.v[">u2"][c + 2]]
    s.kind[ix] = np.where(c + 4 <= e, k, np.uint8(K.TRUNCATED))
    s.cur[ix] = c + 4


def _null(s: _State, ix: Index) -> None:
    """BSD loopback: a 4-byte address family in either byte order (NULL: host order, LOOP: network)."""
    c, e = s.cur[ix], s.end[ix]
    af = s.v["<u4"][c]
    af = np.where(af > 0xFFFF, s.v[">u4"][c], af)
    k = np.where(af < 256, _AF_NEXT[np.minimum(af, 255)], np.uint8(K.NONIP))
    s.kind[ix] = np.where(c + 4 <= e, k, np.uint8(K.TRUNCATED))
    s.cur[ix] = c + 4


def _sll_protocol(proto: np.ndarray) -> np.ndarray:
    """Next kind from an SLL protocol field (an ethertype, or 4 for an 802.2 LLC frame)."""
    k = _TYPE_NEXT[proto]
    return np.where(proto == 4, np.uint8(K.LLC), k)  # 0x0004: 802.2 LLC frame


def _sll(s: _State, ix: Index) -> None:
    """Linux cooked capture v1: 16-byte header ending with the protocol (an ethertype)."""
    c, e = s.cur[ix], s.end[ix]
    k = _sll_protocol(s.v[">u2"][c + 14])
    k = np.where(s.v[">u2"][c + 2] == 824, np.uint8(K.NONIP), k)  # ARPHRD_NETLINK
    s.kind[ix] = np.where(c + 16 <= e, k, np.uint8(K.TRUNCATED))
    s.cur[ix] = c + 16


def _sll2(s: _State, ix: Index) -> None:
    """Linux cooked capture v2: 20-byte header starting with the protocol."""
    c, e = s.cur[ix], s.end[ix]
    k = _sll_protocol(s.v[">u2"][c])
    k = np.where(s.v[">u2"][c + 8] == 824, np.uint8(K.NONIP), k)
    s.kind[ix] = np.where(c + 20 <= e, k, np.uint8(K.TRUNCATED))
    s.cur[ix] = c + 20


_PPI_INNER = {1: K.ETHER, 105: K.WLAN, 127: K.RADIOTAP}


def _ppi(s: _State, ix: Index) -> None:
    """Per-Packet Information header: its length and the link type of the frame it wraps."""
    c, e = s.cur[ix], s.end[ix]
    hlen = s.v["<u2"][c + 2].astype(_I64)
    dlt = s.v["<u4"][c + 4]
    k = np.full(c.shape, int(K.NONIP), np.uint8)
    for lt, kind in _PPI_INNER.items():
        k[dlt == lt] = kind
    ok = (c + 8 <= e) & (hlen >= 8) & (c + hlen <= e)
    s.kind[ix] = np.where(ok, k, np.uint8(K.TRUNCATED))
    s.cur[ix] = np.where(ok, c + hlen, c)


def _radiotap(s: _State, ix: Index) -> None:
    """Radiotap: its own length, then an 802.11 frame."""
    c, e = s.cur[ix], s.end[ix]
    hlen = s.v["<u2"][c + 2].astype(_I64)
    ok = (c + 4 <= e) & (hlen >= 8) & (c + hlen <= e)
    s.kind[ix] = np.where(ok, np.uint8(K.WLAN), np.uint8(K.TRUNCATED))
    s.cur[ix] = np.where(ok, c + hlen, c)


def _wlan(s: _State, ix: Index) -> None:
    """IEEE 802.11: data frames that are neither protected nor null carry an LLC header."""
    c, e = s.cur[ix], s.end[ix]
    fc0 = s.u8[c]
    fc1 = s.u8[c + 1]
    data = ((fc0 >> 2) & 3) == 2
    qos = (fc0 & 0x80) != 0
    empty = (fc0 & 0x40) != 0  # null-function subtypes carry no body
    protected = (fc1 & 0x40) != 0
    hlen = 24 + np.where((fc1 & 3) == 3, 6, 0) + np.where(qos, 2, 0) + np.where(qos & ((fc1 & 0x80) != 0), 4, 0)
    k = np.where(data & ~empty & ~protected, np.uint8(K.LLC), np.uint8(K.NONIP))
    s.kind[ix] = np.where(c + hlen <= e, k, np.uint8(K.TRUNCATED))
    s.cur[ix] = c + hlen


def _ipver(s: _State, ix: Index) -> None:
    """Raw IP (and the packet after an MPLS stack): version 4 or 6 from the first nibble."""
    c, e = s.cur[ix], s.end[ix]
    ver = s.u8[c] >> 4
    k = np.where(ver == 4, np.uint8(K.IPV4), np.where(ver == 6, np.uint8(K.IPV6), np.uint8(K.NONIP)))
    s.kind[ix] = np.where(c + 1 <= e, k, np.uint8(K.TRUNCATED))


# ---- IP -------------------------------------------------------------------------------------------
def _ipv4(s: _State, ix: Index) -> None:
    """IPv4: header length, total length (clips the end), fragments, protocol; options are skipped."""
    c, e = s.cur[ix], s.end[ix]
    h = s.v.gather(c, IPV4_HEADER)
    vhl = h["vhl"]
    ihl = (vhl & 0x0F).astype(_I64) << 2
    tot = h["len"].astype(_I64)
    proto = h["proto"]
    fr = h["frag"]
    later = (fr & 0x1FFF) != 0
    first = ~later & ((fr & 0x2000) != 0)
    have = c + 20 <= e
    bad = ((vhl >> 4) != 4) | (ihl < 20) | ((tot < ihl) & (tot != 0))
    k = _IP4_NEXT[proto]
    k = np.where(later, np.where(_HAS_PORTS[proto], np.uint8(K.FRAG), np.uint8(K.NOPORTS)), k)
    k = np.where(c + ihl > e, np.uint8(K.TRUNCATED), k)
    k = np.where(bad, np.uint8(K.MALFORMED), k)
    k = np.where(have, k, np.uint8(K.TRUNCATED))
    s.kind[ix] = k
    s.isip[ix] |= have & ~bad
    s.ipver[ix] = 4
    s.src_hi[ix] = 0
    s.dst_hi[ix] = 0
    s.src_lo[ix] = h["src"] | IPV4_MAPPED_LO_PREFIX
    s.dst_lo[ix] = h["dst"] | IPV4_MAPPED_LO_PREFIX
    s.nh[ix] = proto
    s.frag[ix] = np.where(later, np.uint8(FRAG_LATER), np.where(first, np.uint8(FRAG_FIRST), np.uint8(FRAG_NONE)))
    s.fid[ix] = h["id"]
    s.fproto[ix] = proto
    s.end[ix] = np.where(tot == 0, e, np.minimum(e, c + tot))  # length 0: TSO, trust the capture
    s.iplen[ix] = np.where(tot == 0, e - c, tot)
    s.ipend[ix] = np.where(tot == 0, e, np.minimum(c + tot, s.wend[ix]))
    s.cur[ix] = c + ihl


def _ipv6(s: _State, ix: Index) -> None:
    """IPv6: fixed 40-byte header; the payload length clips the end; extension headers come next."""
    c, e = s.cur[ix], s.end[ix]
    h = s.v.gather(c, IPV6_HEADER)
    have = c + 40 <= e
    bad = (h["vtc"] >> 4) != 6
    nh = h["nh"]
    plen = h["plen"].astype(_I64)
    k = np.where(have, _IP6_NEXT[nh], np.uint8(K.TRUNCATED))
    s.kind[ix] = np.where(bad & have, np.uint8(K.MALFORMED), k)
    s.isip[ix] |= have & ~bad
    s.ipver[ix] = 6
    s.src_hi[ix] = h["src_hi"]
    s.src_lo[ix] = h["src_lo"]
    s.dst_hi[ix] = h["dst_hi"]
    s.dst_lo[ix] = h["dst_lo"]
    s.nh[ix] = nh
    s.frag[ix] = FRAG_NONE
    s.end[ix] = np.where(plen == 0, e, np.minimum(e, c + 40 + plen))  # 0: jumbogram or TSO
    s.iplen[ix] = np.where(plen == 0, e - c, 40 + plen)
    s.ipend[ix] = np.where(plen == 0, e, np.minimum(c + 40 + plen, s.wend[ix]))
    s.cur[ix] = c + 40


def _ipext(s: _State, ix: Index) -> None:
    """One IPv6 extension header (or AH after IPv4); fragment headers set the fragment columns."""
    c, e, t = s.cur[ix], s.end[ix], s.nh[ix]
    nxt = s.u8[c]
    hl8 = s.u8[c + 1].astype(_I64)
    hlen = np.where(t == 44, 8, np.where(t == 51, (hl8 + 2) << 2, (hl8 + 1) << 3))
    k = np.where(s.ipver[ix] == 6, _IP6_NEXT[nxt], _IP4_NEXT[nxt])
    isfrag = t == 44
    if isfrag.any():
        fo = s.v[">u2"][c + 2]
        later = isfrag & ((fo & 0xFFF8) != 0)
        first = isfrag & ~later & ((fo & 1) != 0)
        k = np.where(later, np.where(_HAS_PORTS[nxt], np.uint8(K.FRAG), np.uint8(K.NOPORTS)), k)
        fr = np.where(later, np.uint8(FRAG_LATER), np.where(first, np.uint8(FRAG_FIRST), s.frag[ix]))
        s.frag[ix] = fr
        s.fid[ix] = np.where(isfrag, s.v[">u4"][c + 4], s.fid[ix])
        s.fproto[ix] = np.where(isfrag, nxt, s.fproto[ix])
    s.kind[ix] = np.where((c + 8 <= e) & (c + hlen <= e), k, np.uint8(K.TRUNCATED))
    s.nh[ix] = nxt
    s.cur[ix] = c + hlen


def _gre(s: _State, ix: Index) -> None:
    """GRE (RFC 2784/2890) and enhanced GRE (PPTP, version 1): skip optional fields, follow the type."""
    c, e = s.cur[ix], s.end[ix]
    fl = s.v[">u2"][c]
    proto = s.v[">u2"][c + 2]
    ver = fl & 7
    hlen = (
        4
        + np.where((fl & 0xC000) != 0, 4, 0)  # checksum (and offset) present
        + np.where((fl & 0x2000) != 0, 4, 0)  # key
        + np.where((fl & 0x1000) != 0, 4, 0)  # sequence number
        + np.where((ver == 1) & ((fl & 0x0080) != 0), 4, 0)  # PPTP acknowledgment
    )
    k = _TYPE_NEXT[proto]
    k = np.where((ver == 0) | ((ver == 1) & (proto == 0x880B)), k, np.uint8(K.NONIP))
    k = np.where((fl & 0x4000) != 0, np.uint8(K.NONIP), k)  # source routing: not decoded
    k = np.where(k == K.NONIP, np.uint8(K.NOPORTS), k)  # an IP packet carrying GRE that we cannot open
    s.kind[ix] = np.where(c + hlen <= e, k, np.uint8(K.TRUNCATED))
    s.cur[ix] = c + hlen


def _erspan2(s: _State, ix: Index) -> None:
    """ERSPAN type II: 8-byte header, then the mirrored Ethernet frame."""
    c, e = s.cur[ix], s.end[ix]
    s.kind[ix] = np.where(c + 8 <= e, np.uint8(K.ETHER), np.uint8(K.TRUNCATED))
    s.cur[ix] = c + 8


def _erspan3(s: _State, ix: Index) -> None:
    """ERSPAN type III: 12-byte header (20 with the platform subheader), then Ethernet."""
    c, e = s.cur[ix], s.end[ix]
    hlen = 12 + np.where((s.u8[c + 11] & 1) != 0, 8, 0)  # O flag: platform-specific subheader
    s.kind[ix] = np.where(c + hlen <= e, np.uint8(K.ETHER), np.uint8(K.TRUNCATED))
    s.cur[ix] = c + hlen


def _gtp(s: _State, ix: Index) -> None:
    """GTP-U G-PDU (version 1, message 0xFF) carrying IP: decapsulate; anything else stays outer UDP."""
    c, e = s.cur[ix], s.end[ix]
    fl = s.u8[c]
    ok = ((fl & 0xF0) == 0x30) & (s.u8[c + 1] == 0xFF) & (c + 8 <= e)
    hlen = 8 + np.where((fl & 7) != 0, 4, 0)
    ext = ok & ((fl & 4) != 0)
    for _ in range(4):  # extension header chain (PDU session container, ...)
        if not ext.any():
            break
        at_ext = np.minimum(c + hlen, e)
        nxt_type = s.u8[at_ext - 1]
        ext &= (nxt_type != 0) & (c + hlen < e)
        elen = s.u8[np.minimum(c + hlen, e)].astype(_I64) << 2
        ok &= ~ext | (elen > 0)
        hlen = np.where(ext, hlen + elen, hlen)
    ok &= ~ext & (c + hlen < e)
    ver = s.u8[np.minimum(c + hlen, e)] >> 4
    ok &= (ver == 4) | (ver == 6)
    s.kind[ix] = np.where(ok, np.where(ver == 4, np.uint8(K.IPV4), np.uint8(K.IPV6)), np.uint8(K.DONE))
    s.cur[ix] = np.where(ok, c + hlen, c)


def _vxlan(s: _State, ix: Index) -> None:
    """VXLAN: 8-byte header with the I flag, then an Ethernet frame; otherwise the outer UDP row stands."""
    c, e = s.cur[ix], s.end[ix]
    ok = ((s.u8[c] & 0x08) != 0) & (c + 8 + 14 <= e)
    s.kind[ix] = np.where(ok, np.uint8(K.ETHER), np.uint8(K.DONE))
    s.cur[ix] = np.where(ok, c + 8, c)


def _l4(s: _State, ix: Index) -> None:
    """Transport header with ports: the packet becomes a row (unless it is a tunnel we open)."""
    c, e, proto = s.cur[ix], s.end[ix], s.nh[ix]
    ports = s.v[">u4"][c]
    w = s.v[">u2"][c + 12]  # TCP data offset / flags
    tcp = proto == 6
    hlen = np.where(tcp, (w >> 12).astype(_I64) << 2, _L4_HEADER_LEN[proto])
    dccp = proto == 33
    if dccp.any():
        hlen = np.where(dccp, s.u8[c + 4].astype(_I64) << 2, hlen)
    have = c + 4 <= e
    po = c + hlen
    okpay = (po <= e) & (hlen >= np.where(tcp, 20, np.where(dccp, 12, 8)))
    s.sport[ix] = ports >> 16
    s.dport[ix] = ports
    # flags count when the header length is sane and the window field is captured (tshark's rule)
    s.flags[ix] = np.where(tcp & (c + 16 <= e) & (hlen >= 20), w, 0)
    s.poff[ix] = np.where(okpay, po, -1)
    s.plen[ix] = np.where(okpay, e - po, 0)
    full = tcp & (c + 20 <= e) & (hlen >= 20)  # sequence numbers and window only from a whole header
    s.seq[ix] = np.where(full, s.v[">u4"][c + 4], 0)
    s.ack[ix] = np.where(full, s.v[">u4"][c + 8], 0)
    s.win[ix] = np.where(full, s.v[">u2"][c + 14], 1)
    s.tlen[ix] = np.where(okpay | (po <= s.ipend[ix]), np.maximum(s.ipend[ix] - po, 0), 0)
    k = np.where(have, np.uint8(K.DONE), np.uint8(K.TRUNCATED))
    udp = (proto == 17) & okpay
    if udp.any():
        t = np.maximum(_TUNNEL_PORT[ports >> 16], _TUNNEL_PORT[ports & 0xFFFF])
        tunnel = udp & (t != 0)
        if tunnel.any():
            k = np.where(tunnel, t, k)
            s.cur[ix] = np.where(tunnel, po, c)
            s.save_outer(np.arange(s.n)[ix][tunnel])
    s.kind[ix] = k


def _fast_ether_ipv4(s: _State, ix: Index) -> None:
    """Ethernet + IPv4 (no options, not a fragment) + TCP/UDP in one gather; others go on to ``_ether``.

    Same results as ``_ether`` -> ``_ipv4`` -> ``_l4`` for the packets it takes (tests check),
    at a fraction of the cost: one 48-byte gather per packet, each field copied out once.
    """
    c, e = s.cur[ix], s.end[ix]
    h = s.v.gather(c, ETHER_IPV4_L4)
    tv = h["type_vhl"].astype(np.uint32)
    fp = h["frag_proto"].astype(np.uint32)
    tot = (h["len_id"] >> 16).astype(np.int32)
    ports = h["ports"].astype(np.uint32)
    w = h["tcp_w"].astype(np.uint16)
    proto = fp.astype(np.uint8)
    tcp = proto == 6
    caplen = (e - c).astype(np.int32)
    avail = np.minimum(caplen, tot + 14)  # bytes of the IP datagram captured, from the frame start
    fast = (tv & 0xFFFFFF00) == 0x08004500
    fast &= (fp & 0x3FFF0000) == 0
    fast &= tot >= 20
    fast &= avail >= 38
    fast &= tcp | (proto == 17)
    hlen = np.where(tcp, (w >> 12).astype(np.int32) << 2, 8)
    plen = avail - 34 - hlen
    okpay = (plen >= 0) & (hlen >= 8)
    sport = (ports >> 16).astype(np.uint16)
    dport = ports.astype(np.uint16)
    tunnel = (np.take(_TUNNEL_PORT, sport) | np.take(_TUNNEL_PORT, dport)) != 0
    fast &= ~(tunnel & ~tcp)
    flags = np.where(tcp & (avail >= 50) & (hlen >= 20), w, 0).astype(np.uint8)  # see _l4
    full = fast & tcp & (avail >= 54) & (hlen >= 20)  # only what the fast path decodes (the rest: _ipv4, _l4)
    seq = np.where(full, s.v[">u4"][c + 38], 0).astype(np.uint32)
    ack = np.where(full, s.v[">u4"][c + 42], 0).astype(np.uint32)
    win = np.where(full, s.v[">u2"][c + 48], 1).astype(np.uint16)
    wire = s.wend[ix] - c if not isinstance(ix, slice) else s.wend - c
    tlen = np.where(fast & okpay, np.maximum(np.minimum(tot + 14, wire) - 34 - hlen, 0), 0).astype(np.int32)
    iplen = np.where(fast, tot, 0).astype(np.uint32)
    poff = np.where(okpay, c + 34 + hlen, -1)
    plen = np.where(okpay, plen, 0)
    src = h["src"].astype(np.uint64)
    src |= IPV4_MAPPED_LO_PREFIX
    dst = h["dst"].astype(np.uint64)
    dst |= IPV4_MAPPED_LO_PREFIX
    if isinstance(ix, slice):
        # every packet of the chunk: columns are written whole, the generic path overwrites the rest
        s.ipver.fill(4)
        s.src_hi.fill(0)
        s.dst_hi.fill(0)
        s.src_lo, s.dst_lo, s.nh, s.sport, s.dport, s.flags, s.poff = src, dst, proto, sport, dport, flags, poff
        s.plen = plen
        s.seq, s.ack, s.win, s.tlen, s.iplen = seq, ack, win, tlen, iplen
        s.isip = fast
        s.kind = np.where(fast, np.uint8(K.DONE), np.uint8(K.ETHER))
        return
    sel = ix[fast]
    s.ipver[sel] = 4
    s.src_hi[sel] = 0
    s.dst_hi[sel] = 0
    s.src_lo[sel] = src[fast]
    s.dst_lo[sel] = dst[fast]
    s.nh[sel] = proto[fast]
    s.sport[sel] = sport[fast]
    s.dport[sel] = dport[fast]
    s.flags[sel] = flags[fast]
    s.poff[sel] = poff[fast]
    s.plen[sel] = plen[fast]
    s.seq[sel] = seq[fast]
    s.ack[sel] = ack[fast]
    s.win[sel] = win[fast]
    s.tlen[sel] = tlen[fast]
    s.iplen[sel] = iplen[fast]
    s.isip[sel] = True
    s.kind[sel] = K.DONE


_HANDLERS = {
    K.SLL: _sll,
    K.SLL2: _sll2,
    K.NULL: _null,
    K.PPI: _ppi,
    K.RADIOTAP: _radiotap,
    K.WLAN: _wlan,
    K.ETHER: _ether,
    K.LLC: _llc,
    K.VLAN: _vlan,
    K.MPLS: _mpls,
    K.PPPOE: _pppoe,
    K.PPP: _ppp,
    K.CHDLC: _chdlc,
    K.IPVER: _ipver,
    K.IPV4: _ipv4,
    K.IPV6: _ipv6,
    K.IPEXT: _ipext,
    K.L4: _l4,
    K.GRE: _gre,
    K.ERSPAN2: _erspan2,
    K.ERSPAN3: _erspan3,
    K.GTP: _gtp,
    K.VXLAN: _vxlan,
}
_ORDER = [int(k) for k in _HANDLERS]


def _run(s: _State) -> None:
    """Decode every packet to a terminal kind, one round per header layer (only packets still pending)."""
    n = s.n
    pending = np.flatnonzero(s.kind >= TERMINALS)
    for _ in range(MAX_ROUNDS):
        if pending.size == 0:
            return
        kp = s.kind[pending]
        counts = np.bincount(kp, minlength=N_KINDS)
        for k in _ORDER:
            cnt = counts[k]
            if cnt:
                if cnt == n:
                    ix = slice(None)
                elif cnt == pending.size:
                    ix = pending
                else:
                    ix = pending[kp == k]
                _HANDLERS[K(k)](s, ix)
        pending = pending[s.kind[pending] >= TERMINALS]
    s.kind[pending] = K.MALFORMED  # too many layers: a loop of tunnels, or garbage


def decode_chunk(
    buf: np.ndarray,
    raw: RawPackets,
    file_index: int,
    frags: FragmentTable,
    stats: CaptureStats,
    horizon: int | None = None,
) -> PacketBatch:
    """Decode the packets of one chunk into a ``PacketBatch`` (rows: packets with ports); counts go to ``stats``.

    ``horizon`` is the buffer offset from which the file's next chunk starts (None: nothing
    follows).  Where a later IP fragment's look-ahead window reaches it undecided, only the
    packets before that fragment are decoded (``FragmentTable``); ``stats.packets`` grows by
    the packets used, and the caller reads on from the first one left.
    """
    s = _State(buf, raw)
    n = s.n
    if isinstance(raw.linktype, np.ndarray):
        lt = raw.linktype
        s.kind[:] = np.where(lt >= 0, _LINK_FIRST[np.clip(lt, 0, (1 << 16) - 1)], np.uint8(K.MALFORMED))
        s.kind[lt >= (1 << 16)] = K.SKIP
    else:
        lt = None
        s.kind.fill(_LINK_FIRST[raw.linktype] if 0 <= raw.linktype < (1 << 16) else int(K.SKIP))
    if n:
        first = np.bincount(s.kind, minlength=N_KINDS)[K.ETHER]
        if first and s.fast:
            _fast_ether_ipv4(s, slice(None) if first == n else np.flatnonzero(s.kind == K.ETHER))
        _run(s)
        s.restore_outer()
    kind = s.kind
    # later fragments: take the ports of their datagram's first fragment
    frag_rows = np.flatnonzero(kind == K.FRAG)
    first_rows = np.flatnonzero((kind == K.DONE) & (s.frag == FRAG_FIRST))
    if frag_rows.size or first_rows.size:
        got = frags.attribute(s, first_rows, frag_rows, raw.pkt, horizon)
        kind[frag_rows[got]] = K.DONE
        if frags.cut >= 0:  # undecided from here: the rest is read again with the next chunk
            n = frags.cut
            kind = kind[:n]
            got = got[frag_rows < n]
        stats.fragments_unattributed += int(got.size - got.sum())
    counts = np.bincount(kind, minlength=N_KINDS)
    rows = np.flatnonzero(kind == K.DONE)
    stats.packets += n
    stats.ip_packets += int(s.isip[:n].sum())
    stats.non_ip += int(counts[K.NONIP])
    stats.malformed += int(counts[K.MALFORMED])
    stats.truncated += int(counts[K.TRUNCATED])
    if counts[K.NOPORTS]:
        by_proto = np.bincount(s.nh[:n][kind == K.NOPORTS], minlength=256)
        for p in np.flatnonzero(by_proto).tolist():
            stats.no_ports[ip_protocol_name(p)] += int(by_proto[p])
    if counts[K.SKIP]:
        if lt is None:
            stats.skipped_linktype[linktype_label(int(raw.linktype))] += int(counts[K.SKIP])
        else:
            skipped = Counter(lt[:n][kind == K.SKIP].tolist())
            for t, c in skipped.items():
                stats.skipped_linktype[linktype_label(int(t))] += c
    return PacketBatch(
        ts_ns=raw.ts_ns[rows],
        wire_len=raw.wire_len[rows].astype(np.uint32, copy=False),
        ip_version=s.ipver[rows],
        src_hi=s.src_hi[rows],
        src_lo=s.src_lo[rows],
        dst_hi=s.dst_hi[rows],
        dst_lo=s.dst_lo[rows],
        proto=s.nh[rows],
        sport=s.sport[rows],
        dport=s.dport[rows],
        tcp_flags=s.flags[rows],
        frag=s.frag[rows],
        payload_off=s.poff[rows],
        payload_len=s.plen[rows],
        tcp_seq=s.seq[rows],
        tcp_ack=s.ack[rows],
        tcp_win=s.win[rows],
        tcp_len=s.tlen[rows],
        ip_len=s.iplen[rows],
        pkt_index=rows.astype(_I64) + raw.first_index,
        file_index=np.full(rows.size, file_index, np.uint16),
        data=buf,
        stats=stats,
    )
