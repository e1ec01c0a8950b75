"""Filtered runs apply the filter to flows as they end: the same reports as filtering the whole-run
analysis (nDPI corpus), and memory that follows the flows alive, not the flows seen."""

from __future__ import annotations

import json
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from classifier.cli import main
from classifier.filters import FlowFilter, apply
from classifier.pipeline import analyze
from classifier.report import write
from tests.shared import shared

CAPTURES = ["telegram_videocall.pcapng", "zoom.pcap", "dns_long_domainname.pcap"]
FILTERS = [("--flagged-only",), ("--port", "443"), ("--answered", "--status", "assigned")]


def _batch(cap: Path, reg, args: tuple[str, ...], fmt: str, out: Path) -> None:
    """The report the whole-run path gives: every flow held, filtered at the end (``filters.apply``)."""
    flt = FlowFilter(
        flagged_only="--flagged-only" in args,
        ports=tuple(int(args[i + 1]) for i, x in enumerate(args) if x == "--port"),
        answered="--answered" in args,
        statuses=tuple(args[i + 1] for i, x in enumerate(args) if x == "--status"),
    )
    write(apply(analyze([cap], reg), flt), fmt, out, top=20, max_rows=50_000)


@pytest.mark.parametrize("name", CAPTURES)
@pytest.mark.parametrize("args", FILTERS, ids=lambda a: " ".join(a))
def test_filtered_as_flows_end_equals_filtering_the_whole_run(name, args, tmp_path, xml_path, reg, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    cap = shared("captures", "ndpi", "pcap", name)
    for fmt in ("jsonl", "json", "terminal", "csv"):
        s, w = tmp_path / f"s.{fmt}", tmp_path / f"w.{fmt}"
        assert main(["--registry", str(xml_path), str(cap), *args, "-f", fmt, "-o", str(s), "--no-progress"]) == 0
        _batch(cap, reg, args, fmt, w)
        st, wt = s.read_text(), w.read_text()
        if fmt == "jsonl":
            sd, wd = [json.loads(x) for x in st.splitlines()], [json.loads(x) for x in wt.splitlines()]
            assert sd[0] == wd[0]  # the notice: whole-capture totals and the selection
            sel = sd[0]["portclass"]["totals"]["selection"]
            assert sel["kept_flows"] == len(sd) - 1 and sel["total_flows"] == sd[0]["portclass"]["totals"]["flows"]
            key = lambda d: json.dumps(d, sort_keys=True)  # noqa: E731
            assert sorted(map(key, sd[1:])) == sorted(map(key, wd[1:]))
        elif fmt == "json":
            assert json.loads(st) == json.loads(wt)
        else:  # the summary (whole capture above, the kept flows below) and CSV rows
            assert sorted(st.splitlines()) == sorted(wt.splitlines())


def _write_udp_pcap(path: Path, flows: int, gap_ms: int = 1) -> None:
    """``flows`` short UDP exchanges one after another (query and answer, 1 ms apart), ``gap_ms`` apart:
    client 192.0.2.1 from port 1024 + k % 60000 to 198.51.100.1, port 53 for even k and 123 for odd k."""
    k = np.arange(flows, dtype=np.int64)
    n = 2 * flows
    ts = np.repeat(k * gap_ms * 1000, 2) + np.tile([0, 1000], flows)  # microseconds
    cport = np.repeat(1024 + k % 60000, 2)
    sport = np.repeat(np.where(k % 2 == 0, 53, 123), 2)
    reply = np.tile([False, True], flows)
    payload = 20
    rec = np.zeros((n, 16 + 14 + 20 + 8 + payload), dtype=np.uint8)
    hdr = rec[:, :16].view("<u4")
    hdr[:, 0], hdr[:, 1] = ts // 1_000_000, ts % 1_000_000
    hdr[:, 2] = hdr[:, 3] = rec.shape[1] - 16
    rec[:, 16 + 12 : 16 + 14] = [0x08, 0x00]
    ip = rec[:, 30:50]
    ip[:, 0], ip[:, 3], ip[:, 8], ip[:, 9] = 0x45, 20 + 8 + payload, 64, 17
    a, b = bytes([192, 0, 2, 1]), bytes([198, 51, 100, 1])
    ip[:, 12:16] = np.where(reply[:, None], np.frombuffer(b, np.uint8), np.frombuffer(a, np.uint8))
    ip[:, 16:20] = np.where(reply[:, None], np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8))
    udp = rec[:, 50:58]
    src = np.where(reply, sport, cport).astype(">u2")
    dst = np.where(reply, cport, sport).astype(">u2")
    udp[:, 0:2], udp[:, 2:4] = src.view(np.uint8).reshape(-1, 2), dst.view(np.uint8).reshape(-1, 2)
    udp[:, 4:6] = np.array([8 + payload], ">u2").view(np.uint8)
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + rec.tobytes())


def _peak(tmp_path: Path, xml_path: Path, flows: int, fmt: str) -> tuple[int, dict]:
    """tracemalloc's peak (NumPy's arrays included) of a filtered run over ``flows`` sequential flows."""
    cap = tmp_path / f"seq{flows}.pcap"
    _write_udp_pcap(cap, flows)
    out = tmp_path / f"out{flows}.{fmt}"
    args = ["--registry", str(xml_path), str(cap), "--port", "53", "-f", fmt, "-o", str(out), "--no-progress"]
    args += ["--idle-timeout", "1", "--jobs", "1", "--max-flows", "100"]
    tracemalloc.start()
    try:
        assert main(args) == 0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    head = json.loads(out.read_text().splitlines()[0]) if fmt == "jsonl" else json.loads(out.read_text())
    return peak, head


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_filtered_run_memory_follows_flows_alive(fmt, tmp_path, xml_path, monkeypatch):
    """Three times the flows (about 1,000 alive at once either way) may not take much more memory: a run
    that held every flow to filter it at the end took 2.8 times as much (175 MB against 486 MB)."""
    import classifier.pipeline

    monkeypatch.setattr(classifier.pipeline, "CHUNK_BYTES", 1 << 20)  # many reads and passes in a small file
    main(["--registry", str(xml_path), "captures/sample.pcap", "-f", fmt, "-o", str(tmp_path / "warm")])  # imports
    small, head = _peak(tmp_path, xml_path, 60_000, fmt)
    big, head3 = _peak(tmp_path, xml_path, 180_000, fmt)
    totals = head3["portclass"]["totals"] if fmt == "jsonl" else head3["totals"]
    assert totals["flows"] == 180_000 and totals["selection"]["kept_flows"] == 90_000
    assert totals["packets"] == 360_000
    assert big < 1.25 * small, (small, big)
