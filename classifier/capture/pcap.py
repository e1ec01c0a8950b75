"""Classic pcap (libpcap) files: the file header, and every record of a chunk as columns.

Byte layouts are declared as tables (``FILE_HEADER``, ``record_header``); magics select byte
order and timestamp unit (a1b2c3d4 microseconds, a1b23c4d nanoseconds, either byte order).
Records are found with ``walk.walk`` (lock-step lanes, no per-record Python loop).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from ..errors import CaptureError
from .views import header
from .walk import Chain

MAX_RECORD = 262144
"""Largest captured length accepted (Wireshark's WTAP_MAX_PACKET_SIZE_STANDARD); longer means damage."""

FILE_HEADER_LEN = 24
RECORD_HEADER_LEN = 16

MAGICS: dict[bytes, tuple[str, int]] = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000),  # microsecond timestamps, little-endian
    b"\xa1\xb2\xc3\xd4": (">", 1_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),  # nanosecond timestamps
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
"""File magic -> (byte order, nanoseconds per timestamp fraction unit)."""

LINKTYPE_MASK = 0x03FF_FFFF
"""The link-type field's low bits; the high bits carry FCS information (libpcap LT_LINKTYPE)."""


def record_header(byteorder: str) -> np.dtype:
    """The 16-byte record header of a pcap file of the given byte order."""
    u4 = byteorder + "u4"
    fields = [("sec", 0, u4), ("frac", 4, u4), ("incl", 8, u4), ("orig", 12, u4)]
    return header(RECORD_HEADER_LEN, fields)


@dataclass(frozen=True)
class PcapHeader:
    """What the 24-byte file header says."""

    byteorder: str
    frac_ns: int  # nanoseconds per unit of the record's fractional timestamp
    version: tuple[int, int]
    snaplen: int
    linktype: int
    fcs_bytes: int  # bytes of FCS at the end of each frame (0 unless the file says so)

    @property
    def lengths(self) -> str:
        """Record length field order: "normal", "swapped" (before 2.3) or "maybe" swapped (2.3).

        Files older than format 2.3 have orig_len before incl_len; some 2.3 files too, which
        shows as incl_len > orig_len (Wireshark reads them the same way).
        """
        major, minor = self.version
        if (major == 2 and minor < 3) or major == 543:
            return "swapped"
        if major == 2 and minor == 3:
            return "maybe"
        return "normal"


def is_pcap(head: bytes) -> bool:
    """True when ``head`` starts with a classic pcap magic."""
    return head[:4] in MAGICS


def parse_file_header(head: bytes, path: object) -> PcapHeader:
    """Decode the file header, raising ``CaptureError`` when it is cut short or not pcap."""
    magic = head[:4]
    if magic not in MAGICS:
        raise CaptureError("not a pcap file", path=path)
    if len(head) < FILE_HEADER_LEN:
        raise CaptureError(f"pcap file header cut short ({len(head)} of {FILE_HEADER_LEN} bytes)", path=path)
    bo, frac_ns = MAGICS[magic]
    major, minor, _zone, _sigfigs, snaplen, lt = struct.unpack_from(bo + "HHiIII", head, 4)
    if major < 2:
        raise CaptureError(f"pcap format version {major}.{minor} is not supported", path=path)
    fcs = ((lt >> 28) & 0xF) * 2 if lt & 0x0400_0000 else 0
    return PcapHeader(bo, frac_ns, (major, minor), snaplen, lt & LINKTYPE_MASK, fcs)


def _check(frac_max: int, incl_off: int, orig_off: int, min_len: bool) -> object:
    """Plausibility of guessed record starts: sane fields here and at the next two records."""

    def lengths(u: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, b = u[p + incl_off], u[p + orig_off]
        return (np.minimum(a, b), np.maximum(a, b)) if min_len else (a, b)

    def plausible(u: np.ndarray, p: np.ndarray) -> np.ndarray:
        incl, orig = lengths(u, p)
        return (u[p + 4] < frac_max) & (incl <= MAX_RECORD) & (incl > 0) & (orig >= incl) & (orig < (1 << 24))

    def check(u: np.ndarray, p: np.ndarray, end: int) -> np.ndarray:
        ok = plausible(u, p)
        here = p
        for _ in range(2):
            nxt = here + RECORD_HEADER_LEN + lengths(u, here)[0].astype(np.int64)
            inside = nxt + RECORD_HEADER_LEN <= end
            nxt = np.where(inside, nxt, here)
            ok &= plausible(u, nxt)
            dt = u[nxt].astype(np.int64) - u[here].astype(np.int64)
            ok &= (dt > -86400) & (dt < 86400)
            here = nxt
        return ok

    return check


_ZERO_BYTES = {"<": ((11, 0), (15, 0), (7, 0)), ">": ((8, 0), (12, 0), (4, 0))}
"""Bytes that are zero in every sane record header: the top bytes of incl_len, orig_len, µs fraction."""


def chain(hdr: PcapHeader) -> Chain:
    """How records chain in this file (for ``walk.walk``)."""
    frac_max = 1_000_000 if hdr.frac_ns == 1_000 else 1_000_000_000
    incl_off, orig_off = (12, 8) if hdr.lengths == "swapped" else (8, 12)
    return Chain(
        byteorder=hdr.byteorder,
        len_off=incl_off,
        base=RECORD_HEADER_LEN,
        min_len=0,
        max_len=MAX_RECORD,
        align=1,
        prefilter=_ZERO_BYTES[hdr.byteorder][: 3 if hdr.frac_ns == 1_000 else 2],
        check=_check(frac_max, incl_off, orig_off, hdr.lengths == "maybe"),  # type: ignore[arg-type]
        min_off=orig_off if hdr.lengths == "maybe" else None,
    )
