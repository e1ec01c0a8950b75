#!/usr/bin/env python3
"""Time ``read_batches`` (bytes -> decoded packet columns) over a capture and print packets/s.

usage: bench_capture.py CAPTURE [--repeat N] [--chunk-mb M] [--profile]

Build the reference capture first (1,000,000 packets, 303 MB):
    python ../shared/bench/make_bench_pcap.py /tmp/bench.pcap
Runs are warm (the file is read once before timing, so it sits in the page cache); the
figure reported is the median of ``--repeat`` runs.  ``--profile`` adds a per-stage split.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classifier.capture.columns import CaptureStats  # noqa: E402
from classifier.capture.reader import DEFAULT_CHUNK_BYTES, read_batches  # noqa: E402


def run(path: str, chunk_bytes: int) -> tuple[float, CaptureStats, int]:
    """One timed pass: seconds, merged stats, rows produced."""
    stats = CaptureStats()
    rows = 0
    t0 = time.perf_counter()
    for batch in read_batches([path], chunk_bytes):
        stats.merge(batch.stats)
        rows += len(batch)
    return time.perf_counter() - t0, stats, rows


def profile(path: str, chunk_bytes: int) -> None:
    """Per-function split of one pass (cProfile, cumulative time of the capture modules)."""
    import cProfile
    import pstats

    pr = cProfile.Profile()
    pr.enable()
    run(path, chunk_bytes)
    pr.disable()
    st = pstats.Stats(pr)
    st.sort_stats("tottime").print_stats(25)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("capture")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--chunk-mb", type=float, default=DEFAULT_CHUNK_BYTES / (1 << 20))
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    chunk = int(args.chunk_mb * (1 << 20))
    size = Path(args.capture).stat().st_size
    with open(args.capture, "rb") as f:  # warm the page cache, 16 MiB at a time
        while f.read(16 << 20):
            pass
    times = []
    for _ in range(args.repeat):
        dt, stats, rows = run(args.capture, chunk)
        times.append(dt)
    med = statistics.median(times)
    print(f"{args.capture}: {size / 1e6:.0f} MB, {stats.packets:,} packets, {rows:,} rows with ports")
    print(f"read_batches: median {med:.3f} s of {args.repeat} (min {min(times):.3f} s)")
    print(f"  {stats.packets / med / 1e6:.2f} M packets/s, {size / med / 1e9:.2f} GB/s")
    if sys.platform.startswith("linux"):
        import resource

        print(f"  peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if args.profile:
        profile(args.capture, chunk)
    return 0


if __name__ == "__main__":
    sys.exit(main())
