"""Parse the plain-text and pipe-table renderings of the IANA port registry.

These renderings reach us copied out of web pages and mail, so their layout is damaged
in predictable ways: fixed-width columns collapse to single spaces, empty table cells
collapse (``| 41121 | udp | Reserved | |||||||||`` has lost its empty name cell, so the
columns shift), and long rows wrap over several lines.  Fields are therefore recovered by
*content and column order*, never by position: a row is ``[name] [port] [transport]
description [assignee] [contact] [registered] [modified] [references] [service code]
[unauthorized] [notes]`` and each field has a recognisable shape.

Known ambiguities, resolved the way that is right for most registry rows (measured on
the full CSV): a row with a single date gets it as ``registered`` when the row names a
service or the date is ``YYYY-MM``, else as ``modified`` (Reserved/Unassigned rows are
only ever "updated"); in collapsed plain text a bracketed word directly before the
assignee (``File Transfer Protocol [Control] [Jon_Postel] [Jon_Postel]``) stays in the
description because assignee and contact are the last two person ids of the run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from classifier.errors import RegistryError
from classifier.registry.model import TRANSPORTS, BadRecord, ParseResult, Record, check_record, port_span

__all__ = ["looks_like_text", "parse_text"]

MAX_ROW = 16 << 10
"""A logical row longer than this is no registry row (the longest real one is about 1.6 KB): skipped."""

_TITLE = "Service Name and Transport Protocol Port Number Registry"

# The column header, in either rendering ("Service Name Port Number ..." or "| Service Name | ...").
_HEADER_RE = re.compile(r"^\s*\|?\s*Service\s+Name\s*\|?\s*Port\s+Number\s*\|?\s*Transport\s+Protocol\b", re.I)
_SEPARATOR_RE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
# Where the people table begins: its heading, or its column header.
_CONTACTS_RE = re.compile(
    r"^\s*(?:-\s*|#+\s*)?(?:Contact\s+Information|People)\s*\|?\s*$|^\s*\|?\s*ID\s*\|?\s*Name\s*\|", re.I
)
_CONTACTS_PLAIN_HEADER_RE = re.compile(r"^\s*ID\s+Name\s+(?:Organization\s+)?Contact\s+URI\b", re.I)
_EDITION_RE = re.compile(r"Last\s+Updated[\s\-|:]*(\d{4}-\d{2}-\d{2})\b", re.I)
_NOTICE_RE = re.compile(r"ASSIGNMENT\s+OF\s+A\s+PORT\s+NUMBER\s+DOES\s+NOT\b.*?REGISTERED\s+OR\s+NOT\.", re.I | re.S)

_PORT_RE = re.compile(r"(\d{1,5})(?:-(\d{1,5}))?")
_DATE_RE = re.compile(r"\d{4}-(?:0[1-9]|1[0-2])(?:-(?:0[1-9]|[12]\d|3[01]))?")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+/*-]*")
_LONE_DATE_RE = re.compile(r"(?<!\S)" + _DATE_RE.pattern + r"(?!\S)")
_DIGITS_RE = re.compile(r"\d+")
_PORTISH_RE = re.compile(r"-*[0-9][-0-9]*")
_WS_RE = re.compile(r"\s+")
_WORD_RE = re.compile(r"\S+")
# One bracket token: "[Jon_Postel]", "[Anders_Brandt][Mary_Miller]", "[RFC8765, Section 6.1]".
_BRACKETS_RE = re.compile(r"(?:\[[^\[\]\n]*\])+")
_GROUP_RE = re.compile(r"\[([^\[\]\n]*)\]")
_PERSON_ID_RE = re.compile(r"[^\s\[\]]+")
_REF_ID_RE = re.compile(r"\s*(?:RFC[\d\s-]|draft-|https?://|ISO[/\s]|ITU-T\s|TR-\d|n/a$|\d+$)", re.I)
# Free text that belongs to the "Unauthorized Use Reported" column.
_UNAUTH_START_RE = re.compile(
    r"(?:yes$|(?:known\s+)?unauthori[sz]ed\s+uses?\b|unofficial\s+use\b|port\s+\d+\s+also\s+being\s+used\s+unofficially"
    r"|\S+\s+assigned\s+the\s+port,.*without\s+an\s+assignment)",
    re.I,
)
_UNAUTH_IN_TEXT_RE = re.compile(
    r"\b(?:known\s+unauthori[sz]ed\s+uses?|unauthori[sz]ed\s+use\s+known"
    r"|unofficial\s+use\s+of\s+port|port\s+\d+\s+also\s+being\s+used\s+unofficially)\b",
    re.I,
)
# Free text that starts the "Assignment Notes" column (used only where no cell boundary exists).
_NOTES_START_RE = re.compile(
    r"\b(?:Defined\s+TXT\s+[Kk]eys\b|This\s+entry\s+(?:is|has|was|records)\b|This\s+(?:is\s+a|port)\b"
    r"|New\s+contact\s+added\b|De-?[Aa]ssigned\s+on\b|Formerly\b)"
)
# Descriptions of unnamed rows that plain text may run straight into notes.
_PLACEHOLDER_RE = re.compile(r"(Reserved|Unassigned)\s+(?=[^\s\[(\-])", re.I)


@dataclass
class _Fields:
    """Fields of one row collected while walking its cells in column order."""

    name: str | None = None
    port_low: int | None = None
    port_high: int | None = None
    transport: str | None = None
    description: str = ""
    people: list[str] = field(default_factory=list)
    dates: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    service_code: str = ""
    unauthorized: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def record(self) -> Record:
        """Build the Record, resolving a lone date to registered or modified."""
        registered = modified = ""
        if len(self.dates) >= 2:
            registered, modified = self.dates[0], self.dates[1]
        elif self.dates:
            # Named rows are registered, placeholders are only updated; YYYY-MM is always a registration.
            if self.name or len(self.dates[0]) == 7:
                registered = self.dates[0]
            else:
                modified = self.dates[0]
        assignee = self.people[0] if self.people else ""
        contact = self.people[1] if len(self.people) > 1 else ""
        return Record(
            name=self.name,
            port_low=self.port_low,
            port_high=self.port_high,
            transport=self.transport,
            description=_clean(self.description),
            assignee=assignee,
            contact=contact,
            registered=registered,
            modified=modified,
            references=" ".join(self.references),
            service_code=self.service_code,
            unauthorized=_clean(" ".join(self.unauthorized)) or None,
            notes=_clean(" | ".join(self.notes)),
        )


def looks_like_text(head: str) -> bool:
    """True if ``head`` (the first ~64 KiB of a file) is the registry as plain text or a pipe table.

    Cheap and conservative, for format auto-detection: XML and CSV are rejected first, then
    the registry title or its column header (space- or pipe-separated) must be present.
    """
    start = head.lstrip("\ufeff \t\r\n")
    if start.startswith("<"):
        return False
    if re.match(r'"?Service Name"?,"?Port Number"?,', start):
        return False
    if _TITLE.lower() in " ".join(head.split()).lower():
        return True
    return any(_HEADER_RE.match(line) for line in head.splitlines())


def parse_text(text: str, source: str = "<text>") -> ParseResult:
    """Parse the registry as plain text or a pipe table into records (contact table ignored).

    ``edition`` is the "Last Updated" date and ``notice`` the registry's boxed warning as
    one clean line.  Raises RegistryError if the text holds no registry rows.

    >>> res = parse_text("Service Name Port Number Transport Protocol Description\\n"
    ...                  "elpro-tunnel 4370 tcp ELPRO V2 Protocol Tunnel [Harry_Courtice] "
    ...                  "[Harry_Courtice] 2008-04-14\\n44123 udp Reserved\\n")
    >>> r = res.records[0]
    >>> (r.name, r.port_low, r.transport, r.description, r.contact, r.registered)
    ('elpro-tunnel', 4370, 'tcp', 'ELPRO V2 Protocol Tunnel', '[Harry_Courtice]', '2008-04-14')
    >>> res.records[1].kind, res.format
    ('reserved', 'text')
    """
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ")
    lines = text.split("\n")
    header_at = next((i for i, line in enumerate(lines) if _HEADER_RE.match(line)), None)
    head = "\n".join(lines[:header_at]) if header_at is not None else text
    body = lines[header_at + 1 :] if header_at is not None else lines
    if header_at is not None:
        piped = "|" in lines[header_at]
        width = lines[header_at].count("|")
    else:
        piped, width = _guess_style(body)
    if piped:
        rows, parse_row = _pipe_rows(body, width, have_header=header_at is not None), _parse_pipe_row
    else:
        rows, parse_row = _plain_rows(body, have_header=header_at is not None), _parse_plain_row
    result = ParseResult(
        records=[], format="text", edition=_edition(head), edition_kind="registry", full=True, notice=_notice(head)
    )
    for n, row in enumerate(rows, start=1):
        try:
            if len(row) > MAX_ROW:
                raise BadRecord(f"row of {len(row):,} characters (the longest real one has about 1,600)")
            rec = parse_row(row)
            if rec is not None:
                result.records.append(check_record(rec))
        except BadRecord as exc:
            result.skip(f"row {n} ({row[:40].strip()!r})", str(exc))
    if not result.records:
        raise RegistryError("no registry rows found in plain-text/table rendering", path=source)
    return result


# --------------------------------------------------------------------------- header block


def _edition(head: str) -> str | None:
    """The registry's "Last Updated" date from the header block, if present."""
    m = _EDITION_RE.search(head)
    return m.group(1) if m else None


