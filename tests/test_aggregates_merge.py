"""Merging grouped sums and pruning past a cap: the in-place merge of two sorted tables and the prune
without a sort give what grouping the concatenated rows and sorting by rank give (written out here)."""

from __future__ import annotations

import numpy as np
import pytest

from classifier.report.aggregates import _Grouped, _Set

HOW = {"a": "sum", "b": "sum", "f": "or", "s": "first"}
DTYPES = {"a": np.int64, "b": np.int64, "f": np.uint8, "s": np.int32}


def _rows(rng: np.random.Generator, n: int, hosts: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    keys = np.stack([rng.integers(0, 2, n), rng.integers(0, hosts, n)], 1).astype(np.uint64)
    cols = {"a": rng.integers(0, 4, n), "b": rng.integers(0, 3, n), "f": rng.integers(0, 256, n).astype(np.uint8),
            "s": rng.integers(0, 1000, n).astype(np.int32)}  # fmt: skip
    return keys, cols


def _expected(parts: list[tuple[np.ndarray, dict]], cap: int | None) -> tuple[np.ndarray, dict, int, int]:
    """Each part grouped then added in turn: group the union (first value: the earliest row), and past
    ``cap`` keep the keys of largest a+b (ties: the lower key), as a lexsort by rank does."""
    keys = np.zeros((0, 2), np.uint64)
    cols = {k: np.zeros(0, d) for k, d in DTYPES.items()}
    pruned = loss = 0
    for pk, pc in parts:
        allk = np.concatenate([keys, pk])
        allc = {k: np.concatenate([cols[k], pc[k]]) for k in cols}
        uniq, inv = np.unique(allk, axis=0, return_inverse=True)
        inv = inv.ravel()
        first = np.full(len(uniq), -1)
        for i in range(len(inv) - 1, -1, -1):  # the earliest row of each key
            first[inv[i]] = i
        cols = {}
        for k, v in allc.items():
            if HOW[k] == "sum":
                cols[k] = np.bincount(inv, weights=v, minlength=len(uniq)).astype(np.int64)
            elif HOW[k] == "or":
                out = np.zeros(len(uniq), np.uint8)
                np.bitwise_or.at(out, inv, v)
                cols[k] = out
            else:
                cols[k] = v[first]
        keys = uniq
        if cap is not None and len(keys) > cap:
            rank = cols["a"] + cols["b"]
            order = np.lexsort((np.arange(rank.size), -rank))
            keep, drop = np.sort(order[:cap]), order[cap:]
            pruned += drop.size
            loss += int(rank[drop].max())
            keys, cols = keys[keep], {k: v[keep] for k, v in cols.items()}
    return keys, cols, pruned, loss


@pytest.mark.parametrize("cap", [None, 5, 40])
def test_grouped_merge_equals_grouping_the_union(cap: int | None) -> None:
    """Tables of random hosts (many shared, ties in rank) merged one after the other; each table also
    pruned on its own first when it outgrows the cap."""
    rng = np.random.default_rng(7)
    parts = [_rows(rng, n, 60) for n in (50, 1, 80, 30, 200, 7)]
    whole = _Grouped(2, DTYPES, HOW, cap, ("a", "b"))
    tables = []
    for k, c in parts:
        g = _Grouped(2, DTYPES, HOW, cap, ("a", "b"))
        g.add(k, c)
        g.fold()
        tables.append(g)
        whole.merge(g)
    expect = _expected([(t.keys, t.cols) for t in tables], cap)
    assert whole.keys.tolist() == expect[0].tolist()
    for name in DTYPES:
        assert whole.cols[name].tolist() == expect[1][name].tolist(), name
        assert whole.cols[name].dtype == DTYPES[name]
    assert whole.pruned == expect[2] + sum(t.pruned for t in tables)
    assert whole.loss == expect[3] + sum(t.loss for t in tables)
    if cap == 5:
        assert whole.pruned > 0 and len(whole) == 5


def test_set_keeps_the_rows_of_the_sources_kept() -> None:
    """``keep_sources``: the rows whose source is kept, every one, none of the others."""
    rng = np.random.default_rng(3)
    rows = np.stack([rng.integers(0, 2, 500), rng.integers(0, 40, 500), rng.integers(0, 300, 500)], 1)
    s = _Set(3, 18)
    s.add(rows.astype(np.uint64))
    before = {tuple(r) for r in rows.tolist()}
    kept = np.unique(rows[rng.choice(500, 25), :2], axis=0).astype(np.uint64)
    s.keep_sources(kept)
    got = s.rows.view(np.uint8).reshape(-1, 18)
    src = {(int.from_bytes(r[:8].tobytes(), "big"), int.from_bytes(r[8:16].tobytes(), "big")) for r in got}
    ports = sorted((int.from_bytes(r[:8].tobytes(), "big"), int.from_bytes(r[8:16].tobytes(), "big"),
                    int.from_bytes(r[16:].tobytes(), "big")) for r in got)  # fmt: skip
    assert ports == sorted(r for r in before if r[:2] in {tuple(k) for k in kept.tolist()})
    assert src == {tuple(k) for k in kept.tolist()} and len(ports) > 25
