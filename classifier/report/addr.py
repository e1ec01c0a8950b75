"""Vectorized formatting of the address columns (IPv4-mapped IPv6 in two uint64) as text."""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

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
    dhi, dlo, inv = _distinct(hi, lo)
    texts = []
    for h, low in zip(dhi.tolist(), dlo.tolist(), strict=True):
        if h == 0 and (low >> 32) == 0xFFFF:
            v = low & 0xFFFF_FFFF
            texts.append(f"{v >> 24}.{(v >> 16) & 255}.{(v >> 8) & 255}.{v & 255}")
        else:
            texts.append(ipaddress.IPv6Address((h << 64) | low).compressed)
    return texts, inv


def unique_address_array(hi: np.ndarray, lo: np.ndarray) -> tuple[Any, np.ndarray]:
    """``unique_addresses`` with the texts as a pyarrow string array, IPv4 ones built by Arrow's kernels
    (no Python string per address; for the machine writers)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    dhi, dlo, inv = _distinct(hi, lo)
    v4 = (dhi == 0) & ((dlo >> np.uint64(32)) == np.uint64(0xFFFF))
    v = (dlo & np.uint64(0xFFFF_FFFF)).astype(np.int64)
    octets = _octets()
    text = pc.binary_join_element_wise(*(octets.take(pa.array((v >> s) & 255)) for s in (24, 16, 8, 0)), ".")
    if not v4.all():
        six = np.flatnonzero(~v4)
        pairs = zip(dhi[six].tolist(), dlo[six].tolist(), strict=True)
        v6 = [ipaddress.IPv6Address((h << 64) | low).compressed for h, low in pairs]
        text = pc.replace_with_mask(text, pa.array(~v4), pa.array(v6, pa.string()))
    return text, inv


@functools.cache
def _octets() -> Any:
    import pyarrow as pa

    return pa.array([str(i) for i in range(256)], pa.string())


def _distinct(hi: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct hi, distinct lo, index of each row's address among them)."""
    hi = np.asarray(hi, dtype=np.uint64)
    lo = np.asarray(lo, dtype=np.uint64)
    if not hi.size:
        return hi, lo, np.zeros(0, dtype=np.int64)
    order = np.lexsort((lo, hi))
    shi, slo = hi[order], lo[order]
    new = np.ones(shi.size, dtype=bool)
    new[1:] = (shi[1:] != shi[:-1]) | (slo[1:] != slo[:-1])
    inv = np.empty(shi.size, dtype=np.int64)
    inv[order] = np.cumsum(new) - 1
    return shi[new], slo[new], inv