def _notice(head: str) -> str | None:
    """The "ASSIGNMENT OF A PORT NUMBER ..." warning with its asterisk box removed, as one line."""
    unboxed = " ".join(re.sub(r"\*+", " ", head).split())
    m = _NOTICE_RE.search(unboxed)
    return m.group(0) if m else None


# --------------------------------------------------------------------------- row grouping


def _clean(s: str) -> str:
    """Collapse runs of whitespace (including line breaks of wrapped rows) to single spaces."""
    return " ".join(s.split())


def _is_contacts_start(line: str) -> bool:
    """True at the heading or header of the people table that ends the registry rows."""
    return bool(_CONTACTS_RE.match(line) or _CONTACTS_PLAIN_HEADER_RE.match(line))


def _guess_style(lines: list[str]) -> tuple[bool, int]:
    """Without a column header: pipe table if most non-blank lines end in '|'; its pipe count per row."""
    nonblank = [ln.strip() for ln in lines if ln.strip()]
    piped = [ln for ln in nonblank if ln.endswith("|")]
    if not piped or len(piped) * 2 < len(nonblank):
        return False, 0
    return True, 13 if sum(ln.startswith("|") for ln in piped) * 2 >= len(piped) else 12


def _pipe_rows(lines: list[str], width: int, have_header: bool) -> Iterator[str]:
    """Logical rows of a pipe table: a row is complete once it holds ``width`` pipes.

    Empty cells collapse but their pipes survive, so the pipe count still tells when a
    wrapped row has ended.  A line that would overflow a short (truncated) row and
    clearly starts a new one ends the previous row instead.
    """
    parts: list[str] = []  # the lines of the row so far, joined once: linear however long a row grows
    have = 0  # pipes in parts
    started = have_header
    for line in lines:
        if _is_contacts_start(line):
            break
        if not line.strip() or _SEPARATOR_RE.match(line) or _HEADER_RE.match(line):
            continue
        if not started:
            if not _pipe_row_start(line):
                continue  # still in the header block of a header-less excerpt
            started = True
        pipes = line.count("|")
        if parts and (have >= width or (have + pipes > width and _pipe_row_start(line))):
            yield " ".join(parts)
            parts, have = [], 0
        parts.append(line.strip())
        have += pipes
    if parts:
        yield " ".join(parts)


