"""The live loop: backend batches -> running ``FlowAggregator`` -> labels at every refresh -> final report.

One thread does everything that touches the flows (the backends' own threads only queue frames),
so the aggregator needs no locks.  The loop waits on the backend at most ``batch_interval`` s at a
time, so a stop (``--duration``, ``--count``, SIGINT, SIGTERM) is seen within ~100 ms; it then reads
for ``backend.linger_s`` more (dumpcap hands over the kernel's packets in blocks retired every
250 ms), stops the capture, drains what it still holds and finalizes every flow still open.

Label lag: at each refresh the partial flows are finalized, oriented and labelled (a copy; the
aggregator keeps merging), and the time from the oldest packet first labelled by that refresh
(its kernel timestamp) to the moment its label exists is recorded.
"""

from __future__ import annotations

import signal
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import interrupt
from ..atomic import atomic_file
from ..capture.columns import CaptureStats, PacketBatch
from ..evidence.match import scan
from ..evidence.verdict import verdicts
from ..flows import FlowAggregator, FlowTable, finalize
from ..pipeline import DEFAULT_IDLE_TIMEOUT_S, Analysis, label_flows
from ..registry.compile import CompiledRegistry
from .backends import TRANSPORT_NAMES, Backend, LiveBatch, default_backend, make_backend
from .checks import LiveError, check_bpf, check_interfaces
from .stream import InterfaceCounters


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
    batch_interval: float = 0.1  # seconds between batches handed to the flow stage


