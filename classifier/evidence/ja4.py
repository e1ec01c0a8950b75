"""TLS ClientHello fields: the offered ALPN list and the JA4 client fingerprint (FoxIO's JA4 spec).

``client_hello`` walks every ClientHello of a batch in lock-step (one step per extension, no
Python loop over packets) and builds JA4 ``a_b_c``: ``a`` = ``t`` (TLS over TCP), the version
(highest of supported_versions, else the hello's own), ``d``/``i`` (SNI present or not), cipher
and extension counts (two digits each, GREASE left out, at most 99), the first ALPN value's first
and last character (``00`` none; the hex digits when either byte is not alphanumeric); ``b`` = the
first 12 hex digits of SHA-256 over the sorted cipher list (4-digit hex, comma separated); ``c``
= the same over the sorted extensions without SNI and ALPN, ``_``, then the signature algorithms
in their order.  The hashes are computed once per distinct list (a handful per capture), in Python.
A ClientHello cut by the end of its packet (larger than one segment) gives no JA4: what the walk
did not see would make it wrong.
"""

from __future__ import annotations

import hashlib

import numpy as np

from .walk import _u8, _u16, server_name_at

MAX_EXTENSIONS = 64
"""Extensions stepped over per ClientHello."""
MAX_CIPHERS = 128
"""Cipher suites read per ClientHello (JA4 counts at most 99)."""
MAX_SIGALGS = 48
"""Signature algorithms read."""
ALPN_WIDTH = 64
"""Width of the offered ALPN list (comma separated, cut past this)."""
_VERSIONS = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3", 0x0002: "s2",
             0xFEFF: "d1", 0xFEFD: "d2", 0xFEFC: "d3"}  # fmt: skip
_NONE = 1 << 16
_VERSION_CODE = np.full(1 << 16, b"00", dtype="S2")
_VERSION_CODE[list(_VERSIONS)] = [v.encode() for v in _VERSIONS.values()]
"""16-bit version -> its two JA4 characters."""
"""Marker of an absent entry in a fixed-width list (sorts after every real 16-bit value)."""


def _be16(data: np.ndarray) -> np.ndarray:
    """Big-endian 16-bit value at every byte offset of ``data`` (a view: one gather reads a field)."""
    if data.shape[0] < 2:
        return np.zeros(0, dtype=">u2")
    return np.ndarray(shape=(data.shape[0] - 1,), dtype=">u2", buffer=data, offset=0, strides=(1,))


def _grease(v: np.ndarray) -> np.ndarray:
    """GREASE values (RFC 8701: 0x0a0a, 0x1a1a ... 0xfafa)."""
    return ((v & 0x0F0F) == 0x0A0A) & ((v >> 8) == (v & 0xFF))


def _u16_list(data: np.ndarray, start: np.ndarray, count: np.ndarray, width: int) -> np.ndarray:
    """(rows, w) int32 of the big-endian 16-bit values at ``start`` (``count`` each; _NONE past it); ``w`` is
    ``width`` or, narrower, the longest ``count`` (the columns past it would hold only _NONE)."""
    from .match import prefix_matrix

    width = max(1, min(width, int(count.max()) if count.size else 1))
    raw = prefix_matrix(data, np.maximum(start, 0).astype(np.int64), 2 * width)
    vals = (raw[:, 0::2].astype(np.int32) << 8) | raw[:, 1::2]
    vals[np.arange(width)[None, :] >= count[:, None]] = _NONE
    return vals


