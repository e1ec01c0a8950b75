"""Evaluate the signature table on every payload-carrying packet of a batch, vectorized.

One gather builds a fixed-width prefix matrix of the payloads (``PREFIX_BYTES`` per packet,
read through a view of the chunk's bytes as overlapping fixed-size items, no per-packet
Python), viewed also as little-endian 64-bit words.  Packets are then dispatched to the
signatures their leading bytes allow: ``Dispatch`` holds, per byte position it reads (the
first byte with the transport, and a few other positions), a 256-entry table of the
signatures each byte value allows, as bit sets (one bit per signature), and one more on
the payload length; AND-ing a handful of gathers gives each packet the set of signatures
it may match, so a signature only looks at those packets and one that no packet allows
costs nothing.  Byte tests the tables did not settle become word-wide
``(word & mask) == value`` comparisons; structural checks (``walk``) run on the rows the
tests kept.  The result is a ``classifier.flows.PacketTags``: a signature code per packet
(first matching row in table order) and the TLS server names found.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..capture.columns import FRAG_LATER, PROTO_TCP, PROTO_UDP, PacketBatch
from ..flows import SERVER_NAME_BYTES, PacketTags
from . import extract, walk
from .table import PROTOCOLS, SIGNATURES, Bits, ByteIn, Echo, LenField, Lit, OneOf, Signature, Tail

PREFIX_BYTES = 32
"""Width of the prefix matrix: byte tests within it are word tests; tests past it gather bytes."""
DISPATCH_POSITIONS = 8
"""Byte positions of the prefix the dispatch tables read (the first byte, then the most telling others)."""

PROTOCOL_CODE: dict[str, int] = {p.name: i + 1 for i, p in enumerate(PROTOCOLS)}
"""Protocol name -> code (1-based; 0 none)."""
SIG_PROTOCOL = np.array([0] + [PROTOCOL_CODE[s.protocol] for s in SIGNATURES], dtype=np.uint8)
"""Signature code -> protocol code."""
SIG_WEIGHT = np.array([0] + [s.weight for s in SIGNATURES], dtype=np.uint8)
"""Signature code -> weight (0 for 'none')."""
ROLE_CODES = {"any": 0, "client": 1, "server": 2}
SIG_ROLE = np.array([0] + [ROLE_CODES[s.role] for s in SIGNATURES], dtype=np.uint8)
"""Signature code -> sending side (0 any, 1 client, 2 server)."""
SIG_CONFIRM_ONLY = np.array([False] + [s.confirm_only for s in SIGNATURES], dtype=bool)
"""Signature code -> weak evidence that may confirm a registered name but never contradicts one."""
SIG_ALT = np.array([0] + [PROTOCOL_CODE[s.alt] if s.alt else 0 for s in SIGNATURES], dtype=np.uint8)
"""Signature code -> the other protocol the same bytes may be (0: none)."""
SIG_NAMES: tuple[str, ...] = ("",) + tuple(s.name for s in SIGNATURES)
"""Signature code -> name."""
SIG_CODE: dict[str, int] = {s.name: i + 1 for i, s in reversed(list(enumerate(SIGNATURES)))}
"""Signature name -> code (the first row of that name)."""
_REQUEST_CODES: dict[str, frozenset[int]] = {
    n: frozenset(i + 1 for i, s in enumerate(SIGNATURES) if s.name == n) for n in {s.name for s in SIGNATURES}
}
"""Signature name -> the codes of its rows."""


@dataclass
class _Compiled:
    """A signature row turned into word/byte tests over the prefix matrix."""

    code: int
    sig: Signature
    proto: int  # 0 any, else IP protocol number
    min_len: int
    words: list[tuple[int, int, int]]  # (word, mask, value): all must hold
    alts: list[list[list[tuple[int, int, int]]]]  # per OneOf: alternatives, each a word-test list
    alt0: list[tuple[int, list[tuple[int, int, int]]]]  # OneOf at offset 0: (first byte, tests) per alternative
    bytesets: list[tuple[int, np.ndarray]]  # (offset, 256-entry bool LUT)
    far: list[tuple[int, np.ndarray]]  # (offset >= PREFIX_BYTES or < 0 from the end, 256-entry LUT)
    lenfields: list[LenField]
    echoes: list[Echo]
    anchor: np.ndarray  # first-byte values the row allows (sorted)
    first: np.ndarray  # ... as a 256-entry table
    allowed: np.ndarray  # (PREFIX_BYTES, 256): byte values each position may hold (a necessary condition)
    alt0_by_byte: dict[int, list[list[tuple[int, int, int]]]]  # alt0 grouped by first byte
    alt0_id: int  # rows with the same alternatives share one id (and what the batch found for them)
    lengths: np.ndarray  # allowed payload lengths (empty: any)


def _byte_tests(off: int, value: bytes, mask: bytes | None, nocase: bool) -> list[tuple[int, int, int]]:
    """Per-byte (offset, mask, value) tests of a literal."""
    out = []
    for i, v in enumerate(value):
        m = mask[i] if mask is not None and i < len(mask) else 0xFF
        if nocase and (0x41 <= v <= 0x5A or 0x61 <= v <= 0x7A):
            m &= 0xDF
            v &= 0xDF
        out.append((off + i, m, v & m))
    return out


def _to_words(tests: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Fold byte tests into (word, mask, value) tests on little-endian 64-bit words."""
    acc: dict[int, list[int]] = {}
    for off, m, v in tests:
        if off >= PREFIX_BYTES:
            raise ValueError(f"byte test at offset {off} lies beyond PREFIX_BYTES={PREFIX_BYTES}")
        w, sh = divmod(off, 8)
        mv = acc.setdefault(w, [0, 0])
        mv[0] |= m << (8 * sh)
        mv[1] |= v << (8 * sh)
    return [(w, mv[0], mv[1]) for w, mv in sorted(acc.items()) if mv[0]]


