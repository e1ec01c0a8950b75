"""Reader for the registry's CSV rendering, both header editions.

IANA's CSV has used ``Unauthorized Use Reported`` (current) and ``Known Unauthorized Uses`` (older,
as in Debian's ipv6toolkit copy) for the same column; fields may be quoted and span lines.
"""

from __future__ import annotations

import csv
import io

from ..errors import RegistryError
from .model import BadRecord, ParseResult, Record, check_record, flat_text, port_span

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
    result = ParseResult(records=[], format="csv", edition_kind="file-date")
    try:
        for row in reader:
            if not any(row):
                continue
            try:
                result.records.append(check_record(_row_record(fields, row)))
            except BadRecord as exc:
                result.skip(f"line {reader.line_num}", str(exc))
    except csv.Error as exc:  # damage to the CSV structure itself (a field over the csv module's limit)
        raise RegistryError(f"line {reader.line_num}: not a readable CSV record ({exc})", path=source) from None
    return result


def _row_record(fields: list[str | None], row: list[str]) -> Record:
    """One CSV row as a Record (``BadRecord`` when its port is not a port)."""
    rec = Record()
    for key, value in zip(fields, row, strict=False):
        if key is None:
            continue
        if key == "port":
            rec.port_low, rec.port_high = port_span(value) or (None, None)
            continue
        value = flat_text(value)
        if key == "name":
            rec.name = value or None
        elif key == "transport":
            rec.transport = value.lower() or None
        elif key == "unauthorized":
            rec.unauthorized = value or None
        else:
            setattr(rec, key, value)
    rec.__post_init__()
    return rec
