"""The live loop: backend batches -> the engine -> flows out as they end -> the flow log and the view.

A thin caller of ``classifier.engine.Engine``, as file analysis is.  One thread does everything that
touches the flows (the backends' own threads only queue frames), so the engine needs no locks.
Backends hand over batches of up to ``batch_bytes`` or ``batch_interval`` s of packets, whichever
comes first: every batch pays fixed costs (the evidence scan's signatures, the flow stage), so a
busy sensor works on few large batches while a quiet one still sees its packets within half a
second.  The loop waits on the backend at most ``POLL_S`` at a time, so a stop (``--duration``,
``--count``, SIGINT, SIGTERM) is seen within ~100 ms; it then reads for ``backend.linger_s`` more
(dumpcap hands over the kernel's packets in blocks retired every 250 ms), stops the capture, drains
what it still holds and flushes every flow still open to the log, which closes its file whole.

At refreshes the engine expires flows by the wall clock (idle, TCP closed, active timeout), so
flows leave memory and reach the log (``report.rotate.FlowLog``) while the capture runs (a pass costs
in the flows alive: a busy sensor spaces them by ``PASS_SPACING`` times their cost), and the view
is drawn from running totals plus the flows alive: its cost follows the flows alive, not the flows seen.
Label lag: the time from the oldest packet first seen by a refresh (its kernel timestamp) to that
refresh's labelled snapshot.
"""

from __future__ import annotations

import contextlib
import signal
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import interrupt
from ..atomic import atomic_file
from ..capture.columns import CaptureStats, PacketBatch
from ..engine import Ended, Engine, Timeouts
from ..errors import PortclassError
from ..flows import FlowTable
from ..pipeline import DEFAULT_IDLE_TIMEOUT_S, Analysis
from ..registry.compile import CompiledRegistry
from ..report.aggregates import Totaling
from .backends import TRANSPORT_NAMES, Backend, LiveBatch, default_backend, make_backend
from .checks import LiveError, check_bpf, check_interfaces
from .stream import InterfaceCounters

if TYPE_CHECKING:
    from ..filters import FlowFilter
    from ..report.aggregates import Aggregates
    from ..report.rotate import FlowLog


@dataclass
class LiveOptions:
    """What to capture and when to stop (the ``portclass live`` options)."""

    interfaces: list[str]
    bpf: str | None = None
    duration: float | None = None  # seconds of capture, then stop
    count: int | None = None  # packets, then stop
    refresh: float = 1.0  # seconds between labelled snapshots (the view's refresh)
    backend: str | None = None  # None: dumpcap where installed, else scapy
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S
    write_pcap: str | None = None
    buffer_mib: int = 64  # kernel capture buffer per interface (dumpcap -B, socket buffer for scapy)
    batch_interval: float = 0.5  # seconds a batch gathers packets at most (or until ``batch_bytes``)
    batch_bytes: int = 16 << 20  # captured bytes a batch gathers at most (~50,000 packets of 300 bytes)
    timeouts: Timeouts | None = None  # when flows end (None: ``idle_timeout`` and the engine's defaults)
    evidence: bool = True  # payload evidence (``--dissect none``: port labels only)
    child: bool | None = None  # read, decode and scan in a child process (``live.child``) where it helps; False: never


@dataclass
class Samples(deque):
    """The last ``LAG_SAMPLES`` values (a sensor runs for days: memory stays bounded), their count and maximum."""

    def __init__(self) -> None:
        super().__init__(maxlen=LAG_SAMPLES)
        self.n = 0
        self.peak: float | None = None

    def append(self, x: float) -> None:
        """Keep ``x`` (the oldest sample goes when full)."""
        super().append(x)
        self.n += 1
        self.peak = x if self.peak is None else max(self.peak, x)


LAG_SAMPLES = 10_000


