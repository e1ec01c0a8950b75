"""Options shared by the capture commands (``analyze`` and ``live``), declared once."""

from __future__ import annotations

import argparse
import errno
import math
import os
from collections.abc import Callable
from pathlib import Path

from ..pipeline import DEFAULT_IDLE_TIMEOUT_S


def seconds(text: str) -> float:
    """argparse type: a number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text!r}")
    return value


def interval(text: str) -> float:
    """argparse type: a duration such as ``1h``, ``10m``, ``30s`` or plain seconds (``--rotate``)."""
    from ..report.rotate import parse_interval

    try:
        return parse_interval(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    """argparse type: a finite number of ``kind`` above 0 (``--jobs``, ``--top``, ``--count`` ...)."""

    def parse(text: str) -> int | float:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(v) or v <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0: {text!r}")
        return v

    return parse


def check_output(args: argparse.Namespace) -> None:
    """Before any capture is read: refuse output files that could not be written (one line, exit 2).

    A report is written at the end; finding then that its directory is missing would lose the run.
    """
    from ..errors import PortclassError

    if args.format == "parquet":
        from ..report.parquet import check_output as check_parquet

        check_parquet(args.output)
    for out in (getattr(args, "output", None), getattr(args, "write_pcap", None)):
        if out is None or str(out) == "-":
            continue
        parent = Path(out).parent
        problem = None if parent.is_dir() else errno.ENOENT
        if problem is None and not os.access(parent, os.W_OK):
            problem = errno.EACCES
        if problem is not None:  # worded as atomic_write words it when writing fails later
            raise PortclassError(f"cannot write a file in {parent} ({os.strerror(problem)})", path=out)


def add_idle_timeout(p: argparse.ArgumentParser) -> None:
    """``--idle-timeout S``: seconds of silence that end a flow (0 disables)."""
    p.add_argument(
        "--idle-timeout",
        type=seconds,
        default=DEFAULT_IDLE_TIMEOUT_S,
        metavar="S",
        help=f"seconds of silence that end a flow (default {DEFAULT_IDLE_TIMEOUT_S:g}; 0 disables)",
    )


def idle_spec(text: str) -> object:
    """argparse type of ``--idle-timeout``: ``300``, or per transport ``tcp=300,udp=60[,default=120]``."""
    from ..engine import Timeouts

    if "=" not in text:
        return Timeouts(idle_s=seconds(text))
    try:
        return Timeouts.parse_idle(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_timeouts(p: argparse.ArgumentParser) -> None:
    """``--idle-timeout`` (per transport if asked) and ``--active-timeout``: when flows end (``classifier.engine``)."""
    from ..engine import Timeouts

    p.add_argument(
        "--idle-timeout",
        type=idle_spec,
        default=Timeouts(),
        metavar="S",
        help=f"seconds of silence that end a flow (default {DEFAULT_IDLE_TIMEOUT_S:g}; 0 disables); "
        "per transport: tcp=300,udp=60[,default=S]",
    )
    p.add_argument(
        "--active-timeout",
        type=seconds,
        default=0.0,
        metavar="S",
        help="a flow longer than S seconds comes out in numbered parts (default 0: off)",
    )


def _port(text: str) -> int:
    try:
        port = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is not in 0-65535")
    return port


def _host(text: str) -> str:
    from ..filters import parse_host

    try:
        parse_host(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_filters(p: argparse.ArgumentParser) -> None:
    """The flow filters (``classifier.filters.FlowFilter``): which flows the report keeps."""
    from ..conn import CONN_STATES
    from ..label import FLAG_NAMES
    from ..registry.compile import STATUS_NAMES

    f = p.add_argument_group("filters", "keep only some flows in the report (see below)")
    f.add_argument("--flagged-only", action="store_true", help="only flows with at least one flag")
    f.add_argument(
        "--flag",
        action="append",
        choices=tuple(FLAG_NAMES.values()),
        metavar="NAME",
        help=f"only flows with this flag (repeatable): {', '.join(FLAG_NAMES.values())}",
    )
    f.add_argument(
        "--service",
        action="append",
        metavar="NAME",
        help="only flows whose server port the registry names NAME, primary or alias (www selects 80/tcp)",
    )
    f.add_argument(
        "--status",
        action="append",
        choices=STATUS_NAMES,
        metavar="STATUS",
        help=f"only flows whose server port has this status (repeatable): {', '.join(STATUS_NAMES)}",
    )
    f.add_argument("--port", action="append", type=_port, metavar="N", help="only flows with port N on either side")
    f.add_argument(
        "--host",
        action="append",
        type=_host,
        metavar="ADDR",
        help="only flows with this address, or an address in this CIDR block, on either side",
    )
    f.add_argument(
        "--state",
        action="append",
        choices=CONN_STATES,
        metavar="STATE",
        help=f"only connections in this Zeek conn_state (repeatable): {', '.join(CONN_STATES)}",
    )
    f.add_argument(
        "--answered",
        action="store_true",
        help="only connections the responder answered (TCP handshake completed, UDP both ways)",
    )


def add_fail_on(p: argparse.ArgumentParser) -> None:
    """``--fail-on flagged``: exit 1 when flagged flows remain after the filters."""
    p.add_argument(
        "--fail-on",
        choices=("never", "flagged"),
        default="never",
        help="flagged: exit 1 when flagged flows remain after the filters (default never)",
    )


def add_max_flows(p: argparse.ArgumentParser) -> None:
    """``--max-flows N``: how many of the worst flows the json and html reports hold."""
    p.add_argument(
        "--max-flows",
        type=positive(int),
        default=50_000,
        metavar="N",
        help="flows the json and html reports hold: the N worst (default 50,000); totals, tables and charts "
        "still count every flow, and the report says how many it left out",
    )


def add_dissect(p: argparse.ArgumentParser) -> None:
    """``--dissect portclass|tshark|none``: how payloads are looked at."""
    p.add_argument(
        "--dissect",
        choices=("portclass", "tshark", "none"),
        default="portclass",
        help="payload evidence: portclass's signatures (default); tshark: also ask Wireshark's dissectors "
        "for a second opinion (slow); none: port labels only",
    )
