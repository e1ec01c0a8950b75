"""Pipeline benchmark: portclass against the tools analysts use, on the same capture, in one run.

Builds the 1,000,000-packet capture with ../shared/bench/make_bench_pcap.py (once, under
benchmarks/out/), then runs each tool as its own process several times and prints the median
wall time (whole process, start to last line of output), packets/s, the ratio to portclass and
the peak resident memory (wait4's ru_maxrss). scapy runs on a 100,000-packet slice and is
extrapolated. ``--big`` also builds a ~3 GB capture (10 M packets) and shows that portclass's
peak memory does not grow with the capture.

    python benchmarks/bench_pipeline.py [--runs 3] [--big] [--only portclass,ndpiReader]
    python benchmarks/bench_pipeline.py --capture /tmp/engine_day10m.pcap --packets 10000000 --runs 1 \
        --only "portclass,portclass --jobs 1,ndpiReader"

``portclass`` runs as a user's command does (two processes on a 2-CPU machine: ``classifier.feed``),
``portclass --jobs 1`` in one process, side by side in the same run.

Peers: ndpiReader (Debian libndpi-bin), tshark (Debian tshark), NFStream, dpkt and scapy from a
separate virtualenv (benchmarks/setup creates .venv-bench).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PORTCLASS_SHARED", ROOT.parent / "shared"))
OUT = ROOT / "benchmarks" / "out"
BENCH_PY = ROOT / ".venv-bench" / "bin" / "python"
PORTCLASS = ROOT / ".venv" / "bin" / "portclass"
REGISTRY = SHARED / "registry" / "service-names-port-numbers.xml"
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
"""portclass runs as an installed package does, its bytecode cached (the warm-up run writes it)."""


def build(path: Path, packets: int) -> Path:
    """Build the benchmark capture with the shared script unless it is already there."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, str(SHARED / "bench" / "make_bench_pcap.py"), str(path), "--packets", str(packets)],
            check=True,
        )
    return path


def slice_pcap(src: Path, dst: Path, packets: int) -> Path:
    """The first ``packets`` records of a little-endian pcap (for the slow per-packet peers).

    Streamed record by record: this process must stay small, because Linux reports a child's peak
    memory (ru_maxrss) as at least the parent's resident size when it forked.
    """
    if dst.exists():
        return dst
    import struct

    with open(src, "rb") as fi, open(dst, "wb") as fo:
        fo.write(fi.read(24))
        for _ in range(packets):
            head = fi.read(16)
            if len(head) < 16:
                break
            fo.write(head + fi.read(struct.unpack_from("<I", head, 8)[0]))
    return dst


