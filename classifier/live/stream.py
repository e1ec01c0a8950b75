"""Packets arriving live -> ``PacketBatch`` columns, with the same vectorized decoder as files.

``PcapngStream`` takes a pcapng byte stream as it arrives (dumpcap's pipe), keeps the block cut
by the last read for the next batch, and turns every complete stretch of blocks into one batch
with ``pcapng.parse_chunk`` + ``decode.decode_chunk``.  ``FrameBatcher`` does the same for frames
handed over one by one (scapy, pyshark): bytes + timestamp + link type, gathered into one buffer
per batch.  ``PcapngWriter`` writes such frames as a pcapng file (``--write-pcap``).

Packets are numbered from 1 across the whole capture (``pkt_index``) and belong to file 0, so
that with ``--write-pcap`` the flow table's payload references point into the written file.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from ..capture import pcapng
from ..capture.columns import CaptureStats, PacketBatch
from ..capture.decode import RawPackets, decode_chunk
from ..capture.fragments import FragmentTable
from ..capture.views import PAD, at
from .checks import LiveError

ISB = 0x00000005
ISB_IFRECV, ISB_IFDROP, ISB_FILTERACCEPT, ISB_OSDROP, ISB_USRDELIV = 4, 5, 6, 7, 8


@dataclass
class InterfaceCounters:
    """What the capture engine reports for one interface (None: not reported)."""

    name: str
    received: int | None = None  # packets the kernel handed to the capture (after the filter)
    dropped: int | None = None  # packets lost before the capture program read them (kernel/buffer)
    if_dropped: int | None = None  # dropped by the interface/driver (ps_ifdrop / isb_osdrop)

    def merge_isb(self, opts: dict[int, int]) -> None:
        """Take the counters of an Interface Statistics Block (``isb_*`` option code -> value)."""
        if ISB_IFRECV in opts:
            self.received = opts[ISB_IFRECV]
        if ISB_IFDROP in opts:
            self.dropped = opts[ISB_IFDROP]
        if ISB_OSDROP in opts:
            self.if_dropped = opts[ISB_OSDROP]


def parse_isb(body: bytes, byteorder: str) -> tuple[int, dict[int, int]]:
    """Interface id and the 64-bit counter options (code -> value) of an ISB body (after type and length)."""
    iface = struct.unpack_from(byteorder + "I", body, 0)[0]
    opts: dict[int, int] = {}
    off = 12
    while off + 4 <= len(body):
        code, ln = struct.unpack_from(byteorder + "HH", body, off)
        if code == 0:
            break
        if ISB_IFRECV <= code <= ISB_USRDELIV and ln == 8 and off + 12 <= len(body):
            opts[code] = struct.unpack_from(byteorder + "Q", body, off + 4)[0]
        off += 4 + ((ln + 3) & ~3)
    return iface, opts


@dataclass
class StreamState:
    """Counters shared by the stream readers."""

    packets: int = 0  # packets seen (all link types, with ports or not)
    frame_bytes: int = 0  # captured bytes of those packets
    isb: dict[int, dict[int, int]] = field(default_factory=dict)  # interface id -> last ISB counters
    listed: bool = False  # the stream's name went out in a batch's stats.files (once: merges append)

    def new_stats(self, name: str) -> CaptureStats:
        """Counters for the next batch; the first one names the stream, as a file's first batch does."""
        first, self.listed = not self.listed, True
        return CaptureStats(files=[name] if first else [])