def _lut(values: frozenset[int]) -> np.ndarray:
    """256-entry bool table of a byte set."""
    lut = np.zeros(256, dtype=bool)
    lut[list(values)] = True
    return lut


def _allowed(tests: list[tuple[int, int, int]]) -> np.ndarray:
    """(PREFIX_BYTES, 256) table of the byte values each position may hold under these word tests."""
    out = np.ones((PREFIX_BYTES, 256), dtype=bool)
    for w, m, v in tests:
        for sh in range(8):
            bm, bv = (m >> (8 * sh)) & 0xFF, (v >> (8 * sh)) & 0xFF
            if bm:
                out[8 * w + sh] &= (np.arange(256) & bm) == bv
    return out


_ALT0_IDS: dict[tuple, int] = {}
"""Alternatives at offset 0 -> their id."""


def _group(alt0: list[tuple[int, list[tuple[int, int, int]]]]) -> dict[int, list[list[tuple[int, int, int]]]]:
    """Alternatives at offset 0 grouped by their first byte."""
    out: dict[int, list[list[tuple[int, int, int]]]] = {}
    for v, tests in alt0:
        out.setdefault(v, []).append(tests)
    return out


def _compile(code: int, sig: Signature) -> _Compiled:
    """Turn a table row into the tests the engine runs, and find its anchor byte set."""
    fixed: list[tuple[int, int, int]] = []
    alts: list[list[list[tuple[int, int, int]]]] = []
    alt0: list[tuple[int, list[tuple[int, int, int]]]] = []
    bytesets: list[tuple[int, np.ndarray]] = []
    far: list[tuple[int, np.ndarray]] = []
    lenfields: list[LenField] = []
    echoes: list[Echo] = []
    first = np.ones(256, dtype=bool)
    per_off = np.ones((PREFIX_BYTES, 256), dtype=bool)  # per offset: byte values the row allows
    last = 0
    for t in sig.tests:
        if isinstance(t, Tail):
            far += [(-(t.back - i), _lut(frozenset({v}))) for i, v in enumerate(t.value)]
            last = max(last, t.back)
        elif isinstance(t, Echo):
            echoes.append(t)
            last = max(last, t.off + t.size)
        elif isinstance(t, Lit) and t.off + len(t.value) > PREFIX_BYTES:
            for i, v in enumerate(t.value):
                either = t.nocase and 0x41 <= (v & 0xDF) <= 0x5A
                far.append((t.off + i, _lut(frozenset({v, v ^ 0x20} if either else {v}))))
            last = max(last, t.off + len(t.value))
        elif isinstance(t, ByteIn) and t.off >= PREFIX_BYTES:
            far.append((t.off, _lut(t.values)))
            last = max(last, t.off + 1)
        elif isinstance(t, Lit):
            bt = _byte_tests(t.off, t.value, None, t.nocase)
            fixed += bt
            last = max(last, t.off + len(t.value))
        elif isinstance(t, Bits):
            bt = _byte_tests(t.off, t.value, t.mask, False)
            fixed += bt
            last = max(last, t.off + len(t.value))
        elif isinstance(t, OneOf):
            masks = t.masks or (None,) * len(t.values)
            per = [_byte_tests(t.off, v, mk, t.nocase) for v, mk in zip(t.values, masks, strict=True)]
            last = max(last, t.off + max(len(v) for v in t.values))
            if t.off == 0:
                allowed = np.zeros(256, dtype=bool)
                for bt in per:
                    _, m0, v0 = bt[0]
                    for v in np.flatnonzero((np.arange(256) & m0) == v0).tolist():
                        alt0.append((v, _to_words(bt)))  # one bucket per first-byte value
                        allowed[v] = True
                first &= allowed
            else:
                alts.append([_to_words(bt) for bt in per])
        elif isinstance(t, ByteIn):
            lut = np.zeros(256, dtype=bool)
            lut[list(t.values)] = True
            if t.off < PREFIX_BYTES:
                per_off[t.off] &= lut
            if t.off == 0:
                first &= lut
            else:
                bytesets.append((t.off, lut))
            last = max(last, t.off + 1)
        elif isinstance(t, LenField):
            lenfields.append(t)
            last = max(last, t.off + t.size)
            if t.off + t.size > PREFIX_BYTES:
                raise ValueError(f"{sig.name}: length field beyond PREFIX_BYTES")
    for off, m, v in fixed:
        per_off[off] &= (np.arange(256) & m) == v
        if off == 0:
            first &= (np.arange(256) & m) == v
    per_off[0] &= first
    for choices in alts + [[ts for _, ts in alt0]]:  # one of several: a byte may hold what any of them allows
        if choices:
            per_off &= np.logical_or.reduce([_allowed(ts) for ts in choices])
    return _Compiled(
        code=code,
        sig=sig,
        proto={"any": 0, "tcp": PROTO_TCP, "udp": PROTO_UDP}[sig.transport],
        min_len=max(sig.min_len, last),
        words=_to_words(fixed),
        alts=alts,
        alt0=alt0,
        bytesets=bytesets,
        far=far,
        lenfields=lenfields,
        echoes=echoes,
        anchor=np.flatnonzero(first),
        first=first,
        allowed=per_off,
        alt0_by_byte=_group(alt0),
        alt0_id=_ALT0_IDS.setdefault(tuple((v, tuple(ts)) for v, ts in alt0), len(_ALT0_IDS)),
        lengths=np.array(sorted(sig.lengths), dtype=np.int64),
    )


