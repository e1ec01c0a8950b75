"""Running aggregates: what the summary, ``-f json`` and the HTML report show of a whole run, kept
while flows end, so that no report needs the run's whole flow table.

``Aggregates.add(ended)`` folds one chunk of ended flows (``engine.Ended``) in; ``merge(other)``
folds in the aggregates of the flows that ended *after* this one's (another task, a later stretch
of capture): ``a.merge(b)`` then ``.merge(c)`` equals ``a.merge(b.merge(c))`` and equals adding
every chunk to one object.  They pickle, and their size follows the distinct keys they count
(server ports, hosts, scan targets) and their bounds, not the flows:

- exact counts and sums: flows, packets and bytes per transport, port status, outcome, verdict,
  flag, observed protocol x verdict; per (transport, server port) for the services table; per
  host for the top talkers; per source, and distinct (source, port) and (source, host) attempt
  pairs for the scanners table.  Past ``MAX_HOSTS`` hosts (sources) the talkers (scanners) keep
  the busiest and count how many they dropped and by how much any figure may be low
  (``talkers_note``, ``scanners_note``; merging stays exact and associative until then);
- the timeline of flow starts by severity band: every start time up to ``timeline_exact`` flows
  (the chart is then the whole-table chart), past that counts in ``TIMELINE_BINS`` bins of a
  power-of-two width (the chart's columns are then whole multiples of it and it says so);
- ``worst``: the ``limit`` worst flows (``pipeline.worst_first``: severity, then bytes, then
  earliest, then end order), whole rows, for the flows tables and ``-f json``'s flows.

Reports say what the bounds left out (``left_out``).  Any moment is a snapshot: the reading
methods fold what is pending first, so a live view can ask at any time (``copy.deepcopy(agg)
.merge(Aggregates.of(alive))`` adds the flows still alive without touching ``agg``).  A report of
merged aggregates: ``report.write(with_aggregates(analysis, agg), fmt, out)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from ..registry.compile import STATUS_NAMES
from ..registry.model import TRANSPORTS

if TYPE_CHECKING:
    from ..engine import Ended
    from ..pipeline import Analysis
    from .summary import ScannerRow, ServiceRow, Totals

SEVERITY_BANDS: tuple[tuple[int, int], ...] = ((5, 6), (3, 4), (1, 2), (0, 0))
"""Severity bands of the timeline (lowest, highest severity): high, medium, low, not flagged."""
_BAND_OF = np.full(256, len(SEVERITY_BANDS) - 1, dtype=np.uint8)
for _b, (_lo, _hi) in enumerate(SEVERITY_BANDS):
    _BAND_OF[_lo : _hi + 1] = _b
TIMELINE_EXACT = 1 << 17
"""Flow start times a timeline keeps one by one before it counts them in bins (1.2 MB)."""
MAX_HOSTS = 32_768
"""Hosts the talkers and scanners tables keep exactly; past that the busiest (most bytes; most unanswered
attempts) are kept and the reports say the figures are approximate, and by how much at most."""
TIMELINE_BINS = 4096
"""Bins of a timeline past ``TIMELINE_EXACT`` flows (their width a power of two nanoseconds)."""


# --------------------------------------------------------------------------- grouped sums


def _group(keys: np.ndarray, cols: dict[str, np.ndarray], how: dict[str, str]) -> tuple[np.ndarray, dict]:
    """Rows of ``keys`` (2-D uint64) made unique, sorted; ``cols`` summed, or-ed, or the first row's value."""
    n = keys.shape[0]
    if n == 0:
        return keys, cols
    order = _stable_order(keys)  # stable: within a key, rows keep their order (first = earliest)
    ks = keys[order]
    new = np.ones(n, dtype=bool)
    new[1:] = (ks[1:] != ks[:-1]).any(axis=1)
    starts = np.flatnonzero(new)
    out = {}
    for name, values in cols.items():
        v = values[order]
        kind = how[name]
        if kind == "sum":
            out[name] = np.add.reduceat(v, starts)
        elif kind == "or":
            out[name] = np.bitwise_or.reduceat(v, starts)
        else:  # first
            out[name] = v[starts]
    return ks[starts], out


def _stable_order(keys: np.ndarray) -> np.ndarray:
    """``np.lexsort(keys.T[::-1])`` (rows by their words, stable) sorting only the words that vary
    (e.g. the high word of IPv4 addresses is 0): one argsort where one word varies."""
    vary = [keys[:, j] for j in range(keys.shape[1]) if (keys[:, j] != keys[0, j]).any()]
    if not vary:
        return np.arange(keys.shape[0])
    if len(vary) == 1:
        return np.argsort(vary[0], kind="stable")
    return np.lexsort(vary[::-1])


