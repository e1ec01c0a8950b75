"""What changed between two registry editions, per (transport, port) and per service name.

Change kinds per port: ``assigned`` (was not assigned, now is), ``de-assigned``, ``renamed`` (primary
name differs), ``re-described`` (same name, new description), ``status`` (e.g. unassigned to reserved),
``unauthorized-added``/``unauthorized-removed``. Runs of neighbouring ports with the same change are
reported as one range.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .compile import ASSIGNED, FLAG_UNAUTHORIZED, STATUS_NAMES, CompiledRegistry
from .model import TRANSPORTS


@dataclass
class PortChange:
    """One change over a port range on one transport."""

    transport: str
    port_low: int
    port_high: int
    change: str
    old: str
    new: str

    def to_dict(self) -> dict:
        """Plain dict for JSON/CSV output."""
        return asdict(self)


@dataclass
class RegistryDiff:
    """Port changes plus service names that appeared or vanished."""

    port_changes: list[PortChange]
    names_added: list[str]
    names_removed: list[str]

    def summary(self) -> dict[str, int]:
        """Count of ports per change kind (ranges expanded)."""
        out: dict[str, int] = {}
        for c in self.port_changes:
            out[c.change] = out.get(c.change, 0) + c.port_high - c.port_low + 1
        out["names-added"] = len(self.names_added)
        out["names-removed"] = len(self.names_removed)
        return out


def _label(reg: CompiledRegistry, t: int, port: int) -> tuple[str, str]:
    sid = int(reg.service[t, port])
    if sid < 0:
        return "", ""
    rec = reg.records[sid]
    return rec.name or "", rec.description


def _names(reg: CompiledRegistry) -> set[str]:
    return {r.name for r in reg.records if r.name}


def diff_registries(old: CompiledRegistry, new: CompiledRegistry) -> RegistryDiff:
    """Compare two compiled registries port by port (vectorized candidate search, then details).

    >>> d = diff_registries(load("2025.xml"), load("2026.xml"))  # doctest: +SKIP
    >>> d.summary()["assigned"]  # doctest: +SKIP
    12
    """
    changes: list[tuple[int, int, str, str, str]] = []
    old_names = old.service_names
    new_names = new.service_names
    for t in range(len(TRANSPORTS)):
        os_, ns_ = old.status[t], new.status[t]
        osv, nsv = old.service[t], new.service[t]
        ouf = (old.flags[t] & FLAG_UNAUTHORIZED) != 0
        nuf = (new.flags[t] & FLAG_UNAUTHORIZED) != 0
        oname = np.where(osv >= 0, old_names[np.maximum(osv, 0)], "")
        nname = np.where(nsv >= 0, new_names[np.maximum(nsv, 0)], "")
        cand = np.flatnonzero((os_ != ns_) | (oname != nname) | (ouf != nuf) | ((os_ == ASSIGNED) & (ns_ == ASSIGNED)))
        for p in cand.tolist():
            o, n = int(os_[p]), int(ns_[p])
            on, od = _label(old, t, p)
            nn, nd = _label(new, t, p)
            if o != ASSIGNED and n == ASSIGNED:
                changes.append((t, p, "assigned", STATUS_NAMES[o], nn or nd))
            elif o == ASSIGNED and n != ASSIGNED:
                changes.append((t, p, "de-assigned", on or od, STATUS_NAMES[n]))
            elif o == ASSIGNED and on != nn:
                changes.append((t, p, "renamed", on or od, nn or nd))
            elif o == ASSIGNED and od != nd:
                changes.append((t, p, "re-described", f"{on}: {od}", f"{nn}: {nd}"))
            elif o != n:
                changes.append((t, p, "status", STATUS_NAMES[o], STATUS_NAMES[n]))
            if ouf[p] != nuf[p]:
                kind = "unauthorized-added" if nuf[p] else "unauthorized-removed"
                changes.append((t, p, kind, "", ""))
    merged: list[PortChange] = []
    for t, p, kind, o, n in sorted(changes, key=lambda c: (c[0], c[2], c[3], c[4], c[1])):
        last = merged[-1] if merged else None
        if (
            last
            and last.transport == TRANSPORTS[t]
            and last.change == kind
            and last.old == o
            and last.new == n
            and last.port_high == p - 1
        ):
            last.port_high = p
        else:
            merged.append(PortChange(TRANSPORTS[t], p, p, kind, o, n))
    merged.sort(key=lambda c: (c.port_low, TRANSPORTS.index(c.transport), c.change))
    on, nn = _names(old), _names(new)
    return RegistryDiff(merged, sorted(nn - on), sorted(on - nn))
