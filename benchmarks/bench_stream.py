"""Streaming benchmark: every machine format against the summary, and the day capture's memory.

    python benchmarks/bench_stream.py bench [--capture /tmp/bench1m.pcap]
        builds the bench capture (../shared/bench/make_bench_pcap.py) if missing, then runs, side by
        side in one run, ``portclass CAPTURE`` (summary) and ``-f jsonl|csv|zeek|parquet -o FILE``:
        wall time, CPU and peak memory of the whole process tree (``timed``), formats alternated
        in each round, best of ``--repeat``; target <= 1.3x the summary.
    python benchmarks/bench_stream.py day [--packets 10000000] [--small 1000000] [--no-ndpi]
        builds day captures (../shared/bench/make_day_pcap.py) in /tmp, runs the summary and each
        streaming format on both, and ndpiReader (Debian libndpi-bin) on the large one; targets:
        peak <= 300 MiB and <= 1.2x the small capture's peak, wall <= 0.15x ndpiReader's.

    python benchmarks/bench_stream.py serializers [--capture /tmp/bench1m.pcap]
        CPU time of two ways to the same JSON Lines bytes, in this process: Arrow string kernels over
        the columns (what the writers do, ``report.serialize``) and orjson over a nested dict per flow.

One process at a time (the machine is shared); figures go to stdout as a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PORTCLASS_SHARED", ROOT.parent / "shared"))
FORMATS = ("jsonl", "csv", "zeek", "parquet")
PORTCLASS = [sys.executable, "-m", "classifier"]
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
"""portclass runs as an installed package does: its bytecode cached (``warm_up`` writes it once)."""


def timed(cmd: list[str]) -> tuple[float, float, float]:
    """(wall seconds, peak MiB of the whole process tree, CPU seconds user + system of the tree) of ``cmd``;
    exits on failure.

    The peak counts every process of the run (the reading process of ``classifier.feed`` and the writing
    process of ``report.writer`` too), sampled every 10 ms from ``/proc``: each process's private pages
    plus the largest shared set once (a forked child shares its parent's pages until it writes them, so
    summing RSS would count those twice; for one process this is its RSS). The kernel's own peak of the
    largest single process (``ru_maxrss``) is a floor: the larger of the two is reported. CPU time is
    the run's and its children's (``wait4``).
    """
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=ENV)
        peak = 0
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, tree_kib(proc.pid))
            time.sleep(0.01)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode(errors="replace")
    if proc.returncode not in (0, 1):
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{text[-2000:]}")
    return wall, max(peak, ru.ru_maxrss) / 1024, ru.ru_utime + ru.ru_stime


def tree_kib(pid: int) -> int:
    """Resident KiB of ``pid`` and its descendants: private pages of each, plus the largest shared set once."""
    private, shared = 0, 0
    for p in _tree(pid):
        try:
            lines = Path(f"/proc/{p}/smaps_rollup").read_text().splitlines()[1:]
            fields = {k: int(v.split()[0]) for k, v in (x.split(":", 1) for x in lines)}
        except (OSError, ValueError):
            continue  # ended meanwhile
        private += fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
        shared = max(shared, fields.get("Shared_Clean", 0) + fields.get("Shared_Dirty", 0))
    return private + shared


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from each thread's ``children`` list)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def build(script: str, out: Path, *extra: str) -> None:
    if not out.exists():
        subprocess.run([sys.executable, str(SHARED / "bench" / script), str(out), *extra], check=True)


def warm_up(out_dir: Path) -> None:
    """One untimed run of every format on the small sample capture (imports and bytecode cache)."""
    for fmt in ("summary", *FORMATS):
        extra = [] if fmt == "summary" else ["-f", fmt, "-o", str(out_dir / f"warm.{fmt}")]
        cmd = [*PORTCLASS, str(ROOT / "captures" / "sample.pcap"), "--no-progress", *extra]
        subprocess.run(cmd, stdout=subprocess.DEVNULL, env=ENV, check=False)


def run_formats(capture: Path, out_dir: Path, repeat: int) -> dict[str, tuple[float, float, float]]:
    """Best of ``repeat`` wall times (and the peak of that run) per format, summary first; the formats
    alternate within each round (a load that comes and goes on a shared machine hits all alike)."""
    warm_up(out_dir)
    runs: dict[str, list[tuple[float, float, float]]] = {fmt: [] for fmt in ("summary", *FORMATS)}
    for _ in range(repeat):
        for fmt in runs:
            cmd = [*PORTCLASS, str(capture), "--no-progress"]
            if fmt != "summary":
                cmd += ["-f", fmt, "-o", str(out_dir / f"out.{fmt}")]
            runs[fmt].append(timed(cmd))
    return {fmt: min(r, key=lambda x: x[0]) for fmt, r in runs.items()}


def bench(args: argparse.Namespace) -> None:
    cap = Path(args.capture)
    build("make_bench_pcap.py", cap)
    with tempfile.TemporaryDirectory() as d:
        res = run_formats(cap, Path(d), args.repeat)
    base = res["summary"][0]
    print(f"bench capture {cap} ({cap.stat().st_size / 2**20:.0f} MiB), best of {args.repeat}\n")
    cpu0 = res["summary"][2]
    print("| run | wall s | x summary | CPU s | CPU x summary | peak MiB | target (wall) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for fmt, (wall, rss, cpu) in res.items():
        ok = "" if fmt == "summary" else ("ok" if wall <= 1.3 * base else "MISSED (<= 1.3x)")
        print(f"| {fmt} | {wall:.2f} | {wall / base:.2f} | {cpu:.2f} | {cpu / cpu0:.2f} | {rss:.0f} | {ok} |")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


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
        (ws, ms, _), (wb, mb, _) = rs[fmt], rb[fmt]
        notes = ["peak ok" if mb <= 300 else "peak > 300 MiB", "flat" if mb <= 1.2 * ms else "not flat"]
        if ndpi is not None:
            notes.append(f"{wb / ndpi[0]:.3f}x ndpiReader" + ("" if wb <= 0.15 * ndpi[0] else " (> 0.15x)"))
        print(f"| {fmt} | {ws:.2f} | {ms:.0f} | {wb:.2f} | {mb:.0f} | {mb / ms:.2f} | {', '.join(notes)} |")
    if ndpi is not None:
        print(f"| ndpiReader | | | {ndpi[0]:.2f} | {ndpi[1]:.0f} | | |")


def serializers(args: argparse.Namespace) -> None:
    import time

    import orjson

    from classifier.api import load_registry
    from classifier.pipeline import analyze
    from classifier.report.rows import pylist, table_arrays
    from classifier.report.serialize import jsonl_body, pyarrow_for_writers

    cap = Path(args.capture)
    build("make_bench_pcap.py", cap)
    pyarrow_for_writers()
    a = analyze([str(cap)], load_registry(), hold=True)
    n = len(a.flows)
    cols = table_arrays(a)
    t = time.process_time()
    body = bytes(jsonl_body(cols))
    arrow_s = time.process_time() - t
    t = time.process_time()
    lists = {k: [v] * n if isinstance(v, str | list) else pylist(v) for k, v in cols.items()}
    paths = [[k] if k.startswith("@") else k.split(".") for k in lists]
    docs = []
    for values in zip(*lists.values(), strict=True):
        doc: dict = {}
        for path, v in zip(paths, values, strict=True):
            if v is not None:
                node = doc
                for part in path[:-1]:
                    node = node.setdefault(part, {})
                node[path[-1]] = v
        docs.append(doc)
    text = b"\n".join(map(orjson.dumps, docs)) + b"\n"
    orjson_s = time.process_time() - t
    assert text == body, "the two ways differ"
    print(f"{n} flows, {len(body) / 2**20:.0f} MiB of JSON Lines (the same bytes both ways), CPU seconds:\n")
    print("| way | CPU s | x Arrow |\n| --- | --- | --- |")
    print(f"| Arrow string kernels over columns | {arrow_s:.2f} | 1.00 |")
    print(f"| orjson over a dict per flow | {orjson_s:.2f} | {orjson_s / arrow_s:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--capture", default="/tmp/bench1m.pcap")
    b.add_argument("--repeat", type=int, default=2)
    z = sub.add_parser("serializers")
    z.add_argument("--capture", default="/tmp/bench1m.pcap")
    d = sub.add_parser("day")
    d.add_argument("--dir", default="/tmp")
    d.add_argument("--packets", type=int, default=10_000_000)
    d.add_argument("--small", type=int, default=1_000_000)
    d.add_argument("--no-ndpi", action="store_true")
    args = ap.parse_args()
    {"bench": bench, "day": day, "serializers": serializers}[args.what](args)


if __name__ == "__main__":
    main()
