"""What a flow said: fields taken from the payload a signature just recognised, vectorized over its rows.

Each extractor reads a window of the matched packets (the prefix gather of ``match``), finds
delimiters with NumPy's string ``find`` (a C loop over rows) and cuts fixed-width fields with
one gather each; the fields side by side (``FIELDS``: name and width) are one bytes value per
packet, kept by the flow stage with the direction's evidence packet (``FlowTable.said_*``) and
split again by ``fields_of`` when reported.  No Python loop over packets.
"""

from __future__ import annotations

import numpy as np

FIELDS: dict[str, tuple[tuple[str, int], ...]] = {
    "http": (("http.request.method", 12), ("url.original", 120), ("url.domain", 64), ("user_agent.original", 112)),
    "dns": (("dns.question.name", 96), ("dns.question.type", 5)),
    "ssh": (("software", 120),),
    "greeting": (("greeting", 120),),
    "tls": (("ja4", 36), ("alpn", 64)),
}
"""Extractor -> its fields (ECS names where ECS has them) and their widths, in order."""
EXTRACTOR: dict[str, str] = {
    "http-request": "http",
    "elasticsearch-request": "http",
    "http-ntlm-auth": "http",
    "dns": "dns",
    "dns-tcp": "dns",
    "dnscrypt-cert-query": "dns",
    "dnscrypt-cert-query-tcp": "dns",
    "ssh-banner": "ssh",
    "tls-client-hello": "tls",
    "smtp-greeting": "greeting",
    "ftp-greeting": "greeting",
    "pop3-greeting": "greeting",
    "imap-greeting": "greeting",
    "nntp-greeting": "greeting",
}
"""Signature name -> extractor."""
_find = getattr(np, "strings", np.char).find
_WINDOW = 384
_FIELD = {"method": 12, "target": 120, "host": 64, "agent": 112, "name": 96, "line": 120}



def _window(data: np.ndarray, start: np.ndarray, length: np.ndarray, width: int) -> tuple[np.ndarray, int]:
    """(rows x w) bytes from each payload's start, and w; bytes past a payload's end are the next
    packet's: callers clamp what they find to ``length`` (``_within``)."""
    from .match import prefix_matrix

    w = int(min(width, max(int(length.max()), 1)))
    return prefix_matrix(data, start.astype(np.int64), w), w


def _within(at: np.ndarray, length: np.ndarray, w: int) -> np.ndarray:
    """Positions found, as ``w`` (not found) where they lie past the payload."""
    return np.where((at < 0) | (at >= length), w, at)


def span(data: np.ndarray, base: np.ndarray, begin: np.ndarray, end: np.ndarray, width: int) -> np.ndarray:
    """``data[base+begin : base+end]`` of each row as a (rows, width) byte matrix, zero-padded (cut at
    width; empty where begin < 0); ``fields_of`` shows control bytes as ``?``.

    >>> d = np.frombuffer(b"GET /a HTTP/1.1", np.uint8)
    >>> bytes(span(d, np.array([0]), np.array([4]), np.array([6]), 4)[0])
    b'/a\\x00\\x00'
    """
    from .match import prefix_matrix

    raw = prefix_matrix(data, (base + np.maximum(begin, 0)).astype(np.int64), width)
    return raw * (np.arange(width)[None, :] < np.where(begin >= 0, end - begin, 0)[:, None])


def _crlf(rows: np.ndarray, begin: np.ndarray, w: int) -> np.ndarray:
    """Position of the first CRLF at or after ``begin`` (w if none)."""
    at = _find(rows, b"\r\n", begin)
    return np.where(at < 0, w, at)


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
        nxt = np.minimum(np.maximum(begin, 0), w - 1)
        sp = low.view(np.uint8).reshape(low.shape[0], -1)[np.arange(low.shape[0]), nxt] == 0x20
        begin = np.where((begin >= 0) & sp, begin + 1, begin)
    end = np.where(begin < 0, -1, _crlf(rows, np.maximum(begin, 0), w))
    return begin, end


