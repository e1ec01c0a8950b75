"""``portclass live -i IFACE``: capture live, show a rolling view of labelled flows, report at the end."""

from __future__ import annotations

import argparse
import contextlib
import sys

from .. import interrupt
from ..errors import EXIT_INPUT, EXIT_OK
from ..report import WRITERS
from .options import add_idle_timeout, check_output, positive

EPILOG = """backends:
  dumpcap   Wireshark's capture engine writes pcapng to a pipe that portclass parses as it
            arrives (Debian package wireshark-common, pulled in by tshark); the default
  scapy     scapy's AsyncSniffer on packet sockets, pure Python (python3-scapy or pip)
  pyshark   tshark's live capture; adds Wireshark's protocol name per flow beside the port's
            label (portclass.tshark_protocol in jsonl/json/csv, a column in the view)

stopping: --duration, --count, Ctrl-C or SIGTERM end the capture; every open flow is flushed,
the summary is printed and -o FILE / --write-pcap FILE are complete (both written atomically).
A signal makes the report say it is partial (interrupted by SIGINT/SIGTERM) and the exit code
130/143, as for `portclass analyze`; --duration or --count end it with exit code 0.
The rolling view shows the registry's warning, capture rate, drops, services and the newest
flagged flows, redrawn every --refresh seconds when the terminal allows.

capturing needs root or CAP_NET_RAW: for dumpcap (and pyshark)
  sudo setcap cap_net_raw,cap_net_admin=eip /usr/bin/dumpcap
  (or sudo dpkg-reconfigure wireshark-common; sudo usermod -a -G wireshark $USER)

examples:
  portclass live -i eth0
  portclass live -i lo --bpf 'tcp port 8080' --duration 60 -f jsonl -o flows.jsonl
  portclass live -i eth0 -i wlan0 --write-pcap seen.pcapng --count 100000

exit codes:
  0    done: --duration or --count reached (or the capture program ended)
  2    cannot capture (permission, unknown interface, missing program, invalid filter), bad
       arguments, or the capture failed while running (the report covers what was read)
  130  stopped by SIGINT (Ctrl-C), 143 by SIGTERM: the report covers what was captured and is
       marked partial; a second signal abandons the report (the output file stays untouched)"""


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
    p.add_argument("-o", "--output", metavar="FILE", help="write the final report to FILE (atomically)")
    p.add_argument("--write-pcap", metavar="FILE", help="also save the captured packets as pcapng")
    add_idle_timeout(p)
    p.add_argument(
        "--buffer-size",
        type=positive(int),
        default=64,
        metavar="MIB",
        help="kernel capture buffer per interface in MiB (default 64)",
    )
    p.add_argument("--top", type=positive(int), default=20, metavar="N", help="rows per table in the final summary")
    p.add_argument("--no-view", action="store_true", help="no rolling view, even on a terminal")


def run(args: argparse.Namespace) -> int:
    """Capture, show the view, then print the summary and write the report.

    >>> run(build_parser().parse_args(["live", "-i", "lo", "--duration", "5"]))  # doctest: +SKIP
    0
    """
    from rich.console import Console

    from ..live.engine import LiveOptions, LiveSession
    from ..live.output import write as write_live
    from ..registry.sources import load_registry
    from ..report.terminal import render as render_summary

    check_output(args)  # before capturing: a report that cannot be written would lose the capture
    registry = load_registry(args.registry)
    opts = LiveOptions(
        interfaces=args.interfaces,
        bpf=args.bpf,
        duration=args.duration,
        count=args.count,
        refresh=args.refresh,
        backend=args.backend,
        idle_timeout=args.idle_timeout,
        write_pcap=args.write_pcap,
        buffer_mib=args.buffer_size,
    )
    session = LiveSession(opts, registry)
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
        result = session.run(on_ready=ready, on_refresh=refresh)
    a = result.analysis
    for w in a.stats.warnings:
        print(f"portclass: warning: {w}", file=sys.stderr)
    lag = result.lag.to_dict()["label_oldest_s"]
    lag_text = f"; label lag p50 {lag['p50']:.2f} s, max {lag['max']:.2f} s" if lag["max"] is not None else ""
    dropped = result.dropped
    print(
        f"portclass: captured {a.stats.packets:,} packets, {len(a.flows):,} flows on {', '.join(opts.interfaces)} "
        f"in {a.elapsed_s:.1f} s with {result.backend} (stopped by {result.stopped_by}); dropped "
        f"{'unknown' if dropped is None else f'{dropped:,}'}{lag_text}",
        file=sys.stderr,
    )
    summary_console = Console(stderr=True, highlight=False) if report_to_stdout else Console(highlight=False)
    if not summary_console.is_terminal:
        summary_console = Console(stderr=report_to_stdout, highlight=False, width=140)
    render_summary(a, summary_console, args.top)
    if not (args.format == "terminal" and args.output in (None, "-")):
        write_live(result, args.format, args.output, top=args.top)
    if opts.write_pcap:
        print(f"portclass: packets saved to {opts.write_pcap}", file=sys.stderr)
    if result.error:
        print(f"portclass: {result.error}", file=sys.stderr)
        return EXIT_INPUT
    if a.interrupted:  # the one rule (classifier.interrupt): a signal ended the run
        return interrupt.exit_code()
    return EXIT_OK
