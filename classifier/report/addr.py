"""Vectorized formatting of the address columns (IPv4-mapped IPv6 in two uint64) as text."""

from __future__ import annotations

import ipaddress

import numpy as np

_V4_PREFIX = np.uint64(0xFFFF_0000_0000)


def format_addresses(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Text of each address; unique addresses are formatted once, so cost scales with hosts, not flows.

    >>> format_addresses(np.array([0], np.uint64), np.array([0xFFFF_C000_0201], np.uint64))[0]
    '192.0.2.1'
    """
    texts, inv = unique_addresses(hi, lo)
    return np.array(texts, dtype=object)[inv] if texts else np.array([], dtype=object)


def unique_addresses(hi: np.ndarray, lo: np.ndarray) -> tuple[list[str], np.ndarray]:
    """(text of each distinct address, index of each row's address in it): a dictionary-encoded column."""
    hi = np.asarray(hi, dtype=np.uint64)
    lo = np.asarray(lo, dtype=np.uint64)
    if not hi.size:
        return [], np.zeros(0, dtype=np.int64)
    order = np.lexsort((lo, hi))
    shi, slo = hi[order], lo[order]
    new = np.ones(shi.size, dtype=bool)
    new[1:] = (shi[1:] != shi[:-1]) | (slo[1:] != slo[:-1])
    inv = np.empty(shi.size, dtype=np.int64)
    inv[order] = np.cumsum(new) - 1
    texts = []
    for h, low in zip(shi[new].tolist(), slo[new].tolist(), strict=True):
        if h == 0 and (low >> 32) == 0xFFFF:
            v = low & 0xFFFF_FFFF
            texts.append(f"{v >> 24}.{(v >> 16) & 255}.{(v >> 8) & 255}.{v & 255}")
        else:
            texts.append(ipaddress.IPv6Address((h << 64) | low).compressed)
    return texts, inv