def _join(fields: list[np.ndarray]) -> np.ndarray:
    """Field matrices side by side, one bytes value per row."""
    mat = np.ascontiguousarray(np.concatenate(fields, axis=1))
    return mat.view(f"S{mat.shape[1]}").reshape(mat.shape[0])


def http_request(data: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Method, request target, Host (its name part) and User-Agent of HTTP requests."""
    mat, w = _window(data, start, length, _WINDOW)
    n = mat.shape[0]
    ln = np.minimum(length.astype(np.int64), w)
    rows = mat.view(f"S{w}").reshape(n)
    low = (mat | (((mat - np.uint8(0x41)) < 26).view(np.uint8) << 5)).view(f"S{w}").reshape(n)
    head = mat[:, :16] == 0x20  # the method ends within 16 bytes (the signature matched "METHOD ")
    s1 = np.where(head.any(axis=1), head.argmax(axis=1), 0)
    s2 = _within(_find(rows, b" ", s1 + 1, s1 + 2 + _FIELD["target"]), ln, w)
    s2 = np.minimum(s2, _within(_find(rows, b"\r\n", s1 + 1, s1 + 2 + _FIELD["target"]), ln, w))
    zero = np.zeros(n, dtype=np.int64)
    method = span(data, start, zero, s1, _FIELD["method"])
    target = span(data, start, s1 + 1, np.minimum(s2, ln), _FIELD["target"])
    fields = [method, target]
    for name, width in ((b"host:", _FIELD["host"]), (b"user-agent:", _FIELD["agent"])):
        at = _within(_find(low, b"\r\n" + name), ln, w)
        begin = at + 2 + len(name)
        begin += mat[np.arange(n), np.minimum(begin, w - 1)] == 0x20  # one optional space
        end = np.minimum(_within(_find(rows, b"\r\n", np.minimum(begin, w)), ln, w), ln)
        if name == b"host:":  # host:port -> host (not an IPv6 literal)
            colon = _within(_find(rows, b":", np.minimum(begin, w), end), ln, w)
            bracket = mat[np.arange(n), np.minimum(begin, w - 1)] == ord("[")
            end = np.where((colon < end) & ~bracket, colon, end)
        begin = np.where(at >= w, -1, begin)
        value = span(data, start, begin, end, width)
        fields.append(value | (((value - np.uint8(0x41)) < 26).view(np.uint8) << 5) if name == b"host:" else value)
    return _join(fields)


def _decimal5(v: np.ndarray) -> np.ndarray:
    """Values 0..99999 as left-aligned decimal digits, NUL padded: ``v.astype("S5")`` as a (rows, 5) byte matrix,
    by arithmetic (the astype formats each value in Python).

    >>> _decimal5(np.array([0, 28, 65535])).view("S5").ravel().tolist()
    [b'0', b'28', b'65535']
    """
    v = v.astype(np.int64)
    k = 1 + (v >= 10) + (v >= 100) + (v >= 1000) + (v >= 10000)  # digits
    out = np.zeros((v.shape[0], 5), dtype=np.uint8)
    for j in range(5):
        p = np.maximum(k - 1 - j, 0)
        out[:, j] = np.where(j < k, (v // 10**p) % 10 + 0x30, 0)
    return out


def dns_question(data: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """First question's name (dotted, lower case) and type number of DNS messages at ``start``.

    One gather takes the name's bytes; a lock-step walk over the label lengths (``walk.dns_first_name``
    has checked them: one small step per label, no per-packet loop) marks where each label starts,
    and those length bytes become the dots.
    """
    from .match import prefix_matrix
    from .walk import MAX_LABELS, _u8, _u16

    m = start.shape[0]
    width = _FIELD["name"]
    start = start.astype(np.int64)
    win = prefix_matrix(data, start + 12, width + 1)  # the first length byte, then up to ``width`` name bytes
    dots = np.zeros((m, width + 1), dtype=bool)
    rel = np.zeros(m, dtype=np.int64)  # window position of each row's current length byte
    cut = np.zeros(m, dtype=np.int64)  # ... and where its name ends (its last label's end)
    pos = start + 12
    end = start + length.astype(np.int64)
    alive = np.arange(m)
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
        r = rel[alive]
        inside = r <= width
        dots[alive[inside], r[inside]] = True
        rel[alive] = r + 1 + n
        cut[alive] = r + 1 + n
        pos[alive] = pos[alive] + 1 + n
    out = win[:, 1:]
    out[dots[:, 1:]] = ord(".")
    out[np.arange(width)[None, :] >= (cut - 1)[:, None]] = 0
    out |= ((out - np.uint8(0x41)) < 26).view(np.uint8) << 5
    out[(out > 0) & ((out < 0x20) | (out > 0x7E))] = 0x3F
    qtype = np.where(pos + 2 <= end, _u16(data, pos), 0)
    qt = _decimal5(qtype)
    return _join([out, qt])


def ssh_software(data: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """The software-and-comments part of an SSH identification string (after ``SSH-2.0-``)."""
    mat, w = _window(data, start, length, 255)
    rows = mat.view(f"S{w}").reshape(-1)
    dash = _find(rows, b"-", 4)  # SSH-2.0- / SSH-1.99-
    begin = np.where(dash < 0, w, dash + 1)
    return _join([span(data, start, begin, _line_end(rows, begin, w), _FIELD["line"])])


def greeting(data: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """A server greeting's first line after its code or status (``220 ``, ``+OK ``, ``* OK ``)."""
    mat, w = _window(data, start, length, 255)
    rows = mat.view(f"S{w}").reshape(-1)
    sp = _find(rows, b" ")
    begin = np.where(sp < 0, w, sp + 1)
    star = mat[:, 0] == ord("*")  # IMAP: "* OK " -> after the second word
    sp2 = _find(rows, b" ", np.minimum(begin, w))
    begin = np.where(star & (sp2 >= 0), sp2 + 1, begin)
    return _join([span(data, start, begin, _line_end(rows, begin, w), _FIELD["line"])])