COMPILED: tuple[_Compiled, ...] = tuple(_compile(i + 1, s) for i, s in enumerate(SIGNATURES))
if len(COMPILED) > 255:  # pragma: no cover - codes are uint8
    raise ValueError("at most 255 signatures")


def prefix_matrix(data: np.ndarray, off: np.ndarray, width: int = PREFIX_BYTES) -> np.ndarray:
    """``data[off[:, None] + arange(width)]`` as a (len(off), width) uint8 matrix, zeros past the end.

    Rows are copied through a view of overlapping ``width``-byte items (no index matrix is built).

    >>> prefix_matrix(np.arange(10, dtype=np.uint8), np.array([0, 8]), 4).tolist()
    [[0, 1, 2, 3], [8, 9, 0, 0]]
    """
    n = int(data.shape[0])
    k = int(off.shape[0])
    if k == 0:
        return np.zeros((0, width), dtype=np.uint8)
    if n < width:
        data = np.concatenate([data, np.zeros(width - n, dtype=np.uint8)])
    last = int(data.shape[0]) - width
    # overlapping fixed-size items, one per byte offset: a 1-D gather copies each row at once
    items = np.ndarray(shape=(last + 1,), dtype=f"V{width}", buffer=data, offset=0, strides=(1,))
    out = items[np.minimum(off, last)].view(np.uint8).reshape(k, width)
    late = np.flatnonzero(off > last)
    if late.size:  # the chunk's last payloads: shift and zero-fill
        cols = off[late, None] + np.arange(width)
        out[late] = np.where(cols < n, data[np.minimum(cols, n - 1)], 0)
    return out