class PcapngStream:
    """Incremental pcapng reader: feed bytes as they come, take batches of complete blocks.

    >>> s = PcapngStream()
    >>> s.feed(open("captures/sample.pcapng", "rb").read())  # doctest: +SKIP
    >>> len(s.take())  # doctest: +SKIP
    42
    """

    def __init__(self, capacity: int = 8 << 20, file_name: str = "live", tee: BinaryIO | None = None) -> None:
        self.capacity = capacity
        self.buf = np.empty(capacity + PAD, np.uint8)
        self.fill = 0
        self.sec: pcapng.Section | None = None
        self.frags = FragmentTable()
        self.state = StreamState()
        self.file_name = file_name
        self.tee = tee
        self.max_packets: int | None = None  # stop decoding after this many packets (--count)

    @property
    def free(self) -> memoryview:
        """Writable space after the buffered bytes (read straight into it)."""
        if self.fill >= self.capacity:
            self._grow(self.capacity * 2)
        return memoryview(self.buf)[self.fill : self.capacity]

    def advance(self, n: int) -> None:
        """Mark ``n`` bytes written into ``free`` as buffered."""
        self.fill += n

    def readinto(self, fd: int) -> int:
        """Read what ``fd`` has into the buffer: bytes read, 0 at end of stream, -1 when nothing is ready."""
        try:
            n = os.readv(fd, [self.free])
        except BlockingIOError:
            return -1
        self.fill += n
        return n

    def feed(self, data: bytes) -> None:
        """Append ``data`` to the buffered bytes."""
        need = self.fill + len(data)
        if need > self.capacity:
            self._grow(max(need, self.capacity * 2))
        self.buf[self.fill : need] = np.frombuffer(data, np.uint8)
        self.fill = need

    def _grow(self, capacity: int) -> None:
        nb = np.empty(capacity + PAD, np.uint8)
        nb[: self.fill] = self.buf[: self.fill]
        self.buf, self.capacity = nb, capacity

    @property
    def pending(self) -> int:
        """Bytes buffered and not yet turned into a batch."""
        return self.fill

    def take(self) -> PacketBatch | None:
        """A batch of every complete block buffered so far (None when there is none yet)."""
        end = self.fill
        if end == 0:
            return None
        buf = self.buf
        if self.sec is None:
            if end < 12:
                return None
            if not pcapng.is_pcapng(bytes(buf[:4])):
                raise LiveError("the capture program did not write pcapng (expected dumpcap -n output)")
            order = pcapng.shb_byteorder(bytes(buf[:12]))
            if order is None:
                raise LiveError("the capture program's pcapng section header has no byte-order magic")
            self.sec = pcapng.Section(byteorder=order)
        buf[end : end + PAD] = 0
        cb = pcapng.parse_chunk(buf, 0, end, self.sec)
        if cb.status == "damage":
            raise LiveError(f"the capture stream is damaged after packet {self.state.packets}: {cb.message}")
        stop = cb.stop
        if stop == 0:
            if end >= self.capacity:
                self._grow(self.capacity * 2)
            return None
        b = cb.blocks
        self._scan_isb(buf, b.start, stop)
        if self.max_packets is not None and self.state.packets + b.pkt.size > self.max_packets:
            keep = max(self.max_packets - self.state.packets, 0)
            b = pcapng.Blocks(b.pkt[:keep], b.caplen[:keep], b.wire_len[:keep], b.ts_ns[:keep], b.linktype[:keep])
        stats = self.state.new_stats(self.file_name)
        raw = RawPackets(b.pkt, b.caplen, b.wire_len, b.ts_ns, b.linktype, self.state.packets + 1)
        batch = decode_chunk(buf, raw, 0, self.frags, stats)
        stats.bytes = int(b.caplen.sum())
        self.state.packets += int(b.pkt.size)
        self.state.frame_bytes += stats.bytes
        if self.tee is not None:
            self.tee.write(memoryview(buf)[:stop])
        # the batch keeps ``buf`` as its data: the cut block moves to a fresh buffer
        rest = end - stop
        nb = np.empty(self.capacity + PAD, np.uint8)
        nb[:rest] = buf[stop:end]
        self.buf, self.fill = nb, rest
        return batch

    def _scan_isb(self, buf: np.ndarray, starts: np.ndarray | None, stop: int) -> None:
        """Record the counters of the Interface Statistics Blocks in ``buf[:stop]``.

        Only the gaps between packet blocks are walked (``starts``: the packet blocks' offsets, in
        order): a live stream is nearly all packets, and its few other blocks sit in those gaps.
        """
        assert self.sec is not None
        bo = self.sec.byteorder
        u32 = at(buf, bo + "u4")
        if starts is None or not starts.size:
            gaps = [(0, stop)]
        else:
            ends = starts + u32[starts + 4]
            prev_end = np.concatenate(([0], ends))
            next_start = np.concatenate((starts, [stop]))
            at_gap = np.flatnonzero(prev_end < next_start)
            gaps = list(zip(prev_end[at_gap].tolist(), next_start[at_gap].tolist(), strict=True))
        for p, end in gaps:
            while p + 12 <= end:
                n = int(u32[p + 4])
                if n < 12:
                    break
                if int(u32[p]) == ISB:
                    iface, opts = parse_isb(bytes(buf[p + 8 : p + n - 4]), bo)
                    self.state.isb[iface] = opts
                p += n

    @property
    def interfaces(self) -> list[pcapng.Interface]:
        """Interfaces described so far (IDBs), in capture order."""
        return [] if self.sec is None else self.sec.interfaces


