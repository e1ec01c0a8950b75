"""Live capture: packets from network interfaces, labelled as flows end (``portclass live``).

The same vectorized stages as for files: a backend (``backends``: dumpcap, scapy, pyshark)
hands over raw packets, ``stream`` turns them into ``PacketBatch`` columns with the capture
decoder, and ``engine.LiveSession`` feeds them to the one flow engine (``classifier.engine``),
which hands out flows as they end: to the flow log (``classifier.report.rotate``: an appended
file or rotated files) at once, and to the rolling view (``view``) as running totals plus the
flows alive.  Whole-run reports (json, html, the terminal summary) keep the ended flows and are
written at the end with the normal writers (``output`` adds what only a live capture has).

>>> from classifier.live import LiveOptions, capture  # doctest: +SKIP
>>> result = capture(LiveOptions(["lo"], bpf="tcp port 8080", duration=5), load_registry())  # doctest: +SKIP
>>> result.meta()["dropped"], result.analysis.aggregates.flows  # doctest: +SKIP
(0, 3)
"""

from __future__ import annotations

from typing import Any

BACKENDS = ("dumpcap", "scapy", "pyshark")
"""Capture backends, in the order of preference for the default (dumpcap, else scapy)."""

__all__ = ["BACKENDS", "LiveOptions", "LiveResult", "LiveSession", "capture"]


def __getattr__(name: str) -> Any:
    """Import the engine only when used (the CLI's parser needs ``BACKENDS`` alone)."""
    if name in ("LiveOptions", "LiveResult", "LiveSession", "capture"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(name)