@dataclass
class LagStats:
    """How long packets wait for their label, in seconds, one sample per refresh (or batch).

    Percentiles are over the last ``LAG_SAMPLES`` samples, the maximum over the whole capture.
    """

    label: Samples = field(default_factory=Samples)  # refresh time - oldest packet first labelled then
    label_newest: Samples = field(default_factory=Samples)  # refresh time - newest packet labelled then
    batch: Samples = field(default_factory=Samples)  # batch in the flow stage - its oldest packet (until stop)

    @staticmethod
    def _summary(xs: Samples | list[float]) -> dict[str, float | None]:
        if not xs:
            return {"p50": None, "p95": None, "max": None}
        s = sorted(xs)
        return {
            "p50": round(statistics.median(s), 4),
            "p95": round(s[min(len(s) - 1, int(0.95 * len(s)))], 4),
            "max": round(max(s[-1], getattr(xs, "peak", None) or s[-1]), 4),
        }

    def to_dict(self) -> dict[str, Any]:
        """Medians, 95th percentiles and maxima in seconds."""
        return {
            "label_oldest_s": self._summary(self.label),
            "label_newest_s": self._summary(self.label_newest),
            "batch_s": self._summary(self.batch),
            "refreshes": getattr(self.label, "n", len(self.label)),
        }


class ProtocolVotes:
    """tshark's protocol name per packet, gathered per flow key (a second opinion beside the port's label).

    A flow's name is the first application-level name among its packets (``pick_protocol``).
    """

    def __init__(self) -> None:
        self.by_key: dict[tuple, list[tuple[int, str]]] = {}

    @staticmethod
    def _key(proto: int, ver: int, a: tuple[int, int, int], b: tuple[int, int, int]) -> tuple:
        return (proto, ver, a, b) if a <= b else (proto, ver, b, a)

    def add(self, batch: PacketBatch, names: list[str | None], first_index: int) -> None:
        """Note the names of the batch's packets with ports.

        ``names`` has one entry per packet of the batch (with ports or not), in capture order, and
        ``first_index`` is the number of the batch's first packet, so row ``r``'s name is
        ``names[batch.pkt_index[r] - first_index]``.
        """
        if not len(batch):
            return
        offs = (batch.pkt_index - first_index).tolist()
        cols = zip(
            batch.proto.tolist(),
            batch.ip_version.tolist(),
            batch.src_hi.tolist(),
            batch.src_lo.tolist(),
            batch.sport.tolist(),
            batch.dst_hi.tolist(),
            batch.dst_lo.tolist(),
            batch.dport.tolist(),
            batch.ts_ns.tolist(),
            offs,
            strict=True,
        )
        for proto, ver, sh, sl, sp, dh, dl, dp, ts, off in cols:
            name = names[off] if 0 <= off < len(names) else None
            if name:
                self.by_key.setdefault(self._key(proto, ver, (sh, sl, sp), (dh, dl, dp)), []).append((ts, name))

    def for_flows(self, flows: FlowTable) -> list[str | None]:
        """The name per flow row (None where no packet of the flow had one)."""
        out: list[str | None] = []
        for key, t0, t1 in self._flow_keys(flows):
            names = [n for ts, n in self.by_key.get(key, ()) if t0 <= ts <= t1]
            out.append(pick_protocol(names))
        return out

    def pop_flows(self, flows: FlowTable) -> list[str | None]:
        """``for_flows`` of flows that ended, then their votes dropped (those of a later flow on the same
        key stay): the votes held follow the flows alive, not the flows seen."""
        out = self.for_flows(flows)
        for key, _t0, t1 in self._flow_keys(flows):
            votes = self.by_key.get(key)
            if votes is None:
                continue
            rest = [v for v in votes if v[0] > t1]
            if rest:
                self.by_key[key] = rest
            else:
                del self.by_key[key]
        return out

    def _flow_keys(self, flows: FlowTable) -> Iterator[tuple[tuple, int, int]]:
        """(vote key, first, last packet time) per flow row."""
        cols = zip(
            flows.proto.tolist(),
            flows.ip_version.tolist(),
            flows.client_hi.tolist(),
            flows.client_lo.tolist(),
            flows.client_port.tolist(),
            flows.server_hi.tolist(),
            flows.server_lo.tolist(),
            flows.server_port.tolist(),
            flows.first_ts_ns.tolist(),
            flows.last_ts_ns.tolist(),
            strict=True,
        )
        for proto, ver, ch, cl, cp, sh, sl, sp, t0, t1 in cols:
            yield self._key(proto, ver, (ch, cl, cp), (sh, sl, sp)), t0, t1


