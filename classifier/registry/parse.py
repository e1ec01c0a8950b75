"""Format auto-detection: bytes of any registry rendering in, one ``ParseResult`` out.

Plausibility: a rendering of the full registry (XML, CSV, text) that holds fewer than ``MIN_RECORDS``
records is read as a PARTIAL source, with the reason in its provenance, instead of being trusted as
the whole registry (where every port it does not list would read "unassigned"). Read as partial rather
than refused, because excerpts are legitimate sources: what they list is labelled, every other port is
``unknown``. ``registry update`` still refuses such a download (IANA always serves the whole registry).
The threshold: real editions hold 13,521 (2022) to 14,533 (2026) records and the registry only grows
(de-assigned ports stay as Reserved/Unassigned records), so under 10,000 is no edition at all.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

from ..errors import RegistryError
from .model import ParseResult

MIN_RECORDS = 10_000
"""Fewer records than this cannot be the full registry (see the module docstring)."""


def _decode(data: bytes, source: str) -> str:
    if b"\0" in data[:65536]:
        raise RegistryError("binary data (NUL bytes), not a registry rendering", path=source)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError:
            raise RegistryError("binary data (not UTF-8 text), not a registry rendering", path=source) from None


def looks_like_html(head: bytes) -> bool:
    """True when the bytes start like an HTML page (a server's error or login page, a saved web page)."""
    s = head[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return s.startswith((b"<!doctype html", b"<html")) or (s.startswith(b"<?xml") and b"<html" in s)


def detect(data: bytes) -> str:
    """Name of the rendering in ``data``: html, xml, csv, text, services, or unknown."""
    from .csv import looks_like_csv
    from .services import looks_like_services
    from .xml import looks_like_xml

    head = data[:65536]
    if looks_like_html(head):
        return "html"
    if looks_like_xml(head):
        return "xml"
    s = head.decode("utf-8", "replace")
    if looks_like_csv(s):
        return "csv"
    from .text import looks_like_text

    if looks_like_text(s):
        return "text"
    if looks_like_services(s):
        return "services"
    return "unknown"


def parse_bytes(data: bytes, source: str, file_date: str | None = None) -> ParseResult:
    """Parse registry bytes of any supported rendering; raise ``RegistryError`` (one line) otherwise.

    >>> parse_bytes(b"", "empty.xml")  # doctest: +SKIP
    Traceback (most recent call last):
    RegistryError: empty.xml: empty file
    """
    if not data.strip():
        raise RegistryError("empty file", path=source)
    if b"\0" in data[:65536]:
        raise RegistryError("binary data (NUL bytes), not a registry rendering", path=source)
    fmt = detect(data)
    if fmt == "html":
        raise RegistryError("an HTML page, not the registry (a web page saved or served in its place?)", path=source)
    if fmt == "xml":
        from .xml import parse_xml

        result = parse_xml(data, source)
    elif fmt == "csv":
        from .csv import parse_csv

        result = parse_csv(_decode(data, source), source)
    elif fmt == "text":
        from .text import parse_text

        result = parse_text(_decode(data, source), source)
    elif fmt == "services":
        from .services import parse_services

        result = parse_services(_decode(data, source), source)
    else:
        first = data[:60].decode("utf-8", "replace").splitlines()[0] if data.strip() else ""
        if first.lower().startswith("service name,") or (
            first.count(",") >= 3 and "\n" in data[:4096].decode("utf-8", "replace")
        ):
            raise RegistryError(f"CSV header is not the IANA port registry's: {first!r}", path=source)
        raise RegistryError(
            "not a recognised registry rendering (IANA XML, CSV, text/table, or services file)", path=source
        )
    if not result.records:
        bad = f" ({result.skipped} malformed, e.g. {result.skipped_example})" if result.skipped else ""
        raise RegistryError(f"no registry records found in {fmt} data{bad}", path=source)
    if result.full and len(result.records) < MIN_RECORDS:
        result.full = False
        result.partial_reason = (
            f"only {len(result.records):,} records, a complete edition has over {MIN_RECORDS:,}: "
            "ports it does not list are unknown"
        )
    if result.edition is None and file_date:
        result.edition, result.edition_kind = file_date, "file-date"
    return result


def file_date(path: Path) -> str:
    """The file's modification date as YYYY-MM-DD (used where the content carries no edition)."""
    ts = os.stat(path).st_mtime
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).date().isoformat()
