"""Streaming benchmark: every machine format against the summary, and the day capture's memory.

    python benchmarks/bench_stream.py bench [--capture /tmp/bench1m.pcap]
        builds the bench capture (../shared/bench/make_bench_pcap.py) if missing, then runs, side by
        side in one run, ``portclass CAPTURE`` (summary) and ``-f jsonl|csv|zeek|parquet -o FILE``:
        wall time and peak RSS of the whole process (GNU time -v); target <= 1.3x the summary.
    python benchmarks/bench_stream.py day [--packets 10000000] [--small 1000000] [--no-ndpi]
        builds day captures (../shared/bench/make_day_pcap.py) in /tmp, runs the summary and each
        streaming format on both, and ndpiReader (Debian libndpi-bin) on the large one; targets:
        peak <= 300 MiB and <= 1.2x the small capture's peak, wall <= 0.15x ndpiReader's.

One process at a time (the machine is shared); figures go to stdout as a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PORTCLASS_SHARED", ROOT.parent / "shared"))
FORMATS = ("jsonl", "csv", "zeek", "parquet")
PORTCLASS = [sys.executable, "-m", "classifier"]
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
"""portclass runs as an installed package does: its bytecode cached (``warm_up`` writes it once)."""


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of ``cmd`` under GNU time -v; exits on failure."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as rep:
        proc = subprocess.run(
            ["/usr/bin/time", "-v", "-o", rep.name, *cmd],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        text = Path(rep.name).read_text()
    if proc.returncode not in (0, 1):
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", text)
    assert wall is not None, text
    h, m, s = wall.groups()
    secs = int(h or 0) * 3600 + int(m) * 60 + float(s)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    assert rss is not None, text
    return secs, int(rss.group(1)) / 1024


def build(script: str, out: Path, *extra: str) -> None:
    if not out.exists():
        subprocess.run([sys.executable, str(SHARED / "bench" / script), str(out), *extra], check=True)


def warm_up(out_dir: Path) -> None:
    """One untimed run of every format on the small sample capture (imports and bytecode cache)."""
    for fmt in ("summary", *FORMATS):
        extra = [] if fmt == "summary" else ["-f", fmt, "-o", str(out_dir / f"warm.{fmt}")]
        cmd = [*PORTCLASS, str(ROOT / "captures" / "sample.pcap"), "--no-progress", *extra]
        subprocess.run(cmd, stdout=subprocess.DEVNULL, env=ENV, check=False)


def run_formats(capture: Path, out_dir: Path, repeat: int) -> dict[str, tuple[float, float]]:
    """Best of ``repeat`` wall times (and the peak of that run) per format, summary first."""
    warm_up(out_dir)
    res: dict[str, tuple[float, float]] = {}
    for fmt in ("summary", *FORMATS):
        cmd = [*PORTCLASS, str(capture), "--no-progress"]
        if fmt != "summary":
            cmd += ["-f", fmt, "-o", str(out_dir / f"out.{fmt}")]
        res[fmt] = min((timed(cmd) for _ in range(repeat)), key=lambda r: r[0])
    return res


def bench(args: argparse.Namespace) -> None:
    cap = Path(args.capture)
    build("make_bench_pcap.py", cap)
    with tempfile.TemporaryDirectory() as d:
        res = run_formats(cap, Path(d), args.repeat)
    base = res["summary"][0]
    print(f"bench capture {cap} ({cap.stat().st_size / 2**20:.0f} MiB), best of {args.repeat}\n")
    print("| run | wall s | x summary | peak MiB | target |")
    print("| --- | --- | --- | --- | --- |")
    for fmt, (wall, rss) in res.items():
        ok = "" if fmt == "summary" else ("ok" if wall <= 1.3 * base else "MISSED (<= 1.3x)")
        print(f"| {fmt} | {wall:.2f} | {wall / base:.2f} | {rss:.0f} | {ok} |")


def day(args: argparse.Namespace) -> None:
    big, small = Path(args.dir) / f"day{args.packets}.pcap", Path(args.dir) / f"day{args.small}.pcap"
    build("make_day_pcap.py", small, "--packets", str(args.small))
    build("make_day_pcap.py", big, "--packets", str(args.packets))
    with tempfile.TemporaryDirectory() as d:
        rs = run_formats(small, Path(d), 1)
        rb = run_formats(big, Path(d), 1)
    ndpi = None
    if not args.no_ndpi and shutil.which("ndpiReader"):
        ndpi = timed(["ndpiReader", "-i", str(big), "-q", "-v", "0"])
    print(f"day captures: {small.name} and {big.name}\n")
    print("| run | small wall s | small peak MiB | big wall s | big peak MiB | peak ratio | targets |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for fmt in rb:
        (ws, ms), (wb, mb) = rs[fmt], rb[fmt]
        notes = ["peak ok" if mb <= 300 else "peak > 300 MiB", "flat" if mb <= 1.2 * ms else "not flat"]
        if ndpi is not None:
            notes.append(f"{wb / ndpi[0]:.3f}x ndpiReader" + ("" if wb <= 0.15 * ndpi[0] else " (> 0.15x)"))
        print(f"| {fmt} | {ws:.2f} | {ms:.0f} | {wb:.2f} | {mb:.0f} | {mb / ms:.2f} | {', '.join(notes)} |")
    if ndpi is not None:
        print(f"| ndpiReader | | | {ndpi[0]:.2f} | {ndpi[1]:.0f} | | |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--capture", default="/tmp/bench1m.pcap")
    b.add_argument("--repeat", type=int, default=2)
    d = sub.add_parser("day")
    d.add_argument("--dir", default="/tmp")
    d.add_argument("--packets", type=int, default=10_000_000)
    d.add_argument("--small", type=int, default=1_000_000)
    d.add_argument("--no-ndpi", action="store_true")
    args = ap.parse_args()
    bench(args) if args.what == "bench" else day(args)


if __name__ == "__main__":
    main()
