#!/usr/bin/env python3
"""Live capture benchmark: the highest packet rate each backend sustains on loopback without drops.

For each backend the rate is ramped: ``tcpreplay -i lo --pps N`` replays a capture onto the
loopback interface of a network namespace made for the run (so nothing leaves it, and no other
traffic mixes in) while ``portclass``'s live engine captures there; a rate passes when every
packet sent was captured, none was dropped, and 95% of the batches reached the flow stage within
two seconds (no growing backlog).  Label lag is the time from a packet's kernel
timestamp until a refresh has labelled it (refresh every second), and batch lag the time until
its batch reached the flow stage.

Needs root, ``ip`` (iproute2) and ``tcpreplay`` (``apt-get install tcpreplay``).

usage: sudo .venv/bin/python benchmarks/bench_live_rates.py [--backends dumpcap,scapy,pyshark]
           [--pcap /tmp/bench1m.pcap] [--seconds 3] [--rates dumpcap=100000,200000,...]
The capture is any Ethernet pcap; the default is benchmarks/out/bench1m.pcap (made by
../shared/bench/make_bench_pcap.py: real flows from the nDPI corpus, ~290 bytes a packet).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_RATES = {
    "dumpcap": [50_000, 100_000, 200_000, 300_000, 400_000, 500_000, 700_000],
    "scapy": [5_000, 10_000, 20_000, 40_000, 80_000, 120_000, 160_000, 200_000],
    "pyshark": [500, 1_000, 2_000, 4_000, 6_000, 8_000],
}
PCAPS = [ROOT / "benchmarks" / "out" / "bench1m.pcap", Path("/tmp/bench1m.pcap"), ROOT / "captures" / "sample.pcap"]


def _registry_path() -> str | None:
    shared = ROOT.parent / "shared" / "registry" / "service-names-port-numbers.xml"
    return str(shared) if shared.is_file() else None


def trial(backend: str, rate: int, seconds: float, pcap: str, refresh: float = 1.0, jobs: int | None = None) -> dict:
    """One capture at one rate (runs inside the namespace): a dict of figures."""
    from classifier.live.engine import LiveOptions, LiveSession
    from classifier.registry.sources import load_registry

    reg = load_registry(_registry_path())
    count = int(rate * seconds)
    child = None if jobs is None else jobs >= 2
    opts = LiveOptions(["lo"], refresh=refresh, backend=backend, idle_timeout=300, child=child)
    session = LiveSession(opts, reg)
    replay: dict = {}

    def send(s: LiveSession) -> None:
        def run() -> None:
            time.sleep(0.3)
            cmd = ["tcpreplay", "-i", "lo", "--pps", str(rate), "-L", str(count), "--loop", "100", pcap]
            if rate >= 100_000:
                cmd[3:3] = ["--pps-multi", "20"]
            r = subprocess.run(cmd, capture_output=True, text=True)
            out = r.stdout + r.stderr
            m = re.search(r"Successful packets:\s+(\d+)", out)
            replay["sent"] = int(m.group(1)) if m else 0
            m = re.search(r"Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps", out)
            replay["pps"] = float(m.group(1)) if m else 0.0
            time.sleep(1.0 if backend != "pyshark" else 3.0)  # let the last packets through
            s.request_stop("replay done")

        threading.Thread(target=run, daemon=True).start()

    t0 = time.perf_counter()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    rc0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = session.run(on_ready=send)
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    rc1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    lag = result.lag.to_dict()
    return {
        "backend": backend,
        "rate": rate,
        "achieved_pps": round(replay.get("pps", 0.0)),
        "sent": replay.get("sent", 0),
        "captured": int(result.analysis.stats.packets),
        "dropped": result.dropped,
        "flows": len(result.analysis.flows),
        "label_lag_p50": lag["label_oldest_s"]["p50"],
        "label_lag_max": lag["label_oldest_s"]["max"],
        "batch_lag_p50": lag["batch_s"]["p50"],
        "batch_lag_p95": lag["batch_s"]["p95"],
        "batch_lag_max": lag["batch_s"]["max"],
        "portclass_cpu_s": round(ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime, 2),
        "children_cpu_s": round(rc1.ru_utime + rc1.ru_stime - rc0.ru_utime - rc0.ru_stime, 2),
        "wall_s": round(wall, 2),
        "error": result.error,
    }


MAX_BATCH_LAG_S = 2.0
"""A rate is sustained only if 95% of batches reached the flow stage within this (no growing backlog)."""


def _passed(r: dict) -> bool:
    kept_up = r["batch_lag_p95"] is not None and r["batch_lag_p95"] <= MAX_BATCH_LAG_S
    return r["dropped"] == 0 and r["sent"] > 0 and r["captured"] >= r["sent"] and kept_up and not r["error"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="dumpcap,scapy,pyshark")
    ap.add_argument("--pcap", default=None, help="Ethernet capture to replay (default: bench1m.pcap)")
    ap.add_argument("--seconds", type=float, default=3.0, help="seconds of replay per rate")
    ap.add_argument("--refresh", type=float, default=1.0, help="seconds between labelled snapshots (as --refresh)")
    ap.add_argument("--jobs", type=int, default=None, help="as portclass live --jobs (1: one process)")
    ap.add_argument("--rates", action="append", default=[], metavar="BACKEND=N,N,...")
    ap.add_argument("--trial", nargs=2, metavar=("BACKEND", "RATE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    pcap = args.pcap or next((str(p) for p in PCAPS if p.is_file()), None)
    if pcap is None:
        sys.exit("no capture to replay: make one with ../shared/bench/make_bench_pcap.py benchmarks/out/bench1m.pcap")
    if args.trial:
        r = trial(args.trial[0], int(args.trial[1]), args.seconds, pcap, args.refresh, args.jobs)
        print(json.dumps(r), flush=True)
        return 0
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark makes a network namespace and replays packets into it")
    for prog in ("ip", "tcpreplay"):
        if shutil.which(prog) is None:
            sys.exit(f"{prog} not found: apt-get install {'iproute2' if prog == 'ip' else 'tcpreplay'}")
    rates = dict(DEFAULT_RATES)
    for spec in args.rates:
        name, _, values = spec.partition("=")
        rates[name] = [int(v) for v in values.split(",")]
    ns = f"portclass-bench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    rows: list[dict] = []
    best: dict[str, dict | None] = {}
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        print(
            f"replaying {pcap} onto lo of network namespace {ns}, {args.seconds:g} s per rate, "
            f"labels refreshed every {args.refresh:g} s",
            file=sys.stderr,
        )
        for backend in args.backends.split(","):
            best[backend] = None
            for rate in rates[backend]:
                cmd = ["ip", "netns", "exec", ns, sys.executable, __file__, "--trial", backend, str(rate)]
                cmd += ["--seconds", str(args.seconds), "--pcap", pcap, "--refresh", str(args.refresh)]
                if args.jobs is not None:
                    cmd += ["--jobs", str(args.jobs)]
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
                line = res.stdout.strip().splitlines()[-1:] or ["{}"]
                try:
                    r = json.loads(line[0])
                except json.JSONDecodeError:
                    print(res.stderr[-2000:], file=sys.stderr)
                    break
                r["ok"] = _passed(r)
                rows.append(r)
                print(
                    f"  {backend:8} {rate:>9,} pps: sent {r['sent']:,} at {r['achieved_pps']:,}/s, captured "
                    f"{r['captured']:,}, dropped {r['dropped']}, label lag p50 {r['label_lag_p50']} s "
                    f"-> {'ok' if r['ok'] else 'FAIL'}",
                    file=sys.stderr,
                )
                if not r["ok"] or r["achieved_pps"] < 0.9 * rate:
                    break
                best[backend] = r
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    print()
    head = (
        f"{'backend':8} {'target pps':>10} {'sent pps':>9} {'sent':>9} {'captured':>9} {'dropped':>8} {'flows':>7} "
        f"{'label lag p50/max s':>20} {'batch lag p50/max s':>20} {'cpu s (py+child)':>17} {'us/pkt':>6} ok"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        lag = f"{r['label_lag_p50']}/{r['label_lag_max']}"
        blag = f"{r['batch_lag_p50']}/{r['batch_lag_max']}"
        cpu = f"{r['portclass_cpu_s']}+{r['children_cpu_s']}"
        per = r["portclass_cpu_s"] / max(r["captured"], 1) * 1e6  # portclass's CPU a packet: steadier than drops
        print(
            f"{r['backend']:8} {r['rate']:>10,} {r['achieved_pps']:>9,} {r['sent']:>9,} {r['captured']:>9,} "
            f"{str(r['dropped']):>8} {r['flows']:>7,} {lag:>20} {blag:>20} {cpu:>17} {per:6.2f} "
            f"{'yes' if r['ok'] else 'NO'}"
        )
    print()
    for backend, r in best.items():
        if r is None:
            print(f"{backend}: no rate passed")
        else:
            print(
                f"{backend}: sustains {r['achieved_pps']:,} packets/s without drops; labels lag "
                f"{r['label_lag_p50']} s (p50), {r['label_lag_max']} s (max) behind the packets"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