class FrameBatcher:
    """Frames handed over one at a time (bytes, ns timestamp, interface index) -> ``PacketBatch``.

    >>> fb = FrameBatcher([1])
    >>> fb.add(bytes(60), 1_700_000_000_000_000_000, 0)
    >>> fb.take()[0].stats.packets
    1
    """

    def __init__(self, linktypes: Sequence[int], file_name: str = "live") -> None:
        self.linktypes = np.asarray(list(linktypes) + [-1], np.int64)
        self.frames: list[bytes] = []
        self.ts: list[int] = []
        self.wire: list[int] = []
        self.iface: list[int] = []
        self.tags: list[str | None] = []
        self.frags = FragmentTable()
        self.state = StreamState()
        self.file_name = file_name
        self.max_packets: int | None = None

    def __len__(self) -> int:
        return len(self.frames)

    def add(self, data: bytes, ts_ns: int, iface: int = 0, wire_len: int | None = None, tag: str | None = None) -> None:
        """Queue one frame (``tag``: a per-packet note kept beside it, e.g. tshark's protocol name)."""
        self.frames.append(data)
        self.ts.append(ts_ns)
        self.wire.append(len(data) if wire_len is None else wire_len)
        self.iface.append(iface)
        self.tags.append(tag)

    def take(self) -> tuple[PacketBatch, list[str | None]] | None:
        """The queued frames as one batch, with the tags of its packets in order (``pkt_index`` order)."""
        n = len(self.frames)
        if not n:
            return None
        if self.max_packets is not None:
            n = max(min(n, self.max_packets - self.state.packets), 0)
        frames, ts, wire, iface, tags = self.frames[:n], self.ts[:n], self.wire[:n], self.iface[:n], self.tags[:n]
        self.frames, self.ts, self.wire, self.iface, self.tags = [], [], [], [], []
        caplen = np.fromiter(map(len, frames), np.int64, n)
        pkt = np.zeros(n, np.int64)
        if n > 1:
            np.cumsum(caplen[:-1], out=pkt[1:])
        buf = np.frombuffer(b"".join(frames) + bytes(PAD), np.uint8)
        ifx = np.asarray(iface, np.int64)
        lt = self.linktypes[np.clip(ifx, 0, self.linktypes.size - 1)]
        linktype: int | np.ndarray = int(lt[0]) if n and (lt == lt[0]).all() else lt
        raw = RawPackets(
            pkt, caplen, np.asarray(wire, np.uint32), np.asarray(ts, np.int64), linktype, self.state.packets + 1
        )
        stats = self.state.new_stats(self.file_name)
        batch = decode_chunk(buf, raw, 0, self.frags, stats)
        stats.bytes = int(caplen.sum())
        self.state.packets += n
        self.state.frame_bytes += stats.bytes
        return batch, tags


# ---- writing ---------------------------------------------------------------------------------


def _pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def _block(btype: int, body: bytes) -> bytes:
    body = _pad4(body)
    n = 12 + len(body)
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def _opt(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + _pad4(value)


class PcapngWriter:
    """Stream frames into a pcapng file: SHB, one IDB per interface (ns timestamps), EPBs, ISBs at close.

    >>> import io
    >>> w = PcapngWriter(io.BytesIO(), [("lo", 1)], "portclass live")
    >>> w.write(bytes(60), 1_700_000_000_000_000_000, 0)
    >>> w.close({0: InterfaceCounters("lo", received=1, dropped=0)})
    """

    def __init__(self, fh: BinaryIO, interfaces: Sequence[tuple[str, int]], app: str = "portclass") -> None:
        self.fh = fh
        shb = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + _opt(4, app.encode()) + _opt(0, b"")
        parts = [_block(0x0A0D0D0A, shb)]
        for name, lt in interfaces:
            opts = _opt(2, name.encode()) + _opt(9, bytes([9])) + _opt(0, b"")
            parts.append(_block(1, struct.pack("<HHI", lt, 0, 262144) + opts))
        self.n_if = len(interfaces)
        fh.write(b"".join(parts))
        self._pack = struct.Struct("<IIIIIII").pack

    def write(self, data: bytes, ts_ns: int, iface: int = 0, wire_len: int | None = None) -> None:
        """Append one Enhanced Packet Block."""
        n = len(data)
        pad = -n % 4
        total = 32 + n + pad
        wire = n if wire_len is None else wire_len
        self.fh.write(
            self._pack(6, total, iface, ts_ns >> 32, ts_ns & 0xFFFFFFFF, n, wire)
            + data
            + b"\0" * pad
            + struct.pack("<I", total)
        )

    def close(self, counters: dict[int, InterfaceCounters] | None = None, ts_ns: int = 0) -> None:
        """Write an Interface Statistics Block per interface with known counters, then flush."""
        for i, c in (counters or {}).items():
            opts = b""
            if c.received is not None:
                opts += _opt(ISB_IFRECV, struct.pack("<Q", c.received))
            if c.dropped is not None:
                opts += _opt(ISB_IFDROP, struct.pack("<Q", c.dropped))
            if opts and i < self.n_if:
                body = struct.pack("<III", i, ts_ns >> 32, ts_ns & 0xFFFFFFFF) + opts + _opt(0, b"")
                self.fh.write(_block(ISB, body))
        self.fh.flush()