def tls_client(data: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """JA4 fingerprint and offered ALPN list of TLS ClientHellos (``classifier.evidence.ja4``)."""
    return tls_client_and_name(data, start, length, 1)[0]


def tls_client_and_name(
    data: np.ndarray, start: np.ndarray, length: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``tls_client`` and the server names (found mask, ``S{width}``) from one walk of each ClientHello."""
    from .ja4 import ALPN_WIDTH, client_hello_and_name

    ja4, alpn, found, names = client_hello_and_name(data, start, length, width)
    m = start.shape[0]
    return _join([ja4.view(np.uint8).reshape(m, 36), alpn.view(np.uint8).reshape(m, ALPN_WIDTH)]), found, names


EXTRACT = {"http": http_request, "dns": dns_question, "ssh": ssh_software, "greeting": greeting, "tls": tls_client}
"""Extractor -> function(data, payload starts, lengths) -> one bytes value (its ``FIELDS``) per row."""


def fields_of(kind: str, said: bytes) -> dict[str, str]:
    """Named fields of one stored value (empty fields left out).

    >>> fields_of("dns", b"example.org".ljust(96, b"\\0") + b"1")
    {'dns.question.name': 'example.org', 'dns.question.type': 'A'}
    """
    out = {}
    at = 0
    for name, width in FIELDS[kind]:
        raw = said[at : at + width].rstrip(b"\0")
        at += width
        if not raw:
            continue
        text = raw.translate(_CONTROL).decode("utf-8", errors="replace")
        if name == "dns.question.type":
            text = QTYPES.get(int(text), text) if text.isdigit() else text
        out[name] = text
    return out


_CONTROL = bytes(0x3F if c < 0x20 or c == 0x7F else c for c in range(256))
"""Control bytes inside a field (a NUL of a short field is padding, never inside one) -> '?'."""
QTYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA", 33: "SRV",
          35: "NAPTR", 43: "DS", 46: "RRSIG", 48: "DNSKEY", 64: "SVCB", 65: "HTTPS", 255: "ANY", 32: "NB",
          257: "CAA"}  # fmt: skip
"""DNS type numbers -> mnemonics (RFC 1035 and successors); others stay numbers."""
