"""``portclass live -i IFACE``: capture live, show a rolling view of labelled flows, report at the end."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys

from .. import interrupt
from ..errors import EXIT_FLAGGED, EXIT_INPUT, EXIT_OK
from ..report import WRITERS
from .options import (
    add_dissect,
    add_fail_on,
    add_filters,
    add_max_flows,
    add_timeouts,
    check_output,
    interval,
    positive,
)

EPILOG = """backends:
  dumpcap   Wireshark's capture engine writes pcapng to a pipe that portclass parses as it
            arrives (Debian package wireshark-common, pulled in by tshark); the default
  scapy     scapy's AsyncSniffer on packet sockets, pure Python (python3-scapy or pip)
  pyshark   tshark's live capture; adds Wireshark's protocol name per flow beside the port's
            label (portclass.tshark_protocol in jsonl/json/csv, a column in the view)

flows as they end: with -f jsonl/csv/zeek/parquet each flow is written when it ends (idle timeout,
TCP closed, --active-timeout parts), in end order; -o FILE is appended to as flows end, in whole
lines (tail -F and Filebeat never see half a line; Parquet is renamed into place when closed).
-o DIR --rotate 1h writes DIR/conn.jsonl (conn.log for zeek, conn.csv, conn.parquet) and, at each
multiple of the interval (UTC), closes it and renames it atomically to
conn.2026-11-27-14-00-00_2026-11-27-15-00-00.jsonl (the span it covers, UTC), as Zeek rotates its
logs. Each file starts with the registry's warning and ends with a closing line (its own totals).
Memory follows the flows alive at once. The summary at the stop, -f json and -f html come from
running aggregates (totals, services, flags, talkers, scanners, timeline: every flow counted) and
the --max-flows worst flows (--top for the summary): no flow table grows with the flows seen, and
the reports say how many flows they left out.

stopping: --duration, --count, Ctrl-C or SIGTERM end the capture; every open flow is flushed,
the summary is printed and the files are closed whole. A signal makes the files say the capture
was stopped (partial, interrupted by SIGINT/SIGTERM) and the exit code 130/143, as for
`portclass analyze`; --duration or --count end it with exit code 0. A second signal stops at once:
the files hold the flows ended before it, each whole. A full disk or a removed directory stops the
capture with one line naming the file (exit 2); what was written stays whole.
The rolling view shows the registry's warning, capture rate, drops, the flows alive now and the
newest flagged flows, redrawn every --refresh seconds when the terminal allows.

capturing needs root or CAP_NET_RAW: for dumpcap (and pyshark)
  sudo setcap cap_net_raw,cap_net_admin=eip /usr/bin/dumpcap
  (or sudo dpkg-reconfigure wireshark-common; sudo usermod -a -G wireshark $USER)

examples:
  portclass live -i eth0
  portclass live -i lo --bpf 'tcp port 8080' --duration 60 -f jsonl -o flows.jsonl
  portclass live -i eth0 --no-view -f zeek -o /var/log/portclass --rotate 1h
  portclass live -i eth0 -i wlan0 --write-pcap seen.pcapng --count 100000

