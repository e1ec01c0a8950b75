"""Reader for the registry's CSV rendering, both header editions.

IANA's CSV has used ``Unauthorized Use Reported`` (current) and ``Known Unauthorized Uses`` (older,
as in Debian's ipv6toolkit copy) for the same column; fields may be quoted and span lines.
"""

from __future__ import annotations

import csv
import io

from ..errors import RegistryError
from .model import ParseResult, Record, flat_text

_COLUMNS = {
    "service name": "name",
    "port number": "port",
    "transport protocol": "transport",
    "description": "description",
    "assignee": "assignee",
    "contact": "contact",
    "registration date": "registered",
    "modification date": "modified",
    "reference": "references",
    "service code": "service_code",
    "unauthorized use reported": "unauthorized",
    "known unauthorized uses": "unauthorized",
    "assignment notes": "notes",
}
_REQUIRED = ("name", "port", "transport", "description")


def looks_like_csv(head: str) -> bool:
    """True when the first line is a registry CSV header (either edition)."""
    first = head.lstrip("\ufeff").split("\n", 1)[0].lower()
    return first.startswith("service name,port number,transport protocol")


def parse_csv(text: str, source: str = "<csv>") -> ParseResult:
    """Parse the registry CSV; the edition is unknown from content, so the caller supplies a file date.

    >>> parse_csv("Service Name,Port Number,Transport Protocol,Description\\nhttp,80,tcp,WWW\\n").records[0].name
    'http'
    """
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise RegistryError("empty CSV", path=source) from None
    fields = [_COLUMNS.get(h.strip().lower()) for h in header]
    missing = [c for c in _REQUIRED if c not in fields]
    if missing:
        raise RegistryError(
            f"CSV header is not the IANA port registry's (missing {', '.join(missing)}; got {header[:4]!r})",
            path=source,
        )
    records: list[Record] = []
    for lineno, row in enumerate(reader, start=2):
        if not any(row):
            continue
        rec = Record()
        for key, value in zip(fields, row, strict=False):
            if key is None:
                continue
            value = flat_text(value)
            if key == "port":
                if value:
                    lo, _, hi = value.partition("-")
                    try:
                        rec.port_low = int(lo)
                        rec.port_high = int(hi) if hi else rec.port_low
                    except ValueError:
                        raise RegistryError(f"row {lineno}: bad port number {value!r}", path=source) from None
            elif key == "name":
                rec.name = value or None
            elif key == "transport":
                rec.transport = value.lower() or None
            elif key == "unauthorized":
                rec.unauthorized = value or None
            else:
                setattr(rec, key, value)
        rec.__post_init__()
        records.append(rec)
    return ParseResult(records=records, format="csv", edition_kind="file-date")