_WEIGHTS = np.random.default_rng(0x4A34).integers(1, 1 << 62, size=256, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
"""Odd 64-bit weights: a row's weighted sum (mod 2**64) keys its list (distinct lists collide with ~2**-64)."""
_SEEN: dict[tuple[int, int], str] = {}
"""(list key, sep_at) -> hash digits, across batches (a capture repeats a handful of fingerprints)."""
_SEEN_MAX = 1 << 14


def _hash12(lists: np.ndarray, sep_at: int | None = None) -> np.ndarray:
    """First 12 hex digits of SHA-256 of each row's values as 4-digit hex joined by commas (``_NONE`` left
    out); with ``sep_at``, columns from there are a second list joined after ``_`` (left out when empty).
    Rows are keyed by a weighted sum and each distinct list is hashed once (and remembered)."""
    out = np.empty(lists.shape[0], dtype=object)
    if not lists.shape[0]:
        return out
    with np.errstate(over="ignore"):
        keys = (lists.astype(np.uint64) * _WEIGHTS[: lists.shape[1]]).sum(axis=1, dtype=np.uint64)
    uniq, first, inv = np.unique(keys, return_index=True, return_inverse=True)
    done = []
    for key, at in zip(uniq.tolist(), first.tolist(), strict=True):
        got = _SEEN.get((key, sep_at or 0))
        if got is None:
            row = lists[at].tolist()
            first_list = row if sep_at is None else row[:sep_at]
            text = ",".join(f"{v:04x}" for v in first_list if v != _NONE)
            if sep_at is not None:
                second = ",".join(f"{v:04x}" for v in row[sep_at:] if v != _NONE)
                if second:
                    text += "_" + second
            got = hashlib.sha256(text.encode()).hexdigest()[:12] if text else "000000000000"
            if len(_SEEN) >= _SEEN_MAX:
                _SEEN.clear()
            _SEEN[(key, sep_at or 0)] = got
        done.append(got)
    return np.array(done, dtype=object)[inv.reshape(-1)]


def client_hello(data: np.ndarray, start: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(JA4 as ``S36``, b"" where the hello is cut or malformed; offered ALPN list as ``S{ALPN_WIDTH}``)
    of TLS ClientHello records at ``start`` (``length`` bytes of payload there)."""
    return client_hello_and_name(data, start, length)[:2]


def client_hello_and_name(
    data: np.ndarray, start: np.ndarray, length: np.ndarray, width: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``client_hello`` and ``walk.tls_server_name`` (with ``width``) from one walk over the extensions:
    (JA4, ALPN list, server name found, server names)."""
    m = start.shape[0]
    ja4 = np.zeros(m, dtype="S36")
    alpn_out = np.zeros(m, dtype=f"S{ALPN_WIDTH}")
    start = start.astype(np.int64)
    end = start + length.astype(np.int64)
    if not m:
        return (ja4, alpn_out) + server_name_at(data, np.zeros(0, dtype=np.int64), end, max(width, 1))
    whole = start + 9 + ((_u8(data, start + 6) << 16) | _u16(data, start + 7))  # handshake end
    ok = (_u8(data, start + 5) == 1) & (whole <= end)
    p = start + 43
    walkable = p < end  # what tls_server_name walks: the extensions cut at the payload's end
    sid = _u8(data, p)
    ok &= sid <= 32
    walkable &= sid <= 32
    p = p + 1 + sid
    walkable &= p + 2 <= end
    clen = _u16(data, p)
    cstart = p + 2
    p = cstart + clen
    walkable &= p < end
    p = p + 1 + _u8(data, p)
    walkable &= p + 2 <= end
    # a hello may end right after its compression methods (no extensions block: RFC 5246 7.4.1.2)
    ext_end = np.where(p == whole, p, p + 2 + _u16(data, p))
    ok &= (clen % 2 == 0) & (ext_end <= whole)  # (implies walkable or no extensions, and ext_end <= end)
    ciphers = _u16_list(data, cstart, np.where(ok, clen // 2, 0), MAX_CIPHERS)
    # extensions, in lock-step (a few gathers a step): their types and where each starts; then where SNI,
    # ALPN, supported_versions and signature_algorithms sit (the last of each type; SNI: also the first)
    types = np.full((m, MAX_EXTENSIONS), _NONE, dtype=np.int64)
    where_ = np.zeros((m, MAX_EXTENSIONS), dtype=np.int64)
    cut_end = np.minimum(ext_end, end)
    pos = p + 2
    alive = np.flatnonzero(walkable | ok)
    be16 = _be16(data)  # (q + 4 <= cut_end: every read below lies in the buffer)
    steps = 1
    for step in range(MAX_EXTENSIONS):
        if not alive.size:
            break
        q = pos[alive]
        inb = q + 4 <= cut_end[alive]
        alive, q = alive[inb], q[inb]
        types[alive, step] = be16[q]
        where_[alive, step] = q + 4
        pos[alive] = q + 4 + be16[q + 2]
        steps = step + 1
    types, where_ = types[:, :steps], where_[:, :steps]  # (the columns no hello reached hold nothing)
    rows_ = np.arange(m)
    at = {}
    for t in (0x0000, 0x0010, 0x002B, 0x000D):
        hit = types == t
        last = steps - 1 - np.argmax(hit[:, ::-1], axis=1)
        at[t] = np.where(hit.any(axis=1), where_[rows_, last], -1)
    hit = types == 0x0000
    sni_at = np.where(hit.any(axis=1), where_[rows_, np.argmax(hit, axis=1)], -1)  # the first server_name
    for where in at.values():  # the fingerprint reads only what whole hellos said
        where[~ok] = -1
    ok &= pos >= ext_end  # every extension seen
    found, names = server_name_at(data, sni_at, end, max(width, 1))
    return _fingerprint(data, start, ok, ciphers, types, at, ja4, alpn_out) + (found, names)


def _fingerprint(
    data: np.ndarray, start: np.ndarray, ok: np.ndarray, ciphers: np.ndarray, types: np.ndarray,
    at: dict[int, np.ndarray], ja4: np.ndarray, alpn_out: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """JA4 and the ALPN list from the walked ClientHello fields (rows ``ok`` get a JA4)."""
    # version: the highest of supported_versions (GREASE left out), else the hello's
    sv = at[0x002B]
    vers = _u16_list(data, sv + 1, np.where(sv >= 0, _u8(data, sv) // 2, 0), 16)
    vers[_grease(vers)] = -1
    vers[vers == _NONE] = -1
    best = vers.max(axis=1)
    best = np.where((sv >= 0) & (best >= 0), best, _u16(data, start + 9))
    # ALPN: the list, and its first value's first and last byte
    al = at[0x0010]
    has_alpn = al >= 0
    first_len = np.where(has_alpn, _u8(data, al + 2), 0)
    f0, f1 = _u8(data, al + 3), _u8(data, al + 2 + first_len)
    alnum = np.zeros(256, dtype=bool)
    alnum[[*range(0x30, 0x3A), *range(0x41, 0x5B), *range(0x61, 0x7B)]] = True
    hexd = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    plain = alnum[f0] & alnum[f1]
    c0 = np.where(plain, f0, hexd[f0 >> 4])
    c1 = np.where(plain, f1, hexd[f1 & 0xF])
    alpn2 = np.where(has_alpn & (first_len > 0), (c0 << 8) | c1, 0x3030).astype(">u2").view("S2")
    alpn_out[:] = _alpn_list(data, al + 2, np.where(has_alpn, _u16(data, al), 0))
    # counts and the hashed lists
    cvalid = (ciphers != _NONE) & ~_grease(ciphers)
    tvalid = (types != _NONE) & ~_grease(types)
    ncip = np.minimum(cvalid.sum(axis=1), 99)
    next_ = np.minimum(tvalid.sum(axis=1), 99)
    sig = at[0x000D]
    sigalgs = _u16_list(data, sig + 2, np.where(sig >= 0, _u16(data, sig) // 2, 0), MAX_SIGALGS)
    sigalgs[_grease(sigalgs)] = _NONE
    rows = np.flatnonzero(ok)
    if not rows.size:
        return ja4, alpn_out
    cl = np.where(cvalid, ciphers, _NONE)[rows]
    cl.sort(axis=1)
    el = np.where(tvalid & (types != 0x0000) & (types != 0x0010), types, _NONE)[rows]
    el.sort(axis=1)
    b = _hash12(cl)
    c = _hash12(np.concatenate([el, sigalgs[rows]], axis=1), sep_at=el.shape[1])
    sni = np.where(at[0x0000][rows] >= 0, "d", "i")
    nums = np.char.zfill(ncip[rows].astype("U2"), 2), np.char.zfill(next_[rows].astype("U2"), 2)
    a = np.char.add(np.char.add("t", _VERSION_CODE[best[rows]].astype("U2")), sni)
    a = np.char.add(np.char.add(np.char.add(a, nums[0]), nums[1]), alpn2[rows].astype("U2"))
    ja4[rows] = np.char.add(np.char.add(np.char.add(a, "_"), b.astype("U12")), np.char.add("_", c.astype("U12")))
    return ja4, alpn_out


def _alpn_list(data: np.ndarray, start: np.ndarray, size: np.ndarray) -> np.ndarray:
    """The ALPN protocol list at ``start`` (``size`` bytes of length-prefixed names) as ``a,b,c`` (cut at
    ``ALPN_WIDTH``): one gather, and the length bytes found in lock-step become the commas."""
    from .match import prefix_matrix

    m = start.shape[0]
    win = prefix_matrix(data, np.maximum(start, 0).astype(np.int64), ALPN_WIDTH + 1)
    sep = np.zeros((m, ALPN_WIDTH + 1), dtype=bool)
    rel = np.zeros(m, dtype=np.int64)
    alive = np.flatnonzero(size > 0)
    for _ in range(ALPN_WIDTH):
        if not alive.size:
            break
        r = rel[alive]
        n = win[alive, np.minimum(r, ALPN_WIDTH)].astype(np.int64)
        go = (r <= ALPN_WIDTH) & (n > 0) & (r + 1 + n <= size[alive])
        alive, r, n = alive[go], r[go], n[go]
        sep[alive, r] = True
        rel[alive] = r + 1 + n
    out = win[:, 1:].copy()
    out[sep[:, 1:]] = ord(",")
    out[np.arange(ALPN_WIDTH)[None, :] >= (rel - 1)[:, None]] = 0
    out[(out > 0) & ((out < 0x20) | (out > 0x7E))] = 0x3F
    return np.ascontiguousarray(out).view(f"S{ALPN_WIDTH}").reshape(m)