def _cells(row: str) -> list[str]:
    """Non-empty cells of a pipe row (empty cells carry no information once collapsed)."""
    return [c.strip() for c in row.split("|") if c.strip()]


def _pipe_row_start(line: str) -> bool:
    """True if a table line plainly begins a row: name or port followed by a port or transport."""
    cells = _cells(line)
    if len(cells) < 2:
        return False
    first, second = cells[0], cells[1]
    if _port(first) is not None:
        return True
    return bool(_NAME_RE.fullmatch(first)) and (_port(second) is not None or second.lower() in TRANSPORTS)


def _plain_rows(lines: list[str], have_header: bool) -> Iterator[str]:
    """Logical rows of collapsed plain text: lines that do not start a row continue the previous one."""
    parts: list[str] = []  # joined once per row: linear however many continuation lines follow
    started = have_header
    for line in lines:
        if _is_contacts_start(line):
            break
        if not line.strip() or _HEADER_RE.match(line):
            continue
        kind = _plain_row_start(line)
        if not started:
            if kind != "strong":
                continue  # still in the header block of a header-less excerpt
            started = True
        if kind and parts:
            yield " ".join(parts)
            parts = []
        if kind or parts:
            parts.append(line.strip())
    if parts:
        yield " ".join(parts)


def _plain_row_start(line: str) -> str | None:
    """'strong' or 'weak' if a plain-text line starts a registry row, None for a continuation line.

    Indented lines and lines opening with a bracket or a date continue a wrapped row.  A
    service-name-only row ("x-on x-on services ...") has no port to anchor it, so its first
    word must look like a service name and not like prose ("Defined TXT keys: ...").
    """
    if line[:1].isspace() or not line.strip():
        return None
    toks = line.split(None, 3)
    first = toks[0]
    if _port(first) is not None:
        return "strong"
    if not _NAME_RE.fullmatch(first) or _DATE_RE.fullmatch(first) or len(toks) < 2:
        return None
    if _port(toks[1]) is not None or toks[1] in TRANSPORTS:
        return "strong"
    if re.fullmatch(r"[A-Z][a-z]*|[A-Z]+", first):
        return None  # "Defined", "This", "IANA": prose, not a service name
    return "weak"


