"""What a flow said: fields taken from the payload a signature just recognised, vectorized over its rows.

Each extractor reads a window of the matched packets (the prefix gather of ``match``), finds
delimiters with NumPy's string ``find`` (a C loop over rows) and cuts fixed-width fields with
one gather each; fields are joined with ``SEP`` into one ``S{SAID_BYTES}`` value per packet,
kept by the flow stage with the direction's evidence packet (``FlowTable.said_*``) and named
by ``FIELDS`` of the signature's extractor when reported.  No Python loop over packets.
"""

from __future__ import annotations

import numpy as np

SAID_BYTES = 320
"""Width of one packet's extracted fields (joined), longer values are cut."""
SEP = b"\x1f"
"""Separator between fields (a control character no extracted field keeps)."""
FIELDS: dict[str, tuple[str, ...]] = {
    "http": ("http.request.method", "url.original", "url.domain", "user_agent.original"),
    "dns": ("dns.question.name", "dns.question.type"),
    "ssh": ("software",),
    "greeting": ("greeting",),
}
"""Extractor -> the names of its fields, in order (ECS names where ECS has them)."""
EXTRACTOR: dict[str, str] = {
    "http-request": "http",
    "elasticsearch-request": "http",
    "http-ntlm-auth": "http",
    "dns": "dns",
    "dns-tcp": "dns",
    "dnscrypt-cert-query": "dns",
    "dnscrypt-cert-query-tcp": "dns",
    "ssh-banner": "ssh",
    "smtp-greeting": "greeting",
    "ftp-greeting": "greeting",
    "pop3-greeting": "greeting",
    "imap-greeting": "greeting",
    "nntp-greeting": "greeting",
}
"""Signature name -> extractor."""
_find = getattr(np, "strings", np.char).find
_WINDOW = 512
_FIELD = {"method": 12, "target": 120, "host": 64, "agent": 112, "name": 96, "line": 120}


def _window(data: np.ndarray, start: np.ndarray, length: np.ndarray, width: int) -> tuple[np.ndarray, int]:
    """(rows x w) bytes of each payload, zero past its end, and w."""
    from .match import prefix_matrix

    w = int(min(width, max(int(length.max()), 1)))
    mat = prefix_matrix(data, start.astype(np.int64), w).copy()
    mat[np.arange(w)[None, :] >= length[:, None]] = 0
    return mat, w


def span(mat: np.ndarray, begin: np.ndarray, end: np.ndarray, width: int) -> np.ndarray:
    """``mat[i, begin[i]:end[i]]`` of each row as ``S{width}`` (cut at width; empty where end <= begin).

    >>> m = np.frombuffer(b"GET /a HTTP/1.1", np.uint8).reshape(1, -1)
    >>> span(m, np.array([4]), np.array([6]), 8).tolist()
    [b'/a']
    """
    n, w = mat.shape
    cols = begin[:, None] + np.arange(width)[None, :]
    ok = (cols < end[:, None]) & (cols < w) & (begin[:, None] >= 0)
    out = mat[np.arange(n)[:, None], np.clip(cols, 0, w - 1)]
    out[~ok] = 0
    out[(out < 0x20) | (out == 0x7F)] = 0x3F  # control bytes inside a field: '?'
    out[~ok] = 0
    return np.ascontiguousarray(out).view(f"S{width}").reshape(n)


def _line_end(rows: np.ndarray, begin: np.ndarray, w: int) -> np.ndarray:
    """Position of the first CR or LF at or after ``begin`` (w if none)."""
    cr = _find(rows, b"\r", begin)
    lf = _find(rows, b"\n", begin)
    cr = np.where(cr < 0, w, cr)
    lf = np.where(lf < 0, w, lf)
    return np.minimum(cr, lf)


