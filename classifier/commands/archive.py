"""``portclass archive PATH... -o DATASET/``: label a capture archive into a partitioned Parquet dataset."""

from __future__ import annotations

import argparse
import os
import sys
import time

from ..errors import EXIT_OK, PortclassError

EPILOG = """dataset:
  DATASET/date=YYYY-MM-DD/hour=HH/<input>.parquet   flows by start time (UTC), the columns of -f parquet
  DATASET/_common_metadata                          schema, the registry's warning and provenance
  DATASET/_portclass/manifest.json                  inputs done, timelines, aggregates (the run's commit)
  DATASET/_portclass/agg-*.npz                      summary aggregates per input (no pickle): the summary
                                                    covers the whole archive, earlier runs included

timelines: consecutive files of a dumpcap ring buffer (prefix_NNNNN_YYYYMMDDHHMMSS.pcapng) or of
tcpdump -C/-G (file.pcap, file.pcap1, ...) are one timeline: a flow crossing files is one flow, as
when one process reads them in order. --timeline says all the files form one (by first packet time).

running again over the same archive labels only new files (the next parts of a ring buffer continue
the flows left open); --dask runs one task per file on a Dask cluster:
  pip install 'portclass[cluster]'; dask scheduler; dask worker tcp://SCHEDULER:8786
  portclass archive /captures -o flows/ --dask tcp://SCHEDULER:8786

exit codes: 0 done, 2 input/usage error, 130/143 interrupted (parts written so far stay valid;
running again finishes the archive)."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``archive`` command."""
    from ..cli import common_options
    from ..report.aggregates import AGGREGATED
    from .options import add_idle_timeout, positive

    p = sub.add_parser(
        "archive",
        parents=[common_options()],
        help="label a capture archive into a partitioned Parquet dataset (optionally on Dask)",
        description="Label every capture under the paths into a Parquet dataset partitioned by hour, "
        "with the registry's warning in its metadata; print the summary of the whole archive.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="capture files or directories (walked)")
    p.add_argument("-o", "--output", required=True, metavar="DATASET", help="dataset directory")
    p.add_argument("--dask", metavar="ADDR", help="tcp://HOST:8786 (a running scheduler) or local[:N] workers")
    p.add_argument("--timeline", action="store_true", help="all files form one timeline (by first packet time)")
    p.add_argument("--dissect", choices=("portclass", "none"), default="portclass",
                   help="payload evidence (default portclass) or none: labels from port numbers only")  # fmt: skip
    add_idle_timeout(p)
    p.add_argument("--format", "-f", choices=AGGREGATED, default="terminal",
                   help="the whole archive's summary: terminal (default), json or html, as `portclass -f`")  # fmt: skip
    p.add_argument("--report", metavar="FILE", help="write the summary to FILE (atomically) instead of stdout")
    p.add_argument("--top", type=positive(int), default=20, metavar="N", help="rows per table in the terminal summary")
    p.add_argument("--max-flows", type=positive(int), default=1000, metavar="N",
                   help="worst flows the json and html summaries hold (default 1,000; each task sends back "
                   "up to N flows)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")


def run(args: argparse.Namespace) -> int:
    """Label the archive, then print the whole archive's summary."""
    from rich.console import Console

    from ..archive import driver
    from ..engine import Timeouts
    from ..registry.sources import load_registry
    from ..report import write
    from .options import check_output

    for p in args.paths:
        if not os.path.exists(p):
            raise PortclassError("no such file or directory", path=p)
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise PortclassError("not a directory (the dataset is a directory)", path=args.output)
    if args.dask is not None:
        from ..archive.cluster import parse

        try:
            parse(args.dask)
        except ValueError as exc:
            raise PortclassError(str(exc)) from None
    check_output(argparse.Namespace(format=args.format, output=args.report))  # before labelling anything
    registry = load_registry(args.registry)
    timeouts = Timeouts(idle_s=args.idle_timeout)
    progress = _Progress(not args.no_progress)
    try:
        out = driver.run(
            args.paths,
            args.output,
            registry,
            timeouts=timeouts,
            evidence=args.dissect != "none",
            dask=args.dask,
            one_timeline=args.timeline,
            progress=progress.task_done,
            limit=args.top if args.format == "terminal" else args.max_flows,
        )
    except ValueError as exc:
        raise PortclassError(str(exc)) from None
    finally:
        progress.end()
    if out.tasks and not out.new.stats.packets and out.new.stats.warnings:  # nothing readable at all
        raise PortclassError(out.new.stats.warnings[0].removesuffix("; skipped"))
    a = driver.analysis_of(out.aggregate, registry, timeouts, [str(p) for p in args.paths], args.dissect != "none")
    for w in out.aggregate.stats.warnings:
        print(f"portclass: warning: {w}", file=sys.stderr)
    write(a, args.format, args.report, top=args.top, max_rows=args.max_flows)
    line = (f"archive: {out.tasks} file(s) labelled this run, {out.skipped} already in {args.output}; "
            f"{out.seconds:.1f} s; the summary covers the whole archive")  # fmt: skip
    kept = out.aggregate.summary.worst.limit
    if args.format != "terminal" and kept < args.max_flows:
        line += f" (worst flows: {kept:,}, the most an earlier run kept per input)"
    if a.aggregates is None:
        line += " (totals only: some inputs were labelled by a portclass that kept no summary)"
    if args.format == "terminal" and args.report in (None, "-"):
        Console(highlight=False).print(line)
    else:
        print(line, file=sys.stderr)
    return EXIT_OK


class _Progress:
    """Files, packets, bytes and rate on one stderr line, as tasks finish."""

    def __init__(self, show: bool) -> None:
        self.show = show and sys.stderr.isatty()
        self.t0 = time.perf_counter()
        self.files = self.packets = self.bytes = 0

    def task_done(self, res: object) -> None:
        st = res.aggregate.stats  # type: ignore[attr-defined]
        self.files += 1
        self.packets += st.packets
        self.bytes += st.bytes
        if self.show:
            dt = max(time.perf_counter() - self.t0, 1e-9)
            print(
                f"\rarchive: {self.files} files, {self.packets:,} packets, {self.bytes / 1e6:,.1f} MB, "
                f"{self.packets / dt:,.0f} packets/s",
                end="",
                file=sys.stderr,
                flush=True,
            )

    def end(self) -> None:
        if self.show and self.files:
            print(file=sys.stderr)
