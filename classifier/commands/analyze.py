"""``portclass [analyze] CAPTURE...``: label every flow of pcap/pcapng captures and report."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path

from .. import interrupt
from ..errors import EXIT_FLAGGED, EXIT_OK, PortclassError
from ..pipeline import analyze
from ..report import WRITERS
from .options import add_dissect, add_fail_on, add_filters, add_max_flows, add_timeouts, check_output, positive

FORMATS = tuple(WRITERS)

EPILOG = """formats:
  terminal  the analyst's summary (default)
  jsonl     one ECS document per flow, after a notice line with the registry's warning
  json      one document: notice, registry, totals, flows (the --max-flows worst)
  csv       ECS columns, after '#' lines with the warning (pandas: read_csv(path, comment="#"))
  zeek      a Zeek conn.log (TSV) with portclass_* label fields; the warning in '#' header lines
  parquet   ECS columns; the warning in the file's key/value metadata (needs -o FILE)
  html      one self-contained page: warning banner, totals, charts, the --max-flows worst flows

filters (values of one option are alternatives; different options must all hold):
  --flagged-only --flag dynamic-port --flag unassigned-port --port 53 --host 192.0.2.0/24
  Reports then hold the kept flows; capture counters (packets, bytes) still describe the whole
  capture, and a line on stderr says how many flows the filter kept.

