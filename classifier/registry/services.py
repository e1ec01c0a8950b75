"""Reader for services(5)-style digests (/etc/services, Wireshark's services file).

A digest lists assigned names only: it cannot say whether an absent port is unassigned,
reserved or flagged, so sources read here are marked partial.
"""

from __future__ import annotations

import re

from ..errors import RegistryError
from .model import TRANSPORTS, BadRecord, ParseResult, Record, port_span

_LINE = re.compile(r"^([A-Za-z0-9][\w.+*/-]*)\s+(\d+)(?:-(\d+))?/(tcp|udp|sctp|dccp)\b(.*)$", re.I)


def looks_like_services(head: str) -> bool:
    """True when several of the first lines look like ``name port/proto``."""
    hits = sum(1 for line in head.splitlines()[:200] if _LINE.match(line.strip()))
    return hits >= 3


def parse_services(text: str, source: str = "<services>") -> ParseResult:
    """Parse ``name port/proto [aliases] [# comment]`` lines into (partial) records.

    >>> parse_services("http 80/tcp www # WorldWideWeb HTTP\\n").records[0].description
    'WorldWideWeb HTTP'
    """
    result = ParseResult(records=[], format="services", full=False, edition_kind="file-date")
    for lineno, line in enumerate(text.splitlines(), start=1):
        m = _LINE.match(line.strip())
        if not m:
            continue
        name, lo, hi, proto, rest = m.groups()
        rest, _, comment = rest.partition("#")
        aliases = rest.split()
        if proto.lower() not in TRANSPORTS:
            continue
        try:
            low, high = port_span(f"{lo}-{hi}" if hi else lo) or (0, 0)
        except BadRecord as exc:
            result.skip(f"line {lineno}", str(exc))
            continue
        result.records.append(
            Record(
                name=name,
                port_low=low,
                port_high=high,
                transport=proto.lower(),
                description=comment.strip(),
                notes=("also known as " + ", ".join(aliases)) if aliases else "",
            )
        )
    if not result.records:
        raise RegistryError("no 'name port/proto' lines: not a services file", path=source)
    return result
