"""Zeek's connection semantics per flow, with NumPy only: conn_state, history, bytes by sequence numbers.

The flow stage (``classifier.flows``) calls ``batch_columns`` for each batch and ``fold`` when it joins
two parts of one flow; the report stage calls ``conn_fields`` on the oriented table (client = Zeek's
originator).  Definitions follow Zeek's ``base/protocols/conn/main.zeek`` (conn_state, history) and its
TCP analyzer (endpoint states, ``update_history``, ``TCP_Endpoint::Size``), re-written, not copied:

Endpoint states
    Each side is INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED or RESET, moved by
    each packet's SYN/ACK/FIN/RST bits and whether it carries payload, exactly as Zeek's state machine
    (its flip of a SYN/SYN-ACK reversal excepted).  The pair of states is a finite machine of 64 states
    (RESET remembers whether it came from CLOSED, which Zeek's ``prev_state`` needs), so a stretch of
    packets is a *function* on 64 states, one of ~700 (``machine``): per flow we keep its number
    (``fsm_c`` assuming the client side originates, ``fsm_s`` the other way), chunks compose exactly
    through a table, and the final state is the function applied to (INACTIVE, INACTIVE).

History letters (upper case: originator)
    S H A D F R I Q as Zeek (A, D, I, Q once per direction; S/H, F, R again when their sequence number
    differs from the last one of that kind), T (retransmission: payload ending at or before the highest
    sequence already seen that way, out-of-order arrivals included as in Zeek), W (zero window, not on a
    RST), G (a hole in the sequence space that no captured packet fills), ``^`` first when the
    originator is not the first packet's sender.  Zeek repeats T/W/G at the 10th, 100th... occurrence;
    portclass writes those repeats next to the first one (it keeps counts, not every position).  C (bad
    checksum) is never written: checksums are not verified.

Bytes
    ``orig_bytes``/``resp_bytes`` as Zeek: the sequence span (highest sequence sent or acknowledged,
    minus the first, minus SYN and FIN; a RST's sequence number is not used), so bytes of packets the
    capture missed but the peer acknowledged count; ``missed_bytes`` is that span minus the payload
    bytes seen (holes).  Payload bytes
    as tshark's ``tcp.len`` (sum over packets, retransmissions included) are ``payload_c2s/s2c``.
    Retransmission counts, holes and seen payload are exact within a chunk of 2^18 packets; across a
    chunk boundary a retransmission of the previous chunk's data is not recognised (rare: flows are
    counted per chunk and merged).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from classifier.capture.columns import PROTO_TCP, PROTO_UDP, PacketBatch

if TYPE_CHECKING:
    from classifier.flows import FlowTable

TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10

INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET, RESET_FC = range(8)
"""Endpoint states (RESET_FC: RESET entered from CLOSED; reported as RESET)."""
NSTATES = 64
HIST_SLOTS = 16
"""History events a flow keeps (Zeek keeps them all; 16 covers every history seen in the corpus)."""
LETTERS = "SHADFRIQTWG"
"""History letters by code >> 1 (code & 1: 0 client -> server, 1 server -> client)."""
L_S, L_H, L_A, L_D, L_F, L_R, L_I, L_Q, L_T, L_W, L_G = range(len(LETTERS))
SCALED = (L_T, L_W, L_G)
"""Letters Zeek repeats at 1, 10, 100... occurrences; hist_cnt holds their counts (dir * 3 + index)."""
NONE = np.iinfo(np.int64).min
"""Marker of seq_hi/ack_hi: nothing seen."""
CONN_STATES = ("S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH")
CONN_STATE_MEANINGS = {
    "S0": "connection attempt seen, no reply",
    "S1": "connection established, not terminated",
    "SF": "normal establishment and termination",
    "REJ": "connection attempt rejected",
    "S2": "established; the originator tried to close, no reply from the responder",
    "S3": "established; the responder tried to close, no reply from the originator",
    "RSTO": "established; the originator aborted it (sent a RST)",
    "RSTR": "the responder sent a RST",
    "RSTOS0": "the originator sent a SYN then a RST; no SYN-ACK from the responder",
    "RSTRH": "the responder sent a SYN-ACK then a RST; no SYN from the (presumed) originator",
    "SH": "the originator sent a SYN then a FIN; no SYN-ACK from the responder (half-open)",
    "SHR": "the responder sent a SYN-ACK then a FIN; no SYN from the originator",
    "OTH": "no SYN seen, just midstream traffic (one example: a partial connection that was not later closed)",
}
"""Each state's meaning, after Zeek's conn.log documentation (the HTML report's tooltips)."""
ANSWERED_STATES = frozenset({"S1", "SF", "S2", "S3", "RSTO", "RSTR"})
"""States of TCP connections that were established (the responder answered the handshake)."""
ATTEMPT_STATES = frozenset({"S0", "REJ", "RSTOS0", "SH"})
"""States of TCP connection attempts that got no answer or were rejected."""
NO_EVENT = 255
"""``hist_code`` of an empty slot."""
_FAR_BEFORE = -(1 << 34)
"""An end sequence below any real one (relative values stay within +-2^32)."""


# --------------------------------------------------------------------------- Zeek's state machine


def _step(state: int, is_orig: bool, syn: bool, ack: bool, fin: bool, rst: bool, has_len: bool) -> int:
    """The (orig, resp) state after one packet, following Zeek's TCP analyzer's ``UpdateStateMachine``."""
    o, r = divmod(state, 8)
    e, p = (o, r) if is_orig else (r, o)
    orig_state = o
    if e == INACTIVE:
        if syn:
            if is_orig:
                e = SYN_ACK_SENT if ack else SYN_SENT
            else:
                if p == SYN_SENT:
                    p = ESTABLISHED
                e = ESTABLISHED
        if fin:
            e = CLOSED
        if rst:
            e = RESET_FC if e == CLOSED else RESET
        if e == INACTIVE:
            if not is_orig and not has_len and orig_state == SYN_SENT:
                pass  # an ACK of the SYN before the SYN-ACK: not a partial connection
            elif ack and p == ESTABLISHED:
                e = ESTABLISHED
            else:
                e = PARTIAL
    elif e in (SYN_SENT, SYN_ACK_SENT):
        if fin:
            e = CLOSED
        if rst:
            e = RESET_FC if e == CLOSED else RESET
    elif e in (ESTABLISHED, PARTIAL):
        if syn and e == PARTIAL and p == INACTIVE and not ack:
            e = SYN_SENT
        if fin and not rst:
            e = CLOSED
            if p == RESET_FC:
                p = CLOSED  # the peer's FIN then RST was a normal close
        if rst:
            e = RESET
    elif e == CLOSED:
        if rst and p != CLOSED:
            e = RESET_FC
    if is_orig:
        return e * 8 + p
    return p * 8 + e


def _build_table() -> np.ndarray:
    """TRANS[is_orig, flag class, has_len] -> the 64-state function of one packet (built once)."""
    t = np.zeros((2, 16, 2, NSTATES), dtype=np.uint8)
    for is_orig in (0, 1):
        for fc in range(16):
            fin, syn, rst, ack = bool(fc & 1), bool(fc & 2), bool(fc & 4), bool(fc & 8)
            for hl in (0, 1):
                for s in range(NSTATES):
                    t[is_orig, fc, hl, s] = _step(s, bool(is_orig), syn, ack, fin, rst, bool(hl))
    return t


TRANS = _build_table()
IDENTITY = np.arange(NSTATES, dtype=np.uint8)


def _hash_rows(f: np.ndarray) -> np.ndarray:
    """A code per 64-state function (rows of ``f``): an exact integer dot product done in float64 (BLAS).

    Weights below 2^40 keep every sum below 2^53, so equal rows get equal codes; a collision of
    different rows is caught where the codes are used.
    """
    w = np.random.default_rng(0).integers(1, 1 << 40, NSTATES).astype(np.float64)
    return f.reshape(-1, NSTATES).astype(np.float64) @ w


MACHINE_FILE = Path(__file__).with_name("conn_machine.npz")
"""The numbered functions and their composition table, shipped (building them costs ~0.3 s)."""


@functools.cache
def machine() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(GEN, COMP, FUNCS, STATE0): the closure of the packet functions under composition, numbered.

    Every stretch of packets is one of the ~700 functions reachable from the identity (id 0), so a
    flow stores a uint16 id; ``GEN[is_orig, flag class, has_len]`` is one packet's id,
    ``COMP[a, b]`` the id of "a then b", ``FUNCS[id]`` the function and ``STATE0[id]`` its value at
    (INACTIVE, INACTIVE).  Read from ``MACHINE_FILE`` when it was made from this ``TRANS``, else built.
    """
    try:
        with np.load(MACHINE_FILE) as z:
            if np.array_equal(z["trans"], TRANS):
                return z["gen"], z["comp"], z["funcs"], z["funcs"][:, 0].copy()
    except (OSError, KeyError, ValueError):
        pass
    return build_machine()


def write_machine(path: Path = MACHINE_FILE) -> None:
    """Write ``build_machine``'s tables to ``path`` (run after changing ``_step``; a test checks the file)."""
    gen, comp, funcs, _ = build_machine()
    with open(path, "wb") as f:
        np.savez_compressed(f, trans=TRANS, gen=gen, comp=comp, funcs=funcs)


def build_machine() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``machine``'s tables computed from ``TRANS``: the closure by breadth-first composition."""
    gens = TRANS.reshape(-1, NSTATES)
    fm = IDENTITY[None, :].copy()
    codes = _hash_rows(fm)
    frontier = fm
    while frontier.shape[0]:
        h = gens[:, frontier].reshape(-1, NSTATES)  # "f then g" for every generator g
        hc = _hash_rows(h)
        hc, first = np.unique(hc, return_index=True)
        new = ~np.isin(hc, codes)
        frontier = h[first[new]]
        fm = np.concatenate([fm, frontier])
        codes = np.concatenate([codes, hc[new]])
    k = fm.shape[0]
    sorter = np.argsort(codes)
    comp = np.empty((k, k), dtype=np.uint16)
    for lo in range(0, k, 64):
        h = fm[:, fm[lo : lo + 64]].transpose(1, 0, 2)  # [a, b]: "a then b"
        ids = sorter[np.searchsorted(codes, _hash_rows(h), sorter=sorter)].reshape(h.shape[:2])
        if not np.array_equal(fm[ids], h):  # pragma: no cover - a hash collision
            raise AssertionError("state machine closure: hash collision")
        comp[lo : lo + 64] = ids
    gen = sorter[np.searchsorted(codes, _hash_rows(gens), sorter=sorter)].astype(np.uint16)
    return gen.reshape(TRANS.shape[:3]), comp, fm, fm[:, 0].copy()


def compose_segments(ids: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Compose consecutive function ids per segment (``first`` marks each segment's first), in order.

    Pairwise rounds (log2 of the longest segment), each a lookup in the composition table; finished
    segments leave the working arrays.  ``ids`` may be a matrix: each column is composed on its own
    (the segments are shared).

    >>> gen, comp, funcs, state0 = machine()
    >>> f = np.array([gen[1, 2, 0], gen[0, 10, 0], gen[1, 8, 0]])  # S, SYN-ACK, ACK
    >>> g = compose_segments(f, np.array([True, False, False]))
    >>> divmod(int(state0[g[0]]), 8) == (ESTABLISHED, ESTABLISHED)
    True
    """
    comp = machine()[1]
    flat, k = comp.reshape(-1), comp.shape[1]
    cols = [c.astype(np.intp) for c in (ids.T if ids.ndim == 2 else ids[None, :])]
    start = np.flatnonzero(first)
    size = np.diff(np.append(start, ids.shape[0]))
    seg = np.arange(start.size)  # which output row each segment still being composed fills
    out = [np.empty(start.size, np.uint16) for _ in cols]
    while seg.size:
        done = size == 1  # a finished segment leaves the working arrays
        if done.any():
            for o, c in zip(out, cols, strict=True):
                o[seg[done]] = c[start[done]]
            go = ~done
            if go.any():
                elems = np.repeat(go, size)
                cols = [c[elems] for c in cols]
            seg, size = seg[go], size[go]
            start = np.cumsum(size) - size
        if not seg.size:
            break
        # one round: element pairs (0, 1), (2, 3)... of each segment composed into their left one
        rank = np.arange(cols[0].size) - np.repeat(start, size)
        even = (rank & 1) == 0
        right = np.flatnonzero(~even)
        left = right - 1
        for c in cols:
            c[left] = flat[c[left] * k + c[right]]
        keep = np.flatnonzero(even)
        cols = [c[keep] for c in cols]
        size = (size + 1) >> 1
        start = np.cumsum(size) - size
    return np.stack(out, axis=1) if ids.ndim == 2 else out[0]


# --------------------------------------------------------------------------- per batch


def _first_per_group(group: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Positions (in order) of the first True of ``mask`` in each run of equal ``group`` values."""
    pos = np.flatnonzero(mask)
    if not pos.size:
        return pos
    g = group[pos]
    first = np.ones(pos.size, dtype=bool)
    first[1:] = g[1:] != g[:-1]
    return pos[first]


def _segmax(values: np.ndarray, gid: np.ndarray) -> np.ndarray:
    """Running maximum within runs of equal ``gid`` (ascending), exclusive: NONE at each run's start."""
    off = gid.astype(np.int64) << np.int64(36)
    run = np.maximum.accumulate(values + off)
    prev = np.empty_like(run)
    prev[1:] = run[:-1] - off[1:]
    prev[0] = NONE
    newg = np.ones(gid.size, dtype=bool)
    newg[1:] = gid[1:] != gid[:-1]
    prev[newg] = NONE
    return prev


def batch_columns(batch: PacketBatch, order: np.ndarray, starts: np.ndarray, rev_s: np.ndarray, out: FlowTable) -> None:
    """Fill a partial flow table's connection columns from one batch (packets in ``order``, rows at ``starts``)."""
    n = order.size
    rows = starts.size
    count = np.diff(np.append(starts, n))
    row_of = np.repeat(np.arange(rows, dtype=np.int64), count)
    tlen_s = batch.tcp_len[order].astype(np.int64)
    ipl_s = batch.ip_len[order].astype(np.int64)
    back = rev_s.astype(np.int64)
    for name, v in (("ip_bytes", ipl_s), ("payload", tlen_s)):
        total = np.add.reduceat(v, starts)
        rv = np.add.reduceat(v * back, starts)
        getattr(out, f"{name}_c2s")[:] = total - rv
        getattr(out, f"{name}_s2c")[:] = rv
    flags_s = batch.tcp_flags[order]
    tcp = batch.proto[order] == PROTO_TCP
    events: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (sorted position, sub-order, code)

    # ---- once letters (A D I Q) and payload 'D' of UDP and others
    bits = (flags_s & 1) + ((flags_s >> 1) & 1) + ((flags_s >> 2) & 1)
    once = np.full(n, 255, dtype=np.uint8)
    once[(bits == 0) & ((flags_s & TCP_ACK) != 0)] = L_A
    once[(bits == 0) & (tlen_s > 0)] = L_D
    multi = bits > 1
    once[multi] = np.where((flags_s[multi] & (TCP_FIN | TCP_RST)) == (TCP_FIN | TCP_RST), L_I, L_Q)
    for letter in (L_A, L_D, L_I, L_Q):
        for d in (0, 1):
            pos = _first_per_group(row_of, (once == letter) & (back == d))
            events.append((pos, np.zeros(pos.size, np.int64), np.full(pos.size, letter * 2 + d, np.uint8)))
    if tcp.any():
        _tcp_columns(batch, order, rev_s, row_of, flags_s, bits, tlen_s, tcp, out, events)
    _store_events(out, row_of, events)


def _tcp_columns(
    batch: PacketBatch,
    order: np.ndarray,
    rev_s: np.ndarray,
    row_of: np.ndarray,
    flags_s: np.ndarray,
    bits: np.ndarray,
    tlen_s: np.ndarray,
    tcp: np.ndarray,
    out: FlowTable,
    events: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> None:
    """The TCP-only columns: state functions, S/H/F/R/T/W/G events, sequence spans and holes."""
    back = rev_s.astype(np.int64)
    seq_s = batch.tcp_seq[order]
    syn = (flags_s & TCP_SYN) != 0
    fin = (flags_s & TCP_FIN) != 0
    rst = (flags_s & TCP_RST) != 0

    # ---- state functions: every TCP packet's function id, composed per flow
    gen = machine()[0]
    it = np.flatnonzero(tcp)
    fl, rw, rv, hl = flags_s[it], row_of[it], back[it], (tlen_s[it] > 0).astype(np.intp)
    fc = ((fl & 7) | ((fl & TCP_ACK) >> 1)).astype(np.intp)
    first_ev = np.ones(it.size, dtype=bool)
    first_ev[1:] = rw[1:] != rw[:-1]
    target = rw[first_ev]
    ids = np.empty((it.size, 2), dtype=gen.dtype)  # (client originates, server originates)
    ids[:, 0] = gen[1 - rv, fc, hl]
    ids[:, 1] = gen[rv, fc, hl]
    # every packet function is idempotent: a run of equal ones is one (bulk data, repeated ACKs)
    keep = first_ev.copy()
    pair = ids.view(np.uint32).reshape(-1)  # both ids of a packet as one word (uint16 ids)
    keep[1:] |= pair[1:] != pair[:-1]
    both = compose_segments(ids[keep], first_ev[keep])
    out.fsm_c[target], out.fsm_s[target] = both[:, 0], both[:, 1]

    # ---- S/H, F, R: recorded again when the sequence number differs from the last of that kind
    one = (bits == 1) & tcp
    key = seq_s + (tlen_s.astype(np.uint32) * fin)  # FIN: sequence after its data
    for ti, kind in enumerate((syn, fin, rst)):
        for d in (0, 1):
            pos = np.flatnonzero(one & kind & (back == d))
            if not pos.size:
                continue
            r, k = row_of[pos], key[pos]
            nr = np.ones(pos.size, dtype=bool)
            nr[1:] = r[1:] != r[:-1]
            rec = nr.copy()
            rec[1:] |= k[1:] != k[:-1]
            letter = (L_S if ti == 0 else L_F if ti == 1 else L_R) * np.ones(pos.size, np.uint8)
            if ti == 0:
                letter[(flags_s[pos] & TCP_ACK) != 0] = L_H
            p = pos[rec]
            events.append((p, np.zeros(p.size, np.int64), (letter[rec] * 2 + d).astype(np.uint8)))
            last = np.append(nr[1:], True)
            out.hist_seq[r[nr], d * 6 + ti * 2] = k[nr]
            out.hist_seq[r[last], d * 6 + ti * 2 + 1] = k[last]

    # ---- zero windows
    zw = tcp & (batch.tcp_win[order] == 0) & ~rst
    for d in (0, 1):
        m = zw & (back == d)
        pos = _first_per_group(row_of, m)
        events.append((pos, np.ones(pos.size, np.int64), np.full(pos.size, L_W * 2 + d, np.uint8)))
        out.hist_cnt[:, d * 3 + 1] += np.bincount(row_of[m], minlength=len(out)).astype(np.int32)

    # ---- sequence analysis per (flow, direction) in capture order
    P = it[_group_order(rw, rv, first_ev)]
    row_p, back_p, seq_p, tlen_p = row_of[P], back[P], seq_s[P], tlen_s[P]
    syn_p, rst_p = syn[P], rst[P]
    g = row_p * 2 + back_p
    newg = np.ones(P.size, dtype=bool)
    newg[1:] = g[1:] != g[:-1]
    gstart = np.flatnonzero(newg)
    gid = np.cumsum(newg) - 1
    grow, gdir = g[gstart] // 2, g[gstart] % 2
    fseq = seq_p[gstart]
    rel = (seq_p - fseq[gid]).view(np.int32).astype(np.int64)
    end = rel + tlen_p
    end += syn_p
    end += fin[P]
    end[rst_p] = _FAR_BEFORE  # RSTs do not extend the span (Zeek trusts none after the first)
    prev = _segmax(end, gid)
    has_data = tlen_p > 0
    retx = has_data & ~newg & (end <= prev) & ~rst_p
    hi = np.maximum.reduceat(end, gstart)
    for d, sfx in ((0, "c2s"), (1, "s2c")):
        sel = gdir == d
        getattr(out, f"seq_first_{sfx}")[grow[sel]] = fseq[sel]
        getattr(out, f"seq_hi_{sfx}")[grow[sel]] = hi[sel]
        getattr(out, f"seq_syn_{sfx}")[grow[sel]] = syn_p[gstart][sel]
        m = retx & (back_p == d)
        pos = _first_per_group(row_p, m)
        events.append((P[pos], np.full(pos.size, 2, np.int64), np.full(pos.size, L_T * 2 + d, np.uint8)))
        out.hist_cnt[:, d * 3] += np.bincount(row_p[m], minlength=len(out)).astype(np.int32)

    # ---- acknowledgments: what each side's ACKs say of the other's sequence span
    ackp = np.flatnonzero(((flags_s[P] & TCP_ACK) != 0) & ~rst_p)
    if ackp.size:
        ag = g[ackp]
        na = np.ones(ackp.size, dtype=bool)
        na[1:] = ag[1:] != ag[:-1]
        astart = np.flatnonzero(na)
        aid = np.cumsum(na) - 1
        aval = batch.tcp_ack[order[P[ackp]]]
        afirst = aval[astart]
        arel = (aval - afirst[aid]).view(np.int32).astype(np.int64)
        ahi = np.maximum.reduceat(arel, astart)
        arow, adir = ag[astart] // 2, ag[astart] % 2
        for d, sfx in ((1, "c2s"), (0, "s2c")):  # ACKs sent server -> client acknowledge c2s data
            sel = adir == d
            getattr(out, f"ack_first_{sfx}")[arow[sel]] = afirst[sel]
            getattr(out, f"ack_hi_{sfx}")[arow[sel]] = ahi[sel]

    # ---- payload coverage in sequence order: seen bytes and holes (G)
    dp = np.flatnonzero(has_data)
    if dp.size:
        ds = rel[dp] + syn_p[dp]
        de = ds + tlen_p[dp]
        dg = g[dp]
        down = np.flatnonzero((ds[1:] < ds[:-1]) & (dg[1:] == dg[:-1]))
        if down.size:  # sort by sequence only the directions that had data out of order
            run = np.ones(dg.size, dtype=bool)  # dg ascends: each direction is one run of it
            run[1:] = dg[1:] != dg[:-1]
            rid = np.cumsum(run) - 1
            bad_run = np.zeros(int(rid[-1]) + 1, dtype=bool)
            bad_run[rid[down]] = True
            bad = bad_run[rid]
            sub = np.flatnonzero(bad)
            o2 = sub[np.lexsort((ds[sub], dg[sub]))]
            o = np.arange(dp.size)
            o[sub] = o2
            dp, ds, de, dg = dp[o], ds[o], de[o], dg[o]
        nd = np.ones(dp.size, dtype=bool)
        nd[1:] = dg[1:] != dg[:-1]
        did = np.cumsum(nd) - 1
        before = _segmax(de, did)
        seen = np.where(nd, de - ds, np.maximum(de - np.maximum(ds, before), 0))
        hole = ~nd & (ds > before)
        dstart = np.flatnonzero(nd)  # directions are runs of dg, ascending
        covered = np.add.reduceat(seen, dstart)
        rowsd = dg[dstart]
        for d, sfx in ((0, "c2s"), (1, "s2c")):
            sel = rowsd % 2 == d
            getattr(out, f"covered_{sfx}")[rowsd[sel] // 2] = covered[sel]
            m = hole & (dg % 2 == d)
            if m.any():
                hr = dg[m] // 2
                out.hist_cnt[:, d * 3 + 2] += np.bincount(hr, minlength=len(out)).astype(np.int32)
                # the first hole in capture order of each flow: the smallest position
                hp = P[dp[m]]
                o3 = np.lexsort((hp, hr))
                hr, hp = hr[o3], hp[o3]
                f = np.ones(hr.size, dtype=bool)
                f[1:] = hr[1:] != hr[:-1]
                k = int(f.sum())
                events.append((hp[f], np.full(k, 3, np.int64), np.full(k, L_G * 2 + d, np.uint8)))


def _group_order(row: np.ndarray, back: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Permutation putting packets (sorted by flow, capture order) in (flow, direction, capture order) order.

    Each flow's client -> server packets keep their order at the flow's start, the others follow: one
    stable sort of (flow, direction) over the packets listed by direction (``first`` is not needed).
    """
    b = back.astype(bool)
    fwd, rev = np.flatnonzero(~b), np.flatnonzero(b)
    key = np.concatenate([row[fwd] << 1, (row[rev] << 1) | 1])
    return np.concatenate([fwd, rev])[np.argsort(key, kind="stable")]


def _store_events(out: FlowTable, row_of: np.ndarray, events: list) -> None:
    """Write the batch's history events into hist_code, per flow in capture order (HIST_SLOTS kept)."""
    pos = np.concatenate([e[0] for e in events]).astype(np.int64)
    if not pos.size:
        return
    sub = np.concatenate([e[1] for e in events])
    code = np.concatenate([e[2] for e in events])
    o = np.lexsort((sub, pos))  # positions are sorted by flow, then capture order
    pos, code = pos[o], code[o]
    r = row_of[pos]
    nr = np.ones(r.size, dtype=bool)
    nr[1:] = r[1:] != r[:-1]
    start = np.flatnonzero(nr)
    rank = np.arange(r.size) - start[np.cumsum(nr) - 1]
    ok = rank < HIST_SLOTS
    out.hist_code[r[ok], rank[ok]] = code[ok]


# --------------------------------------------------------------------------- merging


def init_columns(cols: dict[str, np.ndarray]) -> None:
    """Set the 'nothing seen' values of the connection columns of a new table, in place."""
    cols["hist_code"].fill(NO_EVENT)
    for sfx in ("c2s", "s2c"):
        cols[f"seq_hi_{sfx}"].fill(NONE)
        cols[f"ack_hi_{sfx}"].fill(NONE)


def _rebase(first_a: np.ndarray, first_b: np.ndarray, hi_b: np.ndarray) -> np.ndarray:
    """``hi_b`` (relative to ``first_b``) relative to ``first_a`` instead (32-bit sequence arithmetic)."""
    return hi_b + (first_b - first_a).view(np.int32).astype(np.int64)


def fold(t: FlowTable, head: np.ndarray, src: FlowTable, rows: np.ndarray) -> None:
    """In place: fold the connection columns of rows ``rows`` of ``src`` into rows ``head`` of ``t``.

    ``src`` rows come later in capture order than ``t``'s.
    """
    for sfx in ("c2s", "s2c"):
        for name in ("ip_bytes", "payload", "covered"):
            getattr(t, f"{name}_{sfx}")[head] += np.take(getattr(src, f"{name}_{sfx}"), rows)
        pairs = ((f"seq_first_{sfx}", f"seq_hi_{sfx}", f"seq_syn_{sfx}"), (f"ack_first_{sfx}", f"ack_hi_{sfx}", None))
        for first, hi, extra in pairs:
            fa, ha = getattr(t, first), getattr(t, hi)
            fb, hb = np.take(getattr(src, first), rows), np.take(getattr(src, hi), rows)
            a_has, b_has = ha[head] != NONE, hb != NONE
            both = a_has & b_has
            hh = ha[head]
            hh[both] = np.maximum(hh[both], _rebase(fa[head][both], fb[both], hb[both]))
            only_b = b_has & ~a_has
            hh[only_b] = hb[only_b]
            ha[head] = hh
            ff = fa[head]
            ff[only_b] = fb[only_b]
            fa[head] = ff
            if extra is not None:
                ea = getattr(t, extra)
                ee = ea[head]
                ee[only_b] = np.take(getattr(src, extra), rows)[only_b]
                ea[head] = ee
    comp = machine()[1]
    for name in ("fsm_c", "fsm_s"):
        col = getattr(t, name)
        col[head] = comp[col[head], np.take(getattr(src, name), rows)]
    _fold_history(t, head, src, rows)


_TYPE_CODES = ((L_S, L_H), (L_F,), (L_R,))


def _fold_history(t: FlowTable, head: np.ndarray, src: FlowTable, rows: np.ndarray) -> None:
    """History events of ``src`` rows appended to ``head`` rows, dropping those the head already records."""
    ac = t.hist_code[head]
    bc = np.take(src.hist_code, rows, axis=0)
    av, keep = ac != NO_EVENT, bc != NO_EVENT
    for letter in (L_A, L_D, L_I, L_Q):
        for d in (0, 1):
            c = letter * 2 + d
            keep &= ~((bc == c) & ((ac == c) & av).any(axis=1)[:, None])
    acnt = t.hist_cnt[head]
    for j, letter in enumerate(SCALED):
        for d in (0, 1):
            keep &= ~((bc == letter * 2 + d) & (acnt[:, d * 3 + j] > 0)[:, None])
    bseq = np.take(src.hist_seq, rows, axis=0)
    aseq = t.hist_seq[head]
    for ti, letters in enumerate(_TYPE_CODES):
        for d in (0, 1):
            codes = [x * 2 + d for x in letters]
            a_seen = (np.isin(ac, codes) & av).any(axis=1)
            bm = np.isin(bc, codes) & keep
            b_seen = bm.any(axis=1)
            fi, la = d * 6 + ti * 2, d * 6 + ti * 2 + 1
            drop = a_seen & b_seen & (aseq[:, la] == bseq[:, fi])
            if drop.any():
                j = np.argmax(bm, axis=1)
                keep[np.flatnonzero(drop), j[drop]] = False
            aseq[~a_seen, fi] = bseq[~a_seen, fi]
            aseq[b_seen, la] = bseq[b_seen, la]
    t.hist_seq[head] = aseq
    t.hist_cnt[head] = acnt + np.take(src.hist_cnt, rows, axis=0)
    codes = np.concatenate([np.where(av, ac, NO_EVENT), np.where(keep, bc, NO_EVENT)], axis=1)
    o = np.argsort(codes == NO_EVENT, axis=1, kind="stable")[:, :HIST_SLOTS]  # head's first, in order
    t.hist_code[head] = np.take_along_axis(codes, o, axis=1)


def swap_columns(cols: dict[str, np.ndarray], mask: np.ndarray, inplace: bool = False) -> None:
    """In place: the direction-bearing matrix columns of rows ``mask`` turned around (client <-> server);
    new arrays in ``cols`` unless ``inplace`` (the arrays themselves are changed)."""
    idx = np.flatnonzero(mask)
    if not idx.size:
        return
    code = cols["hist_code"] if inplace else cols["hist_code"].copy()
    c = _rows_of(code)[idx].view(code.dtype).reshape(idx.size, -1)
    c ^= (c != NO_EVENT).view(np.uint8)
    _rows_of(code)[idx] = _rows_of(c)
    cols["hist_code"] = code
    for name, half in (("hist_seq", 6), ("hist_cnt", 3)):
        v = cols[name] if inplace else cols[name].copy()
        r = _rows_of(v)[idx].view(v.dtype).reshape(idx.size, -1)
        _rows_of(v)[idx] = _rows_of(np.concatenate([r[:, half:], r[:, :half]], axis=1))
        cols[name] = v


def _rows_of(m: np.ndarray) -> np.ndarray:
    """A C-contiguous matrix as a vector of opaque rows (fancy indexing of whole rows is then fast)."""
    return m.view(np.dtype((np.void, m.itemsize * m.shape[1]))).reshape(m.shape[0])


CHUNK_DEPENDENT = ("covered_c2s", "covered_s2c", "hist_code", "hist_cnt")
"""Columns whose T/G parts depend on where chunks were cut (see the module docstring)."""


def chunk_exact_history(t: FlowTable) -> tuple[np.ndarray, np.ndarray]:
    """(codes, W counts) of each flow's history without its T and G events: what any chunking gives alike."""
    code = np.where(t.hist_code != NO_EVENT, t.hist_code.astype(np.int16), -1)
    drop = ((code >> 1) == L_T) | ((code >> 1) == L_G) | (code < 0)
    o = np.argsort(drop, axis=1, kind="stable")
    kept = np.where(np.take_along_axis(drop, o, axis=1), -1, np.take_along_axis(code, o, axis=1))
    return kept, t.hist_cnt[:, [1, 4]]


# --------------------------------------------------------------------------- report fields


def _sizes(t: FlowTable) -> tuple[np.ndarray, np.ndarray]:
    """Zeek's payload sizes (orig = client, resp = server) from sequence numbers; UDP and others: payload sums."""
    out = []
    tcp = t.proto == PROTO_TCP
    for sfx, fin_flags in (("c2s", t.tcp_flags_c2s), ("s2c", t.tcp_flags_s2c)):
        hi = getattr(t, f"seq_hi_{sfx}")
        ahi = getattr(t, f"ack_hi_{sfx}")
        has, has_ack = hi != NONE, ahi != NONE
        first, afirst = getattr(t, f"seq_first_{sfx}"), getattr(t, f"ack_first_{sfx}")
        ack_rel = np.where(has_ack, _rebase(first, afirst, np.where(has_ack, ahi, 0)), NONE)
        top = np.maximum(np.where(has, hi, NONE), ack_rel)
        size = top + np.where(getattr(t, f"seq_syn_{sfx}"), 0, 1)
        size = np.where(size > 0, size - 1, size)
        size = np.where(((fin_flags & TCP_FIN) != 0) & (size > 0), size - 1, size)
        size = np.where(has, size, np.where(has_ack, ahi, 0))
        size = np.maximum(size, 0)
        out.append(np.where(tcp, size, getattr(t, f"payload_{sfx}")))
    return out[0], out[1]


_RSTOS0 = re.compile(r"^\^?S[^HAFGIQ]*R")


def history(t: FlowTable) -> np.ndarray:
    """Zeek's history string of each flow of an oriented table (client = originator), as an object array."""
    n = len(t)
    valid = t.hist_code != NO_EVENT
    code = t.hist_code.astype(np.int64)
    lut = np.frombuffer((LETTERS.upper() + LETTERS.lower()).encode(), dtype=np.uint8)
    ch = lut[(code & 1) * len(LETTERS) + np.minimum(code >> 1, len(LETTERS) - 1)]
    mult = valid.astype(np.int64)
    letter = code >> 1
    for j, sl in enumerate(SCALED):
        for d in (0, 1):
            m = valid & (letter == sl) & ((code & 1) == d)
            cnt = np.maximum(t.hist_cnt[:, d * 3 + j], 1)
            reps = np.floor(np.log10(cnt.astype(np.float64)) + 1e-9).astype(np.int64) + 1
            mult = np.where(m, reps[:, None], mult)
    flip = (t.first_sender == 1) & (t.total_packets() > 0)
    lengths = mult.sum(axis=1) + flip
    width = max(int(lengths.max()) if n else 0, 1)
    flat = np.repeat(ch.reshape(-1), mult.reshape(-1))
    rowi = np.repeat(np.repeat(np.arange(n), HIST_SLOTS), mult.reshape(-1))
    per_row = mult.sum(axis=1)
    col = np.arange(flat.size) - (np.cumsum(per_row) - per_row)[rowi] + flip[rowi]
    buf = np.zeros((n, width), dtype=np.uint8)
    buf[rowi, col] = flat
    buf[flip, 0] = ord("^")
    return buf.view(f"S{width}").reshape(n).astype(str).astype(object)


def conn_fields(t: FlowTable) -> dict[str, np.ndarray]:
    """Zeek conn.log fields of an oriented table: conn_state, history, orig/resp bytes, ip bytes, missed bytes.

    ``orig_bytes``/``resp_bytes`` are -1 where Zeek leaves them unset (a flow of zero duration).
    """
    orig_size, resp_size = _sizes(t)
    state = conn_states(t, orig_size, resp_size)
    tcp = t.proto == PROTO_TCP
    dur = t.last_ts_ns > t.first_ts_ns
    missed = np.zeros(len(t), dtype=np.int64)
    for size, sfx in ((orig_size, "c2s"), (resp_size, "s2c")):
        missed += np.where(tcp, np.maximum(size - getattr(t, f"covered_{sfx}"), 0), 0)
    return {
        "conn_state": state,
        "history": history(t),
        "orig_bytes": np.where(dur, orig_size, -1),
        "resp_bytes": np.where(dur, resp_size, -1),
        "orig_ip_bytes": t.ip_bytes_c2s.copy(),
        "resp_ip_bytes": t.ip_bytes_s2c.copy(),
        "missed_bytes": missed,
    }


def conn_states(
    t: FlowTable, orig_size: np.ndarray | None = None, resp_size: np.ndarray | None = None
) -> np.ndarray:
    """Zeek's conn_state of each flow of an oriented table (object array of str), without the history
    strings: only the few flows that may be RSTOS0 have theirs built, for its letter rule."""
    return _STATE_NAMES[conn_state_codes(t, orig_size, resp_size)]


_STATE_NAMES = np.array(CONN_STATES, dtype=object)
_S = {name: i for i, name in enumerate(CONN_STATES)}


def conn_state_codes(
    t: FlowTable, orig_size: np.ndarray | None = None, resp_size: np.ndarray | None = None
) -> np.ndarray:
    """``conn_states`` as indices into ``CONN_STATES`` (uint8): no strings made."""
    if orig_size is None or resp_size is None:
        orig_size, resp_size = _sizes(t)
    final = machine()[3][t.fsm_c].astype(np.int64)
    os_, rs = final // 8, final % 8
    os_ = np.where(os_ == RESET_FC, RESET, os_)
    rs = np.where(rs == RESET_FC, RESET, rs)
    o_in = (os_ == INACTIVE) | (os_ == PARTIAL)
    r_in = (rs == INACTIVE) | (rs == PARTIAL)
    tcp = t.proto == PROTO_TCP
    nothing = resp_size == 0
    rst_s0 = np.zeros(len(t), dtype=bool)
    maybe = np.flatnonzero(tcp & (os_ == RESET) & r_in)
    if maybe.size:
        rst_s0[maybe] = [bool(_RSTOS0.match(h)) for h in history(t.take(maybe))]
    tcp_state = np.select(
        [
            (rs == RESET) & ((os_ == SYN_SENT) | (os_ == SYN_ACK_SENT) | ((os_ == RESET) & (orig_size == 0) & nothing)),
            (rs == RESET) & o_in,
            rs == RESET,
            (os_ == RESET) & r_in & rst_s0,
            (os_ == RESET) & r_in,
            os_ == RESET,
            (rs == CLOSED) & (os_ == CLOSED),
            (os_ == CLOSED) & r_in,
            os_ == CLOSED,
            (rs == CLOSED) & o_in,
            rs == CLOSED,
            (os_ == SYN_SENT) & (rs == INACTIVE),
            (os_ == ESTABLISHED) & (rs == ESTABLISHED),
        ],
        [_S[x] for x in ("REJ", "RSTRH", "RSTR", "RSTOS0", "OTH", "RSTO", "SF", "SH", "S2", "SHR", "S3", "S0", "S1")],
        _S["OTH"],
    )
    o_act, r_act = t.packets_c2s > 0, t.packets_s2c > 0
    udp_state = np.select([o_act & r_act, o_act, r_act], [_S["SF"], _S["S0"], _S["SHR"]], _S["OTH"])
    return np.where(tcp, tcp_state, np.where(t.proto == PROTO_UDP, udp_state, _S["OTH"])).astype(np.uint8)


OUTCOMES = ("answered", "rejected", "no reply", "other")
"""What happened to a connection, for the analyst's views: the responder answered (TCP S1 SF S2 S3
RSTO RSTR, UDP both ways), rejected the attempt (REJ), never answered it (S0, RSTOS0, SH), or other
(mid-stream OTH, RSTRH, SHR, one-way UDP and the rest)."""
OUT_ANSWERED, OUT_REJECTED, OUT_NO_REPLY, OUT_OTHER = range(len(OUTCOMES))
_OUTCOME_OF = {s: OUT_ANSWERED for s in ANSWERED_STATES} | {"REJ": OUT_REJECTED}
_OUTCOME_OF |= {"S0": OUT_NO_REPLY, "RSTOS0": OUT_NO_REPLY, "SH": OUT_NO_REPLY}


def outcomes(t: FlowTable, states: np.ndarray | None = None) -> np.ndarray:
    """Outcome code (``OUTCOMES`` index) per flow of an oriented table; UDP S0 is 'other' (one-way is normal)."""
    tcp = t.proto == PROTO_TCP
    if states is None:  # from the state codes: no strings
        code = conn_state_codes(t)
        out = _OUTCOME_LUT[code]
        udp_sf = (t.proto == PROTO_UDP) & (code == _S["SF"])
        return np.where(tcp, out, np.where(udp_sf, OUT_ANSWERED, OUT_OTHER)).astype(np.uint8)
    uniq, inv = np.unique(states.astype(str), return_inverse=True)
    codes = np.array([_OUTCOME_OF.get(u, OUT_OTHER) for u in uniq.tolist()], dtype=np.uint8)
    out = codes[inv.reshape(-1)] if uniq.size else np.zeros(0, np.uint8)
    udp_sf = (t.proto == PROTO_UDP) & (states == "SF")
    return np.where(tcp, out, np.where(udp_sf, OUT_ANSWERED, OUT_OTHER)).astype(np.uint8)


_OUTCOME_LUT = np.array([_OUTCOME_OF.get(name, OUT_OTHER) for name in CONN_STATES], dtype=np.uint8)