# --------------------------------------------------------------------------- field recovery


def _port(tok: str) -> tuple[int, int] | None:
    """(low, high) if ``tok`` is a port or port range (the shared ``port_span``), else None."""
    try:
        return port_span(tok) if tok.strip() else None
    except BadRecord:
        return None


def _port_field(tok: str) -> tuple[int, int] | None:
    """The port of a token where a row's port goes: None when it is no port-like token at all.

    A token of digits and dashes only is a port, and one that is not a valid port or range
    (``80-90-100``, ``70000``, ``90-80``) makes the row malformed (``BadRecord``): it cannot be a
    service name, which RFC 6335 requires to hold a letter.
    """
    if _PORTISH_RE.fullmatch(tok):
        return port_span(tok)
    return _port(tok)


def _bracket_ids(tok: str) -> list[str] | None:
    """Contents of the bracket groups if ``tok`` consists only of bracket groups."""
    if not _BRACKETS_RE.fullmatch(tok.strip()):
        return None
    return _GROUP_RE.findall(tok)


def _is_ref(tok: str) -> bool:
    """True if a bracket token names a reference by its shape (RFC, draft, URL, standard)."""
    ids = _bracket_ids(tok)
    return ids is not None and any(_REF_ID_RE.match(i) for i in ids)


def _is_person(tok: str) -> bool:
    """True if a bracket token is one or more person/organisation ids ("[IESG]", "[A_B][C_D]")."""
    ids = _bracket_ids(tok)
    return ids is not None and all(_PERSON_ID_RE.fullmatch(i) for i in ids) and not _is_ref(tok)


