"""Write small pcap / pcapng files (tests, examples): the reader's formats, produced the plain way."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D


@dataclass
class Frame:
    """One packet to write: link-layer bytes, timestamp, and optionally a shorter capture."""

    data: bytes
    ts_ns: int = 0
    wire_len: int | None = None  # original length (defaults to len(data))
    iface: int = 0  # pcapng interface index


def write_pcap(
    path: str | os.PathLike[str],
    linktype: int,
    frames: Iterable[Frame | bytes],
    *,
    nanosecond: bool = False,
    byteorder: str = "<",
    snaplen: int = 262144,
) -> None:
    """Write a classic pcap file (microsecond or nanosecond timestamps, either byte order)."""
    bo = byteorder
    magic = PCAP_MAGIC_NS if nanosecond else PCAP_MAGIC_US
    out = [struct.pack(bo + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for i, f in enumerate(frames):
        fr = f if isinstance(f, Frame) else Frame(f, ts_ns=1_600_000_000_000_000_000 + i * 1_000_000)
        sec, frac = divmod(fr.ts_ns, 1_000_000_000)
        if not nanosecond:
            frac //= 1000
        wire = len(fr.data) if fr.wire_len is None else fr.wire_len
        out.append(struct.pack(bo + "IIII", sec, frac, len(fr.data), wire) + fr.data)
    with open(path, "wb") as fh:
        fh.write(b"".join(out))


def _pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def _block(bo: str, btype: int, body: bytes) -> bytes:
    body = _pad4(body)
    n = 12 + len(body)
    return struct.pack(bo + "II", btype, n) + body + struct.pack(bo + "I", n)


def _option(bo: str, code: int, value: bytes) -> bytes:
    return struct.pack(bo + "HH", code, len(value)) + _pad4(value)


def write_pcapng(
    path: str | os.PathLike[str],
    interfaces: Sequence[tuple[int, int] | tuple[int, int, int]],
    frames: Iterable[Frame | bytes],
    *,
    byteorder: str = "<",
    simple: bool = False,
) -> None:
    """Write a pcapng file: one section, ``interfaces`` as (link type, if_tsresol byte[, if_tsoffset s]), then EPBs.

    ``simple=True`` writes Simple Packet Blocks instead (interface 0, no timestamps).  Frame
    timestamps are written as they are (``ts_ns`` before the interface's offset is added).
    """
    bo = byteorder
    shb = struct.pack(bo + "IHHq", 0x1A2B3C4D, 1, 0, -1)
    parts = [_block(bo, 0x0A0D0D0A, shb)]
    for lt, tsresol, *offset in interfaces:
        opts = _option(bo, 9, bytes([tsresol])) if tsresol != 6 else b""
        opts += _option(bo, 14, struct.pack(bo + "q", offset[0])) if offset else b""
        opts += _option(bo, 0, b"") if opts else b""
        parts.append(_block(bo, 1, struct.pack(bo + "HHI", lt, 0, 262144) + opts))
    for i, f in enumerate(frames):
        fr = f if isinstance(f, Frame) else Frame(f, ts_ns=1_600_000_000_000_000_000 + i * 1_000_000)
        wire = len(fr.data) if fr.wire_len is None else fr.wire_len
        if simple:
            parts.append(_block(bo, 3, struct.pack(bo + "I", wire) + fr.data))
            continue
        res = interfaces[fr.iface][1]
        ticks = fr.ts_ns // 10 ** (9 - res) if not res & 0x80 else (fr.ts_ns << (res & 0x7F)) // 1_000_000_000
        ticks &= (1 << 64) - 1
        body = struct.pack(bo + "IIIII", fr.iface, ticks >> 32, ticks & 0xFFFFFFFF, len(fr.data), wire) + fr.data
        parts.append(_block(bo, 6, body))
    with open(path, "wb") as fh:
        fh.write(b"".join(parts))
