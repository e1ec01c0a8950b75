"""Flow-stage benchmark: 1,000,000 synthetic packets in 50,000 interleaved flows (no I/O).

    python benchmarks/bench_flows.py

Prints best and median of several runs for one big batch, for chunked batches with merges, for the
streaming aggregator, for ``orient`` and for Community ID.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classifier.community_id import community_id  # noqa: E402
from classifier.flows import FlowAggregator, FlowTable, finalize, flows_from_batch, merge, orient  # noqa: E402
from tests.test_flows import slice_batch, synthetic  # noqa: E402

TIMEOUT = 60 * 10**9


def best(f, reps: int = 7):
    """(best ms, median ms, last result) over ``reps`` runs."""
    ts = []
    r = None
    for _ in range(reps):
        t0 = time.perf_counter()
        r = f()
        ts.append(time.perf_counter() - t0)
    return min(ts) * 1e3, float(np.median(ts)) * 1e3, r


def main() -> None:
    """Run and print the measurements."""
    b = synthetic(1_000_000, 50_000)
    m, med, t = best(lambda: flows_from_batch(b, TIMEOUT))
    print(f"flows_from_batch (1M packets -> {len(t)} rows): best {m:.1f} ms, median {med:.1f} ms")
    m, med, t = best(lambda: finalize(flows_from_batch(b, TIMEOUT)))
    print(f"  + finalize: best {m:.1f} ms, median {med:.1f} ms")
    for chunk in (262_144, 65_536):
        parts = [slice_batch(b, lo, lo + chunk) for lo in range(0, len(b), chunk)]

        def folded(parts=parts):
            acc = FlowTable.empty()
            for p in parts:
                acc = merge(acc, flows_from_batch(p, TIMEOUT), TIMEOUT)
            return finalize(acc)

        def aggregated(parts=parts):
            agg = FlowAggregator(TIMEOUT)
            for p in parts:
                agg.add(p)
            return agg.result()

        m, med, t = best(folded, 5)
        print(f"chunks of {chunk}: flows per chunk + merge: best {m:.1f} ms, median {med:.1f} ms ({len(t)} flows)")
        m, med, _ = best(aggregated, 5)
        print(f"chunks of {chunk}: FlowAggregator (pools small batches): best {m:.1f} ms, median {med:.1f} ms")
    m, med, _ = best(lambda: orient(t, None), 5)
    print(f"orient {len(t)} flows: best {m:.1f} ms")
    m, med, _ = best(lambda: community_id(t), 3)
    print(f"community_id {len(t)} flows: best {m:.1f} ms")


if __name__ == "__main__":
    main()
