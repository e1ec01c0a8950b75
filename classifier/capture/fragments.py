"""Later IP fragments carry no ports: give them the ports of their datagram's first fragment.

A datagram is identified by (IP version, source, destination, protocol, IP identification).
First fragments of every chunk are remembered in a bounded table carried across chunks (and
files, so a capture split by rotation still matches); later fragments are matched against
the table and the current chunk's first fragments in one sort, no per-packet loop.  A later
fragment takes the most recent first fragment before it, or failing that (fragments sent out
of order) the next one after it in the same chunk.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .columns import FRAG_LATER

KEY = np.dtype(
    [
        ("ver", "u1"),
        ("proto", "u1"),
        ("id", "u4"),
        ("src_hi", "u8"),
        ("src_lo", "u8"),
        ("dst_hi", "u8"),
        ("dst_lo", "u8"),
    ]
)
"""A datagram's identity; ``proto`` is the protocol the fragment header names."""
VALUE = np.dtype([("sport", "u2"), ("dport", "u2"), ("proto", "u1")])


class FragmentTable:
    """First fragments seen so far (newest ``capacity`` kept): datagram key -> ports and transport."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        self.capacity = capacity
        self.before_hit = np.zeros(0, bool)  # per later fragment of the last ``attribute`` call
        self.keys = np.empty(0, KEY)
        self.values = np.empty(0, VALUE)

    def __len__(self) -> int:
        return int(self.keys.size)

    @staticmethod
    def _keys(s: Any, rows: np.ndarray) -> np.ndarray:
        k = np.empty(rows.size, KEY)
        k["ver"] = s.ipver[rows]
        k["proto"] = s.fproto[rows]
        k["id"] = s.fid[rows]
        k["src_hi"] = s.src_hi[rows]
        k["src_lo"] = s.src_lo[rows]
        k["dst_hi"] = s.dst_hi[rows]
        k["dst_lo"] = s.dst_lo[rows]
        return k

    def attribute(self, s: Any, first_rows: np.ndarray, later_rows: np.ndarray) -> np.ndarray:
        """Fill ports of ``later_rows`` from matching first fragments; return which of them matched.

        ``s`` is the decoder state (per-packet columns); ``first_rows`` are this chunk's first
        fragments that got ports, in capture order.  They are added to the table afterwards.
        """
        fk = self._keys(s, first_rows)
        fv = np.empty(first_rows.size, VALUE)
        fv["sport"] = s.sport[first_rows]
        fv["dport"] = s.dport[first_rows]
        fv["proto"] = s.nh[first_rows]
        got = np.zeros(later_rows.size, bool)
        if later_rows.size:
            lk = self._keys(s, later_rows)
            nt, nf = self.keys.size, fk.size
            keys = np.concatenate([self.keys, fk, lk])
            values = np.concatenate([self.values, fv])
            order = np.concatenate(
                [np.arange(-nt, 0, dtype=np.int64), first_rows.astype(np.int64), later_rows.astype(np.int64)]
            )
            is_cand = np.zeros(keys.size, bool)
            is_cand[: nt + nf] = True
            # sort by key fields, then capture order (candidates before a query at the same order)
            fields = [keys[f] for f in reversed(KEY.names)]
            seq = np.lexsort([~is_cand, order, *fields])
            ks = keys[seq]
            change = np.zeros(seq.size, bool)
            change[0] = True
            for f in KEY.names:
                col = ks[f]
                change[1:] |= col[1:] != col[:-1]
            g = np.cumsum(change)  # datagram group of each entry, in ``seq`` order
            cand_at = np.where(is_cand[seq], np.arange(seq.size), -1)
            before = np.maximum.accumulate(cand_at)
            after_rev = np.minimum.accumulate(np.where(cand_at[::-1] >= 0, cand_at[::-1], seq.size))
            after = after_rev[::-1]
            q = np.flatnonzero(~is_cand[seq])
            pick = np.full(q.size, -1, np.int64)
            b = before[q]
            okb = (b >= 0) & (g[np.maximum(b, 0)] == g[q])
            pick[okb] = seq[b[okb]]
            a = after[q]
            oka = ~okb & (a < seq.size) & (g[np.minimum(a, seq.size - 1)] == g[q])
            pick[oka] = seq[a[oka]]
            which = seq[q] - nt - nf  # index into later_rows
            self.before_hit = np.zeros(later_rows.size, bool)  # matched a first fragment before it
            self.before_hit[which[okb]] = True
            hit = pick >= 0
            rows = later_rows[which[hit]]
            v = values[pick[hit]]
            s.sport[rows] = v["sport"]
            s.dport[rows] = v["dport"]
            s.nh[rows] = v["proto"]
            s.flags[rows] = 0
            s.poff[rows] = -1
            s.plen[rows] = 0
            s.frag[rows] = FRAG_LATER
            got[which[hit]] = True
        if fk.size:
            self.keys = np.concatenate([self.keys, fk])[-self.capacity :]
            self.values = np.concatenate([self.values, fv])[-self.capacity :]
        return got