NOT_APPLICATION = TRANSPORT_NAMES | {"data", ""}
"""Names that say nothing about the application (tshark found no dissector above the transport)."""


def pick_protocol(names: list[str]) -> str | None:
    """A flow's protocol from its packets' names, in capture order: the first application-level one,
    else its transport (as ``classifier.evidence.tshark`` does for files).

    >>> pick_protocol(["tcp", "tcp", "http", "tcp", "data"])
    'http'
    >>> pick_protocol(["udp", "data"])
    'udp'
    """
    if not names:
        return None
    app = next((n for n in names if n not in NOT_APPLICATION), None)
    if app is not None:
        return app
    return next((n for n in names if n in TRANSPORT_NAMES), names[0])


@dataclass
class Snapshot:
    """What the rolling view shows at one refresh: running totals and the flows alive now (not every flow seen)."""

    analysis: Analysis  # the flows alive now (the engine's snapshot), labelled
    elapsed_s: float
    packets: int
    rate_pps: float
    drops: int | None
    drops_live: bool
    lag: LagStats
    protocols: list[str | None] | None
    options: LiveOptions
    backend: str
    running: Totaling = field(default_factory=Totaling)  # flows ended so far (all of them, before any filter)
    recent: Analysis | None = None  # the newest ended flagged flows (at most ``RECENT_FLAGGED``)


@dataclass
class LiveResult:
    """The end of a live capture: the labelled flows (or only their totals) and how the capture went."""

    analysis: Analysis
    backend: str
    options: LiveOptions
    counters: dict[int, InterfaceCounters]
    stopped_by: str
    lag: LagStats
    protocols: list[str | None] | None  # tshark's name per flow row (pyshark backend), else None
    started_at_ns: int
    error: str | None = None
    running: Totaling = field(default_factory=Totaling)  # every flow ended (before any filter)
    written: list[str] = field(default_factory=list)  # files the flow log closed (rotated files, or -o FILE)
    engine: dict[str, Any] = field(default_factory=dict)  # the engine's counters (flows ended per reason...)

    @property
    def dropped(self) -> int | None:
        """Packets dropped before portclass read them, all interfaces (None: not reported)."""
        known = [c.dropped for c in self.counters.values() if c.dropped is not None]
        return sum(known) if known else None

    def meta(self) -> dict[str, Any]:
        """The capture's description for machine formats (``portclass.live``)."""
        return {
            "backend": self.backend,
            "interfaces": self.options.interfaces,
            "bpf": self.options.bpf,
            "stopped_by": self.stopped_by,
            "duration_s": round(self.analysis.elapsed_s, 3),
            "packets": int(self.analysis.stats.packets),
            "dropped": self.dropped,
            "interface_counters": [
                {"interface": c.name, "received": c.received, "dropped": c.dropped, "if_dropped": c.if_dropped}
                for _, c in sorted(self.counters.items())
            ],
            "lag": self.lag.to_dict(),
            "write_pcap": self.options.write_pcap,
            "error": self.error,
        }


STOP_SIGNALS = frozenset(signal.Signals(s).name for s in interrupt.SIGNALS)
"""Stop reasons that are signals: the report is then marked partial and the exit code is 128 + N."""


class _Stopper:
    """SIGINT/SIGTERM -> a stop flag (the second signal interrupts for real)."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Stopper:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    holding = False
    again: int | None = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """A second signal inside waits for the end of the block (a flow-log write or rotation stays whole)."""
        old, self.holding = self.holding, True
        try:
            yield
        finally:
            self.holding = old
        if not old and self.again is not None:
            raise interrupt.Interrupted(self.again)

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.reason is not None:
            if self.holding:
                self.again = signum
                return
            raise interrupt.Interrupted(signum)
        if interrupt.received is None:
            interrupt.received = signum  # the run's exit code: 128 + signum
        self.reason = signal.Signals(signum).name

    def __exit__(self, *_: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


POLL_S = 0.1
"""Longest wait on the backend at a time: a stop (signal, --duration, --count) is seen within this."""

PASS_SPACING = 4.0
"""A pass of the engine waits this many times the last one's cost after it (passes take ~20% of the time at most)."""

