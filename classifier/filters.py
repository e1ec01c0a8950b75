"""Select flows by label, service, port or host: boolean masks over the flow table, no per-flow Python.

Semantics: values of one option are alternatives (``--port 53 --port 80``: either port); different
options must all hold (``--flagged-only --port 53``: flagged *and* on port 53). ``--port`` and
``--host`` match either side of a flow; ``--service`` matches a flow whose server port (on its
transport) carries that name in the registry, as the primary name or an alias (``www`` selects
80/tcp, labelled ``http``); ``--state`` matches Zeek's conn_state (``classifier.conn``) and
``--answered`` keeps connections the responder answered (TCP established, UDP both ways).

A filtered analysis keeps the capture's counters (packets, bytes, files: the whole capture) and
records in ``selection`` how many flows the filter kept out of how many, and ``whole`` is the
unfiltered analysis (for totals that must describe everything).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from .errors import PortclassError
from .flows import FlowTable, addr_to_words
from .label import FLAG_NAMES, Labels
from .pipeline import Analysis
from .registry.compile import NPORTS, STATUS_NAMES, CompiledRegistry
from .registry.model import TRANSPORTS

FLAG_BITS: dict[str, int] = {name: bit for bit, name in FLAG_NAMES.items()}
"""Flag name -> bit (``classifier.label.FLAG_NAMES`` reversed)."""

_U64 = np.uint64
_ALL64 = (1 << 64) - 1

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_host(text: str) -> Network:
    """An address or a CIDR block (host bits allowed: ``192.0.2.7/24`` means ``192.0.2.0/24``).

    >>> str(parse_host("192.0.2.7/24")), str(parse_host("2001:db8::1"))
    ('192.0.2.0/24', '2001:db8::1/128')
    """
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"not an IP address or CIDR block: {text!r}") from None


@dataclass(frozen=True)
class FlowFilter:
    """What to keep; an empty filter keeps everything.

    >>> FlowFilter(flagged_only=True, ports=(53,)).describe()
    '--flagged-only --port 53'
    """

    flagged_only: bool = False
    flags: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    hosts: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    answered: bool = False

    def __post_init__(self) -> None:
        from .conn import CONN_STATES

        for state in self.states:
            if state not in CONN_STATES:
                raise ValueError(f"unknown connection state {state!r} (one of {', '.join(CONN_STATES)})")
        for name in self.flags:
            if name not in FLAG_BITS:
                raise ValueError(f"unknown flag {name!r} (one of {', '.join(FLAG_BITS)})")
        for status in self.statuses:
            if status not in STATUS_NAMES:
                raise ValueError(f"unknown status {status!r} (one of {', '.join(STATUS_NAMES)})")
        for port in self.ports:
            if not 0 <= int(port) < NPORTS:
                raise ValueError(f"port {port} is not in 0-65535")
        for host in self.hosts:
            parse_host(host)

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def describe(self) -> str:
        """The filter as command-line options (for report headers and messages)."""
        parts = ["--flagged-only"] if self.flagged_only else []
        for opt, values in (
            ("--flag", self.flags),
            ("--service", self.services),
            ("--status", self.statuses),
            ("--port", self.ports),
            ("--host", self.hosts),
            ("--state", self.states),
        ):
            parts += [f"{opt} {v}" for v in values]
        if self.answered:
            parts.append("--answered")
        return " ".join(parts)

    @classmethod
    def from_args(cls, args: Any) -> FlowFilter:
        """The filter given by parsed ``analyze`` options (missing attributes mean 'not given')."""
        return cls(
            flagged_only=bool(getattr(args, "flagged_only", False)),
            flags=tuple(getattr(args, "flag", None) or ()),
            services=tuple(getattr(args, "service", None) or ()),
            statuses=tuple(getattr(args, "status", None) or ()),
            ports=tuple(int(p) for p in getattr(args, "port", None) or ()),
            hosts=tuple(getattr(args, "host", None) or ()),
            states=tuple(getattr(args, "state", None) or ()),
            answered=bool(getattr(args, "answered", False)),
        )


@dataclass
class Selection:
    """What a filter kept: how many flows (and flagged flows) out of the whole capture's."""

    filter: str
    kept: int
    total: int
    kept_flagged: int
    total_flagged: int

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON and file metadata."""
        return {
            "filter": self.filter,
            "kept_flows": self.kept,
            "total_flows": self.total,
            "kept_flagged_flows": self.kept_flagged,
            "total_flagged_flows": self.total_flagged,
        }

    def line(self) -> str:
        """One line for report headers and stderr."""
        return f"filter {self.filter}: kept {self.kept:,} of {self.total:,} flows ({self.kept_flagged:,} flagged)"


@dataclass
class FilteredAnalysis(Analysis):
    """An ``Analysis`` whose flows and labels are the rows a filter kept; ``stats`` is still the whole capture's."""

    selection: Selection | None = None
    whole: Analysis | None = field(default=None, repr=False, compare=False)


