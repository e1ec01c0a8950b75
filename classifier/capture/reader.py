"""``read_batches``: capture files and directories -> one ``PacketBatch`` per chunk, bounded memory.

Each file is read in chunks of ``chunk_bytes`` (``source.Source``: a read-only ``mmap``
window for regular files, a pooled buffer for gzip and pipes); the batch keeps the chunk as
``data``, and the next chunk starts at the first record the previous one could not complete
(or at a later IP fragment whose look-ahead window runs past the chunk, ``fragments``): flows
and counts never depend on where chunks end.
Per chunk, the records are found with ``walk`` (pcap) or ``pcapng.parse_chunk`` and decoded
with ``decode.decode_chunk``: no Python loop over packets anywhere.  Memory stays bounded by
the chunks the consumer still holds (about 240 MB peak for a 3 GB capture with the default
64 MiB chunks).

Damage never raises: what was read before it is returned and ``stats.warnings`` gets one line
naming file, packet number and byte offset.  Only a file that is not a capture at all (or is
empty, or cannot be opened) raises ``CaptureError``; with ``errors="warn"`` that becomes a
warning too and the remaining files are still read.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CaptureError
from . import pcap, pcapng
from .columns import CaptureStats, PacketBatch
from .decode import RawPackets, decode_chunk
from .fragments import FragmentTable
from .linktypes import LINKTYPES, linktype_label
from .source import Source, capture_files, describe_head
from .views import PAD, at
from .walk import LANE_BYTES, walk

DEFAULT_CHUNK_BYTES = 64 << 20
MIN_CHUNK_BYTES = 4096
"""Smallest chunk read (tests lower it, to 64 at least, so that chunk ends fall inside small captures)."""
MAX_FILES = 1 << 16
"""``file_index`` is uint16."""


def read_batches(
    paths: Sequence[str | os.PathLike[str]],
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    *,
    errors: str = "raise",
    lane_bytes: int = LANE_BYTES,
) -> Iterator[PacketBatch]:
    """Yield one ``PacketBatch`` per chunk of every capture in ``paths`` (files, or directories walked).

    ``batch.stats`` holds that chunk's counts only (merge them); ``batch.stats.files`` lists the
    files first opened in that chunk, so the merged ``stats.files`` lists every file opened (a path
    given twice is listed twice) and ``batch.file_index`` indexes it.  ``stats.bytes`` counts bytes of
    the files on disk consumed by the chunk (compressed bytes for gzip), for progress bars.
    ``errors="raise"`` (default) raises ``CaptureError`` for a path that is not a readable
    capture; ``"warn"`` turns it into a warning and goes on.  ``lane_bytes`` tunes the
    record walk (tests make it small to exercise the lock-step lanes on small files).
    """
    if errors not in ("raise", "warn"):
        raise ValueError(f"errors must be 'raise' or 'warn', not {errors!r}")
    files: list[str] = []
    frags = FragmentTable()
    pool = _BufferPool()
    for path in capture_files(paths):
        if len(files) >= MAX_FILES:
            raise CaptureError(f"more than {MAX_FILES} capture files in one run", path=path)
        files.append(str(path))
        new = [str(path)]  # emptied once a batch has listed it
        try:
            yield from _read_file(path, len(files) - 1, new, max(chunk_bytes, MIN_CHUNK_BYTES), frags, lane_bytes, pool)
            if new:  # nothing yielded: list the file anyway so later file_index values stay right
                yield empty_batch(CaptureStats(files=new))
        except CaptureError as e:
            if errors == "raise":
                raise
            stats = CaptureStats(files=new)
            stats.warnings.append(f"{e}; skipped")
            yield empty_batch(stats)


def empty_batch(stats: CaptureStats | None = None) -> PacketBatch:
    """A batch with no rows (carries ``stats`` only)."""
    z = np.empty(0, np.uint64)
    return PacketBatch(
        ts_ns=np.empty(0, np.int64),
        wire_len=np.empty(0, np.uint32),
        ip_version=np.empty(0, np.uint8),
        src_hi=z,
        src_lo=z,
        dst_hi=z,
        dst_lo=z,
        proto=np.empty(0, np.uint8),
        sport=np.empty(0, np.uint16),
        dport=np.empty(0, np.uint16),
        tcp_flags=np.empty(0, np.uint8),
        frag=np.empty(0, np.uint8),
        payload_off=np.empty(0, np.int64),
        payload_len=np.empty(0, np.int32),
        pkt_index=np.empty(0, np.int64),
        file_index=np.empty(0, np.uint16),
        data=np.zeros(PAD, np.uint8),
        stats=stats if stats is not None else CaptureStats(),
    )


class _Pcap:
    """Classic pcap: the records of a chunk as ``RawPackets``."""

    def __init__(self, hdr: pcap.PcapHeader, lane_bytes: int) -> None:
        self.hdr = hdr
        self.chain = pcap.chain(hdr)
        self.rec = pcap.record_header(hdr.byteorder)
        self.lane_bytes = lane_bytes
        self.start = pcap.FILE_HEADER_LEN

    def parse(self, buf: np.ndarray, start: int, end: int, first_index: int) -> tuple[RawPackets, int, str, str]:
        """Records in ``buf[start:end]``: packets, where reading stopped, why, and the damage message."""
        w = walk(buf, at(buf, self.hdr.byteorder + "u4"), start, end, self.chain, self.lane_bytes)
        h = at(buf, "V16")[w.pos].view(self.rec)
        ts = h["sec"].astype(np.int64) * 1_000_000_000
        ts += h["frac"].astype(np.int64) * self.hdr.frac_ns
        incl, orig = h["incl"], h["orig"]
        if self.hdr.lengths == "swapped":
            incl, orig = orig, incl
        elif self.hdr.lengths == "maybe":
            incl, orig = np.minimum(incl, orig), np.maximum(incl, orig)
        raw = RawPackets(
            pkt=w.pos + pcap.RECORD_HEADER_LEN,
            caplen=incl.astype(np.int64),
            wire_len=orig.astype(np.uint32),
            ts_ns=ts,
            linktype=self.hdr.linktype,
            first_index=first_index,
            rec=w.pos,
        )
        msg = ""
        if w.status == "damage":
            msg = f"record length {w.bad_len} exceeds {pcap.MAX_RECORD}"
        return raw, w.stop, w.status, msg

    def mark(self) -> object:
        """The container state (none for pcap), for ``rewind``."""
        return None

    def rewind(self, mark: object, buf: np.ndarray, start: int, stop: int) -> None:
        """Set the container state to what reading ``buf[start:stop]`` after ``mark`` leaves (pcap: none)."""

    def cut_message(self, buf: np.ndarray, stop: int, end: int) -> str:
        """What is missing of the record cut by the end of the file."""
        have = end - stop
        if have < pcap.RECORD_HEADER_LEN:
            return f"last record header cut short ({have} of {pcap.RECORD_HEADER_LEN} bytes); ignored"
        incl = self.chain.length_at(at(buf, self.hdr.byteorder + "u4"), stop)
        return f"last record cut short ({have} of {pcap.RECORD_HEADER_LEN + incl} bytes); ignored"


class _Pcapng:
    """pcapng: the packet blocks of a chunk as ``RawPackets``."""

    def __init__(self, byteorder: str, lane_bytes: int) -> None:
        self.sec = pcapng.Section(byteorder=byteorder)
        self.lane_bytes = lane_bytes
        self.start = 0

    def parse(self, buf: np.ndarray, start: int, end: int, first_index: int) -> tuple[RawPackets, int, str, str]:
        """Packet blocks in ``buf[start:end]``: packets, where reading stopped, why, and the damage message."""
        cb = pcapng.parse_chunk(buf, start, end, self.sec, self.lane_bytes)
        b = cb.blocks
        raw = RawPackets(b.pkt, b.caplen, b.wire_len, b.ts_ns, b.linktype, first_index, b.start)
        return raw, cb.stop, cb.status, cb.message

    def mark(self) -> object:
        """The section state (byte order, interfaces, section), for ``rewind``."""
        sec = self.sec
        return sec.byteorder, len(sec.interfaces), sec.base, sec.sections

    def rewind(self, mark: object, buf: np.ndarray, start: int, stop: int) -> None:
        """Set the section state to what reading ``buf[start:stop]`` after ``mark`` leaves."""
        sec = self.sec
        sec.byteorder, n, sec.base, sec.sections = mark  # type: ignore[misc]
        del sec.interfaces[n:]
        pcapng.parse_chunk(buf, start, stop, sec, self.lane_bytes)

    def cut_message(self, buf: np.ndarray, stop: int, end: int) -> str:
        """What is missing of the block cut by the end of the file."""
        have = end - stop
        if have < 8:
            return f"last block header cut short ({have} of 8 bytes); ignored"
        n = int(at(buf, self.sec.byteorder + "u4")[stop + 4])
        return f"last block cut short ({have} of {n} bytes); ignored"


def _open_format(head: bytes, path: Path, lane_bytes: int) -> _Pcap | _Pcapng:
    """The container reader for a file starting with ``head`` (``CaptureError`` when there is none)."""
    if not head:
        raise CaptureError("empty file", path=path)
    if pcap.is_pcap(head):
        return _Pcap(pcap.parse_file_header(head, path), lane_bytes)
    if pcapng.is_pcapng(head):
        order = pcapng.shb_byteorder(head)
        if order is None:
            raise CaptureError("pcapng section header cut short or without a byte-order magic", path=path)
        return _Pcapng(order, lane_bytes)
    raise CaptureError(f"not a pcap or pcapng capture (it {describe_head(head)})", path=path)


@dataclass
class Span:
    """Part of one file for ``_read_file`` (a byte range of it, for a caller that splits a file).

    Reading starts at the chunk base ``begin`` with the container state ``fmt``, packet
    count ``packets`` and link types already warned about; it stops (``reached``) when a
    chunk would start exactly at ``stop``, leaving the state there in the same fields.  A
    chunk base that jumps over ``stop`` means ``stop`` was no chunk boundary: reading then
    simply goes on to the end of the file.  ``number`` renders packet numbers in warnings.
    """

    begin: int = 0
    fmt: _Pcap | _Pcapng | None = None
    packets: int = 0
    warned: set[int] = field(default_factory=set)
    stop: int | None = None
    number: Callable[[int], str] = str
    reached: bool = False
    interrupted: bool = False  # set by callers that stop reading on Ctrl-C


def _read_file(
    path: Path,
    file_index: int,
    new: list[str],
    chunk_bytes: int,
    frags: FragmentTable,
    lane_bytes: int,
    pool: _BufferPool,
    span: Span | None = None,
) -> Iterator[PacketBatch]:
    """Batches of one capture file (see ``read_batches``), or of the part ``span`` names.

    The first batch yielded lists the names in ``new`` in its ``stats.files`` and empties ``new``.
    """
    name = str(path)
    span = span if span is not None else Span()
    number = span.number
    with Source(path) as src:
        fmt: _Pcap | _Pcapng | None = span.fmt
        cap = chunk_bytes
        base = span.begin  # file offset (decompressed) of the first byte not yet consumed
        start = 0  # where records start in the next chunk (after the file header in the first)
        packets = span.packets
        reported = span.begin  # disk bytes already counted in stats.bytes
        warned_linktypes: set[int] = span.warned
        while True:
            if span.stop is not None and base >= span.stop:
                if base == span.stop:
                    span.fmt, span.packets, span.reached = fmt, packets, True
                    return
                span.stop = None  # not a chunk boundary: read on
            ch = src.chunk(base, cap, pool.get)
            buf, end = ch.buf, ch.end
            stats = CaptureStats()
            if fmt is None:
                if ch.broken and end < 4:  # the stream broke before the format could be told
                    raise CaptureError(ch.broken, path=path)
                fmt = _open_format(bytes(buf[: min(end, 64)]), path, lane_bytes)
                start = fmt.start
                if start > end:
                    raise CaptureError("pcap file header cut short", path=path)
            mark = fmt.mark()
            raw, stop, status, msg = fmt.parse(buf, start, end, packets + 1)
            final = status == "damage" or ch.eof
            batch = decode_chunk(buf, raw, file_index, frags, stats, None if final else stop)
            if stats.packets < raw.pkt.size:  # a later fragment waits for what follows: read on from it
                assert raw.rec is not None
                stop, status = int(raw.rec[stats.packets]), "partial"
                fmt.rewind(mark, buf, start, stop)
            _warn_linktypes(fmt, name, warned_linktypes, stats)
            packets += stats.packets
            at_byte = f"{name}: packet {number(packets + 1)} at byte {base + stop}"
            if status == "damage":
                stats.warnings.append(f"{at_byte}: {msg}; stopped reading")
            elif status == "partial" and ch.eof:
                what = f"{ch.broken}; stopped reading" if ch.broken else fmt.cut_message(buf, stop, end)
                stats.warnings.append(f"{at_byte}: {what}")
            elif ch.broken:
                stats.warnings.append(
                    f"{name}: after packet {number(packets)} at byte {base + end}: {ch.broken}; stopped reading"
                )
            done = status == "damage" or ch.eof
            disk = src.consumed(base + (end if done else stop))
            stats.bytes = max(disk - reported, 0)
            reported = disk
            if raw.pkt.size or stats.warnings or stats.bytes:
                stats.files, new[:] = list(new), []
                yield batch
            del batch, raw, ch
            pool.put(buf)
            del buf
            if done:
                return
            if status == "partial" and stop == start:
                cap *= 2  # one record is bigger than the chunk: read more before trying again
            base += stop
            start = 0


_SLACK = 1 << 20
"""Extra bytes allocated per chunk buffer so that a carried partial record fits when it is reused."""


class _BufferPool:
    """Chunk buffers handed out as ``batch.data``, refilled once the consumer has let go of them.

    Fresh memory costs page faults (~0.2 ms per MiB, a third of the read time).  A consumer
    iterating with ``for batch in read_batches(...)`` still holds the previous batch while the
    next one is built, so the two most recent buffers are kept; one is refilled only when
    nothing but this pool references it (no batch, no view of its data: ``sys.getrefcount``).
    """

    def __init__(self, keep: int = 2) -> None:
        self.keep = keep
        self.free: list[np.ndarray] = []

    def get(self, need: int) -> np.ndarray:
        """A buffer of at least ``need`` bytes."""
        for i in range(len(self.free)):
            b = self.free[i]
            if b.size >= need and sys.getrefcount(b) <= 3:  # the list, ``b`` and the call's argument
                del self.free[i]
                return b
            del b
        return np.empty(need + _SLACK, np.uint8)

    def put(self, buf: np.ndarray) -> None:
        """Offer a buffer whose batch has been handed out (mapped file windows are not kept)."""
        if buf.base is not None or not buf.flags.writeable:
            return
        self.free.append(buf)
        if len(self.free) > self.keep:
            del self.free[0]


def _warn_linktypes(fmt: _Pcap | _Pcapng, name: str, warned: set[int], stats: CaptureStats) -> None:
    """One warning per file and unsupported link type (its packets are counted in skipped_linktype)."""
    lts = [fmt.hdr.linktype] if isinstance(fmt, _Pcap) else [i.linktype for i in fmt.sec.interfaces]
    for lt in lts:
        if lt not in LINKTYPES and lt not in warned:
            warned.add(lt)
            stats.warnings.append(f"{name}: link type {linktype_label(lt)} is not supported; its packets are skipped")