def _fill_tail(f: _Fields, cells: list[str], phase: int = 0) -> None:
    """Assign the cells after the description to people, dates, references, code, unauthorized, notes.

    Each cell goes to the first column at or after the current one whose shape it has, so
    collapsed (missing) columns are simply skipped.
    """
    # phase: 0 people, 1 dates, 2 references, 3 service code, 4 unauthorized, 5 notes
    for cell in cells:
        if phase < 5:
            if phase == 0 and len(f.people) < 2 and _is_person(cell):
                f.people.append(_clean(cell))
                continue
            if phase <= 1 and len(f.dates) < 2 and _DATE_RE.fullmatch(cell):
                f.dates.append(cell)
                phase = 1
                continue
            if phase <= 2 and _bracket_ids(cell) is not None:
                f.references.append(_clean(cell))
                phase = 2
                continue
            if phase <= 3 and _DIGITS_RE.fullmatch(cell):
                f.service_code = cell
                phase = 4
                continue
            if phase <= 4 and _UNAUTH_START_RE.match(cell):
                f.unauthorized.append(cell)
                phase = 5
                continue
        f.notes.append(cell)
        phase = 5


def _parse_pipe_row(row: str) -> Record | None:
    """One logical pipe-table row to a Record, inferring each cell's column from its content."""
    cells = _cells(row)
    if not cells:
        return None
    f = _Fields()
    i = 0
    port = _port_field(cells[0])
    if port is None:
        if not _NAME_RE.fullmatch(cells[0]) or len(cells) < 2:
            return None
        f.name = cells[0]
        i = 1
        port = _port_field(cells[i]) if i < len(cells) else None
    if port is not None:
        f.port_low, f.port_high = port
        i += 1
    if i < len(cells) and cells[i].lower() in TRANSPORTS:
        f.transport = cells[i].lower()
        i += 1
    if i < len(cells) and not (
        _bracket_ids(cells[i]) is not None or _DATE_RE.fullmatch(cells[i]) or _NOTES_START_RE.match(cells[i])
    ):
        f.description = cells[i]
        i += 1
    _fill_tail(f, cells[i:])
    return f.record()


def _parse_plain_row(row: str) -> Record | None:
    """One logical plain-text row to a Record: fixed leading tokens, then the description, then the tail."""
    f = _Fields()
    rest = row.strip()
    tok, _, after = rest.partition(" ")
    port = _port_field(tok)
    if port is None:
        if not _NAME_RE.fullmatch(tok):
            return None
        f.name, rest = tok, after.strip()
        tok, _, after = rest.partition(" ")
        port = _port_field(tok)
    if port is not None:
        f.port_low, f.port_high = port
        rest = after.strip()
        tok, _, after = rest.partition(" ")
    if tok in TRANSPORTS:
        f.transport = tok
        rest = after.strip()
    if f.port_low is None and f.name is None:
        return None

    start, people = _tail_anchor(rest)
    if f.name is None:
        m = _PLACEHOLDER_RE.match(rest)
        if m and m.end() < start:  # "Reserved this port was ...": the rest is notes
            start, people = m.end(), []
    description, tail = rest[:start].strip(), rest[start:].strip()
    f.description = description
    if not tail:
        # No bracket or date anchors the tail: split off unauthorized use / notes by their wording.
        f.description, tail_text = _split_free_text(description, unnamed=f.name is None)
        _fill_free_text(f, tail_text)
        return f.record()
    f.people = people
    tail = tail[_people_span(tail, len(people)) :].strip() if people else tail
    tokens, text = _tail_tokens(tail)
    _fill_tail(f, tokens, phase=1 if people else 0)
    _fill_free_text(f, text)
    return f.record()


def _split_free_text(text: str, unnamed: bool) -> tuple[str, str]:
    """Split a description running straight into unauthorized-use or notes text (plain text only)."""
    cut = len(text)
    for rx in (_UNAUTH_IN_TEXT_RE, _NOTES_START_RE):
        m = rx.search(text)
        if m:
            cut = min(cut, m.start())
    if unnamed:
        m = _PLACEHOLDER_RE.match(text)
        if m:
            cut = min(cut, m.end())
    return text[:cut].strip(), text[cut:].strip()


