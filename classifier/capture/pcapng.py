"""pcapng files: sections (either byte order), interfaces, and packet blocks of a chunk as columns.

Blocks chain by their total length, so ``walk.walk`` finds them all without a per-block loop;
the few control blocks (section headers, interface descriptions) are then read one by one,
and the packet blocks (EPB, SPB and the obsolete PB) become columns with one gather each.
Every other block type (statistics, name resolution, decryption secrets, custom) is skipped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from .columns import TS_LIMIT_NS
from .pcap import MAX_RECORD
from .views import at, header
from .walk import LANE_BYTES, Chain, walk

SHB = 0x0A0D0D0A
IDB = 0x00000001
PB = 0x00000002  # obsolete Packet Block
SPB = 0x00000003
EPB = 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D
MAX_BLOCK = 16 << 20
"""Largest block accepted (Wireshark's limit); a longer length means the file is damaged."""

OPT_END, OPT_IF_TSRESOL, OPT_IF_FCSLEN, OPT_IF_TSOFFSET = 0, 9, 13, 14


def packet_block(byteorder: str) -> np.dtype:
    """The fixed part of EPB (and obsolete PB: 16-bit interface id then drops count)."""
    u4 = byteorder + "u4"
    return header(
        28,
        [
            ("type", 0, u4),
            ("len", 4, u4),
            ("iface", 8, u4),
            ("iface16", 8, byteorder + "u2"),
            ("ts_hi", 12, u4),
            ("ts_lo", 16, u4),
            ("caplen", 20, u4),
            ("orig", 24, u4),
        ],
    )


@dataclass
class Interface:
    """One IDB: link type and how to turn its timestamps into nanoseconds."""

    linktype: int
    snaplen: int
    tsresol: int = 6  # if_tsresol: 10^-n seconds, or 2^-n with the top bit set (default microseconds)
    ts_offset_s: int = 0  # if_tsoffset: seconds added to every timestamp (signed)


@dataclass
class Section:
    """Reading state carried from chunk to chunk: byte order and the interfaces seen so far."""

    byteorder: str = "<"
    interfaces: list[Interface] = field(default_factory=list)
    base: int = 0  # index in ``interfaces`` of the current section's interface 0
    sections: int = 0


def is_pcapng(head: bytes) -> bool:
    """True when ``head`` starts with a section header block."""
    return head[:4] == b"\x0a\x0d\x0d\x0a"


def shb_byteorder(head: bytes) -> str | None:
    """Byte order of the section header block at the start of ``head`` (None when it is not one)."""
    if len(head) < 12 or not is_pcapng(head):
        return None
    bom = head[8:12]
    if bom == b"\x4d\x3c\x2b\x1a":
        return "<"
    if bom == b"\x1a\x2b\x3c\x4d":
        return ">"
    return None


def _check(byteorder: str) -> object:
    def check(u: np.ndarray, p: np.ndarray, end: int) -> np.ndarray:
        ln = u[p + 4].astype(np.int64)
        ok = (ln >= 32) & (ln <= MAX_BLOCK) & ((ln & 3) == 0) & (p + ln <= end)
        tail = np.where(ok, p + ln - 4, p)
        ok &= u[tail] == ln
        ok &= u[p + 20] <= ln - 32  # captured length fits the block
        return ok

    return check


_TYPE_BYTES = {"<": ((0, 6), (1, 0), (2, 0), (3, 0)), ">": ((3, 6), (0, 0), (1, 0), (2, 0))}


def is_packet_block(types: np.ndarray) -> np.ndarray:
    """Which block types are packet blocks (EPB, SPB or the obsolete PB)."""
    return (types == EPB) | (types == SPB) | (types == PB)


def chain(byteorder: str) -> Chain:
    """How blocks chain in a section of this byte order (lanes are guessed at EPBs)."""
    return Chain(
        byteorder=byteorder,
        len_off=4,
        base=0,
        min_len=12,
        max_len=MAX_BLOCK,
        align=4,
        prefilter=_TYPE_BYTES[byteorder],
        check=_check(byteorder),  # type: ignore[arg-type]
    )


def parse_idb(body: bytes, byteorder: str) -> Interface:
    """Decode an interface description block body (after type and length) and its options."""
    linktype, _res, snaplen = struct.unpack_from(byteorder + "HHI", body, 0)
    iface = Interface(linktype=linktype, snaplen=snaplen)
    off = 8
    while off + 4 <= len(body):
        code, ln = struct.unpack_from(byteorder + "HH", body, off)
        if code == OPT_END:
            break
        val = body[off + 4 : off + 4 + ln]
        if code == OPT_IF_TSRESOL and ln >= 1:
            iface.tsresol = val[0]
        elif code == OPT_IF_TSOFFSET and ln >= 8:
            iface.ts_offset_s = struct.unpack_from(byteorder + "q", val, 0)[0]
        off += 4 + ((ln + 3) & ~3)
    return iface


def timestamps_ns(ts: np.ndarray, iface: Interface) -> tuple[np.ndarray, np.ndarray]:
    """Block timestamps (uint64 units of the interface's resolution) -> int64 ns since the epoch, and which are valid.

    Exact integer arithmetic for every resolution (10^-n or 2^-n seconds, any n) and offset,
    without overflow: whole seconds and nanoseconds apart, then the offset; a result outside
    ``TS_LIMIT_NS`` is invalid (0 in the first array): the caller reports it as damage.
    """
    n = iface.tsresol & 0x7F
    if not iface.tsresol & 0x80 and n <= 9:  # the usual units (10^-6, 10^-9 s): one multiply and add
        mul, off_ns = 10 ** (9 - n), iface.ts_offset_s * 1_000_000_000
        ok = _count_between(ts, -TS_LIMIT_NS - off_ns, TS_LIMIT_NS - off_ns, mul)
        with np.errstate(over="ignore"):  # modulo 2^64, which is exact wherever the result is in range
            ns = ts.view(np.int64) * np.int64(mul)
            if off_ns:
                ns += np.uint64(off_ns % (1 << 64)).astype(np.int64)
        if not ok.all():
            ns[~ok] = 0
        return ns, ok
    sec, frac = _seconds_and_ns(ts, iface.tsresol)
    # seconds + offset, exactly: only a small window of sums can be in range
    span = TS_LIMIT_NS // 1_000_000_000 + 1
    off = iface.ts_offset_s
    if off >= 0:
        ok = sec <= np.uint64(max(span - off, 0)) if off <= span else np.zeros(ts.size, bool)
        total = np.where(ok, sec, np.uint64(0)).astype(np.int64) + np.int64(min(off, span))
    else:
        lo, hi = max(-off - span, 0), -off + span  # -off <= 2^63, hi < 2^64
        ok = (sec >= np.uint64(lo)) & (sec <= np.uint64(hi))
        total = (np.where(ok, sec, np.uint64(-off)) - np.uint64(-off)).view(np.int64)  # |total| <= span
    ns = total * 1_000_000_000 + frac  # |ns| < 2^63
    ok &= (ns >= -TS_LIMIT_NS) & (ns < TS_LIMIT_NS)
    ns[~ok] = 0
    return ns, ok


def _count_between(ts: np.ndarray, lo: int, hi: int, mul: int) -> np.ndarray:
    """Which uint64 counts ``ts`` have ``lo <= ts * mul < hi`` (exact bounds from Python integers)."""
    top = -(-hi // mul)  # ts < top
    bottom = -(-lo // mul)  # ts >= bottom
    if top <= 0 or bottom >= 1 << 64 or bottom >= top:
        return np.zeros(ts.size, bool)
    ok = ts < np.uint64(top) if top < 1 << 64 else np.ones(ts.size, bool)
    if bottom > 0:
        ok &= ts >= np.uint64(bottom)
    return ok


def _seconds_and_ns(ts: np.ndarray, tsresol: int) -> tuple[np.ndarray, np.ndarray]:
    """Whole seconds (uint64) and nanoseconds under a second (int64, floor) of counts in if_tsresol units."""
    n = tsresol & 0x7F
    if tsresol & 0x80:  # 2^-n seconds
        if n >= 64:
            whole, part = np.zeros(ts.size, np.uint64), ts
        else:
            whole, part = ts >> np.uint64(n), ts & np.uint64((1 << n) - 1)
        if n <= 32:  # part < 2^32: part * 1e9 < 2^62
            ns = (part * np.uint64(1_000_000_000)) >> np.uint64(n)
        else:  # floor((hi * 2^32 + lo) * 1e9 / 2^n), each product under 2^62
            hi = (part >> np.uint64(32)) * np.uint64(1_000_000_000)
            lo = (part & np.uint64(0xFFFF_FFFF)) * np.uint64(1_000_000_000)
            ns = (hi + (lo >> np.uint64(32))) >> np.uint64(min(n - 32, 63))
        return whole, ns.astype(np.int64)
    if n >= 20:  # 10^n > 2^64: every count is under a second
        ns = ts // np.uint64(10 ** (n - 9)) if n - 9 < 20 else np.zeros(ts.size, np.uint64)
        return np.zeros(ts.size, np.uint64), ns.astype(np.int64)
    d = np.uint64(10**n)
    whole, part = ts // d, ts % d
    ns = part * np.uint64(10 ** (9 - n)) if n <= 9 else part // np.uint64(10 ** (n - 9))
    return whole, ns.astype(np.int64)


def describe_resolution(iface: Interface) -> str:
    """The interface's timestamp unit and offset, for damage messages."""
    n = iface.tsresol & 0x7F
    unit = f"2^-{n} s" if iface.tsresol & 0x80 else f"10^-{n} s"
    return f"unit {unit}, offset {iface.ts_offset_s} s"


@dataclass
class Blocks:
    """Packet blocks of (part of) a chunk as columns."""

    pkt: np.ndarray  # int64 offset of the packet data
    caplen: np.ndarray  # int64
    wire_len: np.ndarray  # uint32
    ts_ns: np.ndarray  # int64
    linktype: np.ndarray  # int64 per packet, -1 when the interface id names no interface described before
    start: np.ndarray | None = None  # int64 offset of each block (``parse_chunk`` fills it)

    @staticmethod
    def concat(parts: list[Blocks]) -> Blocks:
        """One ``Blocks`` from several parts, in order."""
        if len(parts) == 1:
            return parts[0]
        return Blocks(*(np.concatenate([getattr(b, f) for b in parts]) for f in Blocks.__dataclass_fields__))


def _empty() -> Blocks:
    e = np.empty(0, np.int64)
    return Blocks(e, e, np.empty(0, np.uint32), e, e, e)


@dataclass
class ChunkBlocks:
    """What ``parse_chunk`` found: packet columns, how far it got and why it stopped."""

    blocks: Blocks
    stop: int  # offset of the first byte not consumed
    status: str  # "end", "partial" (block cut by the chunk end) or "damage"
    message: str = ""  # what the damage is, when status == "damage"


def _packet_columns(
    buf: np.ndarray, pos: np.ndarray, sec: Section, segs: _Segments
) -> tuple[Blocks, int, str]:
    """Columns of the packet blocks among ``pos`` (one byte order); stops at the first inconsistent one.

    A packet block names an interface of its own section described *before* it (as the format
    requires, and as a streaming reader can know): otherwise its link type is -1 (malformed).
    """
    bo = sec.byteorder
    u32 = at(buf, bo + "u4")
    types = u32[pos]
    pk = pos[is_packet_block(types)]
    if pk.size == 0:
        return _empty(), -1, ""
    blk = at(buf, "V28")[pk].view(packet_block(bo))
    t = blk["type"]
    ln = blk["len"].astype(np.int64)
    caplen = blk["caplen"].astype(np.int64)
    orig = blk["orig"].astype(np.uint32)
    iface = np.where(t == PB, blk["iface16"].astype(np.int64), blk["iface"].astype(np.int64))
    ts = (blk["ts_hi"].astype(np.uint64) << np.uint64(32)) | blk["ts_lo"].astype(np.uint64)
    data = pk + 28
    spb = t == SPB
    if spb.any():
        sorig = blk["iface"].astype(np.int64)  # SPB: the original length sits where EPB has the interface
        caplen = np.where(spb, np.minimum(sorig, ln - 16), caplen)
        orig = np.where(spb, sorig, orig).astype(np.uint32)
        iface = np.where(spb, 0, iface)
        ts = np.where(spb, np.uint64(0), ts)
        data = np.where(spb, pk + 12, data)
    # interface ids count from 0 in each section: resolve them to indexes into sec.interfaces
    nif = len(sec.interfaces)
    seg = np.searchsorted(np.asarray(segs.starts, np.int64), pk, side="right") - 1
    gi = np.asarray(segs.bases, np.int64)[seg] + iface
    described = segs.before + np.searchsorted(np.asarray(segs.idbs, np.int64), pk)  # interfaces described before
    known = (iface >= 0) & (gi < described)
    gi = np.where(known, gi, nif)
    linktype = np.asarray([i.linktype for i in sec.interfaces] + [-1], np.int64)[gi]
    ts_ns = np.zeros(pk.size, np.int64)
    ts_ok = np.ones(pk.size, bool)
    present = np.unique(gi) if gi.min() != gi.max() else gi[:1]
    for g in present.tolist():  # one conversion per interface present
        if g < nif:
            m = gi == g if present.size > 1 else slice(None)
            ts_ns[m], ts_ok[m] = timestamps_ns(ts[m], sec.interfaces[g])
    long = caplen > MAX_RECORD
    bad = (~spb & (caplen > ln - 32)) | long | ~ts_ok
    bad_at, msg = -1, ""
    if bad.any():
        i = int(np.argmax(bad))
        bad_at = int(pk[i])
        if long[i]:
            msg = f"captured length {int(caplen[i])} exceeds {MAX_RECORD}"
        elif not ts_ok[i]:
            msg = f"timestamp out of range ({describe_resolution(sec.interfaces[int(gi[i])])})"
        else:
            msg = f"captured length {int(caplen[i])} does not fit its {int(ln[i])}-byte block"
        pk, caplen, orig, ts_ns, linktype, data = pk[:i], caplen[:i], orig[:i], ts_ns[:i], linktype[:i], data[:i]
    return Blocks(data, caplen, orig, ts_ns, linktype, pk), bad_at, msg


@dataclass
class _Segments:
    """Where sections start in a chunk, their first interface's index, and where IDBs sit."""

    starts: list[int]
    bases: list[int]
    before: int  # interfaces described before the chunk (this byte order's part of it)
    idbs: list[int] = field(default_factory=list)  # offsets of the IDBs in the chunk, in order


def parse_chunk(buf: np.ndarray, start: int, end: int, sec: Section, lane_bytes: int = LANE_BYTES) -> ChunkBlocks:
    """All packet blocks in ``buf[start:end]`` (``start`` is a block boundary); updates ``sec``."""
    parts: list[Blocks] = []
    while True:
        bo = sec.byteorder
        u32 = at(buf, bo + "u4")
        w = walk(buf, u32, start, end, chain(bo), lane_bytes)
        pos = w.pos
        stop, status, message = w.stop, w.status, ""
        if status == "damage":
            message = f"block length {w.bad_len} invalid"
        types = u32[pos]
        ctrl = np.flatnonzero((types == SHB) | (types == IDB)).tolist()
        segs = _Segments([-1], [sec.base], len(sec.interfaces))
        switch = None
        for i in ctrl:
            p = int(pos[i])
            if types[i] == SHB:
                order = shb_byteorder(bytes(buf[p : p + 12]))
                if order is None:
                    stop, status, message = p, "damage", "section header with a bad byte-order magic"
                    break
                if order != bo:
                    switch = p
                    break
                sec.base = len(sec.interfaces)
                sec.sections += 1
                segs.starts.append(p)
                segs.bases.append(sec.base)
            else:
                n = int(u32[p + 4])
                try:
                    sec.interfaces.append(parse_idb(bytes(buf[p + 8 : p + n - 4]), bo))
                    segs.idbs.append(p)
                except struct.error:
                    stop, status, message = p, "damage", "interface description block cut short"
                    break
        if status == "damage" and switch is None and stop == w.stop:
            # a section in the other byte order reads as a bad length in this one
            order = shb_byteorder(bytes(buf[stop : stop + 12]))
            if order is not None and order != bo:
                switch = stop
        if switch is not None:
            pos = pos[pos < switch]
        elif status == "damage" and stop != w.stop:
            pos = pos[pos < stop]
        cols, bad_at, msg = _packet_columns(buf, pos, sec, segs)
        parts.append(cols)
        if bad_at >= 0:
            return ChunkBlocks(Blocks.concat(parts), bad_at, "damage", msg)
        if switch is None:
            return ChunkBlocks(Blocks.concat(parts), stop, status, message)
        sec.byteorder = "<" if sec.byteorder == ">" else ">"
        start = switch
