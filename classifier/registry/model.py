"""The record model every registry rendering is parsed into, and the provenance of a source.

Parsers (xml, csv, text, services) all produce ``list[Record]``; ``compile`` turns
records into dense per-transport arrays.  Keeping one model means one set of semantics.

Malformed records, one rule for every rendering: ``port_span`` is the only reader of port
numbers and ``check_record`` the only judge of a record. A record whose port is not a port or
range within 0-65535 (``1e3``, ``80-90-100``, ``-1``, `` 8 0 ``, ``90-80``), whose transport is
not one of ``TRANSPORTS``, or that names neither a service nor a port, is *skipped and counted*:
the count and the first example travel in ``ParseResult``/``Provenance``, ``registry info`` shows
them and every report's registry line says how many were skipped. Skipping rather than refusing
the file: one damaged row must not make the other 14,000 unusable, and the count says the source
is damaged. A source where every record is malformed holds no records and is refused.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

TRANSPORTS: tuple[str, ...] = ("tcp", "udp", "sctp", "dccp")
"""Transports the registry assigns ports for, in array order."""

DYNAMIC_LOW = 49152
"""First port of the Dynamic and/or Private range (RFC 6335), not assigned by IANA."""

_ALIAS_RE = re.compile(r'(?:alias (?:to|for)|duplicate of(?: the)?) ["\u201c]?([A-Za-z0-9_.+-]+)', re.I)
_RESERVED_RE = re.compile(r"^\s*reserved\b", re.I)
_UNASSIGNED_RE = re.compile(r"^\s*\(?(?:unassigned|de-?registered|removed|deprecated|de-?comm?iss?ioned)\b", re.I)


_PORT_SPAN_RE = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?")


class BadRecord(ValueError):
    """A record the registry cannot hold (see the module docstring): parsers skip and count it."""


def port_span(text: str | None) -> tuple[int, int] | None:
    """``(low, high)`` of a port (``80``) or range (``6000-6063``); None when empty; ``BadRecord`` otherwise.

    >>> port_span(" 6000-6063 "), port_span("")
    ((6000, 6063), None)
    """
    s = (text or "").strip()
    if not s:
        return None
    m = _PORT_SPAN_RE.fullmatch(s)
    if not m:
        raise BadRecord(f"port number {s[:40]!r} is not a port or a port range")
    low = int(m.group(1))
    high = int(m.group(2)) if m.group(2) else low
    if high > 65535 or high < low:
        raise BadRecord(f"port range {s!r} is not within 0-65535 in order")
    return low, high


def check_record(rec: Record) -> Record:
    """``rec`` if the registry can hold it, else ``BadRecord`` naming what is wrong."""
    if rec.transport is not None and rec.transport not in TRANSPORTS:
        raise BadRecord(f"transport {rec.transport[:40]!r} is not one of {', '.join(TRANSPORTS)}")
    if rec.port_low is None and not rec.name:
        raise BadRecord("names neither a service nor a port")
    return rec


def norm_text(text: str | None) -> str:
    """Normalise registry text the same way for every rendering: blanks collapsed per line, empty lines dropped.

    Line breaks are kept only where the registry has them (``<br/>`` in XML, newlines inside CSV
    fields); callers flatten source-formatting newlines before calling this.
    """
    if not text:
        return ""
    return "\n".join(" ".join(line.split()) for line in text.splitlines() if line.strip())


def flat_text(text: str | None) -> str:
    """Registry text on one line (notes, unauthorized-use notes): all whitespace runs become one space."""
    return " ".join((text or "").split())


@dataclass
class Record:
    """One row of the registry: a service name and/or a port (range) on a transport.

    ``transport`` is None when the registry row names no transport (it then covers
    tcp and udp); ``port_low`` is None for service-name-only rows.

    >>> Record(name="http", port_low=80, port_high=80, transport="tcp").kind
    'named'
    """

    name: str | None = None
    port_low: int | None = None
    port_high: int | None = None
    transport: str | None = None
    description: str = ""
    assignee: str = ""
    contact: str = ""
    registered: str = ""
    modified: str = ""
    references: str = ""
    service_code: str = ""
    unauthorized: str | None = None
    notes: str = ""
    alias_of: str | None = None
    historic: bool = False

    def __post_init__(self) -> None:
        if self.alias_of is None and self.notes:
            m = _ALIAS_RE.search(self.notes)
            if m:
                self.alias_of = m.group(1).rstrip(".")
        if not self.historic and "historic" in f"{self.notes} {self.description}".lower():
            self.historic = True

    @property
    def kind(self) -> str:
        """`named`, `reserved`, `unassigned` or `assigned` (a port assigned with no service name)."""
        if self.name:
            return "named"
        if _RESERVED_RE.match(self.description or ""):
            return "reserved"
        if _UNASSIGNED_RE.match(self.description or ""):
            return "unassigned"
        return "assigned"

    @property
    def transports(self) -> tuple[str, ...]:
        """Transports this record covers: its own, or tcp and udp when it names none."""
        if self.transport:
            return (self.transport,)
        return ("tcp", "udp")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON output (``unauthorized`` stays null where absent)."""
        return asdict(self)


@dataclass
class Provenance:
    """Where a compiled registry came from: every report prints this.

    ``edition_kind`` is ``registry`` when the date is the registry's own "updated"
    date, ``file-date`` when only the file's modification date was known.
    """

    source: str
    sha256: str
    format: str
    edition: str | None = None
    edition_kind: str = "registry"
    full: bool = True
    records: int = 0
    notice: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    partial_reason: str | None = None
    skipped: int = 0
    skipped_example: str | None = None

    def line(self) -> str:
        """One line for report headers: source, edition, sha256 prefix, full or partial."""
        ed = self.edition or "unknown date"
        if self.edition_kind == "file-date" and self.edition:
            ed = f"file date {self.edition}"
        part = "full registry" if self.full else f"PARTIAL source ({self.partial_reason or 'assigned names only'})"
        bad = f", {self.skipped} malformed records skipped" if self.skipped else ""
        return f"IANA registry: {self.source} ({self.format}, {ed}, sha256 {self.sha256[:12]}, {part}{bad})"


@dataclass
class ParseResult:
    """Records plus what the parser learnt about the source itself."""

    records: list[Record]
    format: str
    edition: str | None = None
    edition_kind: str = "registry"
    full: bool = True
    notice: str | None = None
    partial_reason: str | None = None
    skipped: int = 0
    skipped_example: str | None = None

    def skip(self, where: str, problem: str) -> None:
        """Count a malformed record; the first one is kept as the example ``registry info`` shows."""
        self.skipped += 1
        if self.skipped_example is None:
            self.skipped_example = f"{where}: {problem}"
