"""Aggregates every report shares: capture totals, services by server port, status breakdown,
connection outcomes (answered or attempts) and scanners.

Each is computed over the analysis' flow table, or, for a run whose flows were not kept (the CLI's
summary, ``-f json`` and ``-f html``), read from the run's running aggregates
(``Analysis.aggregates``, ``report.aggregates``): the same figures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..pipeline import Analysis
from ..registry.compile import STATUS_NAMES
from ..registry.model import TRANSPORTS


@dataclass
class Totals:
    """Capture totals as the summary's header prints them."""

    files: int
    packets: int
    bytes: int
    flows: int
    flows_by_transport: dict[str, int]
    flow_packets: int
    flow_bytes: int
    first_ts_ns: int | None
    last_ts_ns: int | None
    no_ports: dict[str, int]
    non_ip: int
    malformed: int
    truncated: int
    skipped_linktype: dict[str, int]
    fragments_unattributed: int
    flagged_flows: int
    flows_by_status: dict[str, int]
    idle_timeout_s: float
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)


def totals(a: Analysis) -> Totals:
    """Capture and flow totals, vectorized over the flow table (or the streamed run's running totals)."""
    running = getattr(a, "running", None)
    if running is not None:
        return running
    if a.aggregates is not None:
        return a.aggregates.totals(a)
    fl, lab = a.flows, a.labels
    n = len(fl)
    return totals_of(
        a,
        flows=n,
        by_transport=np.bincount(lab.transport.astype(np.int64) + 1, minlength=len(TRANSPORTS) + 1),
        by_status=np.bincount(lab.status, minlength=len(STATUS_NAMES)),
        flow_packets=int(fl.packets_c2s.sum(dtype=np.int64) + fl.packets_s2c.sum(dtype=np.int64)),
        flow_bytes=int(fl.bytes_c2s.sum(dtype=np.int64) + fl.bytes_s2c.sum(dtype=np.int64)),
        first_ts_ns=int(fl.first_ts_ns.min()) if n else None,
        last_ts_ns=int(fl.last_ts_ns.max()) if n else None,
        flagged=int(np.count_nonzero(lab.severity)),
    )


def totals_of(
    a: Analysis,
    *,
    flows: int,
    by_transport: np.ndarray,
    by_status: np.ndarray,
    flow_packets: int,
    flow_bytes: int,
    first_ts_ns: int | None,
    last_ts_ns: int | None,
    flagged: int,
) -> Totals:
    """``Totals`` from flow sums (over a table, or running over a stream) and the run's capture counters."""
    st = a.stats
    return Totals(
        files=len(st.files),
        packets=int(st.packets),
        bytes=int(st.bytes),
        flows=flows,
        flows_by_transport={t: int(by_transport[i + 1]) for i, t in enumerate(TRANSPORTS) if by_transport[i + 1]},
        flow_packets=flow_packets,
        flow_bytes=flow_bytes,
        first_ts_ns=first_ts_ns,
        last_ts_ns=last_ts_ns,
        no_ports=dict(st.no_ports.most_common()),
        non_ip=int(st.non_ip),
        malformed=int(st.malformed),
        truncated=int(st.truncated),
        skipped_linktype=dict(st.skipped_linktype.most_common()),
        fragments_unattributed=int(st.fragments_unattributed),
        flagged_flows=flagged,
        flows_by_status={s: int(by_status[i]) for i, s in enumerate(STATUS_NAMES) if by_status[i]},
        idle_timeout_s=a.idle_timeout_s,
        warnings=list(st.warnings),
    )


@dataclass
class ServiceRow:
    """One server port of one transport, with its label and traffic."""

    transport: str
    port: int
    service: str | None
    status: str
    flags: int
    flows: int
    packets: int
    bytes: int


def flow_outcomes(a: Analysis) -> np.ndarray:
    """Outcome code per flow (``classifier.conn.OUTCOMES``: answered, rejected, no reply, other).

    Computed once per flow table: the summary's outcome line, services and scanners all ask for it.
    """
    from ..conn import outcomes

    cached = _OUTCOMES_CACHE.get(id(a.flows))
    if cached is not None and cached[0] is a.flows:
        return cached[1]
    codes = outcomes(a.flows)
    _OUTCOMES_CACHE.clear()  # one table at a time: no flow table is kept alive by the cache for long
    _OUTCOMES_CACHE[id(a.flows)] = (a.flows, codes)
    return codes


