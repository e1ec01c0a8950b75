"""The streamer: capture files -> packet batches -> flows -> labels, one chunk at a time.

Plain data passes between the stages (NumPy columns, small dataclasses), so each stage can be
tested, timed and later parallelised on its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .capture.columns import CaptureStats
from .capture.source import is_directory
from .errors import CaptureError
from .flows import RULE_FIRST_PACKET, FlowTable, orient
from .label import Labels, label_ports
from .registry.compile import CompiledRegistry

if TYPE_CHECKING:
    from .engine import Counters, Ended, Timeouts

CHUNK_BYTES = 16 << 20
"""Capture bytes read at a time: with the engine's 2^16-packet passes, the working set of one chunk."""

PASS_PACKETS: int | None = None
"""Packets between the engine's passes (None: ``engine.Engine``'s default); tests make it small."""

DEFAULT_IDLE_TIMEOUT_S = 300.0
"""Idle timeout between packets of one flow (Zeek's TCP inactivity timeout is 5 minutes too)."""


@dataclass
class Analysis:
    """Everything a report needs: the flows, their labels, the capture counters and the registry."""

    flows: FlowTable
    labels: Labels
    stats: CaptureStats
    registry: CompiledRegistry
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    elapsed_s: float = 0.0
    inputs: list[str] = field(default_factory=list)
    interrupted: bool = False
    payload_inspected: bool = True  # the evidence stage ran (False: labels from port numbers only)
    part: np.ndarray | None = None  # per flow: 0 whole, k >= 1 its k-th part (engine's active timeout)
    counters: Counters | None = None  # the engine's counters (flows ended per reason, alive at most)
    aggregates: Any = None  # report.aggregates.Aggregates of the run when ``flows`` does not hold every flow
    tshark: bool = False  # tshark's second opinion was asked (--dissect tshark): its columns in every table


def label_flows(flows: FlowTable, registry: CompiledRegistry, *, owned: bool = False) -> tuple[FlowTable, Labels]:
    """Orient finalized flows with the registry, then label them by their server port (``owned``: the
    caller's own copy, oriented in place)."""
    flows = orient(flows, registry.status, owned=owned)
    client_counts = (flows.server_rule == RULE_FIRST_PACKET) | (flows.client_port < 1024)
    return flows, label_ports(registry, flows.proto, flows.client_port, flows.server_port, client_counts)


def analyze(
    paths: Sequence[str | Path],
    registry: CompiledRegistry,
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    progress: Callable[[int], None] | None = None,
    *,
    evidence: bool = True,
    tshark: bool = False,
    timeouts: Timeouts | None = None,
    hold: bool = False,
    on_ended: Callable[[Ended], None] | None = None,
    merge_files: bool = False,
    jobs: int | None = None,
) -> Analysis:
    """Read captures and return labelled flows; what was read before damage is always kept.

    ``progress`` is called with the bytes of capture consumed so far (for a progress bar).
    ``evidence`` looks at each flow's first payload bytes and gives it a verdict against the
    registry (``classifier.evidence``; flag ``service-mismatch``); ``tshark`` also asks
    Wireshark's dissectors for each flow's protocol, as a second opinion (slow).
    ``hold`` keeps every flow to the end of the input (no flow ends before the input does, as a
    whole-capture view; default: they end on the wire).  ``tshark`` runs beside the reading, one file at
    a time, its rows read in step with the packets and joined to flows as they end (no flow is held for it).
    A thin caller of ``classifier.engine.Engine``: ``timeouts`` (default: ``idle_timeout_s``
    with the engine's other defaults) says when flows end; ``on_ended`` receives the flows as
    they end (a streaming writer), and the returned analysis then has no flows, only counters.
    Flows of different capture files are kept apart unless ``merge_files`` or the files are
    consecutive parts of a dumpcap/tcpdump ring buffer (``classifier.flows.file_groups``).
    ``jobs``: 1 reads in this process; 2 or more read, decode and scan in a second one while this one
    runs the engine (``classifier.feed``); None: two where there are two CPUs and enough input.

    >>> a = analyze(["captures/sample.pcap"], load_registry())  # doctest: +SKIP
    >>> a.registry.service_names[a.labels.service[0]]  # doctest: +SKIP
    'http'
    """
    from .engine import Ended, Engine, Timeouts
    from .feed import batches, file_batches, two_processes

    t0 = time.perf_counter()
    if timeouts is None:
        timeouts = Timeouts(idle_s=idle_timeout_s)
    passes = {} if PASS_PACKETS is None else {"min_packets": PASS_PACKETS}
    eng = Engine(registry, timeouts, evidence=evidence, expire=not hold, separate_files=not merge_files, **passes)
    chunks: list[Ended] = []
    give = on_ended if on_ended is not None else chunks.append
    interrupted = False
    # one unreadable file among several is a warning; a single bad file is the run's error
    several = len(paths) > 1 or any(is_directory(p) for p in paths)
    source = file_batches(paths, CHUNK_BYTES, errors="warn" if several else "raise")
    child = two_processes(paths, jobs)
    second = _second_opinion(paths) if tshark else None
    read = 0  # records read: tshark's rows are read up to as many frames

    def take(ended: Ended) -> None:
        if second is not None:  # every frame of these flows was read: join tshark's names, drop its rows
            ended.labels.tshark_protocol = second.names(ended.flows)
        give(ended)

    try:
        name = str(paths[0]) if paths else ""
        with batches(source, evidence=evidence, child=child, name=name, flows=eng.flow_stage()) as items:
            for batch, tags in items:
                read += int(batch.stats.packets)
                if second is not None:
                    second.advance(read)
                for ended in eng.add(batch, tags):
                    take(ended)
                if progress is not None:
                    progress(int(batch.stats.bytes))
    except KeyboardInterrupt:
        interrupted = True  # report what was read so far
    except BaseException:
        if second is not None:
            second.close()
        raise
    if second is not None:
        second.advance(None if not interrupted else read)
        second.close()
    take(eng.flush())
    if second is not None:
        eng.stats.warnings += second.warnings
    if not eng.stats.files and not interrupted:
        why = "; ".join(eng.stats.warnings) or "no pcap/pcapng capture files found"
        raise CaptureError(why, path=", ".join(str(p) for p in paths))
    done = Ended.concat(chunks) if chunks else eng.flush()
    flows, labels = done.flows, done.labels
    return Analysis(
        flows=flows,
        labels=labels,
        stats=eng.stats,
        registry=registry,
        idle_timeout_s=timeouts.idle_s,
        elapsed_s=time.perf_counter() - t0,
        inputs=[str(p) for p in paths],
        interrupted=interrupted,
        payload_inspected=evidence,
        part=done.part,
        counters=eng.counters,
        tshark=tshark,
    )


def _second_opinion(paths: Sequence[str | Path]) -> Any:
    """tshark's protocol names joined to flows as they end (``evidence.tshark.TsharkStream``), over the
    capture files in the reader's order."""
    from .capture.source import capture_files
    from .evidence.tshark import TsharkStream

    return TsharkStream([str(f) for f in capture_files(paths)])


def worst_first(a: Analysis) -> np.ndarray:
    """Row order for flagged flows: highest severity, then most bytes, then earliest."""
    fl = a.flows
    total = fl.bytes_c2s.astype(np.int64) + fl.bytes_s2c
    return np.lexsort((fl.first_ts_ns, -total, -a.labels.severity.astype(np.int16)))