exit codes:
  0    done: --duration or --count reached (or the capture program ended)
  1    flagged flows were written (or reported), with --fail-on flagged
  2    cannot capture (permission, unknown interface, missing program, invalid filter), bad
       arguments, or the capture or the writing failed while running (disk full, directory
       removed: what was written stays whole)
  130  stopped by SIGINT (Ctrl-C), 143 by SIGTERM: the files/report cover what was captured and
       are marked partial; a second signal abandons a json/html report (its file stays untouched)"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``live`` command."""
    from ..cli import common_options
    from ..live import BACKENDS

    p = sub.add_parser(
        "live",
        parents=[common_options()],
        help="capture on interfaces and label flows as they happen",
        description="Capture live on network interfaces and label every flow with the service the IANA "
        "registry assigns to its server port: a rolling view while capturing, the summary at the end.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "-i",
        "--interface",
        dest="interfaces",
        action="append",
        required=True,
        metavar="IFACE",
        help="interface to capture on (repeatable; 'any' for all)",
    )
    p.add_argument("--bpf", metavar="EXPR", help="capture filter in BPF syntax, e.g. 'tcp port 80 or udp port 53'")
    p.add_argument("--duration", type=positive(float), metavar="S", help="stop after S seconds")
    p.add_argument("--count", type=positive(int), metavar="N", help="stop after N packets")
    p.add_argument(
        "--refresh",
        type=positive(float),
        default=1.0,
        metavar="S",
        help="seconds between refreshes of the view and its labels (default 1)",
    )
    p.add_argument("--backend", choices=BACKENDS, help="capture backend (default: dumpcap if installed, else scapy)")
    p.add_argument(
        "--format",
        "-f",
        choices=tuple(WRITERS),
        default="terminal",
        help="format of the final report (default terminal)",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE|DIR",
        help="jsonl/csv/zeek/parquet: flows appended to FILE as they end (with --rotate: files in DIR); "
        "json/html/terminal: the report written to FILE at the end (atomically)",
    )
    p.add_argument(
        "--rotate",
        type=interval,
        metavar="INTERVAL",
        help="with -o DIR: close the current file (conn.jsonl, conn.log...) every INTERVAL (1h, 10m, 30s) and "
        "rename it with its time span, as Zeek rotates conn.log",
    )
    p.add_argument("--write-pcap", metavar="FILE", help="also save the captured packets as pcapng")
    add_timeouts(p)
    add_dissect(p)
    add_fail_on(p)
    add_filters(p)
    p.add_argument(
        "--buffer-size",
        type=positive(int),
        default=64,
        metavar="MIB",
        help="kernel capture buffer per interface in MiB (default 64)",
    )
    p.add_argument(
        "--jobs",
        type=positive(int),
        default=None,
        metavar="N",
        help="processes: 1 does everything in turn; 2 reads dumpcap's packets, decodes and inspects them in a "
        "second process while the first builds flows (default: 2 with the dumpcap backend where there are 2 CPUs "
        "or more; that process also writes --write-pcap)",
    )
    p.add_argument("--top", type=positive(int), default=20, metavar="N", help="rows per table in the final summary")
    add_max_flows(p)
    p.add_argument("--no-view", action="store_true", help="no rolling view, even on a terminal")


def _check_sensor_args(args: argparse.Namespace) -> None:
    """``--rotate`` needs a streamed format and ``-o DIR``; ``--dissect tshark`` means the pyshark backend."""
    from ..errors import PortclassError
    from ..report.stream import STREAMED

    if args.rotate is not None:
        if args.format not in STREAMED:
            raise PortclassError(f"--rotate writes flows as they end: use -f {', -f '.join(STREAMED)}")
        if args.output in (None, "-"):
            raise PortclassError("--rotate needs -o DIR: the directory the rotated files go to")
        if os.path.exists(args.output) and not os.path.isdir(args.output):
            raise PortclassError("--rotate needs -o DIR, and this is not a directory", path=args.output)
    if args.dissect == "tshark":
        if args.backend not in (None, "pyshark"):
            raise PortclassError("--dissect tshark is the pyshark backend's per-packet names: drop --backend")
        args.backend = "pyshark"