exit codes:
  0    done (also when flagged flows exist, unless --fail-on flagged)
  1    flagged flows remain after the filters, with --fail-on flagged
  2    usage or input error: bad option value, unknown service name, unreadable capture or
       registry, parquet without -o FILE (one line on stderr)
  130  interrupted by SIGINT (Ctrl-C), 143 by SIGTERM: a signal while reading leaves a report of
       what was read, marked partial in its format; one during start-up or while the report is
       written leaves the output file untouched (one line on stderr says which)"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the default ``analyze`` command."""
    from ..cli import common_options

    p = sub.add_parser(
        "analyze",
        parents=[common_options()],
        help="label the flows of capture files (the default command: `portclass capture.pcap`)",
        description="Label every flow of pcap/pcapng captures (plain or gzip; files or directories) "
        "with the service the IANA registry assigns to its server port.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="CAPTURE", help="pcap/pcapng files (gzip allowed) or directories")
    p.add_argument("--format", "-f", choices=FORMATS, default="terminal", help="output format (default terminal)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE (atomically) instead of stdout")
    add_timeouts(p)
    p.add_argument("--top", type=positive(int), default=20, metavar="N", help="rows per table in the terminal summary")
    add_max_flows(p)
    add_fail_on(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument(
        "--jobs",
        type=positive(int),
        default=None,
        metavar="N",
        help="processes: 1 does everything in turn; 2 (or more) reads, decodes and inspects payloads in a second "
        "process while the first builds flows (default: 2 where there are 2 CPUs or more and the input is 32 MiB "
        "or more)",
    )
    add_dissect(p)
    p.add_argument(
        "--merge-files",
        action="store_true",
        help="the capture files are consecutive parts of one timeline: join flows across them (by default "
        "flows of different files are kept apart, except the parts of a dumpcap or tcpdump ring buffer)",
    )
    add_filters(p)


def _progress_total(paths: list[str]) -> int:
    total = 0
    for p in paths:
        path = Path(p)
        if path.is_dir():
            total += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        elif path.is_file():
            total += path.stat().st_size
    return total


def _dissect(args: argparse.Namespace) -> dict[str, bool]:
    """``analyze`` keywords for ``--dissect``."""
    how = getattr(args, "dissect", "portclass")
    return {"evidence": how != "none", "tshark": how == "tshark"}


def run(args: argparse.Namespace) -> int:
    """Analyze captures and write the chosen report."""
    from ..filters import FlowFilter, apply, filtered, selection_of, service_port_mask
    from ..registry.sources import load_registry
    from ..report import write
    from ..report.aggregates import AGGREGATED, analyze_aggregated
    from ..report.stream import STREAMED, analyze_streamed

    check_output(args)  # before reading anything
    for p in args.paths:
        if not os.path.exists(p):
            raise PortclassError("no such file or directory", path=p)
    try:
        flt = FlowFilter.from_args(args)
    except ValueError as exc:
        raise PortclassError(str(exc)) from None
    registry = load_registry(args.registry)
    if flt.services:
        service_port_mask(registry, flt.services)  # an unknown name fails now, not after reading
    show_progress = not args.no_progress and sys.stderr.isatty()
    with contextlib.ExitStack() as stack:
        advance: Callable[[int], object] | None = None
        if show_progress:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

            prog = stack.enter_context(
                Progress(
                    "[progress.description]{task.description}",
                    BarColumn(),
                    DownloadColumn(),
                    TimeRemainingColumn(),
                    console=Console(stderr=True),
                    transient=True,
                )
            )
            task = prog.add_task("reading captures", total=_progress_total(args.paths))
            advance = functools.partial(prog.advance, task)

        def batch_done(n: int) -> None:  # between batches: where a signal may stop the reading
            if advance is not None:
                advance(n)
            interrupt.check()

        how = _dissect(args)
        timeouts = dataclasses.replace(args.idle_timeout, active_s=args.active_timeout)
        # machine formats are written as flows end (classifier.report.stream); the summary, json and html
        # come from running aggregates and the worst flows; a filter applies to flows as they end
        # (classifier.filters.filtered), and so does tshark's second opinion (pipeline.analyze)
        streamed = args.format in STREAMED
        aggregated = args.format in AGGREGATED
        run_analyze = filtered(analyze, flt) if flt and (streamed or aggregated) else analyze
        with interrupt.stop_at_boundaries():
            if aggregated:
                analysis = analyze_aggregated(
                    args.paths,
                    registry,
                    args.top if args.format == "terminal" else args.max_flows,
                    run_analyze,
                    idle_timeout_s=timeouts.idle_s,
                    progress=batch_done,
                    timeouts=timeouts,
                    merge_files=getattr(args, "merge_files", False),
                    jobs=getattr(args, "jobs", None),
                    **how,
                )
            elif streamed:
                analysis = analyze_streamed(
                    args.paths,
                    registry,
                    args.format,
                    args.output,
                    run_analyze,
                    idle_timeout_s=timeouts.idle_s,
                    timeouts=timeouts,
                    progress=batch_done,
                    merge_files=getattr(args, "merge_files", False),
                    jobs=getattr(args, "jobs", None),
                    **how,
                )
            else:
                analysis = analyze(
                    args.paths,
                    registry,
                    timeouts.idle_s,
                    batch_done,
                    timeouts=timeouts,
                    merge_files=getattr(args, "merge_files", False),
                    jobs=getattr(args, "jobs", None),
                    **how,
                )
        if not analysis.interrupted:
            interrupt.check()  # a signal after the reading: no report (the output stays as it was)
    for w in analysis.stats.warnings:
        print(f"portclass: warning: {w}", file=sys.stderr)
    if flt:
        if run_analyze is analyze:  # a format that held every flow: filtered now
            analysis = apply(analysis, flt)
        print(f"portclass: {selection_of(analysis).line()}", file=sys.stderr)  # type: ignore[union-attr]
    if not streamed:
        write(analysis, args.format, args.output, top=args.top, max_rows=args.max_flows)
    if analysis.interrupted:  # the report is whole and says it is partial (classifier.interrupt)
        interrupt.ending()
        where = f" in {args.output}" if args.output not in (None, "-") else ""
        print(
            f"portclass: interrupted by {interrupt.signal_name()}; the report{where} covers the "
            f"{analysis.stats.packets:,} packets read before it",
            file=sys.stderr,
        )
        return interrupt.exit_code()
    from ..report.summary import totals

    flagged = totals(analysis).flagged_flows
    if args.fail_on == "flagged" and flagged:
        return EXIT_FLAGGED
    return EXIT_OK