def _fill_free_text(f: _Fields, text: str) -> None:
    """Put trailing free text into unauthorized (if worded so) and notes."""
    if not text:
        return
    if _UNAUTH_START_RE.match(text):
        m = _NOTES_START_RE.search(text, 1)
        cut = m.start() if m else len(text)
        f.unauthorized.append(text[:cut].strip())
        text = text[cut:].strip()
    if text:
        f.notes.append(text)


def _bracket_runs(s: str) -> Iterator[tuple[int, list[re.Match[str]]]]:
    """Runs of whitespace-separated bracket tokens in ``s``: (start offset, token matches)."""
    pos = 0
    while True:
        m = _BRACKETS_RE.search(s, pos)
        if not m:
            return
        pos = m.end()
        if (m.start() and not s[m.start() - 1].isspace()) or (m.end() < len(s) and not s[m.end()].isspace()):
            continue  # "[RFC9148]." or "x[y]": part of prose, not a field
        run = [m]
        while True:
            n = _WS_RE.match(s, run[-1].end())
            nxt = _BRACKETS_RE.match(s, n.end()) if n else None
            if not nxt or (nxt.end() < len(s) and not s[nxt.end()].isspace()):
                break
            run.append(nxt)
        pos = run[-1].end()
        yield m.start(), run


def _tail_anchor(rest: str) -> tuple[int, list[str]]:
    """Where the description ends in a plain row, and the assignee/contact found there.

    The tail starts at the earliest of: a run of bracket tokens shaped like
    ``person{0,2} reference*`` (extra leading person-like groups such as "[Control]" stay in
    the description), or a lone date.  A run holding a single person only counts when a
    date follows it, so "Message Processing Module [recv]" keeps its bracket.
    """
    best = len(rest)
    people: list[str] = []
    for start, run in _bracket_runs(rest):
        if start >= best:
            break
        toks = [m.group(0) for m in run]
        nxt = _WORD_RE.search(rest, run[-1].end())
        next_tok = nxt.group(0) if nxt else ""
        n = len(toks)
        person = [_is_person(t) for t in toks]
        refs_from = [True] * (n + 1)  # refs_from[s]: every token from s on is a reference (one pass, not n)
        for i in range(n - 1, -1, -1):
            refs_from[i] = refs_from[i + 1] and _is_ref(toks[i])
        for s in range(n):
            persons = 0
            while s + persons < n and persons < 2 and person[s + persons]:
                persons += 1
            if s + persons < n and person[s + persons]:
                continue  # a third person id: the first one belongs to the description
            if not persons and not refs_from[s]:
                continue  # "Unassigned [was netstat]": prose in brackets, not references
            if persons == 1 and s + 1 == n and not _DATE_RE.fullmatch(next_tok):
                continue
            best = run[s].start()
            people = [_clean(t) for t in toks[s : s + persons]]
            break
        if people or best < len(rest):
            break
    m = _LONE_DATE_RE.search(rest)
    if m and m.start() < best:
        return m.start(), []
    return best, people


def _people_span(tail: str, count: int) -> int:
    """Offset just past the first ``count`` bracket tokens of ``tail``."""
    end = 0
    for _ in range(count):
        m = _BRACKETS_RE.search(tail, end)
        if not m:
            break
        end = m.end()
    return end


def _tail_tokens(tail: str) -> tuple[list[str], str]:
    """Split a plain-text tail into field tokens (brackets, dates, a service code) and the free text after."""
    out: list[str] = []
    pos = 0
    while pos < len(tail):
        while pos < len(tail) and tail[pos].isspace():
            pos += 1
        if pos >= len(tail):
            break
        m = _BRACKETS_RE.match(tail, pos)
        if m and (m.end() == len(tail) or tail[m.end()].isspace()):
            out.append(m.group(0))
            pos = m.end()
            continue
        word = _WORD_RE.match(tail, pos).group(0)
        if _DATE_RE.fullmatch(word) or _DIGITS_RE.fullmatch(word):
            out.append(word)
            pos += len(word)
            continue
        return out, tail[pos:].strip()
    return out, ""