# --------------------------------------------------------------------------- masks


def service_port_mask(registry: CompiledRegistry, names: tuple[str, ...] | list[str]) -> np.ndarray:
    """``(transports, 65536)`` bool: ports named (primary or alias) by any of ``names``, case-insensitive.

    Raises ``PortclassError`` for a name the registry does not have (a typo should not select nothing).
    """
    want = {n.strip().lower() for n in names}
    ids = [i for i, r in enumerate(registry.records) if r.name and r.name.lower() in want]
    found = {registry.records[i].name.lower() for i in ids}
    missing = sorted(want - found)
    if missing:
        raise PortclassError(f"no service named {', '.join(missing)} in the registry ({registry.provenance.source})")
    offsets = np.asarray(registry.name_offsets, dtype=np.int64)
    slot = np.repeat(np.arange(offsets.size - 1, dtype=np.int64), np.diff(offsets))
    hit = np.isin(np.asarray(registry.name_ids), np.array(ids, dtype=np.int64))
    mask = np.zeros(len(TRANSPORTS) * NPORTS, dtype=bool)
    mask[slot[hit]] = True
    return mask.reshape(len(TRANSPORTS), NPORTS)


def _network_words(net: Network) -> tuple[int, int, int, int, int]:
    """(net_hi, net_lo, mask_hi, mask_lo, ip_version) of a network in the flow table's address layout."""
    hi, lo, version = addr_to_words(net.network_address)
    prefix = net.prefixlen + (96 if version == 4 else 0)  # IPv4 is stored IPv4-mapped (::ffff:a.b.c.d)
    full = ((1 << 128) - 1) ^ ((1 << (128 - prefix)) - 1)
    return hi, lo, full >> 64, full & _ALL64, version


def host_mask(flows: FlowTable, hosts: tuple[str, ...] | list[str]) -> np.ndarray:
    """Flows with either endpoint in any of ``hosts`` (addresses or CIDR blocks)."""
    out = np.zeros(len(flows), dtype=bool)
    for text in hosts:
        n_hi, n_lo, m_hi, m_lo, version = _network_words(parse_host(text))
        same_version = flows.ip_version == version
        for hi, lo in ((flows.client_hi, flows.client_lo), (flows.server_hi, flows.server_lo)):
            inside = (hi & _U64(m_hi)) == _U64(n_hi & m_hi)
            inside &= (lo & _U64(m_lo)) == _U64(n_lo & m_lo)
            out |= inside & same_version
    return out


def mask(a: Analysis, flt: FlowFilter) -> np.ndarray:
    """Boolean mask over ``a``'s flows: the rows ``flt`` keeps."""
    fl, lab = a.flows, a.labels
    keep = np.ones(len(fl), dtype=bool)
    if flt.flagged_only:
        keep &= lab.severity > 0
    if flt.flags:
        bits = 0
        for name in flt.flags:
            bits |= FLAG_BITS[name]
        keep &= (lab.flags & np.uint8(bits)) != 0
    if flt.statuses:
        codes = np.array([STATUS_NAMES.index(s) for s in flt.statuses], dtype=np.uint8)
        keep &= np.isin(lab.status, codes)
    if flt.services:
        named = service_port_mask(a.registry, flt.services)
        t = lab.transport.astype(np.int64)
        keep &= (t >= 0) & named[np.maximum(t, 0), fl.server_port]
    if flt.ports:
        ports = np.array(sorted(set(flt.ports)), dtype=np.uint16)
        keep &= np.isin(fl.client_port, ports) | np.isin(fl.server_port, ports)
    if flt.hosts:
        keep &= host_mask(fl, flt.hosts)
    if flt.states or flt.answered:
        from .conn import OUT_ANSWERED, conn_states, outcomes

        states = conn_states(fl)
        if flt.states:
            keep &= np.isin(states.astype(str), list(flt.states))
        if flt.answered:
            keep &= outcomes(fl, states) == OUT_ANSWERED
    return keep


def take_labels(labels: Labels, idx: np.ndarray) -> Labels:
    """Rows ``idx`` of the label columns."""
    return Labels(**{f.name: np.take(getattr(labels, f.name), idx, axis=0) for f in fields(labels)})