class _Batch:
    """The prefix matrix of one batch's candidate packets, and what the signatures found so far."""

    def __init__(self, data: np.ndarray, off: np.ndarray, plen: np.ndarray, proto: np.ndarray) -> None:
        self.src_hi = self.src_lo = self.dst_hi = self.dst_lo = self.sport = self.dport = proto
        self.idx = np.arange(off.shape[0])
        self.data = data
        self.off = off
        self.plen = plen
        self.proto = proto
        self.m8 = prefix_matrix(data, off)
        self.mw = self.m8.view("<u8")
        self.sig = np.zeros(off.shape[0], dtype=np.uint8)
        self.tagged: dict[int, np.ndarray] = {}  # signature code -> the rows it was given to
        self.said: list[tuple[np.ndarray, np.ndarray]] = []  # (rows, what they said)
        self._by_proto: dict[int, np.ndarray] = {}
        self.alt0: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # alternatives' id -> (rows tested, rows passing)

    def proto_mask(self, proto: int) -> np.ndarray | None:
        """Mask of the rows of one transport (None: all)."""
        if proto == 0:
            return None
        if proto not in self._by_proto:
            self._by_proto[proto] = self.proto == proto
        return self._by_proto[proto]

    def words_ok(self, rows: np.ndarray, tests: list[tuple[int, int, int]]) -> np.ndarray:
        """Rows (a subset of ``rows``) passing every (word, mask, value) test."""
        for w, m, v in tests:
            if not rows.size:
                break
            col = self.mw[rows, w]
            rows = rows[(col & np.uint64(m)) == np.uint64(v)]
        return rows

    def field(self, rows: np.ndarray, off: int, size: int, little: bool = False) -> np.ndarray:
        """Integer field at ``off`` of ``size`` bytes (big-endian unless ``little``)."""
        v = np.zeros(rows.size, dtype=np.int64)
        for i in reversed(range(size)) if little else range(size):
            v = (v << 8) | self.m8[rows, off + i]
        return v

    def far_bytes(self, rows: np.ndarray, off: int) -> tuple[np.ndarray, np.ndarray]:
        """(byte at ``off`` of each row's payload, or at ``plen + off`` when ``off`` < 0; mask: it exists)."""
        plen = self.plen[rows].astype(np.int64)
        pos = plen + off if off < 0 else np.full(rows.size, off, dtype=np.int64)
        ok = (pos >= 0) & (pos < plen)
        at = np.minimum(np.maximum(self.off[rows] + pos, 0), self.data.shape[0] - 1)
        return self.data[at], ok


@dataclass
class _Rest:
    """The tests of one row that its candidates still need (the rest the dispatch tables settled)."""

    lengths: bool  # test the payload length bounds
    words: list[tuple[int, int, int]]
    bytesets: list[tuple[int, np.ndarray]]


