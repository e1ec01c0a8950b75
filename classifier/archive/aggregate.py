"""Per-task aggregates that merge: the summary of the whole archive without reading any flow back.

``summary`` is the report's running aggregates (``report.aggregates.Aggregates``: services, outcomes,
scanners, talkers, timeline, the worst flows), what ``portclass FILE`` prints; ``running`` (flow sums
by transport and status, time span) and the readers' ``CaptureStats`` are sums kept in the dataset's
manifest as plain JSON, the summary in ``_portclass/`` as ``.npz`` (``aggstore``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..capture.columns import CaptureStats
from ..engine import Ended
from ..report.aggregates import Aggregates, Totaling

LIMIT = 20
"""Worst flows a task keeps by default (the terminal summary's ``--top``): what it sends back stays small."""


@dataclass
class Aggregate:
    """What a task (or the whole archive) counted: flows ended and written, packets and bytes read."""

    running: Totaling = field(default_factory=Totaling)
    stats: CaptureStats = field(default_factory=CaptureStats)
    summary: Aggregates = field(default_factory=lambda: Aggregates(limit=LIMIT))

    @classmethod
    def new(cls, limit: int = LIMIT) -> Aggregate:
        """Empty aggregates keeping the ``limit`` worst flows."""
        return cls(summary=Aggregates(limit=limit))

    def add(self, e: Ended) -> None:
        """Count one chunk of flows written to the dataset."""
        self.running.add(e)
        self.summary.add(e)

    def merge(self, other: Aggregate, summary: bool = True) -> Aggregate:
        """Add ``other`` into self (sums, minimum and maximum): associative and commutative.
        ``summary`` False: the counters only (the summary aggregates cost more to merge)."""
        r, o = self.running, other.running
        r.flows += o.flows
        r.by_transport = r.by_transport + o.by_transport
        r.by_status = r.by_status + o.by_status
        r.packets += o.packets
        r.bytes += o.bytes
        r.flagged += o.flagged
        r.first_ts_ns = _pick(min, r.first_ts_ns, o.first_ts_ns)
        r.last_ts_ns = _pick(max, r.last_ts_ns, o.last_ts_ns)
        self.stats.merge(other.stats)
        if summary:
            self.summary.merge(other.summary)
        return self

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values (for the manifest): the sums and counters, not ``summary``."""
        r = self.running
        run = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(r).items()}
        st = asdict(self.stats)
        st["no_ports"], st["skipped_linktype"] = dict(self.stats.no_ports), dict(self.stats.skipped_linktype)
        return {"running": run, "stats": st}

    @classmethod
    def from_json(cls, d: dict[str, Any], summary: Aggregates | None = None) -> Aggregate:
        """The inverse of ``to_json`` (``summary``: stored apart, empty when None)."""
        run = dict(d["running"])
        run["by_transport"] = np.array(run["by_transport"], dtype=np.int64)
        run["by_status"] = np.array(run["by_status"], dtype=np.int64)
        st = dict(d["stats"])
        st["no_ports"], st["skipped_linktype"] = Counter(st["no_ports"]), Counter(st["skipped_linktype"])
        return cls(Totaling(**run), CaptureStats(**st), summary if summary is not None else Aggregates(limit=LIMIT))


def _pick(fn: Any, a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else fn(a, b)
