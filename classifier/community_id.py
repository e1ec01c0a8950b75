"""Community ID v1 flow hashes (corelight community-id-spec), as Zeek and Suricata log them.

The hashed bytes are ``seed (2) . saddr (4|16) . daddr (4|16) . proto (1) . 0 (1) . sport (2)
. dport (2)``, network byte order, with the endpoints ordered so that the smaller
(address, port) comes first; the ID is ``"1:" + base64(sha1(...))``.  Packing and ordering
are vectorised over a ``FlowTable``; only the SHA-1 itself runs once per flow (hashlib).

Every flow here carries ports (TCP, UDP, SCTP, DCCP), so the ICMP type/code mapping of
the spec is not needed.  DCCP is hashed with its ports like the other port protocols
(pycommunityid does the same when given ports; Zeek and Suricata do not decode DCCP).
"""

from __future__ import annotations

import base64
import hashlib

import numpy as np

from classifier.flows import FlowTable, _endpoint_gt

_DIGEST = 20


def _pack(
    ip_version: np.ndarray,
    proto: np.ndarray,
    a_hi: np.ndarray,
    a_lo: np.ndarray,
    a_port: np.ndarray,
    b_hi: np.ndarray,
    b_lo: np.ndarray,
    b_port: np.ndarray,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hash inputs as two byte matrices: (rows_v4, bytes_v4 (n4, 16)), (rows_v6, bytes_v6 (n6, 40))."""
    gt = _endpoint_gt(a_hi, a_lo, a_port, b_hi, b_lo, b_port)  # order_endpoints: smaller first
    s_hi, d_hi = np.where(gt, b_hi, a_hi), np.where(gt, a_hi, b_hi)
    s_lo, d_lo = np.where(gt, b_lo, a_lo), np.where(gt, a_lo, b_lo)
    s_port, d_port = np.where(gt, b_port, a_port), np.where(gt, a_port, b_port)
    out = []
    for version, addr_len in ((4, 4), (6, 16)):
        rows = np.flatnonzero(ip_version == version)
        k = rows.size
        dt = np.dtype(
            [
                ("seed", ">u2"),
                ("saddr", f"V{addr_len}"),
                ("daddr", f"V{addr_len}"),
                ("proto", "u1"),
                ("pad", "u1"),
                ("sport", ">u2"),
                ("dport", ">u2"),
            ]
        )
        rec = np.zeros(k, dtype=dt)
        rec["seed"] = seed
        for field, hi, lo in (("saddr", s_hi, s_lo), ("daddr", d_hi, d_lo)):
            if version == 4:
                words = (lo[rows] & np.uint64(0xFFFF_FFFF)).astype(">u4")
            else:
                words = np.empty((k, 2), dtype=">u8")
                words[:, 0] = hi[rows]
                words[:, 1] = lo[rows]
            rec[field] = words.view(f"V{addr_len}").reshape(k)
        rec["proto"] = proto[rows]
        rec["sport"] = s_port[rows]
        rec["dport"] = d_port[rows]
        out += [rows, rec.view(np.uint8).reshape(k, dt.itemsize)]
    return out[0], out[1], out[2], out[3]


def community_id_v1(
    ip_version: np.ndarray,
    proto: np.ndarray,
    a_hi: np.ndarray,
    a_lo: np.ndarray,
    a_port: np.ndarray,
    b_hi: np.ndarray,
    b_lo: np.ndarray,
    b_port: np.ndarray,
    seed: int = 0,
) -> list[str]:
    """Community ID v1 strings for flows given as columns (addresses IPv4-mapped, any endpoint order).

    >>> from classifier.flows import addr_to_words
    >>> c, s = addr_to_words("128.232.110.120"), addr_to_words("66.35.250.204")
    >>> col = lambda *v: np.array(v, dtype=np.uint64)
    >>> community_id_v1(np.array([4]), np.array([6]), col(c[0]), col(c[1]), np.array([34855]),
    ...                 col(s[0]), col(s[1]), np.array([80]))
    ['1:LQU9qZlK+B5F3KDmev6m5PMibrg=']
    """
    m = _id_matrix(ip_version, proto, a_hi, a_lo, a_port, b_hi, b_lo, b_port, seed)
    s = m.tobytes().decode("ascii")
    return [s[i : i + 30] for i in range(0, 30 * m.shape[0], 30)]


def _id_matrix(
    ip_version: np.ndarray,
    proto: np.ndarray,
    a_hi: np.ndarray,
    a_lo: np.ndarray,
    a_port: np.ndarray,
    b_hi: np.ndarray,
    b_lo: np.ndarray,
    b_port: np.ndarray,
    seed: int = 0,
) -> np.ndarray:
    """Community IDs as an (n, 30) ASCII byte matrix (fixed width: no string per flow)."""
    if not 0 <= int(seed) <= 0xFFFF:
        raise ValueError(f"Community ID seed must fit in 16 bits, not {seed}")
    cols = [np.asarray(c) for c in (ip_version, proto, a_hi, a_lo, a_port, b_hi, b_lo, b_port)]
    n = cols[0].shape[0]
    cols[2:] = [
        np.asarray(c, dtype=np.uint64) if i % 3 != 2 else np.asarray(c, dtype=np.uint16) for i, c in enumerate(cols[2:])
    ]
    r4, m4, r6, m6 = _pack(*cols, seed=int(seed))
    digests = np.empty((n, _DIGEST + 1), dtype=np.uint8)  # +1: a zero byte makes each row 28 base64 chars
    digests[:, _DIGEST] = 0
    sha1 = hashlib.sha1
    for rows, mat in ((r4, m4), (r6, m6)):
        if not rows.size:
            continue
        width = mat.shape[1]
        buf = mat.tobytes()
        raw = b"".join(sha1(buf[i : i + width]).digest() for i in range(0, len(buf), width))
        digests[rows, :_DIGEST] = np.frombuffer(raw, dtype=np.uint8).reshape(rows.size, _DIGEST)
    # base64 of 21 bytes = 28 chars whose last one encodes only the zero byte: it becomes the "=" pad
    text = np.frombuffer(base64.b64encode(digests.tobytes()), dtype=np.uint8).reshape(n, 28).copy()
    text[:, 27] = ord("=")
    out = np.empty((n, 30), dtype=np.uint8)
    out[:, :2] = np.frombuffer(b"1:", dtype=np.uint8)
    out[:, 2:] = text
    return out


def community_id_text(table: FlowTable, seed: int = 0) -> np.ndarray:
    """Community IDs of ``table`` as an (n, 30) ASCII byte matrix (fixed width: no string per flow)."""
    t = table
    return _id_matrix(
        t.ip_version, t.proto, t.client_hi, t.client_lo, t.client_port, t.server_hi, t.server_lo, t.server_port, seed
    )


def community_id(table: FlowTable, seed: int = 0) -> list[str]:
    """Community ID v1 of each flow of ``table`` (orientation does not matter), seed 0 by default.

    >>> from classifier.flows import make_batch, flows_from_batch, finalize
    >>> b = make_batch(ts_ns=[0], src=["192.168.1.52"], dst=["8.8.8.8"], sport=54585, dport=53, proto=17)
    >>> community_id(finalize(flows_from_batch(b, 0)))
    ['1:d/FP5EW3wiY1vCndhwleRRKHowQ=']
    """
    return community_id_v1(
        table.ip_version,
        table.proto,
        table.client_hi,
        table.client_lo,
        table.client_port,
        table.server_hi,
        table.server_lo,
        table.server_port,
        seed=seed,
    )
