"""What the payload-evidence stage costs: the pipeline with and without it, in one run, on the same capture.

Runs ``classifier.pipeline.analyze`` on the 1,000,000-packet benchmark capture (built with
../shared/bench/make_bench_pcap.py under benchmarks/out/ unless ``--pcap`` names one),
alternating ``evidence=False`` / ``evidence=True`` so both see the same page cache, and prints
the median wall time and CPU time (this process and its reader children: the figure that
holds on a machine other jobs share) of each, the ratio, the evidence stage's share of the
pipeline, and the signature scan alone (``classifier.evidence.scan`` over every batch,
already in memory); then the scan's CPU cost per packet as the protocol table grows (the first
protocols' signatures, about 20, 50, 100 and all of them), dispatched and on the reference path that
gives every signature every packet of its transport, and the cost of one ~1,000-packet batch.
The registry's carrier index is built once before timing (a one-off ~30 ms per process).

    python benchmarks/bench_evidence.py [--runs 5] [--pcap FILE] [--max-share 0.30] [--jobs 1]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PORTCLASS_SHARED", ROOT.parent / "shared"))
OUT = ROOT / "benchmarks" / "out"
REGISTRY = SHARED / "registry" / "service-names-port-numbers.xml"


def capture(path: Path | None) -> Path:
    """The benchmark capture: ``path``, else benchmarks/out/bench1m.pcap (built once)."""
    if path is not None:
        return path
    out = OUT / "bench1m.pcap"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(SHARED / "bench" / "make_bench_pcap.py"), str(out)], check=True)
    return out


def cpu() -> float:
    """CPU seconds of this process and its waited-for children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def scan_cost_by_size(batches: list, runs: int) -> list[tuple[int, int, float, float]]:
    """(protocols, signatures, CPU ns per packet of the dispatched scan, ... of the reference path) with the
    table's first protocols, as many as make about 20, 50, 100 signatures, and all of them.

    The reference path gives every signature every packet of its transport (its cost grows with the
    table); the dispatch gives a signature only the packets whose leading bytes it allows.
    """
    from classifier.evidence import match, table

    out = []
    packets = sum(len(b) for b in batches)
    sizes = [len({s.protocol for s in match.SIGNATURES})]
    for want in (20, 50, 100):
        k = next(k for k in range(1, len(table.PROTOCOLS) + 1) if _rows(table.PROTOCOLS[:k]) >= want)
        sizes.insert(-1, k)
    for k in sorted(set(sizes)):
        keep = {p.name for p in table.PROTOCOLS[:k]}
        # replies whose request row is left out cannot match: keep the compiled rows as they are
        d = match.Dispatch(tuple(c for c in match.COMPILED if c.sig.protocol in keep))
        best = {False: float("inf"), True: float("inf")}
        for _ in range(runs):
            for ref in (False, True):
                t0 = time.process_time()
                for b in batches:
                    match.scan(b, d, reference=ref)
                best[ref] = min(best[ref], time.process_time() - t0)
        out.append((k, len(d.compiled), 1e9 * best[False] / max(packets, 1), 1e9 * best[True] / max(packets, 1)))
    return out


def _rows(protocols: tuple) -> int:
    """Signature rows of these protocols."""
    return sum(len(p.signatures) for p in protocols)


def small_batches(pcap: Path, runs: int, packets: int = 1000) -> tuple[int, float, float]:
    """(batches, CPU ms per batch dispatched, ... reference) of the scan over batches of about ``packets``
    packets (the live sensor's size): the fixed cost each batch pays."""
    from classifier.capture.reader import read_batches
    from classifier.evidence import match

    first = next(iter(read_batches([pcap])))
    size = max(4096, int(first.data.size * packets / max(len(first), 1)))
    batches = [b for _, b in zip(range(100), read_batches([pcap], size), strict=False)]
    best = {False: float("inf"), True: float("inf")}
    for _ in range(runs):
        for ref in (False, True):
            t0 = time.process_time()
            for b in batches:
                match.scan(b, reference=ref)
            best[ref] = min(best[ref], time.process_time() - t0)
    return len(batches), 1e3 * best[False] / len(batches), 1e3 * best[True] / len(batches)