def run(args: argparse.Namespace) -> int:
    """Capture, show the view, write flows as they end (streamed formats), then print the summary.

    >>> run(build_parser().parse_args(["live", "-i", "lo", "--duration", "5"]))  # doctest: +SKIP
    0
    """
    from rich.console import Console

    from ..errors import PortclassError
    from ..filters import FlowFilter, selection_of, service_port_mask
    from ..live.engine import LiveOptions, LiveSession
    from ..live.output import write as write_live
    from ..registry.sources import load_registry
    from ..report.aggregates import Aggregates
    from ..report.rotate import FlowLog
    from ..report.stream import STREAMED
    from ..report.terminal import render as render_summary

    _check_sensor_args(args)
    check_output(args)  # before capturing: a report that cannot be written would lose the capture
    try:
        flt = FlowFilter.from_args(args)
    except ValueError as exc:
        raise PortclassError(str(exc)) from None
    from ..live.heap import hold_freed_memory

    hold_freed_memory()  # a sensor's resident memory stays at its high-water mark (``live.heap``)
    registry = load_registry(args.registry)
    if flt.services:
        service_port_mask(registry, flt.services)  # an unknown name fails now, not after capturing
    timeouts = dataclasses.replace(args.idle_timeout, active_s=args.active_timeout)
    opts = LiveOptions(
        interfaces=args.interfaces,
        bpf=args.bpf,
        duration=args.duration,
        count=args.count,
        refresh=args.refresh,
        backend=args.backend,
        idle_timeout=timeouts.idle_s,
        write_pcap=args.write_pcap,
        buffer_mib=args.buffer_size,
        timeouts=timeouts,
        evidence=args.dissect != "none",
        child=None if args.jobs is None else args.jobs >= 2,
    )
    streamed = args.format in STREAMED  # flows written as they end: nothing held to the stop
    # every ended flow is counted in running aggregates with the worst kept (json/html: --max-flows, else
    # --top for the summary's tables): nothing held to the stop grows with the flows seen
    limit = args.max_flows if args.format in ("json", "html") else args.top
    agg = Aggregates(limit=limit)
    session = LiveSession(opts, registry, keep_flows=False, flow_filter=flt or None, aggregates=agg)
    if streamed:
        session.log = FlowLog(
            args.format, args.output, session.base_analysis(), rotate_s=args.rotate, meta=session.live_meta
        )
    report_to_stdout = args.output in (None, "-") and args.format != "terminal"
    view_console = Console(stderr=True) if report_to_stdout or not sys.stdout.isatty() else Console()
    stack = contextlib.ExitStack()

    def ready(s: LiveSession) -> None:
        what = f"filter {opts.bpf!r}" if opts.bpf else "no filter"
        print(
            f"portclass: capturing on {', '.join(opts.interfaces)} with {s.backend_name} ({what}); Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        if not args.no_view and view_console.is_terminal:
            from ..live.view import LiveView

            view = stack.enter_context(LiveView(view_console))
            state["view"] = view

    state: dict[str, object] = {}

    def refresh(snap: object) -> None:
        view = state.get("view")
        if view is not None:
            view.update(snap)  # type: ignore[attr-defined]

    with stack:
        viewed = not args.no_view and view_console.is_terminal
        result = session.run(on_ready=ready, on_refresh=refresh if viewed else None)
    a = result.analysis
    for w in a.stats.warnings:
        print(f"portclass: warning: {w}", file=sys.stderr)
    lag = result.lag.to_dict()["label_oldest_s"]
    lag_text = f"; label lag p50 {lag['p50']:.2f} s, max {lag['max']:.2f} s" if lag["max"] is not None else ""
    dropped = result.dropped
    print(
        f"portclass: captured {a.stats.packets:,} packets, {result.running.flows:,} flows "
        f"(at most {result.engine.get('peak_alive', 0):,} alive at once) on "
        f"{', '.join(opts.interfaces)} in {a.elapsed_s:.1f} s with {result.backend} (stopped by "
        f"{result.stopped_by}); dropped {'unknown' if dropped is None else f'{dropped:,}'}{lag_text}",
        file=sys.stderr,
    )
    summary_console = Console(stderr=True, highlight=False) if report_to_stdout else Console(highlight=False)
    if not summary_console.is_terminal:
        summary_console = Console(stderr=report_to_stdout, highlight=False, width=140)
    if flt:
        print(f"portclass: {selection_of(a).line()}", file=sys.stderr)  # type: ignore[union-attr]
    render_summary(a, summary_console, args.top)  # the same tables as a file run's, from the aggregates
    if streamed:
        _written(summary_console, session.log, flt)
    elif not (args.format == "terminal" and args.output in (None, "-")) and not result.error:
        write_live(result, args.format, args.output, top=args.top, max_rows=args.max_flows)
    flagged = agg.flagged
    if opts.write_pcap:
        print(f"portclass: packets saved to {opts.write_pcap}", file=sys.stderr)
    if result.error:
        print(f"portclass: {result.error}", file=sys.stderr)
        return EXIT_INPUT
    if a.interrupted:  # the one rule (classifier.interrupt): a signal ended the run
        return interrupt.exit_code()
    if args.fail_on == "flagged" and flagged:
        return EXIT_FLAGGED
    return EXIT_OK


def _written(console: object, log: object, flt: object) -> None:
    """The end of a streamed capture: where the flows went (the summary above describes them)."""
    from rich.text import Text

    if log is None:
        return
    r = log.running  # type: ignore[attr-defined]
    where = "stdout" if log.to_stdout else (str(log.dir) if log.dir is not None else str(log.path))  # type: ignore[attr-defined]
    files = f" in {len(log.finished):,} rotated file(s)" if log.dir is not None else ""  # type: ignore[attr-defined]
    kept = f" kept by the filter {flt.describe()}" if flt else ""  # type: ignore[attr-defined]
    console.print(  # type: ignore[attr-defined]
        Text(f"Written  {r.flows:,} flows{kept} ({r.packets:,} packets, {r.flagged:,} flagged) to {where}{files}")
    )