def apply(a: Analysis, flt: FlowFilter) -> Analysis:
    """The analysis restricted to the flows ``flt`` keeps (``a`` itself when the filter is empty).

    >>> from classifier.flows import FlowAggregator, make_batch  # doctest: +SKIP
    >>> sub = apply(analysis, FlowFilter(ports=(53,)))  # doctest: +SKIP
    >>> sub.selection.line()  # doctest: +SKIP
    'filter --port 53: kept 1 of 5 flows (0 flagged)'
    """
    if not flt:
        return a
    whole = a.whole if isinstance(a, FilteredAnalysis) and a.whole is not None else a
    idx = np.flatnonzero(mask(a, flt))
    labels = take_labels(a.labels, idx)
    prior = a.selection.filter + " " if isinstance(a, FilteredAnalysis) and a.selection else ""
    selection = Selection(
        filter=prior + flt.describe(),
        kept=int(idx.size),
        total=len(whole.flows),
        kept_flagged=int(np.count_nonzero(labels.severity)),
        total_flagged=int(np.count_nonzero(whole.labels.severity)),
    )
    kept = {f.name: getattr(a, f.name) for f in fields(Analysis)}  # every run setting carries over
    kept.update(flows=a.flows.take(idx), labels=labels, inputs=list(a.inputs), aggregates=None)
    if a.part is not None:
        kept.update(part=a.part[idx])
    return FilteredAnalysis(**kept, selection=selection, whole=whole)


def selection_of(a: Analysis) -> Selection | None:
    """The filter summary of ``a``, or None for an unfiltered analysis."""
    return getattr(a, "selection", None)


def whole_totals(a: Analysis) -> dict[str, Any]:
    """Totals of the whole capture (also for a filtered analysis), plus what a filter kept under ``selection``."""
    from .report.summary import totals

    sel = selection_of(a)
    whole = getattr(a, "whole", None) or a
    out = totals(whole).to_dict()
    if sel is not None:
        out["selection"] = sel.to_dict()
    return out


# --------------------------------------------------------------------------- as flows end


class Filtering:
    """A filter applied to flows as they end (``engine.Ended`` chunks): what passes goes on, what does not
    is only counted, so a filtered run holds no more flows than an unfiltered one (the flows alive at once).

    It counts the whole run (``whole``: the totals every report's head gives of the capture) and the
    ``selection`` (flows kept of flows seen, flagged kept of flagged seen), as ``apply`` does at the end.
    """

    def __init__(self, flt: FlowFilter, registry: CompiledRegistry) -> None:
        from .report.aggregates import Totaling

        self.flt, self.registry = flt, registry
        self.whole = Totaling()
        self.kept = self.kept_flagged = 0

    def keep(self, e: Any) -> Any:
        """The rows of ``e`` (an ``engine.Ended``) the filter keeps, after counting every row of ``e``."""
        from .report.aggregates import take_ended

        self.whole.add(e)
        if not len(e):
            return e
        view = Analysis(flows=e.flows, labels=e.labels, stats=e.stats, registry=self.registry)
        idx = np.flatnonzero(mask(view, self.flt))
        if idx.size < len(e):
            e = take_ended(e, idx)
        self.kept += int(idx.size)
        self.kept_flagged += int(np.count_nonzero(e.labels.severity))
        return e

    def selection(self) -> Selection:
        """What the filter kept so far, out of every flow seen."""
        return Selection(self.flt.describe(), self.kept, self.whole.flows, self.kept_flagged, self.whole.flagged)

    def result(self, a: Analysis) -> FilteredAnalysis:
        """The run's analysis ``a`` (of the kept flows) with its selection and the whole run's totals."""
        whole = dataclasses.replace(a)
        whole.running = self.whole.totals(a)  # type: ignore[attr-defined]  # what summary.totals reads first
        kept = {f.name: getattr(a, f.name) for f in fields(Analysis)}
        return FilteredAnalysis(**kept, selection=self.selection(), whole=whole)


def filtered(analyze: Any, flt: FlowFilter) -> Any:
    """``analyze`` (``pipeline.analyze``'s signature, streaming through ``on_ended``) filtering flows as they
    end: ``on_ended`` receives only the kept flows, and the result is a ``FilteredAnalysis`` whose
    ``selection`` and ``whole`` totals are those ``apply`` gives of the whole-run analysis."""

    def run(paths: Any, registry: CompiledRegistry, *args: Any, on_ended: Any, **kw: Any) -> FilteredAnalysis:
        f = Filtering(flt, registry)

        def take(e: Any) -> None:
            kept = f.keep(e)
            if len(kept):
                on_ended(kept)

        a = analyze(paths, registry, *args, on_ended=take, **kw)
        if len(a.flows):  # an analyze that did not stream (tests stand one in): its flows as one chunk
            from .engine import Ended

            n = len(a.flows)
            part = a.part if a.part is not None else np.zeros(n, np.int32)
            take(Ended(a.flows, a.labels, part, np.zeros(n, np.uint8), a.stats))
            empty = Ended.empty()
            a = dataclasses.replace(a, flows=empty.flows, labels=empty.labels, part=empty.part)
        return f.result(a)

    return run

