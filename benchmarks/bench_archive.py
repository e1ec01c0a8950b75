"""Archive benchmark: the 10 M-packet day capture cut into 96 files of 15 minutes, labelled into a dataset.

    python benchmarks/bench_archive.py [--capture /tmp/engine_day10m.pcap] [--workers 2] [--files N] [--keep]
                                       [--cut DIR] [--repeat N]

builds the day capture with ../shared/bench/make_day_pcap.py if missing, cuts it with ``editcap -i 900``
(a ring buffer: dumpcap's naming, so flows crossing files are joined), then in one run:
  1. ``portclass archive`` in one process;
  2. the same with ``--dask local:N`` (N worker processes; target on this 2-core machine: >= 1.7x);
  3. the scheduler's overhead per task (empty tasks on the same kind of cluster);
  4. the bytes each task sends back (aggregates + edge flows; small, not growing with the file), and of
     them the summary aggregates' (the whole archive's summary is merged from these);
  5. the driver's own work per file, and the CPU of the driver's process (with ``local``, the scheduler's
     too: it shares the machine's cores with the workers).
``--files N`` labels only the first N files of the cut (a shorter ring buffer: a quicker run); ``--cut DIR``
reuses a cut kept by ``--keep``; ``--repeat N`` alternates N runs of 1 and 2 and keeps the best of each.
It closes with a model of the wall time for 10, 100 and 1,000 workers from the measured figures, and
where it stops falling.  The machine's load average is printed: other processes slow both runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("PORTCLASS_SHARED", ROOT.parent / "shared"))


def _noop(i: int) -> int:
    return i


def _free_port() -> int:
    import socket

    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        return so.getsockname()[1]


class Services:
    """A scheduler and N workers as separate services (own sessions, as on a real cluster).

    Linux autogroup shares the CPU between sessions: a LocalCluster's workers share the benchmark's
    session, so on a machine others load they get together the share one process gets.
    """

    def __init__(self, workers: int) -> None:
        dask = str(Path(sys.executable).parent / "dask")
        port = _free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if k != "MALLOC_TRIM_THRESHOLD_"}  # see archive.cluster.TRIM
        env["DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED"] = "False"  # as --dask local's workers
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "start_new_session": True, "env": env}
        self.procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                        "--dashboard-address", f"127.0.0.1:{_free_port()}"], **quiet)]  # fmt: skip
        for _ in range(workers):
            self.procs.append(subprocess.Popen([dask, "worker", self.address, "--nthreads", "1", "--no-nanny",
                                                "--host", "127.0.0.1", "--no-dashboard"], **quiet))  # fmt: skip
        from distributed import Client

        with Client(self.address, timeout="60s") as c:
            c.wait_for_workers(workers, timeout=120)

    def close(self) -> None:
        for p in reversed(self.procs):
            p.kill()
            p.wait()


def scheduler_overhead(workers: int, tasks: int = 2000) -> float:
    """Seconds per task of submitting and gathering ``tasks`` empty tasks on a local cluster."""
    from distributed import Client, LocalCluster, wait

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.CRITICAL) as lc:  # a worker's heartbeat as the cluster stops: not news
        with Client(lc) as c:
            wait(c.map(_noop, range(50), pure=False))  # warm up
            t0 = time.perf_counter()
            wait(c.map(_noop, range(tasks), pure=False))
            return (time.perf_counter() - t0) / tasks


def label(files: Path, out: Path, dask: str | None) -> tuple[float, object]:
    """Wall seconds of a whole ``archive.run`` (cluster start included) and its outcome, with the CPU
    seconds of this process (the driver; with ``local``, the scheduler's too) as ``process_cpu``."""
    from classifier.archive import run
    from classifier.registry.sources import load_registry

    reg = load_registry(os.environ.get("PORTCLASS_REGISTRY"))
    shutil.rmtree(out, ignore_errors=True)
    t0, c0 = time.perf_counter(), time.process_time()
    oc = run([str(files)], out, reg, dask=dask)
    oc.process_cpu = time.process_time() - c0  # type: ignore[attr-defined]
    return time.perf_counter() - t0, oc


def model(n_files: int, t_file: float, t_longest: float, overhead: float, driver_per_file: float, start: float,
          gib: float, storage_gbs: float) -> list[tuple[int, float, str]]:  # fmt: skip
    """Wall time by workers: start + the slowest of (waves of files on the workers, the driver's work on
    each file's results, the scheduler's tasks: both handle one file after the other), floored by storage."""
    out = []
    for w in (1, 2, 10, 100, 1000):
        waves = -(-n_files // w)
        bounds = {"workers": max(waves * t_file, t_longest), "driver": n_files * driver_per_file,
                  "scheduler": n_files * overhead, "storage": gib * 1.073741824 / storage_gbs}  # fmt: skip
        bound = max(bounds, key=bounds.__getitem__)
        out.append((w, start + bounds[bound] if bound != "storage" else max(bounds[bound], start), bound))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--capture", type=Path, default=Path("/tmp/engine_day10m.pcap"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--storage-gbs", type=float, default=2.0, help="shared storage bandwidth assumed, GB/s")
    ap.add_argument("--files", type=int, default=0, help="label only the first N files of the cut (0: all)")
    ap.add_argument("--keep", action="store_true", help="keep the cut files and datasets in /tmp")
    ap.add_argument("--cut", type=Path, help="a directory holding the cut already (kept; --files ignored)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of one process and local, alternated (best kept)")
    args = ap.parse_args()
    if not args.capture.exists():
        subprocess.run([sys.executable, str(SHARED / "bench" / "make_day_pcap.py"), str(args.capture),
                        "--packets", "10000000"], check=True)  # fmt: skip
    os.environ.setdefault("PORTCLASS_REGISTRY", str(SHARED / "registry" / "service-names-port-numbers.xml"))
    work = Path(tempfile.mkdtemp(prefix="bench_archive_", dir="/tmp"))
    files = work / "ring"
    t0 = time.perf_counter()
    if args.cut:
        files = args.cut
    else:
        files.mkdir()
        subprocess.run(["editcap", "-i", "900", str(args.capture), str(files / "day.pcap")], check=True)
    cut = sorted(files.iterdir())
    if args.files and not args.cut:
        for f in cut[args.files :]:
            f.unlink()
        cut = cut[: args.files]
    gib = sum(f.stat().st_size for f in cut) / 2**30
    print(f"cut {args.capture} into {len(cut)} files of 15 min ({gib:.2f} GiB) in {time.perf_counter() - t0:.1f} s")
    try:
        print(f"load average before: {os.getloadavg()}")
        runs: dict[str, list[tuple[float, object]]] = {"one": [], "local": []}
        for _ in range(args.repeat):  # alternated: both see the same load
            runs["one"].append(label(files, work / "one", None))
            print(f"one process {runs['one'][-1][0]:.1f} s; load average {os.getloadavg()}")
            runs["local"].append(label(files, work / "dask", f"local:{args.workers}"))
            print(f"dask local {runs['local'][-1][0]:.1f} s; load average {os.getloadavg()}")
        (t_one, one), (t_dask, dk) = (min(r, key=lambda x: x[0]) for r in runs.values())
        if args.repeat > 1:
            print("ratio of each pair:", ", ".join(f"{a[0] / b[0]:.2f}x" for a, b in zip(*runs.values(), strict=True)))
        svc = Services(args.workers)
        try:
            t_svc, sv = label(files, work / "svc", svc.address)
        finally:
            svc.close()
        print(f"load average after dask services: {os.getloadavg()}")
        over = scheduler_overhead(args.workers)
        pk = one.aggregate.stats.packets  # type: ignore[attr-defined]
        sizes = dk.result_bytes  # type: ignore[attr-defined]
        t_file = statistics.mean(one.task_seconds)  # type: ignore[attr-defined]
        print()
        print("| run | wall s | packets/s | speed-up |")
        print("| --- | ---: | ---: | ---: |")
        print(f"| one process | {t_one:.1f} | {pk / t_one:,.0f} | 1.00x |")
        print(f"| --dask local:{args.workers} | {t_dask:.1f} | {pk / t_dask:,.0f} | {t_one / t_dask:.2f}x |")
        print(f"| --dask tcp:// ({args.workers} workers as services) | {t_svc:.1f} | {pk / t_svc:,.0f} | "
              f"{t_one / t_svc:.2f}x |")  # fmt: skip
        for name, o in (("one process", one), ("local", dk), ("services", sv)):
            print(f"  {name}: labelling {o.label_seconds:.1f} s, then the last edges and joins "  # type: ignore[attr-defined]
                  f"{o.finish_seconds:.1f} s; the driver's own work {o.driver_seconds:.1f} s (of which joins "  # type: ignore[attr-defined]
                  f"{o.join_seconds:.1f} s); tasks' own time {sum(o.task_seconds):.1f} s, "  # type: ignore[attr-defined]
                  f"CPU {sum(o.task_cpu):.1f} s; this process's CPU {o.process_cpu:.1f} s")  # type: ignore[attr-defined]
        print()
        print(f"flows {one.aggregate.running.flows:,} (dask {dk.aggregate.running.flows:,}), packets {pk:,}")  # type: ignore[attr-defined]
        print(f"per file: {t_file:.3f} s mean, {max(one.task_seconds):.3f} s max (one process)")  # type: ignore[attr-defined]
        print(f"scheduler overhead per task: {over * 1e3:.2f} ms ({args.workers} workers, empty tasks)")
        drv = dk.driver_seconds / len(cut)  # type: ignore[attr-defined]
        print(f"driver's work on each file's results (keys, edge join, summary merge): {drv * 1e3:.1f} ms a file "
              f"(local:{args.workers}; of which joins {dk.join_seconds / len(cut) * 1e3:.1f} ms)")  # type: ignore[attr-defined]
        print(f"bytes sent back per task: min {min(sizes):,}, median {statistics.median(sizes):,.0f}, "
              f"max {max(sizes):,} (files {min(f.stat().st_size for f in cut) / 1e6:.0f}-"
              f"{max(f.stat().st_size for f in cut) / 1e6:.0f} MB)")  # fmt: skip
        start = max(t_svc - sv.label_seconds - sv.finish_seconds, 0.0)  # type: ignore[attr-defined]
        summ = dk.summary_bytes  # type: ignore[attr-defined]
        print(f"  of which the summary aggregates (services, hosts, scanners, timeline, {dk.aggregate.summary.limit} "  # type: ignore[attr-defined]
              f"worst flows): min {min(summ):,}, median {statistics.median(summ):,.0f}, max {max(summ):,}")  # fmt: skip
        print(f"fixed cost of a run (connect, registry broadcast, plan, metadata): {start:.1f} s")
        print()
        per_file = (t_one - one.driver_seconds) / len(cut)  # type: ignore[attr-defined]  # label and edge tasks
        longest = max(one.task_seconds) * per_file / t_file  # type: ignore[attr-defined]  # ... of the busiest file
        print(f"one file's tasks (label and edge) in one process: {per_file:.3f} s mean, {longest:.3f} s the longest")
        print()
        print(f"model (these {len(cut)} files; and a month of them, {len(cut) * 30}, from shared storage at "
              f"{args.storage_gbs} GB/s):")  # fmt: skip
        print(f"| workers | {len(cut)} files s | bound | {len(cut) * 30:,} files s | bound |")
        print("| ---: | ---: | --- | ---: | --- |")
        # three tasks a file (label, its keys, its edge); the driver handles each file's results in turn
        day = model(len(cut), per_file, longest, 3 * over, drv, start, gib, args.storage_gbs)
        month = model(len(cut) * 30, per_file, longest, 3 * over, drv, start, gib * 30, args.storage_gbs)
        for (w, a, ba), (_, b, bb) in zip(day, month, strict=True):
            print(f"| {w} | {a:.1f} | {ba} | {b:.1f} | {bb} |")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