@dataclass
class LagStats:
    """How long packets wait for their label, in seconds, one sample per refresh (or batch)."""

    label: list[float] = field(default_factory=list)  # refresh time - oldest packet first labelled then
    label_newest: list[float] = field(default_factory=list)  # refresh time - newest packet labelled then
    batch: list[float] = field(default_factory=list)  # batch in the flow stage - its oldest packet (until stop)

    @staticmethod
    def _summary(xs: list[float]) -> dict[str, float | None]:
        if not xs:
            return {"p50": None, "p95": None, "max": None}
        s = sorted(xs)
        return {
            "p50": round(statistics.median(s), 4),
            "p95": round(s[min(len(s) - 1, int(0.95 * len(s)))], 4),
            "max": round(s[-1], 4),
        }

    def to_dict(self) -> dict[str, Any]:
        """Medians, 95th percentiles and maxima in seconds."""
        return {
            "label_oldest_s": self._summary(self.label),
            "label_newest_s": self._summary(self.label_newest),
            "batch_s": self._summary(self.batch),
            "refreshes": len(self.label),
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
            votes = self.by_key.get(self._key(proto, ver, (ch, cl, cp), (sh, sl, sp)), [])
            names = [n for ts, n in votes if t0 <= ts <= t1]
            out.append(pick_protocol(names))
        return out


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
    """What the rolling view shows at one refresh."""

    analysis: Analysis
    elapsed_s: float
    packets: int
    rate_pps: float
    drops: int | None
    drops_live: bool
    lag: LagStats
    protocols: list[str | None] | None
    options: LiveOptions
    backend: str


@dataclass
class LiveResult:
    """The end of a live capture: the labelled flows and how the capture went."""

    analysis: Analysis
    backend: str
    options: LiveOptions
    counters: dict[int, InterfaceCounters]
    stopped_by: str
    lag: LagStats
    protocols: list[str | None] | None  # tshark's name per flow row (pyshark backend), else None
    started_at_ns: int
    error: str | None = None

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

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.reason is not None:
            raise interrupt.Interrupted(signum)
        if interrupt.received is None:
            interrupt.received = signum  # the run's exit code: 128 + signum
        self.reason = signal.Signals(signum).name

    def __exit__(self, *_: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class LiveSession:
    """Capture live, label flows as they grow, and return the final labelled flows.

    >>> from classifier.registry.sources import load_registry  # doctest: +SKIP
    >>> s = LiveSession(LiveOptions(["lo"], bpf="tcp port 8080", duration=5), load_registry())  # doctest: +SKIP
    >>> result = s.run()  # doctest: +SKIP
    >>> result.analysis.registry.service_names[result.analysis.labels.service[0]]  # doctest: +SKIP
    'http-alt'
    """

    def __init__(self, options: LiveOptions, registry: CompiledRegistry) -> None:
        self.opts = options
        self.registry = registry
        self.backend_name = options.backend or default_backend()
        self.agg = FlowAggregator(int(options.idle_timeout * 1e9))
        self.votes: ProtocolVotes | None = None
        self.lag = LagStats()
        self.stop_reason: str | None = None
        self._pcap_cm: Any = None
        self._pcap_fh: Any = None
        self._new_min_ts: int | None = None
        self._new_max_ts: int | None = None
        self._last_snap: tuple[float, int] = (0.0, 0)
        self.backend: Backend | None = None
        self._stop = threading.Event()
        self._draining = False
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
            buffer_mib=opts.buffer_mib,
        )
        self.backend = backend
        if self.backend_name == "pyshark":
            self.votes = ProtocolVotes()
        ok = abandoned = False
        try:
            with _Stopper() as stopper:
                backend.start()
                self.started_mono = time.monotonic()
                self.started_ns = time.time_ns()
                self._last_snap = (self.started_mono, 0)
                if on_ready is not None:
                    on_ready(self)
                self._loop(backend, stopper, on_refresh)
                result = self._finish(backend)
            ok = True
            return result
        except KeyboardInterrupt:  # a second signal: abandon everything (the outputs stay as they were)
            abandoned = True
            raise
        finally:
            backend.close()
            self._close_pcap(keep=ok or (not abandoned and self._pcap_fh is not None and backend.packets > 0))

    def _add(self, lb: LiveBatch) -> None:
        b = lb.batch
        first_index = self.agg.stats.packets + 1  # number of the batch's first packet
        self.agg.add(b, scan(b) if len(b) else None)  # payload evidence needs the batch's bytes: before add drops them
        if len(b):
            lo, hi = int(b.ts_ns.min()), int(b.ts_ns.max())
            if not self._draining:  # what a stop flushes out waited for the stop, not for portclass
                self.lag.batch.append((time.time_ns() - lo) / 1e9)
            self._new_min_ts = lo if self._new_min_ts is None else min(self._new_min_ts, lo)
            self._new_max_ts = hi if self._new_max_ts is None else max(self._new_max_ts, hi)
        if self.votes is not None and lb.protocols is not None:
            self.votes.add(b, lb.protocols, first_index)

    def _loop(self, backend: Backend, stopper: _Stopper, on_refresh: Callable[[Snapshot], None] | None) -> None:
        opts = self.opts
        deadline = None if opts.duration is None else self.started_mono + opts.duration
        next_refresh = self.started_mono + opts.refresh
        while True:
            now = time.monotonic()
            wait = min(next_refresh - now, opts.batch_interval)
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
            if stopper.reason is not None:
                self.stop_reason = stopper.reason
            elif self._stop.is_set():
                self.stop_reason = self.stop_reason_requested
            elif deadline is not None and now >= deadline:
                self.stop_reason = "duration"
            elif opts.count and backend.packets >= opts.count:
                self.stop_reason = "count"
            if self.stop_reason is not None:
                break
            if now >= next_refresh:
                snap = self.snapshot()
                if on_refresh is not None:
                    on_refresh(snap)
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
    def _analysis(self, flows: FlowTable, stats: CaptureStats, elapsed: float) -> tuple[Analysis, list | None]:
        """Orient and label finalized flows (with payload evidence and tshark's names where there are)."""
        flows, labels = label_flows(flows, self.registry)
        verdicts(flows, labels, self.registry)
        protocols = self.votes.for_flows(flows) if self.votes is not None else None
        if protocols is not None:
            names = np.empty(len(protocols), dtype=object)
            names[:] = protocols
            labels.tshark_protocol = names
        a = Analysis(
            flows=flows,
            labels=labels,
            stats=stats,
            registry=self.registry,
            idle_timeout_s=self.opts.idle_timeout,
            elapsed_s=elapsed,
            inputs=[f"live:{i}" for i in self.opts.interfaces],
        )
        return a, protocols

    def snapshot(self) -> Snapshot:
        """Label a finalized copy of the flows so far (the aggregator keeps going) and note the lag."""
        assert self.backend is not None
        now_m = time.monotonic()
        part = self.agg.partial()
        stats = _copy_stats(self.agg.stats)
        a, protocols = self._analysis(finalize(part), stats, now_m - self.started_mono)
        done_ns = time.time_ns()
        if self._new_min_ts is not None and self._new_max_ts is not None:
            self.lag.label.append((done_ns - self._new_min_ts) / 1e9)
            self.lag.label_newest.append((done_ns - self._new_max_ts) / 1e9)
        self._new_min_ts = self._new_max_ts = None
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
        )

    def _finish(self, backend: Backend) -> LiveResult:
        elapsed = time.monotonic() - self.started_mono
        counters = backend.counters()
        stats = self.agg.stats
        if not stats.files:
            stats.files = [self.opts.write_pcap or "live:" + ",".join(self.opts.interfaces)]
        for _i, c in sorted(counters.items()):
            if c.dropped:
                stats.warnings.append(
                    f"{c.name}: {c.dropped:,} packets dropped before portclass read them"
                    f" ({backend.name} reports {c.received:,} received); the capture could not keep up"
                )
        if backend.error:
            stats.warnings.append(f"capture ended early: {backend.error}")
            if self.stop_reason in (None, "capture ended"):
                self.stop_reason = "error"
        a, protocols = self._analysis(self.agg.result(), stats, elapsed)
        a.interrupted = self.stop_reason in STOP_SIGNALS  # the one rule of classifier.interrupt
        return LiveResult(
            analysis=a,
            backend=self.backend_name,
            options=self.opts,
            counters=counters,
            stopped_by=self.stop_reason or "capture ended",
            lag=self.lag,
            protocols=protocols,
            started_at_ns=self.started_ns,
            error=backend.error,
        )


def _copy_stats(s: CaptureStats) -> CaptureStats:
    c = CaptureStats()
    c.merge(s)
    return c


def capture(options: LiveOptions, registry: CompiledRegistry) -> LiveResult:
    """Run one live capture without a view (the API's entry point).

    >>> r = capture(LiveOptions(["lo"], bpf="udp port 53", duration=2), load_registry())  # doctest: +SKIP
    >>> r.meta()["dropped"]  # doctest: +SKIP
    0
    """
    return LiveSession(options, registry).run()


__all__ = ["LiveError", "LiveOptions", "LiveResult", "LiveSession", "Snapshot", "capture"]