def main() -> int:
    """Time the pipeline both ways and print the comparison; exit 1 when the share exceeds ``--max-share``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pcap", type=Path)
    ap.add_argument("--max-share", type=float, default=0.30, help="fail when evidence takes more of the pipeline")
    ap.add_argument("--jobs", type=int, default=None, help="1: the pipeline in one process (default: as the CLI)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from classifier.capture.reader import read_batches
    from classifier.evidence.match import scan
    from classifier.evidence.verdict import VERDICTS, carrier_index
    from classifier.pipeline import analyze
    from classifier.registry.sources import compile_file

    pcap = capture(args.pcap)
    reg = compile_file(REGISTRY, use_cache=False)
    carrier_index(reg)
    analyze([pcap], reg, evidence=False, jobs=args.jobs)  # warm the page cache and imports
    times: dict[bool, list[float]] = {False: [], True: []}
    cpus: dict[bool, list[float]] = {False: [], True: []}
    last = None
    for _ in range(args.runs):
        for ev in (False, True):
            t0, c0 = time.perf_counter(), cpu()
            a = analyze([pcap], reg, evidence=ev, jobs=args.jobs)
            times[ev].append(time.perf_counter() - t0)
            cpus[ev].append(cpu() - c0)
            if ev:
                last = a
    batches = list(read_batches([pcap]))
    scans = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        for b in batches:
            scan(b)
        scans.append(time.perf_counter() - t0)
    without, with_ = statistics.median(times[False]), statistics.median(times[True])
    scan_s = statistics.median(scans)
    packets = int(last.stats.packets) if last is not None else 0
    share = (with_ - without) / with_
    c_without, c_with = statistics.median(cpus[False]), statistics.median(cpus[True])
    c_share = (c_with - c_without) / c_with
    print(f"capture: {pcap} ({packets:,} packets, {len(last.flows) if last else 0:,} flows)")
    print(f"pipeline without evidence: {without:.3f} s  ({packets / without / 1e6:.2f} M packets/s)")
    print(f"pipeline with evidence:    {with_:.3f} s  ({packets / with_ / 1e6:.2f} M packets/s)")
    print(f"ratio with/without:        {with_ / without:.3f}  (evidence adds {100 * (with_ / without - 1):.1f} %)")
    print(f"evidence share of the pipeline: {100 * share:.1f} % (limit {100 * args.max_share:.0f} %)")
    print(f"CPU time without/with:     {c_without:.3f} s / {c_with:.3f} s: evidence share {100 * c_share:.1f} %")
    print(f"signature scan alone:      {scan_s:.3f} s  ({1e9 * scan_s / max(packets, 1):.0f} ns/packet)")
    print("scan CPU cost as the table grows (the table's first protocols; dispatched vs every row on every packet):")
    for k, nsig, ns, ref in scan_cost_by_size(batches, max(1, args.runs // 2)):
        print(f"  {k:3d} protocols {nsig:4d} signatures  {ns:6.0f} ns/packet  (reference {ref:6.0f} ns/packet)")
    nb, ms, ref_ms = small_batches(pcap, max(1, args.runs // 2))
    print(f"scan of small batches (~1,000 packets, {nb}): {ms:.2f} ms/batch CPU  (reference {ref_ms:.2f} ms/batch)")
    if last is not None:
        import numpy as np

        counts = np.bincount(last.labels.verdict, minlength=len(VERDICTS))
        print("verdicts: " + ", ".join(f"{v} {int(c):,}" for v, c in zip(VERDICTS, counts, strict=True)))
    return 0 if min(share, c_share) <= args.max_share else 1


if __name__ == "__main__":
    raise SystemExit(main())
