"""Memory benchmark: every report's peak on the day capture, flat in the capture's length.

    python benchmarks/bench_memory.py [--packets 10000000] [--small 1000000] [--dir /tmp] [--only summary,json]

Builds the day captures (``../shared/bench/make_day_pcap.py``) in ``--dir`` if missing, then runs, one
process at a time, the summary (terminal), ``-f json``, ``-f html`` and each streaming format
(``-f jsonl|csv|zeek|parquet -o FILE``) on the small and the large capture: wall time, peak memory of
the whole process tree (``bench_stream.timed``: the reading and the writing process counted too) and
CPU seconds (the machine may be shared).  Targets: peak <= 300 MiB on the large capture and <= 1.2x
the small one's.
The summary, json and html are built from running aggregates (``classifier.report.aggregates``) and
the run's worst flows; each streaming format writes flows as they end.  Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_stream import PORTCLASS, build, timed  # noqa: E402

REPORTS = ("summary", "json", "html", "jsonl", "csv", "zeek", "parquet")


def run(capture: Path, fmt: str, out_dir: Path) -> tuple[float, float, float]:
    """(wall s, peak MiB, CPU s) of one report of ``capture``."""
    cmd = [*PORTCLASS, str(capture), "--no-progress"]
    if fmt != "summary":
        cmd += ["-f", fmt, "-o", str(out_dir / f"out.{fmt}")]
    return timed(cmd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("--packets", type=int, default=10_000_000)
    ap.add_argument("--small", type=int, default=1_000_000)
    ap.add_argument("--big-capture", help="an existing large day capture (instead of building one in --dir)")
    ap.add_argument("--small-capture", help="an existing small day capture")
    ap.add_argument("--only", default=",".join(REPORTS), help="comma-separated reports to run")
    args = ap.parse_args()
    small = Path(args.small_capture or Path(args.dir) / f"day{args.small}.pcap")
    big = Path(args.big_capture or Path(args.dir) / f"day{args.packets}.pcap")
    build("make_day_pcap.py", small, "--packets", str(args.small))
    build("make_day_pcap.py", big, "--packets", str(args.packets))
    print(f"day captures: {small.name} ({small.stat().st_size / 2**20:,.0f} MiB) and "
          f"{big.name} ({big.stat().st_size / 2**20:,.0f} MiB)\n")  # fmt: skip
    print("| report | small wall s | small CPU s | small peak MiB | large wall s | large CPU s | large peak MiB "
          "| peak ratio | targets |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |", flush=True)
    missed = 0
    with tempfile.TemporaryDirectory() as d:
        for fmt in args.only.split(","):
            (ws, ms, cs), (wb, mb, cb) = run(small, fmt, Path(d)), run(big, fmt, Path(d))
            ok = mb <= 300 and mb <= 1.2 * ms
            missed += not ok
            notes = ["peak ok" if mb <= 300 else "peak > 300 MiB", "flat" if mb <= 1.2 * ms else "not flat (> 1.2x)"]
            print(f"| {fmt} | {ws:.2f} | {cs:.2f} | {ms:.0f} | {wb:.2f} | {cb:.2f} | {mb:.0f} | {mb / ms:.2f} "
                  f"| {', '.join(notes)} |", flush=True)  # fmt: skip
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
