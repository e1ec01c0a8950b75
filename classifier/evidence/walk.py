"""Structural checks that walk a payload: lock-step over candidate rows, a bounded number of steps.

Each function takes absolute offsets into a chunk's bytes (``start``) and the bytes
available there (``length``), and advances every row's cursor together; rows that finish
or fail leave the active set, so a step costs only what is still walking.  No Python loop
runs over rows, only over steps (at most ``MAX_LABELS`` / ``MAX_EXTENSIONS``).
"""

from __future__ import annotations

import numpy as np

MAX_LABELS = 128
"""DNS: labels walked per name (a 255-byte name has at most 127)."""
MAX_EXTENSIONS = 64
"""TLS: ClientHello extensions stepped over looking for server_name."""
_DNS_CLASSES = np.zeros(1 << 15, dtype=bool)
_DNS_CLASSES[[1, 3, 4, 254, 255]] = True  # IN, CH, HS, NONE, ANY (top bit: mDNS unicast-response)


def _u8(data: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Bytes at ``pos`` (clamped into the buffer; callers bound-check) as int64."""
    # minimum/maximum: np.clip's Python wrapper costs more than the gather on these small arrays
    return data[np.minimum(np.maximum(pos, 0), data.shape[0] - 1)].astype(np.int64)


def _u16(data: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Big-endian 16-bit values at ``pos``."""
    return (_u8(data, pos) << 8) | _u8(data, pos + 1)


def dns_first_name(data: np.ndarray, start: np.ndarray, length: np.ndarray, answer: bool = False) -> np.ndarray:
    """Mask: the DNS message at ``start`` has a well-formed first name and the fields after it.

    The first name of a message (first question, or first answer when ``answer``) cannot be
    compressed; it must end in the root label within ``length`` bytes and 255 bytes of name,
    followed by a non-zero type and a known class (and, for an answer, TTL and an rdata
    that fits).

    >>> import struct
    >>> msg = struct.pack("!6H", 0x1234, 0x0100, 1, 0, 0, 0) + b"\\x07example\\x03com\\x00" + struct.pack("!2H", 1, 1)
    >>> buf = np.frombuffer(msg, np.uint8)
    >>> dns_first_name(buf, np.array([0]), np.array([len(msg)])).tolist()
    [True]
    """
    m = start.shape[0]
    ok = np.zeros(m, dtype=bool)
    if m == 0:
        return ok
    start = start.astype(np.int64)
    end = start + length.astype(np.int64)
    pos = start + 12
    alive = np.arange(m)
    done = np.zeros(0, dtype=np.int64)
    for _ in range(MAX_LABELS):
        if not alive.size:
            break
        p = pos[alive]
        e = end[alive]
        inb = p < e
        n = _u8(data, p)
        term = inb & (n == 0)
        done = np.concatenate([done, alive[term]])
        nxt = p + 1 + n
        go = inb & (n >= 1) & (n <= 63) & (nxt < e) & (nxt - start[alive] - 12 <= 255)
        pos[alive[go]] = nxt[go]
        alive = alive[go]
    if not done.size:
        return ok
    q = pos[done] + 1  # after the root label
    e = end[done]
    need = 10 if answer else 4
    good = q + need <= e
    good &= _u16(data, q) != 0
    good &= _DNS_CLASSES[_u16(data, q + 2) & 0x7FFF]
    if answer:
        good &= q + 10 + _u16(data, q + 8) <= e
    ok[done[good]] = True
    return ok


def contains_any(
    data: np.ndarray, start: np.ndarray, length: np.ndarray, keywords: tuple[bytes, ...], window: int, fold: bool = True
) -> np.ndarray:
    """Mask: one of ``keywords`` (ASCII, any case unless not ``fold``) occurs within the first ``window`` bytes.

    Each row of the lower-cased window is one fixed-width string and the search is NumPy's
    string ``find`` ufunc over all rows (a C loop, no Python per packet); an occurrence must end
    within the payload.  Trailing NUL bytes of a window are not part of its string: a keyword
    must not end in one.

    >>> buf = np.frombuffer(b"220 mx ESMTP ready", np.uint8)
    >>> contains_any(buf, np.array([0]), np.array([18]), (b"smtp",), 64).tolist()
    [True]
    """
    from .match import prefix_matrix

    m = start.shape[0]
    ok = np.zeros(m, dtype=bool)
    if m == 0:
        return ok
    w = int(min(window, max(int(length.max()), 1)))
    mat = prefix_matrix(data, start.astype(np.int64), w)
    if fold:
        mat |= ((mat - np.uint8(0x41)) < 26).view(np.uint8) << 5  # A-Z -> a-z (uint8 wraps below 'A')
    rows = mat.view(f"S{w}").reshape(m)
    for kw in keywords:
        at = _find(rows, kw.lower() if fold else kw)  # the first occurrence: past the payload's end, none before it
        ok |= (at >= 0) & (at + len(kw) <= length)
    return ok


_find = getattr(np, "strings", np.char).find
"""``numpy.strings.find`` (NumPy 2), else ``numpy.char.find``."""


def tls_server_name(
    data: np.ndarray, start: np.ndarray, length: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """The server_name (SNI) of TLS ClientHello records at ``start``: (found mask, names as ``S{width}``).

    Walks session id, cipher suites and compression methods, then steps over extensions
    (at most ``MAX_EXTENSIONS``) to the server_name one; names longer than ``width`` are cut.

    >>> import struct
    >>> sni = b"\\x00\\x00" + struct.pack("!HHBH", 16, 14, 0, 11) + b"example.com"
    >>> body = b"\\x03\\x03" + bytes(32) + b"\\x00" + b"\\x00\\x02\\x13\\x01" + b"\\x01\\x00"
    >>> body += struct.pack("!H", len(sni)) + sni
    >>> rec = b"\\x16\\x03\\x01" + struct.pack("!H", len(body) + 4) + b"\\x01" + len(body).to_bytes(3, "big") + body
    >>> found, names = tls_server_name(np.frombuffer(rec, np.uint8), np.array([0]), np.array([len(rec)]), 64)
    >>> found.tolist(), names.tolist()
    ([True], [b'example.com'])
    """
    m = start.shape[0]
    names = np.zeros(m, dtype=f"S{width}")
    found = np.zeros(m, dtype=bool)
    if m == 0:
        return found, names
    start = start.astype(np.int64)
    end = start + length.astype(np.int64)
    p = start + 43  # record header 5, handshake header 4, version 2, random 32
    ok = p < end
    sid = _u8(data, p)
    ok &= sid <= 32
    p = p + 1 + sid
    ok &= p + 2 <= end
    p = p + 2 + _u16(data, p)
    ok &= p < end
    p = p + 1 + _u8(data, p)
    ok &= p + 2 <= end
    ext_end = np.minimum(p + 2 + _u16(data, p), end)
    pos = p + 2
    at = np.full(m, -1, dtype=np.int64)
    alive = np.flatnonzero(ok)
    for _ in range(MAX_EXTENSIONS):
        if not alive.size:
            break
        q = pos[alive]
        inb = q + 4 <= ext_end[alive]
        typ = _u16(data, q)
        hit = inb & (typ == 0)
        at[alive[hit]] = q[hit] + 4
        go = inb & (typ != 0)
        pos[alive[go]] = q[go] + 4 + _u16(data, q[go] + 2)
        alive = alive[go]
    return server_name_at(data, at, end, width)


def server_name_at(
    data: np.ndarray, at: np.ndarray, end: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """(found mask, names as ``S{width}``) of server_name extension bodies at ``at`` (-1: none), ending by ``end``."""
    m = at.shape[0]
    names = np.zeros(m, dtype=f"S{width}")
    found = np.zeros(m, dtype=bool)
    rows = np.flatnonzero(at >= 0)
    if not rows.size:
        return found, names
    q = at[rows]
    nlen = _u16(data, q + 3)
    good = (_u8(data, q + 2) == 0) & (nlen > 0) & (q + 5 + nlen <= end[rows])
    rows, q, nlen = rows[good], q[good], nlen[good]
    if rows.size:
        from .match import prefix_matrix

        mat = prefix_matrix(data, q + 5, width).copy()
        mat[np.arange(width)[None, :] >= nlen[:, None]] = 0
        names[rows] = mat.view(f"S{width}").reshape(-1)
        found[rows] = True
    return found, names
