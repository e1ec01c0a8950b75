#!/usr/bin/env python3
"""Sensor benchmark: ``portclass live -f jsonl -o DIR --rotate`` on a replayed day of traffic, for minutes.

Two network namespaces made for the run, joined by a veth pair: ``tcpreplay`` sends the day capture
(``../shared/bench/make_day_pcap.py``; looped) from one at ``--rate`` packets/s for ``--minutes``,
the sensor captures on the other end (dumpcap backend, no view) and writes rotated JSON Lines files.
Every ``--sample`` seconds the sensor's resident memory is read from /proc (its engine process and
its reading child, ``--jobs``; dumpcap apart).  At the end (SIGTERM, as a service manager stops it)
the benchmark prints:

- resident memory after warm-up: flat when max/min <= 1.10 (warm-up: the first ``--warmup`` s, by
  default 90 s: one loop of the day capture at 200,000 packets/s plus the TCP idle timeout);
- packets sent (tcpreplay), captured and dropped (dumpcap's kernel counters): no drops at the rate;
- the rotated files: each one whole (every line parses, closing line present), and the packets of
  their flows adding up to the packets captured with ports (the summary's flow packets).

The replay squeezes 24 hours of traffic into about a minute per loop, so the idle timeouts are
short (``--idle-timeout tcp=30,udp=10,default=10``) for flows to end at the replayed pace.  Needs
root, ``ip`` (iproute2) and ``tcpreplay`` (``bash benchmarks/setup``).

usage: sudo .venv/bin/python benchmarks/bench_live.py [--pcap /tmp/engine_day10m.pcap] [--minutes 5]
           [--rate 200000] [--rotate 1m] [--sample 5] [--warmup 90] [--jobs N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PCAPS = [Path("/tmp/engine_day10m.pcap"), ROOT / "benchmarks" / "out" / "day10m.pcap", Path("/tmp/day10000000.pcap")]
IDLE = "tcp=30,udp=10,default=10"


def rss_kib(pid: int) -> int | None:
    """VmRSS of ``pid`` in KiB (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def descendants(pid: int) -> list[int]:
    """The processes under ``pid`` (the reading child, and dumpcap under it), depth first."""
    try:
        kids = [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return [p for k in kids for p in (k, *descendants(k))]


def is_dumpcap(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "dumpcap"
    except OSError:
        return False


def tree_rss_kib(pid: int) -> tuple[int, int, int]:
    """Resident KiB of the sensor (``pid``), of its other portclass processes (the reading child), of dumpcap."""
    own = rss_kib(pid) or 0
    kids = descendants(pid)
    dc = sum(rss_kib(k) or 0 for k in kids if is_dumpcap(k))
    return own, sum(rss_kib(k) or 0 for k in kids if not is_dumpcap(k)), dc


def cpu_s(pid: int) -> float:
    """User + system CPU seconds ``pid`` used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> tuple[float, float, float]:
    """CPU seconds so far of the sensor, its reading child, and dumpcap."""
    kids = descendants(pid)
    return (
        cpu_s(pid),
        sum(cpu_s(k) for k in kids if not is_dumpcap(k)),
        sum(cpu_s(k) for k in kids if is_dumpcap(k)),
    )


def wait_caught_up(pid: int, limit: float = 300.0) -> float:
    """Wait until the sensor is nearly idle (it read every packet the kernel holds for it); seconds waited."""
    t0 = time.monotonic()
    prev = sum(tree_cpu_s(pid))
    while time.monotonic() - t0 < limit:
        time.sleep(2.0)
        now = sum(tree_cpu_s(pid))
        if now - prev < 0.3:  # under 15% of a core: only refreshes left
            break
        prev = now
    return time.monotonic() - t0


def softnet_dropped() -> int:
    """Packets the kernel dropped from its per-CPU input backlogs (all namespaces: /proc/net/softnet_stat)."""
    rows = Path("/proc/net/softnet_stat").read_text().split("\n")
    return sum(int(r.split()[1], 16) for r in rows if r.strip())


def link_rx_dropped(ns: str, dev: str) -> int:
    """The receiving veth end's rx drop counter."""
    import json

    r = subprocess.run(["ip", "-n", ns, "-s", "-j", "link", "show", dev], capture_output=True, text=True)
    try:
        return int(json.loads(r.stdout)[0]["stats64"]["rx"]["dropped"])
    except (ValueError, KeyError, IndexError):
        return -1


def check_files(directory: Path) -> tuple[int, int, int, list[str]]:
    """(files, flows, packets of their flows, problems) of the rotated JSON Lines files."""
    import orjson

    name = re.compile(r"^conn\.\d{4}(-\d\d){5}_\d{4}(-\d\d){5}(-\d+)?\.jsonl$")
    files = flows = packets = 0
    problems: list[str] = []
    for f in sorted(directory.iterdir()):
        if not name.match(f.name):
            problems.append(f"{f.name}: not a rotated file's name (left behind?)")
            continue
        files += 1
        n = p = 0
        last = None
        with f.open("rb") as fh:
            data = fh.read()
        if not data.endswith(b"\n"):
            problems.append(f"{f.name}: ends inside a line")
        lines = data.splitlines()
        try:
            head = orjson.loads(lines[0])
            assert head["event"]["dataset"] == "portclass.notice"
            for line in lines[1:-1]:
                d = orjson.loads(line)
                n += 1
                p += d["network"]["packets"]
            last = orjson.loads(lines[-1])
        except Exception as exc:  # noqa: BLE001 - any damage is a finding
            problems.append(f"{f.name}: {exc}")
            continue
        if last["event"]["dataset"] != "portclass.close":
            problems.append(f"{f.name}: no closing line")
        elif last["portclass"]["live"]["file"]["flows"] != n or last["portclass"]["live"]["file"]["packets"] != p:
            problems.append(f"{f.name}: closing line says {last['portclass']['live']['file']}, lines hold {n}/{p}")
        flows += n
        packets += p
    return files, flows, packets, problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pcap", default=None, help="Ethernet capture to replay (default: the day capture)")
    ap.add_argument("--minutes", type=float, default=5.0, help="minutes of replay (default 5)")
    ap.add_argument("--rate", type=int, default=200_000, help="packets/s sent (default 200,000)")
    ap.add_argument("--rotate", default="1m", help="the sensor's --rotate (default 1m)")
    ap.add_argument("--sample", type=float, default=5.0, help="seconds between memory samples")
    ap.add_argument("--warmup", type=float, default=90.0,
                    help="seconds before memory must be flat (default 90: one loop of the day capture at 200,000 "
                    "packets/s, 50 s, and the 30 s TCP idle timeout, for the flows alive to reach their steady number)")
    ap.add_argument("--jobs", type=int, default=None, help="the sensor's --jobs (1: one process; default its own)")
    ap.add_argument("--backend", default="dumpcap")
    ap.add_argument("--keep", default=None, help="write the rotated files here (default: a temporary directory)")
    ap.add_argument("--tree", default=str(ROOT), help="run the sensor of this checkout (A/B runs; default this one)")
    args = ap.parse_args()
    pcap = args.pcap or next((str(p) for p in PCAPS if p.is_file()), None)
    if pcap is None:
        sys.exit("no day capture: make one with ../shared/bench/make_day_pcap.py /tmp/engine_day10m.pcap")
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark makes network namespaces and replays packets into them")
    for prog in ("ip", "tcpreplay"):
        if shutil.which(prog) is None:
            sys.exit(f"{prog} not found: apt-get install {'iproute2' if prog == 'ip' else 'tcpreplay'}")
    seconds = args.minutes * 60
    warmup = args.warmup
    out = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="portclass-sensor-"))
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    if logs.exists():
        shutil.rmtree(logs)
    tx, rx = f"pcsend{os.getpid()}", f"pcsense{os.getpid()}"

    def ip(*a: str) -> None:
        subprocess.run(["ip", *a], check=True, capture_output=True, timeout=30)

    ip("netns", "add", tx)
    ip("netns", "add", rx)
    sensor = None
    try:
        ip("link", "add", "pcs0", "netns", tx, "type", "veth", "peer", "name", "pcs1", "netns", rx)
        for ns, dev in ((tx, "pcs0"), (rx, "pcs1")):
            ip("-n", ns, "link", "set", dev, "mtu", "9000", "up")
        xml = ROOT.parent / "shared" / "registry" / "service-names-port-numbers.xml"
        reg = ["--registry", str(xml)] if xml.is_file() else []
        cmd = ["ip", "netns", "exec", rx, sys.executable, "-m", "classifier", *reg, "live", "-i", "pcs1"]
        cmd += ["--backend", args.backend, "--no-view", "-f", "jsonl", "-o", str(logs), "--rotate", args.rotate]
        cmd += ["--idle-timeout", IDLE, "--buffer-size", "256"]
        if args.jobs is not None:
            cmd += ["--jobs", str(args.jobs)]
        err_path, out_path = out / "sensor.stderr", out / "sensor.stdout"
        with err_path.open("w") as err_fh, out_path.open("w") as out_fh:
            sensor = subprocess.Popen(cmd, stdout=out_fh, stderr=err_fh, cwd=args.tree)
            deadline = time.monotonic() + 60
            while "capturing on" not in err_path.read_text():
                if sensor.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"the sensor did not start: {err_path.read_text()}")
                time.sleep(0.1)
            print(
                f"replaying {pcap} at {args.rate:,} packets/s for {seconds:g} s into namespace {rx}; sensor pid "
                f"{sensor.pid}, files in {logs} (rotate {args.rotate}); load {os.getloadavg()[0]:.2f}",
                file=sys.stderr,
            )
            samples: list[tuple[float, int, int, int, int]] = []  # time, portclass (both processes), each, dumpcap
            stop = threading.Event()

            def sample() -> None:
                t0 = time.monotonic()
                while not stop.wait(args.sample):
                    if rss_kib(sensor.pid) is None:
                        return
                    own, kid, dc = tree_rss_kib(sensor.pid)
                    t = time.monotonic() - t0
                    samples.append((t, own + kid, own, kid, dc))
                    print(f"  {t:6.0f} s  RSS {(own + kid) / 1024:7.1f} MiB (engine {own / 1024:.0f}, reader "
                          f"{kid / 1024:.0f}; dumpcap {dc / 1024:.0f} MiB)", file=sys.stderr)  # fmt: skip

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            replay = ["ip", "netns", "exec", tx, "tcpreplay", "-i", "pcs0", "--pps", str(args.rate)]
            replay += ["--pps-multi", "100", "--loop", "0", "--duration", str(int(seconds)), pcap]
            t0 = time.monotonic()
            backlog0 = softnet_dropped()
            r = subprocess.run(replay, capture_output=True, text=True)
            backlog = softnet_dropped() - backlog0
            veth_dropped = link_rx_dropped(rx, "pcs1")
            wall = time.monotonic() - t0
            text = r.stdout + r.stderr
            m = re.search(r"Successful packets:\s+(\d+)", text)
            sent = int(m.group(1)) if m else 0
            m = re.search(r"Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps", text)
            pps = float(m.group(1)) if m else 0.0
            failed = re.search(r"Failed packets:\s+(\d+)", text)
            caught_up = wait_caught_up(sensor.pid)  # a stop drops what dumpcap still holds in the kernel
            sensor_cpu, reader_cpu, dumpcap_cpu = tree_cpu_s(sensor.pid)
            stop.set()
            sensor.send_signal(signal.SIGTERM)
            rc = sensor.wait(600)
        err, summary = err_path.read_text(), out_path.read_text()
    finally:
        if sensor is not None and sensor.poll() is None:
            sensor.kill()
        for ns in (tx, rx):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    m = re.search(r"at most ([\d,]+) alive at once", err)
    peak_alive = m.group(1) if m else "?"
    m = re.search(r"captured ([\d,]+) packets, ([\d,]+) flows .* dropped (\S+?);?\s", err)
    captured = int(m.group(1).replace(",", "")) if m else -1
    flows_seen = int(m.group(2).replace(",", "")) if m else -1
    dropped = m.group(3) if m else "?"
    m = re.search(r"carrying ([\d,]+) packets", summary)
    in_flows = int(m.group(1).replace(",", "")) if m else -1
    m = re.search(r"Without ports \(not in flows\): (.*)", summary)
    no_ports = sum(int(x.replace(",", "")) for x in re.findall(r" ([\d,]+)(?:,|$)", m.group(1))) if m else 0
    m = re.search(r"Not decoded: (.*)", summary)  # e.g. fragments whose first part was dropped
    no_ports += sum(int(x.replace(",", "")) for x in re.findall(r" ([\d,]+)(?:,|$)", m.group(1))) if m else 0
    files, flows, packets, problems = check_files(logs)
    after = [s for s in samples if s[0] >= warmup]
    lo = min((s[1] for s in after), default=0)
    hi = max((s[1] for s in after), default=0)
    flat = bool(after) and hi <= 1.10 * lo
    minute_peaks = [max((x[1] for x in after if warmup + 60 * i <= x[0] < warmup + 60 * (i + 1)), default=0)
                    for i in range(int((seconds - warmup) // 60) + 1)]  # fmt: skip
    minute_peaks = [p for p in minute_peaks if p]
    third = max(len(after) // 3, 1)
    early = sum(x[1] for x in after[:third]) / third / 1024 if after else 0.0
    late = sum(x[1] for x in after[-third:]) / third / 1024 if after else 0.0
    print()
    print(f"replay      {sent:,} packets sent in {wall:.0f} s at {pps:,.0f} packets/s (target {args.rate:,}); "
          f"tcpreplay failed {failed.group(1) if failed else '?'}")  # fmt: skip
    print(f"catch-up    the sensor was idle {caught_up:.0f} s after the replay ended (then SIGTERM)")
    print(f"sensor      exit {rc} (143: SIGTERM); captured {captured:,} packets, {flows_seen:,} flows (at most "
          f"{peak_alive} alive at once); "
          f"dropped {dropped} (dumpcap's kernel counters); captured - sent {captured - sent:+,} (the veth's own "
          f"packets count too); kernel input backlog drops {backlog:,}, veth rx drops {veth_dropped:,}")  # fmt: skip
    per = max(captured, 1)
    print(f"cpu         engine process {sensor_cpu:.1f} s = {sensor_cpu / per * 1e6:.2f} us a packet captured, "
          f"reading child {reader_cpu:.1f} s = {reader_cpu / per * 1e6:.2f} us, dumpcap {dumpcap_cpu:.1f} s = "
          f"{dumpcap_cpu / per * 1e6:.2f} us")  # fmt: skip
    if after:
        own = [x[2] for x in after]
        kid = [x[3] for x in after]
        dc = [x[4] for x in after]
        print(f"memory      RSS of portclass (engine process + reading child; dumpcap apart) after {warmup:g} s "
              f"warm-up, every {args.sample:g} s: "
              f"{lo / 1024:.0f}-{hi / 1024:.0f} MiB over {len(after)} "
              f"samples (max/min {hi / max(lo, 1):.3f}): {'flat' if flat else 'NOT flat'} (within 10%); mean of "
              f"the first third {early:.0f} MiB, of the last third {late:.0f} MiB; peak per minute "
              f"{', '.join(f'{p / 1024:.0f}' for p in minute_peaks)} MiB")  # fmt: skip
        print(f"            engine process {min(own) / 1024:.0f}-{max(own) / 1024:.0f} MiB, reading child "
              f"{min(kid) / 1024:.0f}-{max(kid) / 1024:.0f} MiB, dumpcap {min(dc) / 1024:.0f}-{max(dc) / 1024:.0f} "
              f"MiB")  # fmt: skip
    else:
        print("memory      no sample after the warm-up (run longer)")
    adds_up = packets == in_flows == captured - no_ports and not problems
    print(f"files       {files} rotated files, {flows:,} flows carrying {packets:,} packets; the summary says "
          f"{in_flows:,} packets in flows, and {no_ports:,} without ports or not decoded (not in flows), of "
          f"{captured:,} captured: "
          f"{'adds up' if adds_up else 'DOES NOT add up'}")  # fmt: skip
    for p in problems[:20]:
        print(f"  problem: {p}")
    print(f"load        {os.getloadavg()[0]:.2f} (1-min load average; 2 cores shared with other work)")
    ok = flat and adds_up and dropped == "0" and captured >= sent
    print("verdict     " + ("ok" if ok else "see above"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
