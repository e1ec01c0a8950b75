"""``portclass [analyze] CAPTURE...``: label every flow of pcap/pcapng captures and report."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import EXIT_FLAGGED, EXIT_OK, PortclassError
from ..pipeline import DEFAULT_IDLE_TIMEOUT_S, analyze
from ..report import WRITERS

FORMATS = tuple(WRITERS)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the default ``analyze`` command."""
    p = sub.add_parser(
        "analyze",
        help="label the flows of capture files (the default command: `portclass capture.pcap`)",
        description="Label every flow of pcap/pcapng captures (plain or gzip; files or directories) "
        "with the service the IANA registry assigns to its server port.",
    )
    p.add_argument("paths", nargs="+", metavar="CAPTURE", help="pcap/pcapng files (gzip allowed) or directories")
    p.add_argument("--format", "-f", choices=FORMATS, default="terminal", help="output format (default terminal)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE (atomically) instead of stdout")
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT_S,
        metavar="S",
        help=f"seconds of silence that end a flow (default {DEFAULT_IDLE_TIMEOUT_S:g}; 0 disables)",
    )
    p.add_argument("--top", type=int, default=20, metavar="N", help="rows per table in the terminal summary")
    p.add_argument("--fail-on", choices=("never", "flagged"), default="never", help="exit 1 when flagged flows exist")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _progress_total(paths: list[str]) -> int:
    total = 0
    for p in paths:
        path = Path(p)
        if path.is_dir():
            total += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        elif path.is_file():
            total += path.stat().st_size
    return total


def run(args: argparse.Namespace) -> int:
    """Analyze captures and write the chosen report."""
    from ..registry.sources import load_registry
    from ..report import write

    for p in args.paths:
        if not os.path.exists(p):
            raise PortclassError("no such file or directory", path=p)
    registry = load_registry(args.registry)
    show_progress = not args.no_progress and sys.stderr.isatty()
    if show_progress:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        ) as prog:
            task = prog.add_task("reading captures", total=_progress_total(args.paths))
            analysis = analyze(args.paths, registry, args.idle_timeout, lambda n: prog.advance(task, n))
    else:
        analysis = analyze(args.paths, registry, args.idle_timeout)
    for w in analysis.stats.warnings:
        print(f"portclass: warning: {w}", file=sys.stderr)
    write(analysis, args.format, args.output, top=args.top)
    if analysis.interrupted:
        return 130
    if args.fail_on == "flagged" and bool((analysis.labels.severity > 0).any()):
        return EXIT_FLAGGED
    return EXIT_OK