MAX_PASS_GAP_S = 5.0
"""Passes are never further apart than this (Zeek expires its connection table every 10 s): the rows built
between two passes wait in memory, so a longer gap would raise the sensor's high-water mark (``live.heap``)."""

RECENT_FLAGGED = 200
"""Ended flagged flows the rolling view keeps to show the newest (bounded: the view's cost follows the alive flows)."""


class LiveSession:
    """Capture live through the engine: flows go out as they end (to ``log`` and ``on_ended``).

    A thin caller of ``classifier.engine.Engine``: backend batches go to ``Engine.add``; at every
    refresh ``Engine.expire`` (clock: the wall clock, the kernel's timestamps' time base) hands out the
    flows that ended, which go to the flow log at once; the view is made of running totals and the
    engine's snapshot of the flows alive.  ``aggregates`` (``report.aggregates.Aggregates``) counts the
    (filtered) ended flows and keeps the worst up to its bound: the whole-run summary, ``-f json`` and
    ``-f html`` at the stop come from it, so memory follows the flows alive.  ``keep_flows`` (the API's
    ``capture``) instead keeps every ended flow, whose memory follows the flows seen.

    >>> from classifier.registry.sources import load_registry  # doctest: +SKIP
    >>> s = LiveSession(LiveOptions(["lo"], bpf="tcp port 8080", duration=5), load_registry())  # doctest: +SKIP
    >>> result = s.run()  # doctest: +SKIP
    >>> result.analysis.registry.service_names[result.analysis.labels.service[0]]  # doctest: +SKIP
    'http-alt'
    """

    def __init__(
        self,
        options: LiveOptions,
        registry: CompiledRegistry,
        *,
        log: FlowLog | None = None,
        keep_flows: bool = True,
        flow_filter: FlowFilter | None = None,
        on_ended: Callable[[Ended], None] | None = None,
        aggregates: Aggregates | None = None,
    ) -> None:
        self.opts = options
        self.registry = registry
        self.backend_name = options.backend or default_backend()
        timeouts = options.timeouts or Timeouts(idle_s=options.idle_timeout)
        # no passes of the engine's own (every 2^16 packets): a pass costs in the flows alive, which a
        # sensor has many of, so passes happen here, by the wall clock (``_expire``)
        self.engine = Engine(registry, timeouts, evidence=options.evidence, expire=False)
        self.log = log
        self.keep_flows = keep_flows
        self.filter = flow_filter
        self.on_ended = on_ended
        self.running = Totaling()  # every flow ended, before the filter
        self.kept: list[Ended] = []  # with keep_flows: the (filtered) ended flows
        self.aggregates = aggregates  # the (filtered) ended flows counted, and the worst kept (bounded)
        self.recent: Ended | None = None  # newest ended flagged flows, for the view
        self.votes: ProtocolVotes | None = None
        self.lag = LagStats()
        self.stop_reason: str | None = None
        self.write_error: str | None = None
        self._pcap_cm: Any = None
        self._pcap_fh: Any = None
        self._new_min_ts: int | None = None
        self._new_max_ts: int | None = None
        self._last_snap: tuple[float, int] = (0.0, 0)
        self.backend: Backend | None = None
        self._stop = threading.Event()
        self._stopper: _Stopper | None = None
        self._draining = False
        self._next_pass = 0.0  # monotonic time before which a refresh does no pass (``_expire``)
        self.pass_s = 0.0  # CPU seconds spent in passes
        self.started_mono = 0.0
        self.started_ns = 0

    def request_stop(self, reason: str = "request") -> None:
        """Ask the capture to end as a signal would (from any thread, e.g. a test or an ``on_ready`` hook)."""
        self.stop_reason_requested = reason
        self._stop.set()

    stop_reason_requested = "request"

    # ---- set-up ----------------------------------------------------------------------------
    def check(self) -> None:
        """Everything that can be checked before capturing: interfaces, filter, the backend's program."""
        from .backends import import_pyshark, import_scapy
        from .checks import find_program

        dumpcap = None
        if self.backend_name == "pyshark":
            import_pyshark()
        if self.backend_name in ("dumpcap", "pyshark"):
            dumpcap = find_program("dumpcap")
        elif self.backend_name == "scapy":
            import_scapy()
        check_interfaces(self.opts.interfaces, dumpcap)
        check_bpf(self.opts.bpf, self.opts.interfaces)

    def _open_pcap(self) -> Any:
        """The ``--write-pcap`` file, written through ``atomic_file`` (whole, or untouched)."""
        if not self.opts.write_pcap:
            return None
        self._pcap_cm = atomic_file(self.opts.write_pcap, make_dirs=True)
        self._pcap_fh = self._pcap_cm.__enter__()
        return self._pcap_fh

    def _close_pcap(self, keep: bool) -> None:
        if self._pcap_fh is None or self._pcap_cm is None:
            return
        cm, self._pcap_cm, self._pcap_fh = self._pcap_cm, None, None
        if keep:
            cm.__exit__(None, None, None)
        else:
            drop = RuntimeError("capture abandoned")
            cm.__exit__(RuntimeError, drop, None)

    def live_meta(self) -> dict[str, Any]:
        """The capture's description so far, for the flow log's heads and closing lines."""
        return {
            "backend": self.backend_name,
            "interfaces": self.opts.interfaces,
            "bpf": self.opts.bpf,
            "packets": int(self.engine.stats.packets),
            "flows_ended": self.running.flows,
            "stopped_by": self.stop_reason,
        }

    def base_analysis(self, elapsed: float = 0.0, stats: CaptureStats | None = None) -> Analysis:
        """The run's analysis without flows: registry, inputs, timeouts (heads of the flow log)."""
        return Analysis(
            flows=FlowTable.empty(),
            labels=Ended.empty().labels,
            stats=stats if stats is not None else CaptureStats(),
            registry=self.registry,
            idle_timeout_s=self.engine.timeouts.idle_s,
            elapsed_s=elapsed,
            inputs=[f"live:{i}" for i in self.opts.interfaces],
            payload_inspected=self.opts.evidence,
        )

    # ---- the loop --------------------------------------------------------------------------
    def run(
        self,
        on_ready: Callable[[LiveSession], None] | None = None,
        on_refresh: Callable[[Snapshot], None] | None = None,
    ) -> LiveResult:
        """Capture until a stop condition, calling ``on_refresh`` every ``refresh`` s; the final result."""
        self.check()
        opts = self.opts
        file_name = opts.write_pcap or "live:" + ",".join(opts.interfaces)
        tee = self._open_pcap()
        backend = make_backend(
            self.backend_name,
            opts.interfaces,
            opts.bpf,
            count=opts.count,
            file_name=file_name,
            tee=tee,
            batch_interval=opts.batch_interval,
            batch_bytes=opts.batch_bytes,
            buffer_mib=opts.buffer_mib,
        )
        from .child import ChildBackend, use_child

        if opts.child is not False and use_child(backend):
            backend = ChildBackend(backend, evidence=opts.evidence)
        self.backend = backend
        if self.backend_name == "pyshark":
            self.votes = ProtocolVotes()
        ok = abandoned = False
        try:
            with _Stopper() as stopper:
                self._stopper = stopper
                backend.start()
                self.started_mono = time.monotonic()
                self.started_ns = time.time_ns()
                self._last_snap = (self.started_mono, 0)
                if self.log is not None:
                    self._writing(self.log.open)
                if on_ready is not None:
                    on_ready(self)
                self._loop(backend, stopper, on_refresh)
                result = self._finish(backend)
            ok = True
            return result
        except KeyboardInterrupt:  # a second signal: stop at once (the flow log's files are closed whole)
            abandoned = True
            raise
        finally:
            backend.close()
            if abandoned and self.log is not None and self.write_error is None:
                try:
                    self.log.close(partial=True)
                except PortclassError:
                    self.log.abandon()
            self._close_pcap(keep=ok or (not abandoned and self._pcap_fh is not None and backend.packets > 0))

    def _writing(self, action: Callable[[], object]) -> None:
        """Run a flow-log action with a second signal held back; a writing error stops the capture."""
        if self.write_error is not None:
            return
        stopper = self._stopper
        try:
            if stopper is not None:
                with stopper.held():
                    action()
            else:
                action()
        except PortclassError as exc:
            self.write_error = str(exc)
            if self.log is not None:
                self.log.abandon()

    def _emit(self, e: Ended) -> None:
        """Flows that just ended: counted, then to the log, the caller, the kept list and the view."""
        if not len(e):
            return
        if self.votes is not None:
            names = np.empty(len(e), dtype=object)
            names[:] = self.votes.pop_flows(e.flows)
            e.labels.tshark_protocol = names
        self.running.add(e)
        flagged = np.flatnonzero(e.labels.severity > 0)
        if flagged.size:
            self.recent = _tail(e, flagged, self.recent, RECENT_FLAGGED)
        if self.filter:
            from ..filters import mask

            keep = np.flatnonzero(mask(self._as_analysis(e), self.filter))
            e = _take(e, keep)
            if not len(e):
                return
        if self.log is not None:
            self._writing(lambda: self.log.write(e))  # type: ignore[union-attr]
        if self.keep_flows:
            self.kept.append(e)
        if self.aggregates is not None:
            self.aggregates.add(e)
        if self.on_ended is not None:
            self.on_ended(e)

    def _as_analysis(self, e: Ended) -> Analysis:
        a = self.base_analysis()
        a.flows, a.labels, a.part = e.flows, e.labels, e.part
        return a

    def _add(self, lb: LiveBatch) -> None:
        b = lb.batch
        first_index = self.engine.stats.packets + 1  # number of the batch's first packet
        if self.votes is not None and lb.protocols is not None:
            self.votes.add(b, lb.protocols, first_index)
        for ended in self.engine.add(b, lb.tags):
            self._emit(ended)
        if len(b):
            lo, hi = int(b.ts_ns.min()), int(b.ts_ns.max())
            if not self._draining:  # what a stop flushes out waited for the stop, not for portclass
                self.lag.batch.append((time.time_ns() - lo) / 1e9)
            self._new_min_ts = lo if self._new_min_ts is None else min(self._new_min_ts, lo)
            self._new_max_ts = hi if self._new_max_ts is None else max(self._new_max_ts, hi)

    def _expire(self, force: bool = True) -> None:
        """Hand the flows ended by now (wall clock) to the log.

        Unless ``force``d (a rotation), a pass waits until ``PASS_SPACING`` times the last one's cost
        has gone by since it: a pass costs in the flows alive, so a busy sensor passes less often
        (flows then reach the log a little later) instead of spending its time on passes.
        """
        now = time.monotonic()
        if not force and now < self._next_pass:
            return
        cpu = time.thread_time()  # not the wall time: on a loaded machine that would space passes without end
        self._emit(self.engine.expire(time.time_ns()))
        cost = time.thread_time() - cpu
        self.pass_s += cost
        self._next_pass = now + min(PASS_SPACING * cost, MAX_PASS_GAP_S)

    def _loop(self, backend: Backend, stopper: _Stopper, on_refresh: Callable[[Snapshot], None] | None) -> None:
        opts = self.opts
        deadline = None if opts.duration is None else self.started_mono + opts.duration
        next_refresh = self.started_mono + opts.refresh
        while True:
            now = time.monotonic()
            wait = min(next_refresh - now, POLL_S)
            if deadline is not None:
                wait = min(wait, deadline - now)
            for lb in backend.poll(max(wait, 0.0)):
                self._add(lb)
            now = time.monotonic()
            if backend.finished:
                self.stop_reason = "count" if opts.count and backend.packets >= opts.count else "capture ended"
                if backend.error:
                    self.stop_reason = "error"
                break
            if self.write_error is not None:
                self.stop_reason = "error"
            elif stopper.reason is not None:
                self.stop_reason = stopper.reason
            elif self._stop.is_set():
                self.stop_reason = self.stop_reason_requested
            elif deadline is not None and now >= deadline:
                self.stop_reason = "duration"
            elif opts.count and backend.packets >= opts.count:
                self.stop_reason = "count"
            if self.stop_reason is not None:
                break
            log = self.log
            if log is not None and log.due():
                self._expire()  # the flows ended by the boundary belong to the file closing there
                self._writing(log.rotate)
            if now >= next_refresh:
                self._expire(force=False)
                if on_refresh is not None:  # no view: no snapshot (labelling the alive flows costs)
                    on_refresh(self.snapshot())
                else:
                    self._note_lag()
                next_refresh = max(next_refresh + opts.refresh, time.monotonic() + opts.refresh / 4)
        self._draining = True
        if self.stop_reason not in ("count", "capture ended", "error"):
            linger_end = time.monotonic() + backend.linger_s
            while time.monotonic() < linger_end and not backend.finished:
                for lb in backend.poll(max(linger_end - time.monotonic(), 0.0)):
                    self._add(lb)
        backend.stop()
        for lb in backend.drain():
            self._add(lb)

    # ---- labels ----------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The view's state: the flows alive now, labelled (the engine keeps them), running totals, lag."""
        assert self.backend is not None
        now_m = time.monotonic()
        alive = self.engine.snapshot()
        stats = _copy_stats(self.engine.stats)
        protocols = self.votes.for_flows(alive.flows) if self.votes is not None else None
        if protocols is not None:
            alive.labels.tshark_protocol = np.array(protocols + [None], dtype=object)[:-1]
        a = self._as_analysis(alive)
        a.stats, a.elapsed_s = stats, now_m - self.started_mono
        self._note_lag()
        t_prev, n_prev = self._last_snap
        rate = (stats.packets - n_prev) / max(now_m - t_prev, 1e-9)
        self._last_snap = (now_m, stats.packets)
        counters = self.backend.counters() if self.backend.drops_live else {}
        drops = [c.dropped for c in counters.values() if c.dropped is not None]
        return Snapshot(
            analysis=a,
            elapsed_s=now_m - self.started_mono,
            packets=int(stats.packets),
            rate_pps=rate,
            drops=sum(drops) if drops else None,
            drops_live=self.backend.drops_live,
            lag=self.lag,
            protocols=protocols,
            options=self.opts,
            backend=self.backend_name,
            running=self.running,
            recent=None if self.recent is None else self._as_analysis(self.recent),
        )

    def _note_lag(self) -> None:
        """Label lag of this refresh: now minus the oldest (and newest) packet it is the first to see."""
        done_ns = time.time_ns()
        if self._new_min_ts is not None and self._new_max_ts is not None:
            self.lag.label.append((done_ns - self._new_min_ts) / 1e9)
            self.lag.label_newest.append((done_ns - self._new_max_ts) / 1e9)
        self._new_min_ts = self._new_max_ts = None

    def _finish(self, backend: Backend) -> LiveResult:
        elapsed = time.monotonic() - self.started_mono
        counters = backend.counters()
        self._emit(self.engine.flush())  # every flow still open ends with the capture
        stats = self.engine.stats
        if not stats.files:
            stats.files = [self.opts.write_pcap or "live:" + ",".join(self.opts.interfaces)]
        for _i, c in sorted(counters.items()):
            if c.dropped:
                stats.warnings.append(
                    f"{c.name}: {c.dropped:,} packets dropped before portclass read them"
                    f" ({backend.name} reports {c.received:,} received); the capture could not keep up"
                )
        error = backend.error
        if backend.error:
            stats.warnings.append(f"capture ended early: {backend.error}")
            if self.stop_reason in (None, "capture ended"):
                self.stop_reason = "error"
        if self.write_error is not None:
            error, self.stop_reason = self.write_error, "error"
        a = self.base_analysis(elapsed, stats)
        protocols = None
        if self.keep_flows:
            done = Ended.concat(self.kept) if self.kept else Ended.empty()
            a.flows, a.labels, a.part = done.flows, done.labels, done.part
            if self.votes is not None:
                protocols = list(done.labels.tshark_protocol) if done.labels.tshark_protocol is not None else None
        a.interrupted = self.stop_reason in STOP_SIGNALS  # the one rule of classifier.interrupt
        a.counters = self.engine.counters
        if self.aggregates is not None and not self.keep_flows:
            a = self._aggregated(a)
        result = LiveResult(
            analysis=a,
            backend=self.backend_name,
            options=self.opts,
            counters=counters,
            stopped_by=self.stop_reason or "capture ended",
            lag=self.lag,
            protocols=protocols,
            started_at_ns=self.started_ns,
            error=error,
            running=self.running,
            engine={
                "ended": dict(self.engine.counters.ended),
                "peak_alive": self.engine.counters.peak_alive,
                "passes": self.engine.counters.passes,
                "pass_s": round(self.pass_s, 3),
            },
        )
        if self.log is not None:
            self.stop_reason = result.stopped_by
            final = {**self.live_meta(), **result.meta()}
            self._writing(lambda: self.log.close(partial=a.interrupted, meta=final))  # type: ignore[union-attr]
            if self.write_error is not None:
                result.error, result.stopped_by = self.write_error, "error"
            result.written = [str(p) for p in self.log.finished] or (
                [str(self.log.current)] if self.log.current is not None and self.write_error is None else []
            )
        if not self.keep_flows and self.aggregates is None:
            a.running = self.running.totals(a)  # type: ignore[attr-defined]
        return result

    def _aggregated(self, a: Analysis) -> Analysis:
        """``a`` carrying the running aggregates (the summary, json and html of the whole run, bounded);
        with a filter, a ``FilteredAnalysis`` whose selection counts the flows kept of every flow ended."""
        import dataclasses

        from ..filters import FilteredAnalysis, Selection
        from ..report.aggregates import with_aggregates

        agg = self.aggregates
        assert agg is not None
        out = with_aggregates(a, agg)
        if not self.filter:
            return out
        whole = dataclasses.replace(a)
        whole.running = self.running.totals(whole)  # type: ignore[attr-defined]
        sel = Selection(
            filter=self.filter.describe(),
            kept=agg.flows,
            total=self.running.flows,
            kept_flagged=agg.flagged,
            total_flagged=self.running.flagged,
        )
        kept = {f.name: getattr(out, f.name) for f in dataclasses.fields(Analysis)}
        return FilteredAnalysis(**kept, selection=sel, whole=whole)