class _Grouped:
    """Values per key, kept sorted by key; chunks pile up and are folded in once they outgrow the table
    (each flow is sorted a bounded number of times: adding costs about a chunk's own size).

    With a ``cap``, a fold that leaves more keys keeps the ``cap`` keys of largest ``rank`` (the sum of
    the ``rank`` columns): ``pruned`` keys were dropped, and any key's rank (kept or not) is at most
    ``loss`` above its count here (each drop loses at most the largest rank dropped then).
    """

    def __init__(
        self,
        width: int,
        dtypes: dict[str, Any],
        how: dict[str, str],
        cap: int | None = None,
        rank: tuple[str, ...] = (),
    ) -> None:
        self.how, self.cap, self.rank = how, cap, rank
        self.keys = np.zeros((0, width), dtype=np.uint64)
        self.cols = {k: np.zeros(0, dtype=d) for k, d in dtypes.items()}
        self.pruned = 0
        self.loss = 0
        self._pending: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
        self._rows = 0

    def add(self, keys: np.ndarray, cols: dict[str, np.ndarray]) -> None:
        """Count rows ``keys`` with their values ``cols`` (after every row added before)."""
        if not keys.shape[0]:
            return
        k, c = _group(keys, cols, self.how)
        self._pending.append((k, c))
        self._rows += k.shape[0]
        if self._rows > max(self.keys.shape[0], 1 << 14):
            self.fold()

    def fold(self) -> _Grouped:
        """Fold the pending chunks into the table."""
        if self._pending:
            parts = [(self.keys, self.cols), *self._pending]
            keys = np.concatenate([p[0] for p in parts])
            cols = {n: np.concatenate([p[1][n] for p in parts]) for n in self.cols}
            self.keys, self.cols = _group(keys, cols, self.how)
            self._pending, self._rows = [], 0
            if self.cap is not None and self.keys.shape[0] > self.cap:
                self._prune()
        return self

    def _prune(self) -> None:
        """Keep the ``cap`` keys of largest rank (ties: the lower key), in key order (no sort: the
        ``cap``-th largest rank found by partition, and the first keys of that rank)."""
        rank = sum(self.cols[c] for c in self.rank)
        cap = int(self.cap)  # type: ignore[arg-type]
        v = np.partition(rank, rank.size - cap)[rank.size - cap]
        keep = rank > v
        keep[np.flatnonzero(rank == v)[: cap - int(np.count_nonzero(keep))]] = True
        self.pruned += int(rank.size - cap)
        self.loss += int(rank[~keep].max())
        self.keys = self.keys[keep]
        self.cols = {n: c[keep] for n, c in self.cols.items()}


    def merge(self, other: _Grouped) -> None:
        """Fold in ``other``'s rows (as if added after this one's)."""
        other.fold()
        self.pruned += other.pruned
        self.loss += other.loss
        if self._pending or not other.keys.shape[0]:
            self.add(other.keys, other.cols)
            self.fold()
            return
        # both sorted and unique: insert other's new keys in place and add into the keys both hold
        # (what ``fold`` of the two makes, without sorting them again)
        a, b = _sort_view(self.keys), _sort_view(other.keys)
        pos = np.searchsorted(a, b)
        hit = pos < a.size
        hit[hit] = a[pos[hit]] == b[hit]
        at, new = pos[hit], ~hit
        cols = {}
        for name, mine in self.cols.items():
            theirs, kind = other.cols[name], self.how[name]
            if kind != "first" and at.size:
                mine = mine.copy()
                if kind == "sum":
                    mine[at] += theirs[hit]
                else:
                    mine[at] |= theirs[hit]
            cols[name] = np.insert(mine, pos[new], theirs[new])
        self.keys, self.cols = np.insert(self.keys, pos[new], other.keys[new], axis=0), cols
        if self.cap is not None and self.keys.shape[0] > self.cap:
            self._prune()

    def __len__(self) -> int:
        return int(self.fold().keys.shape[0])

    def __getstate__(self) -> dict[str, Any]:
        self.fold()
        return self.__dict__.copy()


class _Set:
    """Distinct rows of uint64 words, kept as sorted big-endian byte strings (they sort as the rows do;
    ``nbytes`` the bytes kept of each row, e.g. 18 for an address and a port): each chunk's new rows are
    inserted in place, so the set never needs twice its size."""

    def __init__(self, width: int, nbytes: int | None = None) -> None:
        self.width = width
        self.nbytes = 8 * width if nbytes is None else nbytes
        self.rows = np.zeros(0, dtype=f"S{self.nbytes}")

    def __len__(self) -> int:
        return int(self.rows.size)

    def add(self, keys: np.ndarray) -> None:
        """Add the rows of ``keys`` (2-D uint64)."""
        if keys.shape[0]:
            raw = np.ascontiguousarray(keys.astype(">u8")).view(np.uint8)
            raw = np.concatenate([raw[:, :16], raw[:, 8 * self.width - (self.nbytes - 16) :]], axis=1)  # low bytes
            self._insert(np.unique(np.ascontiguousarray(raw).view(self.rows.dtype).ravel()))

    def merge(self, other: _Set) -> None:
        """Add ``other``'s rows."""
        self._insert(other.rows)

    def _insert(self, b: np.ndarray) -> None:
        if not b.size:
            return
        pos = np.searchsorted(self.rows, b)
        hit = self.rows[np.minimum(pos, max(self.rows.size - 1, 0))] == b if self.rows.size else np.zeros(b.size, bool)
        self.rows = np.insert(self.rows, pos[~hit], b[~hit])

    def sources(self) -> np.ndarray:
        """The first two words of each row, as ``_row_bytes`` strings (sorted)."""
        return np.ascontiguousarray(self.rows.view(np.uint8).reshape(-1, self.nbytes)[:, :16]).view("S16").ravel()

    def keep_sources(self, sources: np.ndarray) -> None:
        """Keep the rows whose first two words are a row of the sorted 2-column ``sources``."""
        if self.rows.size:  # rows are sorted: look up each run of one source once
            s = self.sources()
            head = np.ones(s.size, dtype=bool)
            head[1:] = s[1:] != s[:-1]
            starts = np.flatnonzero(head)
            found = _find_bytes(_row_bytes(sources), s[starts]) >= 0
            self.rows = self.rows[np.repeat(found, np.diff(np.append(starts, s.size)))]


