"""Registry benchmark: compile the XML, load the compiled cache, and 10 million vectorized lookups.

Targets (issue 2): compile < 1 s, cached load < 30 ms, 10M lookups < 50 ms. Prints the median of
several runs of each, measured in this process (the cached load also as a fresh process).

    python benchmarks/bench_registry.py [REGISTRY.xml]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from classifier.registry import cache  # noqa: E402
from classifier.registry.sources import compile_file  # noqa: E402


def _median(fn, runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    """Run the three measurements and print them against their targets."""
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared/registry/service-names-port-numbers.xml"
    compile_s = _median(lambda: compile_file(src, use_cache=False), 5)
    reg = compile_file(src, use_cache=False)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "reg.pcreg"
        cache.save(reg, path)
        load_s = _median(lambda: cache.load(path), 21)
        load_names_s = _median(lambda: cache.load(path).service_names, 21)
        code = (
            "import time;t=time.perf_counter();from classifier.registry import cache;"
            f"r=cache.load({str(path)!r});r.service_names;print(time.perf_counter()-t)"
        )
        fresh = [float(subprocess.check_output([sys.executable, "-c", code], cwd=ROOT)) for _ in range(5)]
        fresh_s = statistics.median(fresh)
    rng = np.random.default_rng(1)
    ports = rng.integers(0, 65536, 10_000_000).astype(np.uint16)
    tix = rng.integers(0, 2, 10_000_000).astype(np.uint8)
    one_s = _median(lambda: reg.lookup(ports, "tcp").status, 9)
    mixed_s = _median(lambda: reg.lookup(ports, tix).status, 9)
    full_s = _median(lambda: reg.lookup(ports, "tcp").service, 9)
    print(f"registry: {src} ({reg.provenance.records} records)")
    print(f"compile XML -> arrays           {compile_s * 1000:8.1f} ms   (target < 1000 ms)")
    print(f"cached load (arrays)            {load_s * 1000:8.2f} ms   (target < 30 ms)")
    print(f"cached load + service names     {load_names_s * 1000:8.2f} ms")
    print(f"cached load, fresh process      {fresh_s * 1000:8.2f} ms   (import of the cache module included)")
    print(f"10M lookups, one transport      {one_s * 1000:8.1f} ms   (target < 50 ms; status+flags as views)")
    print(f"10M lookups, per-flow transport {mixed_s * 1000:8.1f} ms")
    print(f"10M lookups + service index     {full_s * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
