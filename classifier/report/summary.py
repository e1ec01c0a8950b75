"""Aggregates every report shares: capture totals, services by server port, status breakdown."""

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
    """Capture and flow totals, vectorized over the flow table."""
    fl, lab, st = a.flows, a.labels, a.stats
    n = len(fl)
    by_t = np.bincount(lab.transport.astype(np.int64) + 1, minlength=len(TRANSPORTS) + 1)
    by_s = np.bincount(lab.status, minlength=len(STATUS_NAMES))
    return Totals(
        files=len(st.files),
        packets=int(st.packets),
        bytes=int(st.bytes),
        flows=n,
        flows_by_transport={t: int(by_t[i + 1]) for i, t in enumerate(TRANSPORTS) if by_t[i + 1]},
        flow_packets=int(fl.packets_c2s.sum(dtype=np.int64) + fl.packets_s2c.sum(dtype=np.int64)),
        flow_bytes=int(fl.bytes_c2s.sum(dtype=np.int64) + fl.bytes_s2c.sum(dtype=np.int64)),
        first_ts_ns=int(fl.first_ts_ns.min()) if n else None,
        last_ts_ns=int(fl.last_ts_ns.max()) if n else None,
        no_ports=dict(st.no_ports.most_common()),
        non_ip=int(st.non_ip),
        malformed=int(st.malformed),
        truncated=int(st.truncated),
        skipped_linktype=dict(st.skipped_linktype.most_common()),
        fragments_unattributed=int(st.fragments_unattributed),
        flagged_flows=int(np.count_nonzero(lab.severity)),
        flows_by_status={s: int(by_s[i]) for i, s in enumerate(STATUS_NAMES) if by_s[i]},
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


def services(a: Analysis) -> list[ServiceRow]:
    """Traffic per (transport, server port), most flows first (then bytes)."""
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


def verdict_counts(a: Analysis) -> dict[str, int] | None:
    """Flows per payload verdict, worst first (consistent, mismatch, unregistered, unverified order of the
    summary); None when the run did not look at payloads (``--dissect none``)."""
    from ..evidence.verdict import VERDICTS

    if not a.payload_inspected:
        return None
    counts = np.bincount(a.labels.verdict, minlength=len(VERDICTS))
    return {VERDICTS[c]: int(counts[c]) for c in (1, 2, 3, 0)}
