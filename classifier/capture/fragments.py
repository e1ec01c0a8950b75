"""Later IP fragments carry no ports: give them the ports of their datagram's first fragment.

A datagram is identified by (IP version, source, destination, protocol, IP identification).
The rule, the same however a file is cut into chunks: a later fragment takes the ports of the
most recent first fragment of its datagram before it (among the last ``capacity`` first
fragments, carried across chunks and files, so a capture split by rotation still matches);
failing that (fragments sent out of order), of the next one after it in the same file, if that
one's packet starts within ``LOOKAHEAD_BYTES`` of file data after the fragment's.  A chunk
cannot see past its end: a later fragment still waiting for that window is left to the next
chunk (``FragmentTable.cut``: the reader ends the chunk before it and reads on from there).
All in one sort per chunk, no per-packet loop.
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


LOOKAHEAD_BYTES = 1 << 20
"""How far (bytes of file data from the later fragment's packet) a first fragment sent after it may come."""
CAPACITY = 1 << 16
"""How many of the most recent first fragments a later fragment may take its ports from."""


class FragmentTable:
    """First fragments seen so far (newest ``capacity`` kept): datagram key -> ports and transport."""

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = CAPACITY if capacity is None else capacity
        self.lookahead = LOOKAHEAD_BYTES
        self.before_hit = np.zeros(0, bool)  # per later fragment of the last ``attribute`` call
        self.cut = -1  # packet row the last ``attribute`` call could not decide from (-1: none)
        self.added = 0  # first fragments ever added (their ordinals count from 0)
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

    def attribute(
        self,
        s: Any,
        first_rows: np.ndarray,
        later_rows: np.ndarray,
        pos: np.ndarray | None = None,
        horizon: int | None = None,
    ) -> np.ndarray:
        """Fill ports of ``later_rows`` from matching first fragments; return which of them matched.

        ``s`` is the decoder state (per-packet columns); ``first_rows`` are this chunk's first
        fragments that got ports, in capture order.  ``pos`` gives each packet's offset (file
        data; None: no look-ahead limit) and ``horizon`` the offset from which packets belong
        to the next chunk (None: nothing follows in this file).  A later fragment whose
        look-ahead window reaches the horizon undecided sets ``self.cut`` to its row: rows from
        there on are not settled (the caller drops them), and only first fragments before the
        cut are added to the table.
        """
        fk = self._keys(s, first_rows)
        fv = np.empty(first_rows.size, VALUE)
        fv["sport"] = s.sport[first_rows]
        fv["dport"] = s.dport[first_rows]
        fv["proto"] = s.nh[first_rows]
        got = np.zeros(later_rows.size, bool)
        self.before_hit = np.zeros(later_rows.size, bool)
        self.cut = -1
        if later_rows.size:
            pick, okb = self._match(s, fk, first_rows, later_rows, pos, horizon)
            self.before_hit = okb
            got = pick >= 0
            rows = later_rows[got]
            v = np.concatenate([self.values, fv])[pick[got]]
            s.sport[rows] = v["sport"]
            s.dport[rows] = v["dport"]
            s.nh[rows] = v["proto"]
            s.flags[rows] = 0
            s.poff[rows] = -1
            s.plen[rows] = 0
            s.frag[rows] = FRAG_LATER
        keep = first_rows.size if self.cut < 0 else int(np.searchsorted(first_rows, self.cut))
        if keep:
            self.keys = np.concatenate([self.keys, fk[:keep]])[-self.capacity :]
            self.values = np.concatenate([self.values, fv[:keep]])[-self.capacity :]
            self.added += keep
        return got

    def _match(
        self,
        s: Any,
        fk: np.ndarray,
        first_rows: np.ndarray,
        later_rows: np.ndarray,
        pos: np.ndarray | None,
        horizon: int | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per later fragment: index of its first fragment in (table, this chunk's first fragments) or -1,
        and whether that one came before it.  Sets ``self.cut``."""
        lk = self._keys(s, later_rows)
        nt, nf = self.keys.size, fk.size
        keys = np.concatenate([self.keys, fk, lk])
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
        which = seq[q] - nt - nf  # index into later_rows
        row = later_rows[which]
        # before it: the most recent first fragment, if it is among the last ``capacity`` at that point
        b = before[q]
        okb = (b >= 0) & (g[np.maximum(b, 0)] == g[q])
        ordinal = self.added - nt + seq[np.maximum(b, 0)]  # table entries, then this chunk's, in order
        okb &= ordinal >= self.added + np.searchsorted(first_rows, row) - self.capacity
        # after it: the next one in this chunk, within the look-ahead window
        a = after[q]
        oka = ~okb & (a < seq.size) & (g[np.minimum(a, seq.size - 1)] == g[q])
        undecided = np.zeros(q.size, bool)
        if pos is not None:
            here = pos[row]
            there = pos[np.maximum(order[seq[np.minimum(a, seq.size - 1)]], 0)]
            none_after = ~okb & ~oka  # no first fragment after it in this chunk
            oka &= there - here <= self.lookahead  # the next one is the nearest: if too far, so are the rest
            if horizon is not None:
                undecided = none_after & (here + self.lookahead >= horizon)
        if undecided.any():
            self.cut = int(row[undecided].min())
        pick = np.full(later_rows.size, -1, np.int64)
        pick[which[okb]] = seq[b[okb]]
        pick[which[oka]] = seq[a[oka]]
        okb_out = np.zeros(later_rows.size, bool)
        okb_out[which[okb]] = True
        if self.cut >= 0:
            pick[later_rows >= self.cut] = -1
        return pick, okb_out
