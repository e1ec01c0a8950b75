"""Which files of a timeline have their edge finished, and when (``archive.driver.Edges``): handed out
as soon as their neighbours are known, in order, with the keys a run that waits for every file gives."""

from __future__ import annotations

import random

import numpy as np
import pytest

from classifier.archive.aggregate import Aggregate
from classifier.archive.driver import Edges, Join
from classifier.archive.inputs import Input
from classifier.archive.task import Keys
from classifier.engine import Timeouts

S = 1_000_000_000


def _reference(heads, tails, firsts, clocks, idle):  # noqa: ANN001, ANN202
    """Every file's (head keys, tail keys) once all are known, written out plainly."""
    n = len(heads)
    want_h: list[list[np.ndarray]] = [[] for _ in range(n)]
    want_t: list[list[np.ndarray]] = [[] for _ in range(n)]
    for j in range(n):
        for k in range(j + 1, n):
            if not (k == j + 1 or firsts[k] - clocks[j] <= idle):
                break
            want_h[k].append(tails[j])
            want_t[j].append(heads[k])
        if j == n - 1 or clocks[-1] - clocks[j] <= idle:
            want_t[j].append(tails[j])
    z = np.zeros(0, np.uint64)
    return [
        (np.intersect1d(heads[i], np.concatenate(want_h[i] or [z])).tolist(),
         np.intersect1d(tails[i], np.concatenate(want_t[i] or [z])).tolist())
        for i in range(n)
    ]  # fmt: skip


@pytest.mark.parametrize("seed", range(40))
def test_files_handed_out_early_in_order_with_the_keys_of_a_run_that_waits(seed: int) -> None:
    rng = random.Random(seed)
    idle = Timeouts().batch_idle_ns
    n = rng.randint(1, 9)
    files = [Input(f"/ring/d_{i:05d}_20260101000000.pcap", 100 + i, i) for i in range(n)]
    heads, tails, firsts, clocks, t = [], [], [], [], 0
    for _ in range(n):  # times go forward; gaps and lengths on both sides of the idle timeout
        t += rng.choice([0, 1, 2 * idle // S, 3 * idle // S]) * S
        first = t
        t += rng.choice([0, idle // S // 2, 3 * idle // S]) * S
        firsts.append(first)
        clocks.append(t)
        heads.append(np.unique(np.array(rng.sample(range(30), rng.randint(0, 12)), np.uint64)))
        tails.append(np.unique(np.array(rng.sample(range(30), rng.randint(0, 12)), np.uint64)))
    edges = Edges(Join("tl", files, 0, False), {"timelines": {}}, None, Timeouts())  # type: ignore[arg-type]
    got, order = {}, list(range(n))
    rng.shuffle(order)
    handed = []
    for step, i in enumerate(order):
        k = Keys(files[i].ident, Aggregate.new(), [], 0.0, firsts[i], clocks[i], heads[i], tails[i])
        for ident, h, tk in edges.add(k):
            handed.append(ident)
            got[ident] = (h.tolist(), tk.tolist())
        known = set(order[: step + 1])
        prefix = next((m for m in range(n) if m not in known), n)
        if prefix < n:  # a file handed out before every file is known had its near ones and one more
            for ident in handed:
                j = [f.ident for f in files].index(ident)
                assert j < prefix
    assert handed == [f.ident for f in files]  # each file once, in timeline order
    ref = _reference(heads, tails, firsts, clocks, idle)
    assert [got[f.ident] for f in files] == ref


def test_a_ring_of_15_minute_files_finishes_each_edge_two_files_later() -> None:
    """Files of 900 s back to back (idle timeout 300 s): file j is handed out once file j + 2 is known."""
    files = [Input(f"/ring/d_{i:05d}_20260101000000.pcap", 100 + i, i) for i in range(6)]
    edges = Edges(Join("tl", files, 0, False), {"timelines": {}}, None, Timeouts())  # type: ignore[arg-type]
    z = np.zeros(0, np.uint64)
    handed = []
    for i, f in enumerate(files):
        k = Keys(f.ident, Aggregate.new(), [], 0.0, i * 900 * S, (i + 1) * 900 * S - S, z, z)
        handed.append([ident for ident, _, _ in edges.add(k)])
    idents = [f.ident for f in files]
    assert handed == [[], [], [idents[0]], [idents[1]], [idents[2]], idents[3:]]
