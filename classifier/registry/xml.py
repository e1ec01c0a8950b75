"""Reader for the registry's authoritative XML rendering (namespace http://www.iana.org/assignments).

The XML may arrive from the network, so it is parsed with defusedxml and any DTD or entity
declaration (billion laughs, external entities) is refused. It is parsed as a stream: each record is
turned into a ``Record`` and its elements dropped at once, so memory holds the records, never the tree.
A malformed record is skipped and counted (see ``model``), never a traceback.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET

import defusedxml.ElementTree as DET
from defusedxml import DefusedXmlException

from ..errors import RegistryError
from .model import BadRecord, ParseResult, Record, check_record, flat_text, port_span

NS = "{http://www.iana.org/assignments}"
REGISTRY_ID = "service-names-port-numbers"
_WS = re.compile(r"\s+")


def looks_like_xml(head: bytes) -> bool:
    """True when the first bytes look like an XML document (declaration or root element)."""
    s = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return s.startswith(b"<?xml") or s.startswith(b"<registry") or s.startswith(b"<!DOCTYPE")


def _clean(text: str | None) -> str:
    return _WS.sub(" ", text or "").strip()


def _ref(x: ET.Element) -> str:
    """Render one non-person xref the way IANA's CSV and text do: [RFC6335], [RFC8765, Section 6.1], ..."""
    typ, data = x.get("type", ""), x.get("data", "")
    text = _clean(x.text)
    if text:
        return f"[{text}]"
    if typ == "rfc":
        return f"[{data.upper()}]"
    if typ == "note":
        return f"[note {data}]"
    return f"[{data}]"


def _note_text(el: ET.Element) -> str:
    """Text of a mixed-content element: xrefs inline, <br/> as line breaks, source newlines as spaces."""
    parts = [_WS.sub(" ", el.text or "")]
    for child in el:
        if child.tag == NS + "xref":
            parts.append(_ref(child))
        elif child.tag == NS + "br":
            parts.append("\n")
        else:
            parts.append(_WS.sub(" ", child.text or ""))
        parts.append(_WS.sub(" ", child.tail or ""))
    return "".join(parts)


def _warning(note: str) -> str | None:
    """Extract the registry's boxed warning ("ASSIGNMENT OF A PORT NUMBER ...") as clean text."""
    m = re.search(r"ASSIGNMENT OF A PORT NUMBER.*?REGISTERED OR NOT\.", note, re.S)
    if not m:
        return None
    return _clean(m.group(0).replace("*", " "))


def _record(el: ET.Element) -> Record:
    rec = Record()
    persons: list[str] = []
    assignees: list[str] = []
    refs: list[str] = []
    for c in el:
        tag = c.tag[len(NS) :] if c.tag.startswith(NS) else c.tag
        if tag == "name":
            rec.name = _clean(c.text) or None
        elif tag == "protocol":
            rec.transport = _clean(c.text).lower() or None
        elif tag == "number":
            rec.port_low, rec.port_high = port_span(c.text) or (None, None)
        elif tag == "description":
            rec.description = flat_text(_note_text(c))
        elif tag == "note":
            rec.notes = flat_text(_note_text(c))
        elif tag == "unauthorized":
            rec.unauthorized = flat_text(c.text) or None
        elif tag == "sc":
            rec.service_code = _clean(c.text)
        elif tag == "assignee":
            assignees.extend(f"[{x.get('data', '')}]" for x in c if x.get("type") == "person")
        elif tag == "xref":
            if c.get("type") == "person":
                persons.append(f"[{c.get('data', '')}]")
            else:
                refs.append(_ref(c))
    rec.assignee = "".join(assignees or persons)
    rec.contact = "".join(persons)
    rec.references = "".join(refs)
    rec.registered = el.get("date", "")
    rec.modified = el.get("updated", "")
    rec.__post_init__()
    return rec


def parse_xml(data: bytes, source: str = "<xml>") -> ParseResult:
    """Parse the registry XML into records; refuse DTDs and entities, and anything not this registry.

    >>> parse_xml(open("service-names-port-numbers.xml", "rb").read()).edition  # doctest: +SKIP
    '2026-08-17'
    """
    result = ParseResult(records=[], format="xml")
    root: ET.Element | None = None
    depth = 0
    try:
        events = DET.iterparse(
            io.BytesIO(data), events=("start", "end"), forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
        for event, el in events:
            if event == "start":
                depth += 1
                if root is None:
                    root = el
                    if root.tag != NS + "registry" or root.get("id") != REGISTRY_ID:
                        raise RegistryError(
                            f"XML is not the IANA port registry (root {root.tag!r} id={root.get('id')!r})",
                            path=source,
                        )
                continue
            depth -= 1
            if el.tag == NS + "record":
                _add_record(result, el)
                el.clear()
            elif depth == 1 and el.tag == NS + "note":
                result.notice = result.notice or _warning(_note_text(el))
            elif depth == 1 and el.tag == NS + "updated":
                result.edition = _clean(el.text) or None
            if depth == 1 and root is not None:
                del root[-1]  # a finished child of the root: drop it, memory holds records only
    except DefusedXmlException as exc:
        raise RegistryError(
            f"refused: XML declares a DTD or entities ({type(exc).__name__}); the registry never does",
            path=source,
        ) from None
    except ET.ParseError as exc:
        raise RegistryError(f"not well-formed XML ({exc}); truncated or damaged download?", path=source) from None
    except (LookupError, ValueError) as exc:  # expat: an unknown or multi-byte encoding in the declaration
        msg = f"XML in an encoding that cannot be read ({exc}); the registry is UTF-8"
        raise RegistryError(msg, path=source) from None
    return result


def _add_record(result: ParseResult, el: ET.Element) -> None:
    """Append the record of ``el`` to ``result``, or skip and count it when malformed."""
    try:
        result.records.append(check_record(_record(el)))
    except BadRecord as exc:
        name = _clean(el.findtext(NS + "name"))[:40]
        result.skip(f"record {len(result.records) + result.skipped + 1}" + (f" ({name})" if name else ""), str(exc))