def _bits(allowed: np.ndarray) -> np.ndarray:
    """(values, rows) bool table -> (values, words) uint64 bit sets, bit ``i`` for row ``i``."""
    k, n = allowed.shape
    padded = np.zeros((k, -(-n // 64) * 64), dtype=bool)
    padded[:, :n] = allowed
    return np.packbits(padded, axis=1, bitorder="little").view("<u8")


class Dispatch:
    """Which signatures each packet may match, from its transport, length and a few leading bytes.

    Built once from compiled rows (at import for the table): per position read, a 256-entry table of
    bit sets of the rows each byte value allows (the first position keyed also by transport: TCP,
    UDP, other), and one on the payload length.  ``run`` ANDs their gathers for a batch: a handful
    of passes however many rows there are (only the bit-set width grows, 64 rows a word).
    """

    def __init__(self, compiled: tuple[_Compiled, ...], positions: int | list[int] = DISPATCH_POSITIONS) -> None:
        self.compiled = compiled
        n = len(compiled)
        allowed = np.stack([c.allowed for c in compiled]) if n else np.ones((0, PREFIX_BYTES, 256), bool)
        if isinstance(positions, int):
            positions = _telling(allowed, positions)
        self.positions = sorted({0, *(int(o) for o in positions)})
        classes = np.zeros((3, n), dtype=bool)  # TCP, UDP, other transports
        for i, c in enumerate(compiled):
            classes[:, i] = [c.proto in (0, PROTO_TCP), c.proto in (0, PROTO_UDP), c.proto == 0]
        self.first = _bits((classes[:, None, :] & allowed[:, 0, :].T[None, :, :]).reshape(3 * 256, n))
        self.luts = [_bits(allowed[:, o, :].T) for o in self.positions[1:]]
        bounds = [c.min_len for c in compiled] + [c.sig.max_len for c in compiled]
        bounds += [int(c.lengths.max()) for c in compiled if c.lengths.size]
        self.cap = max([64, *bounds]) + 1  # lengths from here on: every bound is below them
        plen = np.arange(self.cap + 1)
        ok = np.ones((self.cap + 1, n), dtype=bool)
        for i, c in enumerate(compiled):
            ok[:, i] = plen >= c.min_len
            if c.sig.max_len:
                ok[:, i] &= plen <= c.sig.max_len
            if c.lengths.size:
                exact = np.zeros(self.cap + 1, dtype=bool)
                exact[c.lengths] = True
                ok[:, i] &= exact
        self.length = _bits(ok)
        settled = np.zeros(PREFIX_BYTES, dtype=bool)
        settled[self.positions] = True
        self.rest = [self._rest(c, settled) for c in compiled]

    @staticmethod
    def _rest(c: _Compiled, settled: np.ndarray) -> _Rest:
        """The word and byte-set tests of ``c`` on positions the tables do not read (those are exact there)."""
        words = []
        for w, m, v in c.words:
            gone = sum(0xFF << (8 * sh) for sh in range(8) if settled[8 * w + sh])
            if m & ~gone:
                words.append((w, m & ~gone, v & ~gone))
        return _Rest(False, words, [(o, lut) for o, lut in c.bytesets if not settled[o]])

    def run(self, b: _Batch, found: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Run each row, in table order, on the packets it may match (none: the row costs nothing)."""
        cls = np.where(b.proto == PROTO_TCP, 0, np.where(b.proto == PROTO_UDP, 256, 512))
        m = np.take(self.first, cls + b.m8[:, 0], axis=0)
        m &= np.take(self.length, np.minimum(b.plen, self.cap), axis=0)
        for o, lut in zip(self.positions[1:], self.luts, strict=True):
            m &= np.take(lut, b.m8[:, o], axis=0)
        rows, sigs = _pairs(m)
        order = np.argsort(sigs, kind="stable")  # (a radix sort of small integers)
        rows = rows[order]
        at = np.zeros(len(self.compiled) + 1, dtype=np.int64)
        np.cumsum(np.bincount(sigs, minlength=len(self.compiled)), out=at[1:])
        bounds = at.tolist()
        for i in np.flatnonzero(at[1:] > at[:-1]).tolist():  # in table order: the first row to match names it
            _run(b, self.compiled[i], rows[bounds[i] : bounds[i + 1]], self.rest[i], found)


_BYTE_WEIGHT = np.ones(256, dtype=np.float32)
_BYTE_WEIGHT[[0x00, 0xFF, 0x20]] = 8.0, 4.0, 2.0  # padding, all-ones and spaces: common in payloads
_BYTE_WEIGHT /= _BYTE_WEIGHT.sum()


def _telling(allowed: np.ndarray, k: int) -> list[int]:
    """``k`` positions (the first, then greedily) that leave the fewest expected candidates over all rows.

    ``allowed`` is (rows, positions, 256); a row's share of packets passing a position is the weight of
    the byte values it allows there (common bytes weigh more), and passing several is their product.
    """
    share = (allowed.reshape(-1, 256).astype(np.float32) @ _BYTE_WEIGHT).reshape(allowed.shape[:2]).T
    left = share[0].copy()
    chosen = [0]
    while len(chosen) < min(k, share.shape[0]):
        gain = (left[None, :] * (1 - share)).sum(axis=1)
        gain[chosen] = -1
        best = int(np.argmax(gain))
        chosen.append(best)
        left *= share[best]
    return chosen


def _pairs(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, bit) of every set bit of ``m`` (rows of 64-bit words; bit ``64 * word + i``), peeled lowest first."""
    r, w = np.nonzero(m)
    x = m[r, w]
    base = (w << 6).astype(np.int16) - 1
    rows, bits = [], []
    while r.size:
        low = x & (~x + np.uint64(1))
        rows.append(r)
        bits.append(base + np.frexp(low.astype(np.float64))[1].astype(np.int16))  # exact: a power of two
        x ^= low
        keep = np.flatnonzero(x)
        r, x, base = r[keep], x[keep], base[keep]
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int16)
    return np.concatenate(rows), np.concatenate(bits)


DISPATCH = Dispatch(COMPILED)
"""The table's dispatch (benchmarks build others from part of the table)."""


def _reference_rest(c: _Compiled) -> _Rest:
    """Every test of the row (the reference path: candidates are all packets of its transport)."""
    return _Rest(True, c.words, [(0, c.first), *c.bytesets])


def _alt0_ok(b: _Batch, c: _Compiled, rows: np.ndarray) -> np.ndarray:
    """The rows (a subset of ``rows``) that start with one of the row's alternatives at offset 0.

    Rows with the same alternatives (HTTP's request lines) share what was found: each packet is
    tested once per batch."""
    if c.alt0_id not in b.alt0:
        b.alt0[c.alt0_id] = (np.zeros(b.off.shape[0], dtype=bool), np.zeros(b.off.shape[0], dtype=bool))
    done, ok = b.alt0[c.alt0_id]
    need = rows[~done[rows]]
    if need.size:
        done[need] = True
        b0 = b.m8[need, 0]
        for v, group in c.alt0_by_byte.items():
            at = need[b0 == v]
            if not at.size:
                continue
            w0 = b.mw[at, 0]  # one gather per first byte, shared by its alternatives
            for tests in group:
                (w, m, val), more = tests[0], tests[1:]
                hit = (w0 if w == 0 else b.mw[at, w]) & np.uint64(m) == np.uint64(val)
                for w, m, val in more:
                    hit &= (w0 if w == 0 else b.mw[at, w]) & np.uint64(m) == np.uint64(val)
                ok[at[hit]] = True
    return rows[ok[rows]]


def _run(b: _Batch, c: _Compiled, rows: np.ndarray, rest: _Rest, names: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Evaluate one signature row on its candidate ``rows`` and tag those it matches (still untagged)."""
    if any(_REQUEST_CODES[e.request].isdisjoint(b.tagged) for e in c.echoes):
        return  # a reply to requests the batch does not hold
    rows = rows[b.sig[rows] == 0]  # (candidates are of the row's transport already)
    if rest.lengths and rows.size:
        plen = b.plen[rows]
        keep = plen >= c.min_len
        if c.sig.max_len:
            keep &= plen <= c.sig.max_len
        if c.lengths.size:
            keep &= _member(plen, c.lengths)
        rows = rows[keep]
    rows = b.words_ok(rows, rest.words)
    for off, lut in rest.bytesets:
        if not rows.size:
            return
        rows = rows[lut[b.m8[rows, off]]]
    if c.alt0 and rows.size:
        rows = _alt0_ok(b, c, rows)
    for alternatives in c.alts:
        if not rows.size:
            return
        ok = np.zeros(rows.size, dtype=bool)
        for tests in alternatives:
            sub = np.ones(rows.size, dtype=bool)
            for w, m, v in tests:
                sub &= (b.mw[rows, w] & np.uint64(m)) == np.uint64(v)
            ok |= sub
        rows = rows[ok]
    for off, lut in c.far:
        if not rows.size:
            return
        val, ok = b.far_bytes(rows, off)
        rows = rows[ok & lut[val]]
    for f in c.lenfields:
        if not rows.size:
            return
        v = b.field(rows, f.off, f.size, f.little)
        if f.mask >= 0:
            v &= f.mask
        ok = (v >= f.lo) & (v <= f.hi)
        total = v * f.scale + f.add
        if f.op == "eq":
            ok &= total == b.plen[rows]
        elif f.op == "ge":
            ok &= total >= b.plen[rows]
        elif f.op == "le":
            ok &= total <= b.plen[rows]
        rows = rows[ok]
    for e in c.echoes:
        if not rows.size:
            return
        rows = rows[_echoed(b, rows, e)]
    if not rows.size:
        return
    if c.sig.check is not None:
        rows, found = _check(b, c, rows)
        if found is not None:
            names.append(found)
    b.sig[rows] = c.code
    b.tagged[c.code] = rows
    kind = extract.EXTRACTOR.get(c.sig.name)
    if kind is not None and rows.size and not (kind == "tls" and c.sig.check == "tls-client-hello"):  # (done)
        # every such packet: which one becomes a flow direction's evidence packet is the flow stage's
        # choice (one 5-tuple may hold several flows: a new SYN, an idle gap, another file)
        skip = 2 if c.sig.transport == "tcp" and kind == "dns" else 0  # DNS over TCP: the length field
        plen = b.plen[rows].astype(np.int64)
        b.said.append((rows, extract.EXTRACT[kind](b.data, b.off[rows] + skip, plen - skip)))


def _echo_value(b: _Batch, rows: np.ndarray, off: int, size: int) -> np.ndarray:
    """The ``size`` (<= 8) bytes at ``off`` of each row as one integer."""
    if off + size <= PREFIX_BYTES:
        raw = b.m8[rows, off : off + size]
    else:
        raw = np.stack([b.far_bytes(rows, off + i)[0] for i in range(size)], axis=1)
    out = np.zeros((rows.size, 8), dtype=np.uint8)
    out[:, :size] = raw
    return out.view("<u8").reshape(rows.size)


def _echo_keys(b: _Batch, rows: np.ndarray, value: np.ndarray, reverse: bool) -> np.ndarray:
    """64-bit hashes of (the packet's 5-tuple, reversed for replies; the echoed ``value``)."""
    h = b.proto[rows].astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    src = (b.src_hi, b.src_lo, b.sport)
    dst = (b.dst_hi, b.dst_lo, b.dport)
    at = b.idx[rows]  # batch rows of the candidates
    with np.errstate(over="ignore"):
        for col in (dst + src if reverse else src + dst) + (value,):
            v = value if col is value else col[at]
            h = (h ^ v.astype(np.uint64)) * np.uint64(0xFF51AFD7ED558CCD)
            h ^= h >> np.uint64(29)
    return h


def _member(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.isin(a, b)`` by a sort of ``b`` and a binary search (isin sorts both, with their copies)."""
    s = np.sort(b)
    at = np.minimum(np.searchsorted(s, a), s.size - 1)
    return s[at] == a if s.size else np.zeros(a.shape[0], dtype=bool)


def _echoed(b: _Batch, rows: np.ndarray, e: Echo) -> np.ndarray:
    """Mask over ``rows``: a packet of signature ``e.request`` came the other way on the same ports in
    this batch, with the same ``e.size`` bytes at ``e.req_off`` as this packet has at ``e.off``."""
    if e.size > 8:
        raise ValueError(f"Echo of {e.size} bytes: at most 8")
    req = np.concatenate([b.tagged[k] for k in _REQUEST_CODES[e.request] if k in b.tagged])
    req = req[b.plen[req] >= e.req_off + e.size]
    ok = np.zeros(rows.size, dtype=bool)
    if not req.size:
        return ok
    theirs = _echo_value(b, req, e.req_off, e.size)
    mine = _echo_value(b, rows, e.off, e.size)
    maybe = np.flatnonzero(_member(mine, theirs))  # the value first (cheap), then the addresses
    if maybe.size:
        keys = _echo_keys(b, req, theirs, reverse=False)
        ok[maybe] = _member(_echo_keys(b, rows[maybe], mine[maybe], reverse=True), keys)
    return ok


def _check(b: _Batch, c: _Compiled, rows: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """Run the row's structural check; returns the rows that pass and any server names found."""
    off, plen = b.off[rows], b.plen[rows].astype(np.int64)
    kind = c.sig.check
    if kind in ("dns", "dns-answer"):
        prefix = 2 if c.sig.transport == "tcp" else 0
        ok = walk.dns_first_name(b.data, off + prefix, plen - prefix, answer=kind == "dns-answer")
        return rows[ok], None
    if kind in ("keyword", "keyword-exact"):
        ok = walk.contains_any(b.data, off, plen, c.sig.keywords, c.sig.window, fold=kind == "keyword")
        return rows[ok], None
    if kind == "tls-client-hello" and extract.EXTRACTOR.get(c.sig.name) == "tls":
        # one walk of the extensions gives the server name and what the hello said (JA4, ALPN)
        said, has, name = extract.tls_client_and_name(b.data, off, plen, SERVER_NAME_BYTES)
        b.said.append((rows, said))
        return rows, (rows[has], name[has])
    if kind == "tls-client-hello":
        has, name = walk.tls_server_name(b.data, off, plen, SERVER_NAME_BYTES)
        return rows, (rows[has], name[has])
    raise ValueError(f"unknown check {kind!r}")


def scan(batch: PacketBatch, dispatch: Dispatch | None = None, reference: bool = False) -> PacketTags:
    """Recognise protocols in the payloads of one batch: a signature code per packet, and TLS server names.

    Packets without captured payload, and later IP fragments, are not looked at.  ``dispatch``
    (default: the whole table's) says which rows run; ``reference`` skips its tables (each row
    tests every packet of its transport): the yardstick the tests hold the dispatch to.

    >>> from classifier.capture.reader import read_batches  # doctest: +SKIP
    >>> tags = scan(next(read_batches(["captures/sample.pcap"])))  # doctest: +SKIP
    >>> sorted({SIG_NAMES[c] for c in tags.sig if c})[:3]  # doctest: +SKIP
    ['dns', 'http-request', 'http-response']
    """
    n = len(batch)
    tags = PacketTags.none(n)
    if n == 0 or batch.data.size == 0:
        return tags
    cand = batch.payload_len > 0
    cand &= batch.payload_off >= 0
    cand &= batch.frag != FRAG_LATER
    idx = np.flatnonzero(cand)
    if not idx.size:
        return tags
    b = _Batch(batch.data, batch.payload_off[idx], batch.payload_len[idx], batch.proto[idx])
    b.src_hi, b.src_lo, b.dst_hi, b.dst_lo = batch.src_hi, batch.src_lo, batch.dst_hi, batch.dst_lo
    b.sport, b.dport, b.idx = batch.sport, batch.dport, idx
    found: list[tuple[np.ndarray, np.ndarray]] = []
    d = DISPATCH if dispatch is None else dispatch
    if reference:  # every row looks at every packet of its transport (tests: the dispatch must agree)
        for c in d.compiled:
            pm = b.proto_mask(c.proto)
            _run(b, c, np.arange(b.off.shape[0]) if pm is None else np.flatnonzero(pm), _reference_rest(c), found)
    else:
        d.run(b, found)
    tags.sig[idx] = b.sig
    if b.said:
        rows = idx[np.concatenate([r for r, _ in b.said])]
        o = np.argsort(rows, kind="stable")
        tags.said_rows = rows[o]
        tags.said = np.concatenate([v for _, v in b.said])[o]
    if found:
        rows = np.concatenate([r for r, _ in found])
        tags.name_rows = idx[rows]
        tags.names = np.concatenate([nm for _, nm in found])
        o = np.argsort(tags.name_rows, kind="stable")
        tags.name_rows, tags.names = tags.name_rows[o], tags.names[o]
    return tags


def scan_bytes(payloads: list[bytes], proto: int = PROTO_TCP) -> np.ndarray:
    """Signature code of each payload (tests and examples: packs them into one synthetic batch).

    >>> [SIG_NAMES[c] for c in scan_bytes([b"SSH-2.0-OpenSSH_9.2\\r\\n", b"hello"])]
    ['ssh-banner', '']
    """
    return scan_payloads(payloads, proto)[0]


def scan_payloads(payloads: list[bytes], proto: int | list[int] = PROTO_TCP) -> tuple[np.ndarray, PacketTags]:
    """Codes and full tags of payloads packed as one batch (see ``scan_bytes``)."""
    from ..flows import make_batch

    n = len(payloads)
    b = make_batch(
        ts_ns=np.arange(n),
        src=["192.0.2.1"] * n,
        dst=["192.0.2.2"] * n,
        sport=40000,
        dport=1,
        proto=proto,
        payload_len=[len(p) for p in payloads],
    )
    b.data = np.frombuffer(b"".join(payloads), dtype=np.uint8).copy()
    b.payload_off = np.concatenate([[0], np.cumsum([len(p) for p in payloads])[:-1]]).astype(np.int64)
    b.payload_off[b.payload_len == 0] = -1
    tags = scan(b)
    return tags.sig, tags