_OUTCOMES_CACHE: dict[int, tuple[object, np.ndarray]] = {}


def outcome_counts(a: Analysis, codes: np.ndarray | None = None) -> dict[str, int]:
    """Flows per outcome: answered, rejected, no reply, other."""
    from ..conn import OUTCOMES

    if a.aggregates is not None:
        return a.aggregates.outcome_counts()

    codes = flow_outcomes(a) if codes is None else codes
    counts = np.bincount(codes, minlength=len(OUTCOMES))
    return {name: int(counts[i]) for i, name in enumerate(OUTCOMES)}


SCAN_MIN_ATTEMPTS = 10
"""A scanner: a source with at least this many unanswered or rejected attempts, to at least
``SCAN_MIN_TARGETS`` different server ports or hosts."""
SCAN_MIN_TARGETS = 10


@dataclass
class ScannerRow:
    """A source of many connection attempts that got no answer or were rejected."""

    source: str
    attempts: int
    rejected: int
    no_reply: int
    ports: int
    hosts: int
    answered: int


def _unique_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique rows of a 2-D integer array and each row's index among them (as ``np.unique(axis=0)``,
    which sorts structured copies and is several times slower on a flow table)."""
    if not x.shape[0]:
        return x, np.zeros(0, dtype=np.int64)
    order = np.lexsort(x.T[::-1])
    xs = x[order]
    new = np.ones(xs.shape[0], dtype=bool)
    new[1:] = (xs[1:] != xs[:-1]).any(axis=1)
    inv = np.empty(xs.shape[0], dtype=np.int64)
    inv[order] = np.cumsum(new) - 1
    return xs[new], inv


def scanners(a: Analysis, codes: np.ndarray | None = None) -> list[ScannerRow]:
    """Sources of ``SCAN_MIN_ATTEMPTS`` or more attempts across ``SCAN_MIN_TARGETS`` ports or hosts, most first."""
    from ..conn import OUT_ANSWERED, OUT_NO_REPLY, OUT_REJECTED

    if a.aggregates is not None:
        return a.aggregates.scanners()
    fl = a.flows
    codes = flow_outcomes(a) if codes is None else codes
    if not len(fl):
        return []
    src = np.stack([fl.client_hi, fl.client_lo], axis=1)
    uniq, inv = _unique_rows(src)
    n = uniq.shape[0]
    att = (codes == OUT_REJECTED) | (codes == OUT_NO_REPLY)
    rej = np.bincount(inv[codes == OUT_REJECTED], minlength=n)
    nor = np.bincount(inv[codes == OUT_NO_REPLY], minlength=n)
    ans = np.bincount(inv[codes == OUT_ANSWERED], minlength=n)
    ai = inv[att]
    ports = _unique_rows(np.stack([ai, fl.server_port[att].astype(np.int64)], axis=1))[0][:, 0]
    hosts = _unique_rows(np.stack([ai.astype(np.uint64), fl.server_hi[att], fl.server_lo[att]], axis=1))[0][:, 0]
    n_ports = np.bincount(ports, minlength=n)
    n_hosts = np.bincount(hosts.astype(np.int64), minlength=n)
    return scanner_rows(uniq, rej, nor, ans, n_ports, n_hosts)


def scanner_rows(
    sources: np.ndarray, rej: np.ndarray, nor: np.ndarray, ans: np.ndarray, n_ports: np.ndarray, n_hosts: np.ndarray
) -> list[ScannerRow]:
    """Scanner rows from per-source counts (one rule for the flow table and the running aggregates)."""
    from .addr import format_addresses

    total = rej + nor
    pick = np.flatnonzero((total >= SCAN_MIN_ATTEMPTS) & (np.maximum(n_ports, n_hosts) >= SCAN_MIN_TARGETS))
    pick = pick[np.argsort(-total[pick], kind="stable")]
    names = format_addresses(sources[pick, 0], sources[pick, 1])
    return [
        ScannerRow(
            source=str(names[k]),
            attempts=int(total[i]),
            rejected=int(rej[i]),
            no_reply=int(nor[i]),
            ports=int(n_ports[i]),
            hosts=int(n_hosts[i]),
            answered=int(ans[i]),
        )
        for k, i in enumerate(pick.tolist())
    ]


def services(a: Analysis, attempts: bool = False) -> list[ServiceRow]:
    """Traffic per (transport, server port), most flows first (then bytes).

    Connection attempts that were rejected or never answered are left out unless ``attempts``: a
    port label on a connection that never happened is noise (``outcome_counts`` counts them apart).
    A run read into running aggregates has the rows without attempts only.
    """
    if a.aggregates is not None and not attempts:
        return a.aggregates.services(a.registry)
    if not attempts:
        from ..conn import OUT_NO_REPLY, OUT_REJECTED

        codes = flow_outcomes(a)
        keep = (codes != OUT_REJECTED) & (codes != OUT_NO_REPLY)
        if not keep.all():
            a = _subset(a, np.flatnonzero(keep))
    fl, lab = a.flows, a.labels
    if len(fl) == 0:
        return []
    key = (lab.transport.astype(np.int64) + 1) * 65536 + fl.server_port
    uniq, first, inv = np.unique(key, return_index=True, return_inverse=True)
    inv = inv.reshape(-1)
    flows = np.bincount(inv)
    pk = np.bincount(inv, weights=fl.packets_c2s.astype(np.float64) + fl.packets_s2c)
    by = np.bincount(inv, weights=fl.bytes_c2s.astype(np.float64) + fl.bytes_s2c)
    grouped = np.argsort(inv, kind="stable")
    starts = np.concatenate([[0], np.cumsum(flows)[:-1]])
    flags_or = np.bitwise_or.reduceat(lab.flags[grouped], starts)
    names = a.registry.service_names
    out = []
    for i in np.lexsort((-by, -flows)).tolist():
        j = int(first[i])
        t = int(lab.transport[j])
        sid = int(lab.service[j])
        out.append(
            ServiceRow(
                transport=TRANSPORTS[t] if t >= 0 else str(int(fl.proto[j])),
                port=int(fl.server_port[j]),
                service=str(names[sid]) if sid >= 0 else None,
                status=STATUS_NAMES[int(lab.status[j])],
                flags=int(flags_or[i]),
                flows=int(flows[i]),
                packets=int(pk[i]),
                bytes=int(by[i]),
            )
        )
    return out


def _subset(a: Analysis, idx: np.ndarray) -> Analysis:
    """The analysis with only the flows ``idx`` (labels alike), for aggregates over part of the flows."""
    from dataclasses import fields as dc_fields

    from ..filters import take_labels

    kept = {f.name: getattr(a, f.name) for f in dc_fields(Analysis)}
    kept.update(flows=a.flows.take(idx), labels=take_labels(a.labels, idx))
    return Analysis(**kept)


def verdict_counts(a: Analysis) -> dict[str, int] | None:
    """Flows per payload verdict, worst first (consistent, mismatch, unregistered, unverified order of the
    summary); None when the run did not look at payloads (``--dissect none``)."""
    from ..evidence.verdict import VERDICTS

    if not a.payload_inspected:
        return None
    if a.aggregates is not None:
        return a.aggregates.verdict_counts(True)
    counts = np.bincount(a.labels.verdict, minlength=len(VERDICTS))
    return {VERDICTS[c]: int(counts[c]) for c in (1, 2, 3, 0)}


def worst_view(a: Analysis) -> Analysis:
    """The flows a flows table may show, in the run's order: all of ``a``'s, or for a run read into
    running aggregates the worst flows they kept (``Aggregates.worst``)."""
    return a if a.aggregates is None else a.aggregates.worst_view(a)


def flow_count(a: Analysis) -> int:
    """Flows of the run (also those a bounded list left out)."""
    return len(a.flows) if a.aggregates is None else int(a.aggregates.flows)