def _take(e: Ended, idx: np.ndarray) -> Ended:
    """The rows ``idx`` of ended flows."""
    from ..filters import take_labels

    return Ended(e.flows.take(idx), take_labels(e.labels, idx), e.part[idx], e.reason[idx], e.stats)


def _tail(e: Ended, rows: np.ndarray, prior: Ended | None, n: int) -> Ended:
    """The last ``n`` of ``prior`` followed by ``e``'s ``rows``."""
    new = _take(e, rows[-n:])
    if prior is None:
        return new
    both = Ended.concat([prior, new])
    return _take(both, np.arange(max(len(both) - n, 0), len(both)))

def _copy_stats(s: CaptureStats) -> CaptureStats:
    c = CaptureStats()
    c.merge(s)
    return c


def capture(
    options: LiveOptions,
    registry: CompiledRegistry,
    *,
    on_ended: Callable[[Ended], None] | None = None,
    max_flows: int = 50_000,
    keep_flows: bool = False,
) -> LiveResult:
    """Run one live capture without a view (the API's entry point); memory follows the flows alive.

    Flows go to ``on_ended`` in chunks (``engine.Ended``) as they end; ``result.analysis`` holds no flow but
    the run's running aggregates and its ``max_flows`` worst flows (``report.write(result.analysis, "json",
    path)`` writes the whole-run document, as ``portclass live -f json`` does).  ``keep_flows=True`` keeps
    every ended flow in ``result.analysis.flows`` instead: memory then follows the flows seen.

    >>> r = capture(LiveOptions(["lo"], bpf="udp port 53", duration=2), load_registry())  # doctest: +SKIP
    >>> r.meta()["dropped"], r.analysis.aggregates.flows  # doctest: +SKIP
    (0, 3)
    """
    from ..report.aggregates import Aggregates

    agg = None if keep_flows else Aggregates(limit=max_flows)
    return LiveSession(options, registry, keep_flows=keep_flows, on_ended=on_ended, aggregates=agg).run()


__all__ = ["LiveError", "LiveOptions", "LiveResult", "LiveSession", "Snapshot", "capture"]