def run_once(argv: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in KiB and stdout's last line of one run.

    Peak memory comes from GNU time (a small C process that forks the tool), because Linux reports a
    child's ru_maxrss as at least its parent's size at fork: measured from this Python process, every
    tool would inherit its ~100 MiB floor.
    """
    gnu_time = shutil.which("time") or "/usr/bin/time"
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        full = [gnu_time, "-f", "%M", "-o", tf.name, *argv] if Path(gnu_time).exists() else argv
        t0 = time.perf_counter()
        proc = subprocess.run(full, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=ENV)
        wall = time.perf_counter() - t0
        if proc.returncode not in (0, 1):
            raise RuntimeError(f"{argv[0]} failed with status {proc.returncode}")
        text = tf.read().strip().splitlines()
    peak = int(text[-1]) if text and text[-1].isdigit() else 0
    last = proc.stdout.decode(errors="replace").strip().splitlines()[-1:] or [""]
    return wall, peak, last[0][:100]


def main() -> None:
    """Run every tool on the capture and print the comparison table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--big", action="store_true", help="also a ~3 GB capture for portclass's memory")
    ap.add_argument("--only", default="", help="comma-separated tools to run")
    ap.add_argument("--capture", type=Path, default=OUT / "bench1m.pcap")
    ap.add_argument("--packets", type=int, default=1_000_000, help="packets of --capture (built if missing)")
    args = ap.parse_args()
    n = args.packets
    cap = build(args.capture, n)
    OUT.mkdir(parents=True, exist_ok=True)
    small = slice_pcap(cap, OUT / f"{cap.stem}-100k.pcap", 100_000)
    # warm the registry cache so that portclass's runs measure a user's normal start
    subprocess.run([str(PORTCLASS), "--registry", str(REGISTRY), "registry", "info"], capture_output=True, env=ENV)
    subprocess.run([str(PORTCLASS), "--registry", str(REGISTRY), str(small)], capture_output=True, env=ENV)
    tools: list[tuple[str, list[str], int, int]] = [
        (
            "portclass",
            [str(PORTCLASS), "--registry", str(REGISTRY), "analyze", "--no-progress", str(cap)],
            n,
            args.runs,
        ),
        (
            "portclass --jobs 1",
            [str(PORTCLASS), "--registry", str(REGISTRY), "analyze", "--no-progress", "--jobs", "1", str(cap)],
            n,
            args.runs,
        ),
        (
            "portclass --dissect none",
            [str(PORTCLASS), "--registry", str(REGISTRY), "analyze", "--no-progress", "--dissect", "none", str(cap)],
            n,
            args.runs,
        ),
        ("ndpiReader", ["ndpiReader", "-q", "-i", str(cap)], n, args.runs),
        (
            "tshark conv",
            ["tshark", "-n", "-q", "-r", str(cap), "-z", "conv,tcp", "-z", "conv,udp"],
            n,
            max(1, args.runs - 1),
        ),
        ("NFStream", [str(BENCH_PY), str(ROOT / "benchmarks" / "peers.py"), "nfstream", str(cap)], n, 1),
        ("dpkt loop", [str(BENCH_PY), str(ROOT / "benchmarks" / "peers.py"), "dpkt", str(cap)], n, 1),
        (
            "scapy loop",
            [str(BENCH_PY), str(ROOT / "benchmarks" / "peers.py"), "scapy", str(small), "100000"],
            100_000,
            1,
        ),
    ]
    only = {t.strip() for t in args.only.split(",") if t.strip()}
    chosen = []
    for name, argv, packets, runs in tools:
        if only and name not in only:
            continue
        if shutil.which(argv[0]) is None and not Path(argv[0]).exists():
            print(f"{name}: not installed, skipped")
            continue
        chosen.append((name, argv, packets, runs))
    # rounds: every tool once per round (A/B alternated), so a busy moment of the machine hits them alike
    walls: dict[str, list[float]] = {c[0]: [] for c in chosen}
    peaks: dict[str, list[int]] = {c[0]: [] for c in chosen}
    lasts: dict[str, str] = {}
    for r in range(max((c[3] for c in chosen), default=0)):
        for name, argv, _, runs in chosen:
            if r < runs:
                w, peak, lasts[name] = run_once(argv)
                walls[name].append(w)
                peaks[name].append(peak)
                print(f"  round {r + 1}: {name:26s} {w:8.2f} s  ({lasts[name]})", flush=True)
    results = [
        (name, statistics.median(walls[name]), min(walls[name]), max(peaks[name]), packets, runs, lasts[name])
        for name, _, packets, runs in chosen
    ]
    base = next((r for r in results if r[0] == "portclass"), None)
    print(f"\ncapture: {cap} ({cap.stat().st_size / 1e6:.0f} MB, {n:,} packets); median and best of runs, "
          "tools alternated; scapy on 100k")  # fmt: skip
    print(
        f"{'tool':26s} {'wall s':>9s} {'best s':>9s} {'packets/s':>12s} {'x portclass':>12s} "
        f"{'peak MiB':>9s} {'runs':>5s}"
    )
    for name, wall, best, peak, packets, runs, _ in results:
        ratio = (wall / packets) / (base[1] / base[4]) if base else float("nan")
        shown = f"{wall:9.2f}" if packets == n else f"{wall:5.2f}/100k"
        print(
            f"{name:26s} {shown:>9s} {best:9.2f} {packets / wall:12,.0f} {ratio:12.2f} {peak / 1024:9.0f} {runs:5d}"
        )
    if args.big:
        big = build(OUT / "bench10m.pcap", 10_000_000)
        w, peak, last = run_once([str(PORTCLASS), "--registry", str(REGISTRY), "analyze", "--no-progress", str(big)])
        print(
            f"\nportclass on {big.stat().st_size / 1e9:.2f} GB (10 M packets): {w:.2f} s, "
            f"{10_000_000 / w:,.0f} packets/s, peak {peak / 1024:.0f} MiB"
        )


if __name__ == "__main__":
    main()