# --------------------------------------------------------------------------- timeline


class Timeline:
    """Flow start times by severity band: exact up to ``exact`` flows, then in power-of-two bins."""

    def __init__(self, exact: int = TIMELINE_EXACT, bins: int = TIMELINE_BINS) -> None:
        self.exact, self.bins = int(exact), int(bins)
        self.ts = np.zeros(0, dtype=np.int64)
        self.band = np.zeros(0, dtype=np.uint8)
        self.shift: int | None = None  # None: exact; else bins of 2**shift ns from ``origin``
        self.origin = 0
        self.counts = np.zeros((len(SEVERITY_BANDS), 0), dtype=np.int64)
        self.tmin: int | None = None
        self.tmax: int | None = None
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []

    @property
    def flows(self) -> int:
        """Flow starts counted."""
        self._fold()
        return int(self.ts.size if self.shift is None else self.counts.sum())

    def add(self, ts: np.ndarray, band: np.ndarray) -> None:
        """Count flows starting at ``ts`` (int64 ns) in severity bands ``band``."""
        if not ts.size:
            return
        lo, hi = int(ts.min()), int(ts.max())
        self.tmin = lo if self.tmin is None else min(self.tmin, lo)
        self.tmax = hi if self.tmax is None else max(self.tmax, hi)
        if self.shift is None:
            self._pending.append((ts.astype(np.int64), band.astype(np.uint8)))
            if sum(p[0].size for p in self._pending) > 1 << 16:
                self._fold()
        else:
            self._grow()
            self._bin(ts, band)

    def merge(self, other: Timeline) -> None:
        """Fold in ``other``'s flow starts."""
        other._fold()
        if other.tmin is None:
            return
        if other.shift is None:
            self.add(other.ts, other.band)
            self._fold()
            return
        self._fold()
        self.tmin = other.tmin if self.tmin is None else min(self.tmin, other.tmin)
        self.tmax = other.tmax if self.tmax is None else max(self.tmax, other.tmax)  # type: ignore[type-var]
        ts, band = self.ts, self.band
        if self.shift is None:
            self.shift, self.origin = other.shift, other.origin
            self.counts = np.zeros((len(SEVERITY_BANDS), self.bins), dtype=np.int64)
            self.ts, self.band = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint8)
        self._grow(int(other.shift))
        self._bin(ts, band)
        # other's bins nest in ours (both aligned to powers of two): bin i of other starts at o + i * 2**s
        for i in np.flatnonzero(other.counts.any(axis=0)).tolist():
            j = (other.origin + (i << other.shift) - self.origin) >> self.shift
            self.counts[:, j] += other.counts[:, i]

    def _fold(self) -> None:
        if not self._pending:
            return
        self.ts = np.concatenate([self.ts] + [p[0] for p in self._pending])
        self.band = np.concatenate([self.band] + [p[1] for p in self._pending])
        self._pending = []
        if self.ts.size > self.exact:  # from now on: bins
            ts, band = self.ts, self.band
            self.ts, self.band = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint8)
            self.shift, self.origin = 0, int(self.tmin)  # type: ignore[arg-type]
            self.counts = np.zeros((len(SEVERITY_BANDS), self.bins), dtype=np.int64)
            self._grow()
            self._bin(ts, band)

    def _grow(self, at_least: int = 0) -> None:
        """Widen the bins (powers of two, realigned) until ``tmin``..``tmax`` fits in ``bins`` of them."""
        s = max(int(self.shift), at_least)  # type: ignore[arg-type]
        while True:
            origin = (self.tmin >> s) << s  # type: ignore[operator]
            if (self.tmax - origin) >> s < self.bins:  # type: ignore[operator]
                break
            s += 1
        if (s, origin) != (self.shift, self.origin):
            new = np.zeros_like(self.counts)
            for i in np.flatnonzero(self.counts.any(axis=0)).tolist():  # old bins nest in the new ones
                new[:, (self.origin + (i << self.shift) - origin) >> s] += self.counts[:, i]  # type: ignore[operator]
            self.counts, self.shift, self.origin = new, s, origin

    def _bin(self, ts: np.ndarray, band: np.ndarray) -> None:
        if not ts.size:
            return
        idx = (ts.astype(np.int64).view(np.uint64) - np.uint64(self.origin % 2**64)) >> np.uint64(self.shift)
        np.add.at(self.counts, (band.astype(np.int64), idx.astype(np.int64)), 1)

    def chart_bins(self) -> tuple[int, int, np.ndarray, int] | None:
        """(first bin start, bin width ns, counts per band x bin, resolution ns: 0 when exact), or None."""
        from .html import time_bins

        self._fold()
        if self.tmin is None:
            return None
        t0, t1 = self.tmin, int(self.tmax)  # type: ignore[arg-type]
        span = max(t1 - t0, 1)
        nbins = 60 if span > 60 * 10**9 else 30
        if self.shift is None:
            idx = time_bins(self.ts, t0, span, nbins)
            counts = np.stack([np.bincount(idx[self.band == b], minlength=nbins) for b in range(len(SEVERITY_BANDS))])
            return t0, span // nbins + 1, counts, 0
        f = 1 << self.shift
        per = -(-(span // nbins + 1) // f)  # fine bins per column: columns are whole multiples of them
        used = int(np.flatnonzero(self.counts.any(axis=0)).max()) + 1
        ncols = -(-used // per)
        c = np.concatenate([self.counts[:, :used], np.zeros((len(SEVERITY_BANDS), ncols * per - used), np.int64)], 1)
        return self.origin, per * f, c.reshape(len(SEVERITY_BANDS), ncols, per).sum(axis=2), f

    def __getstate__(self) -> dict[str, Any]:
        self._fold()
        return self.__dict__.copy()


# --------------------------------------------------------------------------- worst flows

DISAGREEMENTS = ("differ", "tshark-only", "portclass-only")
"""``evidence.tshark.AGREEMENT`` values the terminal's tshark table lists."""


class Worst:
    """The ``limit`` worst flows seen (severity, then bytes, then earliest, then end order), whole rows."""

    def __init__(self, limit: int) -> None:
        self.limit = max(int(limit), 0)
        self.kept: Ended | None = None  # worst first
        self.seq = np.zeros(0, dtype=np.int64)  # each kept flow's place in end order

    def __len__(self) -> int:
        return 0 if self.kept is None else len(self.kept)

    def add(self, e: Ended, seq0: int) -> None:
        """Offer the flows of ``e``, the ``seq0``-th flow of the run onwards."""
        from ..filters import take_labels

        if not self.limit or not len(e):
            return
        seq = seq0 + np.arange(len(e), dtype=np.int64)
        sev, by, ts = _order_keys(e)
        if self.kept is not None and len(self.kept) >= self.limit:  # only flows worse than the last kept
            ks, kb, kt = (x[-1] for x in _order_keys(self.kept))
            better = (sev > ks) | ((sev == ks) & ((by > kb) | ((by == kb) & (ts < kt))))
            if not better.any():
                return
            if not better.all():
                idx = np.flatnonzero(better)
                e = _take(e, idx, take_labels)
                seq, sev, by, ts = seq[idx], sev[idx], by[idx], ts[idx]
        self._keep([e] if self.kept is None else [self.kept, e], [seq] if self.kept is None else [self.seq, seq])

    def merge(self, other: Worst, offset: int) -> None:
        """Fold in ``other``'s flows, whose end order starts ``offset`` flows after this one's first."""
        if other.kept is None or not self.limit:
            return
        if self.kept is None:
            self._keep([other.kept], [other.seq + offset])
        else:
            self._keep([self.kept, other.kept], [self.seq, other.seq + offset])

    def _keep(self, parts: list[Ended], seqs: list[np.ndarray]) -> None:
        from ..engine import Ended
        from ..filters import take_labels

        e = Ended.concat(parts) if len(parts) > 1 else parts[0]
        seq = np.concatenate(seqs)
        sev, by, ts = _order_keys(e)
        order = np.lexsort((seq, ts, -by, -sev))[: self.limit]
        self.kept, self.seq = _take(e, order, take_labels), seq[order]

    def in_end_order(self) -> Ended | None:
        """The kept flows in end order (the order of the whole run's table)."""
        from ..filters import take_labels

        if self.kept is None:
            return None
        order = np.argsort(self.seq, kind="stable")
        return _take(self.kept, order, take_labels)


def _order_keys(e: Ended) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fl = e.flows
    return (
        e.labels.severity.astype(np.int16),
        fl.bytes_c2s.astype(np.int64) + fl.bytes_s2c,
        fl.first_ts_ns.astype(np.int64),
    )


def _take(e: Ended, idx: np.ndarray, take_labels: Any) -> Ended:
    from ..engine import Ended

    return Ended(e.flows.take(idx), take_labels(e.labels, idx), e.part[idx], e.reason[idx], e.stats)


def take_ended(e: Ended, idx: np.ndarray) -> Ended:
    """The rows ``idx`` of a chunk of ended flows."""
    from ..filters import take_labels

    return _take(e, idx, take_labels)


# --------------------------------------------------------------------------- the aggregates


@dataclass
class Totaling:
    """The whole-run totals (``summary.Totals``) kept as sums over ended flows, not the flows: what a report's
    head needs (the streaming writers, the sensor, a filtered run's whole capture); ``Aggregates`` adds the
    tables and the worst flows to these sums."""

    flows: int = 0
    by_transport: np.ndarray = field(default_factory=lambda: np.zeros(len(TRANSPORTS) + 1, dtype=np.int64))
    by_status: np.ndarray = field(default_factory=lambda: np.zeros(len(STATUS_NAMES), dtype=np.int64))
    packets: int = 0
    bytes: int = 0
    first_ts_ns: int | None = None
    last_ts_ns: int | None = None
    flagged: int = 0

    def add(self, e: Ended) -> None:
        """Count one chunk of ended flows."""
        n = len(e)
        if not n:
            return
        fl, lab = e.flows, e.labels
        self.flows += n
        self.by_transport += np.bincount(lab.transport.astype(np.int64) + 1, minlength=len(TRANSPORTS) + 1)
        self.by_status += np.bincount(lab.status, minlength=len(STATUS_NAMES))
        self.packets += int(fl.packets_c2s.sum(dtype=np.int64) + fl.packets_s2c.sum(dtype=np.int64))
        self.bytes += int(fl.bytes_c2s.sum(dtype=np.int64) + fl.bytes_s2c.sum(dtype=np.int64))
        lo, hi = int(fl.first_ts_ns.min()), int(fl.last_ts_ns.max())
        self.first_ts_ns = lo if self.first_ts_ns is None else min(lo, self.first_ts_ns)
        self.last_ts_ns = hi if self.last_ts_ns is None else max(hi, self.last_ts_ns)
        self.flagged += int(np.count_nonzero(lab.severity))

    def merge(self, other: Totaling) -> Totaling:
        """Fold in the sums of flows that ended after this one's (associative); returns self."""
        self.flows += other.flows
        self.by_transport = self.by_transport + other.by_transport
        self.by_status = self.by_status + other.by_status
        self.packets += other.packets
        self.bytes += other.bytes
        for name, pick in (("first_ts_ns", min), ("last_ts_ns", max)):
            mine, theirs = getattr(self, name), getattr(other, name)
            setattr(self, name, theirs if mine is None else mine if theirs is None else pick(mine, theirs))
        self.flagged += other.flagged
        return self

    def totals(self, a: Analysis) -> Totals:
        """``summary.Totals`` of the run: these sums and ``a``'s capture counters."""
        from .summary import totals_of

        return totals_of(
            a,
            flows=self.flows,
            by_transport=self.by_transport,
            by_status=self.by_status,
            flow_packets=self.packets,
            flow_bytes=self.bytes,
            first_ts_ns=self.first_ts_ns,
            last_ts_ns=self.last_ts_ns,
            flagged=self.flagged,
        )


@dataclass
class Aggregates(Totaling):
    """Everything the one-document reports show of a run, kept as flows end (see the module docstring).

    >>> agg = Aggregates(limit=50_000)  # doctest: +SKIP
    >>> for ended in engine_chunks:  # doctest: +SKIP
    ...     agg.add(ended)
    >>> agg.services(registry)[:3], agg.left_out  # doctest: +SKIP
    """

    limit: int = 50_000
    timeline_exact: int = TIMELINE_EXACT
    max_hosts: int = MAX_HOSTS
    by_outcome: np.ndarray = field(default_factory=lambda: np.zeros(4, dtype=np.int64))
    by_verdict: np.ndarray = field(default_factory=lambda: np.zeros(4, dtype=np.int64))
    by_flag: np.ndarray = field(default_factory=lambda: np.zeros(8, dtype=np.int64))  # flows with flag bit k
    by_protocol: np.ndarray | None = None  # (protocol code, verdict) flows, protocol > 0
    key_group_any: bool = False  # a flow kept apart by its file (flows.file_groups)
    by_agreement: np.ndarray | None = None  # flows per evidence.tshark.AGREEMENT (--dissect tshark), else None
    disagree: Worst | None = None  # the ``limit`` worst flows where tshark and portclass disagree
    svc: _Grouped = field(default=None)  # type: ignore[assignment]
    hosts: _Grouped = field(default=None)  # type: ignore[assignment]
    src: _Grouped = field(default=None)  # type: ignore[assignment]
    src_port: _Set = field(default=None)  # type: ignore[assignment]
    src_host: _Set = field(default=None)  # type: ignore[assignment]
    timeline: Timeline = field(default=None)  # type: ignore[assignment]
    worst: Worst = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        from ..evidence.table import PROTOCOLS

        if self.by_protocol is None:
            self.by_protocol = np.zeros((len(PROTOCOLS) + 1, 4), dtype=np.int64)
        i64, u8 = np.dtype(np.int64), np.dtype(np.uint8)
        if self.svc is None:
            self.svc = _Grouped(
                1,
                {"flows": i64, "packets": i64, "bytes": i64, "flags": u8, "proto": u8, "service": np.int32,
                 "status": u8},
                {"flows": "sum", "packets": "sum", "bytes": "sum", "flags": "or", "proto": "first",
                 "service": "first", "status": "first"},
            )  # fmt: skip
        if self.hosts is None:
            cols = ("client_bytes", "server_bytes", "client_flows", "server_flows")
            rank = ("client_bytes", "server_bytes")
            self.hosts = _Grouped(2, dict.fromkeys(cols, i64), dict.fromkeys(cols, "sum"), self.max_hosts, rank)
        if self.src is None:
            cols = ("rejected", "no_reply", "answered")
            rank = ("rejected", "no_reply")
            self.src = _Grouped(2, dict.fromkeys(cols, i64), dict.fromkeys(cols, "sum"), self.max_hosts, rank)
        self._src_pruned = self.src.pruned
        if self.src_port is None:
            self.src_port = _Set(3, 18)
        if self.src_host is None:
            self.src_host = _Set(4)
        if self.timeline is None:
            self.timeline = Timeline(self.timeline_exact)
        if self.worst is None:
            self.worst = Worst(self.limit)

    # ---------------------------------------------------------------- input

    def add(self, e: Ended) -> None:
        """Count one chunk of ended flows (after every chunk added before)."""
        from ..conn import OUT_ANSWERED, OUT_NO_REPLY, OUT_REJECTED, outcomes

        n = len(e)
        if not n:
            return
        fl, lab = e.flows, e.labels
        self.worst.add(e, self.flows)  # before the count: the chunk's place in end order
        super().add(e)
        pk = fl.packets_c2s.astype(np.int64) + fl.packets_s2c
        by = fl.bytes_c2s.astype(np.int64) + fl.bytes_s2c
        codes = outcomes(fl)
        self.by_outcome += np.bincount(codes, minlength=4)
        self.by_verdict += np.bincount(lab.verdict, minlength=4)
        self.by_flag += np.array([np.count_nonzero(lab.flags & (1 << k)) for k in range(8)], dtype=np.int64)
        seen = lab.protocol > 0
        if seen.any():
            np.add.at(self.by_protocol, (lab.protocol[seen].astype(np.int64), lab.verdict[seen].astype(np.int64)), 1)
        self.key_group_any = self.key_group_any or bool(fl.key_group.any())
        # services: connections that happened (attempts are counted apart)
        att = (codes == OUT_REJECTED) | (codes == OUT_NO_REPLY)
        keep = ~att
        key = ((lab.transport[keep].astype(np.int64) + 1) * 65536 + fl.server_port[keep]).astype(np.uint64)
        self.svc.add(
            key[:, None],
            {"flows": np.ones(key.size, np.int64), "packets": pk[keep], "bytes": by[keep], "flags": lab.flags[keep],
             "proto": fl.proto[keep], "service": lab.service[keep], "status": lab.status[keep]},
        )  # fmt: skip
        # talkers: every host, as client and as server
        hk = np.stack([np.concatenate([fl.client_hi, fl.server_hi]), np.concatenate([fl.client_lo, fl.server_lo])], 1)
        zero, one = np.zeros(n, np.int64), np.ones(n, np.int64)
        self.hosts.add(
            hk,
            {"client_bytes": np.concatenate([by, zero]), "server_bytes": np.concatenate([zero, by]),
             "client_flows": np.concatenate([one, zero]), "server_flows": np.concatenate([zero, one])},
        )  # fmt: skip
        # scanners: per source, and the distinct ports and hosts its attempts went to
        self.src.add(
            np.stack([fl.client_hi, fl.client_lo], 1),
            {"rejected": (codes == OUT_REJECTED).astype(np.int64), "no_reply": (codes == OUT_NO_REPLY).astype(np.int64),
             "answered": (codes == OUT_ANSWERED).astype(np.int64)},
        )  # fmt: skip
        if att.any():
            port = fl.server_port[att].astype(np.uint64)
            self.src_port.add(np.stack([fl.client_hi[att], fl.client_lo[att], port], 1))
            self.src_host.add(np.stack([fl.client_hi[att], fl.client_lo[att], fl.server_hi[att], fl.server_lo[att]], 1))
        self._sync_pairs()
        self.timeline.add(fl.first_ts_ns, _BAND_OF[lab.severity])
        if lab.tshark_protocol is not None and lab.tshark_protocol[0] is not None:  # tshark named them
            from ..evidence.tshark import AGREEMENT, agreement

            agree = agreement(lab)
            counts = np.array([np.count_nonzero(agree == k) for k in AGREEMENT], dtype=np.int64)
            self.by_agreement = counts if self.by_agreement is None else self.by_agreement + counts
            if self.disagree is None:
                self.disagree = Worst(self.limit)
            odd = np.flatnonzero(np.isin(agree, DISAGREEMENTS))
            self.disagree.add(take_ended(e, odd), self.flows - n)

    def _sync_pairs(self) -> None:
        """After sources were pruned, drop their (source, port) and (source, host) pairs too."""
        if self.src.pruned != self._src_pruned:
            self.src.fold()
            self.src_port.keep_sources(self.src.keys)
            self.src_host.keep_sources(self.src.keys)
            self._src_pruned = self.src.pruned

    def merge(self, other: Aggregates) -> Aggregates:
        """Fold in the aggregates of flows that ended after this one's (associative); returns self."""
        offset = self.flows  # where ``other``'s end order starts
        self.worst.merge(other.worst, offset)
        super().merge(other)
        for name in ("by_outcome", "by_verdict", "by_flag", "by_protocol"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.key_group_any = self.key_group_any or other.key_group_any
        for name in ("svc", "hosts", "src", "src_port", "src_host"):
            getattr(self, name).merge(getattr(other, name))
        self._sync_pairs()
        self.timeline.merge(other.timeline)
        theirs = getattr(other, "by_agreement", None)
        if theirs is not None:
            mine = getattr(self, "by_agreement", None)
            self.by_agreement = theirs.copy() if mine is None else mine + theirs
            if getattr(self, "disagree", None) is None:
                self.disagree = Worst(self.limit)
            self.disagree.merge(other.disagree, offset)  # type: ignore[arg-type]
        return self

    def disagreements_view(self, a: Analysis) -> Analysis:
        """The kept worst flows where tshark and portclass disagree, as an analysis of ``a``'s run."""
        import dataclasses

        from ..engine import Ended

        e = (self.disagree.kept if getattr(self, "disagree", None) is not None else None) or Ended.empty()
        return dataclasses.replace(a, flows=e.flows, labels=e.labels, part=e.part, aggregates=self)

    def agreement_counts(self) -> dict[str, int] | None:
        """Flows per ``evidence.tshark.AGREEMENT`` (None: tshark was not asked)."""
        from ..evidence.tshark import AGREEMENT

        counts = getattr(self, "by_agreement", None)
        return None if counts is None else {k: int(counts[i]) for i, k in enumerate(AGREEMENT)}

    @classmethod
    def of(cls, a: Analysis, limit: int | None = None) -> Aggregates:
        """The aggregates of an analysis that holds its flows (one chunk; ``limit`` None: keep them all)."""
        from ..engine import Ended

        n = len(a.flows)
        agg = cls(limit=n if limit is None else limit)
        part = a.part if a.part is not None else np.zeros(n, dtype=np.int32)
        agg.add(Ended(a.flows, a.labels, part, np.zeros(n, dtype=np.uint8), a.stats))
        return agg

    # ---------------------------------------------------------------- reading

    @property
    def left_out(self) -> int:
        """Flows not in the worst list (the bound cut them)."""
        return self.flows - len(self.worst)

    def outcome_counts(self) -> dict[str, int]:
        """Flows per outcome: answered, rejected, no reply, other (as ``summary.outcome_counts``)."""
        from ..conn import OUTCOMES

        return {name: int(self.by_outcome[i]) for i, name in enumerate(OUTCOMES)}

    def verdict_counts(self, inspected: bool) -> dict[str, int] | None:
        """Flows per verdict in the summary's order, None when payloads were not inspected."""
        from ..evidence.verdict import VERDICTS

        if not inspected:
            return None
        return {VERDICTS[c]: int(self.by_verdict[c]) for c in (1, 2, 3, 0)}

    def services(self, registry: Any) -> list[ServiceRow]:
        """``summary.services`` rows: traffic per (transport, server port), most flows first (then bytes)."""
        from .summary import ServiceRow

        s = self.svc.fold()
        if not s.keys.shape[0]:
            return []
        c = s.cols
        key = s.keys[:, 0].astype(np.int64)
        names = registry.service_names
        out = []
        for i in np.lexsort((-c["bytes"].astype(np.float64), -c["flows"])).tolist():
            t = int(key[i] // 65536) - 1
            sid = int(c["service"][i])
            out.append(
                ServiceRow(
                    transport=TRANSPORTS[t] if t >= 0 else str(int(c["proto"][i])),
                    port=int(key[i] % 65536),
                    service=str(names[sid]) if sid >= 0 else None,
                    status=STATUS_NAMES[int(c["status"][i])],
                    flags=int(c["flags"][i]),
                    flows=int(c["flows"][i]),
                    packets=int(c["packets"][i]),
                    bytes=int(c["bytes"][i]),
                )
            )
        return out

    def scanners(self) -> list[ScannerRow]:
        """``summary.scanners`` rows: sources of many unanswered attempts to many ports or hosts, most first."""
        from .summary import scanner_rows

        s = self.src.fold()
        self._sync_pairs()
        if not s.keys.shape[0]:
            return []
        rej, nor, ans = s.cols["rejected"], s.cols["no_reply"], s.cols["answered"]
        n_ports = _per_source(s.keys, self.src_port)
        n_hosts = _per_source(s.keys, self.src_host)
        return scanner_rows(s.keys, rej, nor, ans, n_ports, n_hosts)

    def talkers_note(self) -> str | None:
        """What the talkers chart cannot say exactly (None: every host counted)."""
        h = self.hosts
        h.fold()
        if not h.pruned:
            return None
        return (
            f"approximate: more than {h.cap:,} hosts; the busiest kept ({h.pruned:,} dropped on the way), "
            f"a host's bytes may be undercounted by up to {h.loss:,}"
        )

    def scanners_note(self) -> str | None:
        """What the scanners table cannot say exactly (None: every source counted)."""
        s = self.src
        s.fold()
        if not s.pruned:
            return None
        return (
            f"approximate: more than {s.cap:,} sources; those with the most unanswered attempts kept "
            f"({s.pruned:,} dropped on the way), a source's attempts may be undercounted by up to {s.loss:,} "
            "and its ports and hosts too"
        )

    def talkers(self, top: int) -> list[tuple[int, int, int, int, int, int]]:
        """The ``top`` hosts by bytes: (hi, lo, bytes as client, as server, flows as client, as server)."""
        h = self.hosts.fold()
        c = h.cols
        total = c["client_bytes"] + c["server_bytes"]
        pick = np.lexsort((np.arange(total.size), -total))[:top]
        cols = (c["client_bytes"], c["server_bytes"], c["client_flows"], c["server_flows"])
        return [(int(h.keys[i, 0]), int(h.keys[i, 1]), *(int(x[i]) for x in cols)) for i in pick.tolist()]  # type: ignore[misc]

    def worst_view(self, a: Analysis, end_order: bool = True) -> Analysis:
        """The kept worst flows as an analysis of ``a``'s run (in end order, or worst first); its
        ``aggregates`` stay these, so totals and tables computed from it describe the whole run."""
        import dataclasses

        from ..engine import Ended

        e = (self.worst.in_end_order() if end_order else self.worst.kept) or Ended.empty()
        return dataclasses.replace(a, flows=e.flows, labels=e.labels, part=e.part, aggregates=self)

    def nbytes(self) -> int:
        """Bytes of NumPy data held (the worst list's object columns not counted): a size check."""
        total = 0
        for g in (self.svc, self.hosts, self.src):
            g.fold()
            total += g.keys.nbytes + sum(v.nbytes for v in g.cols.values())
        total += self.src_port.rows.nbytes + self.src_host.rows.nbytes
        tl = self.timeline
        tl._fold()
        total += tl.ts.nbytes + tl.band.nbytes + tl.counts.nbytes
        if self.worst.kept is not None:
            fl = self.worst.kept.flows
            total += sum(getattr(fl, f.name).nbytes for f in fields(fl))
        return total


def _sort_view(keys: np.ndarray) -> np.ndarray:
    """Rows of a 2-D uint64 array as one value each that sorts as the rows do (``_stable_order``)."""
    if keys.shape[1] == 1:
        return keys[:, 0]
    return np.ascontiguousarray(keys.astype(">u8")).view(f"S{8 * keys.shape[1]}").ravel()


def _row_bytes(x: np.ndarray) -> np.ndarray:
    """Rows of a 2-column uint64 array as 16-byte big-endian strings: they sort as the rows do."""
    return np.ascontiguousarray(x[:, :2].astype(">u8")).view("S16").ravel()


def _find_bytes(table: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Index of each of ``b`` in the sorted unique byte strings ``table`` (-1 where absent)."""
    out = np.full(b.size, -1, dtype=np.int64)
    if table.size and b.size:
        at = np.minimum(np.searchsorted(table, b), table.size - 1)
        hit = table[at] == b
        out[hit] = at[hit]
    return out


def _per_source(sources: np.ndarray, pairs: _Set) -> np.ndarray:
    """For each sorted source row (hi, lo): how many of the ``pairs`` start with it."""
    out = np.zeros(sources.shape[0], dtype=np.int64)
    at = _find_bytes(_row_bytes(sources), pairs.sources())
    np.add.at(out, at[at >= 0], 1)
    return out


AGGREGATED: tuple[str, ...] = ("terminal", "json", "html")
"""Formats the command line builds from running aggregates (the flows themselves are not kept)."""


def analyze_aggregated(paths: list[str], registry: Any, limit: int, analyze: Any = None, **kw: Any) -> Analysis:
    """Analyze captures keeping running aggregates and the ``limit`` worst flows instead of every flow.

    ``kw`` goes to ``analyze`` (default ``pipeline.analyze``); the returned analysis has no flows,
    and its ``aggregates`` describe the whole run.
    """
    if analyze is None:
        from ..pipeline import analyze
    agg = Aggregates(limit=limit)
    a = analyze(paths, registry, on_ended=agg.add, **kw)
    if len(a.flows):  # an analyze that did not stream (tests stand one in): its flows as one chunk
        from ..engine import Ended

        n = len(a.flows)
        part = a.part if a.part is not None else np.zeros(n, np.int32)
        agg.add(Ended(a.flows, a.labels, part, np.zeros(n, np.uint8), a.stats))
    return with_aggregates(a, agg)


def with_aggregates(a: Analysis, agg: Aggregates) -> Analysis:
    """``a`` without its flows, carrying ``agg``: what ``report.write`` needs for the summary, json and
    html of a run whose flows were counted elsewhere (e.g. aggregates merged across tasks)."""
    import dataclasses

    from ..engine import Ended

    empty = Ended.empty()
    return dataclasses.replace(a, flows=empty.flows, labels=empty.labels, part=empty.part, aggregates=agg)