def _header(rows: np.ndarray, low: np.ndarray, name: bytes, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(value start, value end) of an HTTP header (``name`` lower case with the colon); start -1 if absent."""
    at = _find(low, b"\r\n" + name)
    begin = np.where(at < 0, -1, at + 2 + len(name))
    for _ in range(2):  # optional whitespace
        nxt = np.clip(begin, 0, w - 1)
        sp = low.view(np.uint8).reshape(low.shape[0], -1)[np.arange(low.shape[0]), nxt] == 0x20
        begin = np.where((begin >= 0) & sp, begin + 1, begin)
    end = np.where(begin < 0, -1, _line_end(rows, np.maximum(begin, 0), w))
    return begin, end


def _join(fields: list[np.ndarray]) -> np.ndarray:
    """Fields joined with ``SEP`` as ``S{SAID_BYTES}``."""
    add = getattr(np, "strings", np.char).add
    out = fields[0]
    for f in fields[1:]:
        out = add(add(out, SEP), f)
    return out.astype(f"S{SAID_BYTES}")


def http_request(data: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Method, request target, Host (its name part) and User-Agent of HTTP requests."""
    mat, w = _window(data, start, length, _WINDOW)
    rows = mat.view(f"S{w}").reshape(-1)
    low_m = mat | (((mat - np.uint8(0x41)) < 26).view(np.uint8) << 5)
    low = low_m.view(f"S{w}").reshape(-1)
    s1 = _find(rows, b" ")
    s1 = np.where(s1 < 0, w, s1)
    s2 = _find(rows, b" ", np.minimum(s1 + 1, w))
    s2 = np.where(s2 < 0, _line_end(rows, np.minimum(s1 + 1, w), w), s2)
    zero = np.zeros(rows.size, dtype=np.int64)
    method = span(mat, zero, s1, _FIELD["method"])
    target = span(mat, s1 + 1, s2, _FIELD["target"])
    hb, he = _header(rows, low, b"host:", w)
    colon = _find(rows, b":", np.maximum(hb, 0), np.maximum(he, 0))  # host:port -> host (not an IPv6 literal)
    bracket = mat[np.arange(rows.size), np.clip(hb, 0, w - 1)] == ord("[")
    he = np.where((colon >= 0) & ~bracket, colon, he)
    host = span(low_m, hb, he, _FIELD["host"])
    ab, ae = _header(rows, low, b"user-agent:", w)
    agent = span(mat, ab, ae, _FIELD["agent"])
    return _join([method, target, host, agent])


def dns_question(data: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """First question's name (dotted, lower case) and type number of DNS messages at ``start``.

    Walks the labels in lock-step (``walk.dns_first_name`` has checked them), copying each into
    an output matrix.
    """
    from .walk import MAX_LABELS, _u8, _u16

    m = start.shape[0]
    width = _FIELD["name"]
    out = np.zeros((m, width), dtype=np.uint8)
    opos = np.zeros(m, dtype=np.int64)
    pos = start.astype(np.int64) + 12
    end = start.astype(np.int64) + length.astype(np.int64)
    alive = np.arange(m)
    ar = np.arange(64)
    for _ in range(MAX_LABELS):
        if not alive.size:
            break
        n = _u8(data, pos[alive])
        go = (n > 0) & (n <= 63) & (pos[alive] + 1 + n < end[alive])
        stop = alive[~go]
        pos[stop] = pos[stop] + 1  # past the root label
        alive, n = alive[go], n[go]
        if not alive.size:
            break
        src = pos[alive, None] + 1 + ar[None, :]
        dst = opos[alive, None] + (opos[alive, None] > 0) + ar[None, :]  # a dot before every label but the first
        ok = (ar[None, :] < n[:, None]) & (dst < width)
        chars = data[np.clip(src, 0, data.shape[0] - 1)]
        rr = np.broadcast_to(alive[:, None], src.shape)
        out[rr[ok], dst[ok]] = chars[ok]
        dot = opos[alive] > 0
        out[alive[dot], np.minimum(opos[alive[dot]], width - 1)] = ord(".")
        opos[alive] = np.minimum(opos[alive] + (opos[alive] > 0) + n, width)
        pos[alive] = pos[alive] + 1 + n
    out |= ((out - np.uint8(0x41)) < 26).view(np.uint8) << 5
    out[(out > 0) & ((out < 0x20) | (out > 0x7E))] = 0x3F
    qtype = np.where(pos + 2 <= end, _u16(data, pos), 0)
    names = out.view(f"S{width}").reshape(m)
    return _join([names, qtype.astype("S5")])


def ssh_software(data: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """The software-and-comments part of an SSH identification string (after ``SSH-2.0-``)."""
    mat, w = _window(data, start, length, 255)
    rows = mat.view(f"S{w}").reshape(-1)
    dash = _find(rows, b"-", 4)  # SSH-2.0- / SSH-1.99-
    begin = np.where(dash < 0, w, dash + 1)
    return _join([span(mat, begin, _line_end(rows, begin, w), _FIELD["line"])])


def greeting(data: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """A server greeting's first line after its code or status (``220 ``, ``+OK ``, ``* OK ``)."""
    mat, w = _window(data, start, length, 255)
    rows = mat.view(f"S{w}").reshape(-1)
    sp = _find(rows, b" ")
    begin = np.where(sp < 0, w, sp + 1)
    star = mat[:, 0] == ord("*")  # IMAP: "* OK " -> after the second word
    sp2 = _find(rows, b" ", np.minimum(begin, w))
    begin = np.where(star & (sp2 >= 0), sp2 + 1, begin)
    return _join([span(mat, begin, _line_end(rows, begin, w), _FIELD["line"])])


EXTRACT = {"http": http_request, "dns": dns_question, "ssh": ssh_software, "greeting": greeting}
"""Extractor -> function(data, payload starts, lengths) -> ``S{SAID_BYTES}`` per row."""


def fields_of(kind: str, said: bytes) -> dict[str, str]:
    """Named fields of one stored value (empty fields left out).

    >>> fields_of("dns", b"example.org\\x1f1")
    {'dns.question.name': 'example.org', 'dns.question.type': 'A'}
    """
    parts = said.split(SEP)
    out = {}
    for name, raw in zip(FIELDS[kind], parts, strict=False):
        if not raw:
            continue
        text = raw.decode("utf-8", errors="replace")
        if name == "dns.question.type":
            text = QTYPES.get(int(text), text) if text.isdigit() else text
        out[name] = text
    return out


QTYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA", 33: "SRV",
          35: "NAPTR", 43: "DS", 46: "RRSIG", 48: "DNSKEY", 64: "SVCB", 65: "HTTPS", 255: "ANY", 32: "NB",
          257: "CAA"}  # fmt: skip
"""DNS type numbers -> mnemonics (RFC 1035 and successors); others stay numbers."""
