"""Live capture pieces that need no capture: the streaming pcapng reader, frame batches, the pcapng
writer, dumpcap's messages, BPF checks, tshark's names, and the live report amendments."""

from __future__ import annotations

import csv
import doctest
import io
import json
import os
import struct
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from classifier.capture.reader import read_batches
from classifier.flows import FlowAggregator
from classifier.live import backends, checks, engine, output, stream
from classifier.live.backends import dumpcap_error, make_backend, parse_dumpcap_drops, tshark_protocol
from classifier.live.checks import LiveError, check_bpf, compile_bpf
from classifier.live.engine import LagStats, LiveOptions, LiveResult, pick_protocol
from classifier.live.stream import FrameBatcher, InterfaceCounters, PcapngStream, PcapngWriter, parse_isb
from classifier.pipeline import analyze
from classifier.report.addr import format_addresses
from classifier.report.rows import iso_times

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "captures"


def _flows_of_file(path: Path):
    agg = FlowAggregator(300 * 10**9)
    for b in read_batches([str(path)]):
        agg.add(b)
    return agg.result(), agg.stats


def _pcap_frames(path: Path) -> list[tuple[bytes, int, int]]:
    """(frame, ts_ns, wire_len) of a little-endian microsecond pcap, read the plain way."""
    data = path.read_bytes()
    assert data[:4] == b"\xd4\xc3\xb2\xa1"
    out, off = [], 24
    while off + 16 <= len(data):
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, off)
        out.append((data[off + 16 : off + 16 + incl], sec * 10**9 + usec * 1000, orig))
        off += 16 + incl
    return out


@pytest.mark.parametrize("piece", [1, 7, 100, 4096, 1 << 20])
def test_stream_in_pieces_equals_reading_the_file(piece):
    """Bytes arriving in any pieces give exactly the flows (and counters) of reading the file."""
    path = CAPTURES / "sample.pcapng"
    want, want_stats = _flows_of_file(path)
    data = path.read_bytes()
    s = PcapngStream(capacity=4096, file_name=str(path))
    agg = FlowAggregator(300 * 10**9)
    for i in range(0, len(data), piece):
        s.feed(data[i : i + piece])
        b = s.take()
        if b is not None:
            agg.add(b)
    b = s.take()
    if b is not None:
        agg.add(b)
    assert s.pending == 0
    assert agg.result().equals(want)
    assert agg.stats.packets == want_stats.packets
    assert agg.stats.no_ports == want_stats.no_ports


def test_stream_tee_is_the_stream_cut_at_block_boundaries():
    data = (CAPTURES / "sample.pcapng").read_bytes()
    tee = io.BytesIO()
    s = PcapngStream(tee=tee)
    s.feed(data[:-10])  # the last block is cut: not written until it is complete
    s.take()
    assert data.startswith(tee.getvalue()) and len(tee.getvalue()) < len(data) - 10
    s.feed(data[-10:])
    s.take()
    assert tee.getvalue() == data


def test_stream_count_limit():
    s = PcapngStream()
    s.max_packets = 5
    s.feed((CAPTURES / "sample.pcapng").read_bytes())
    b = s.take()
    assert b.stats.packets == 5 and s.state.packets == 5


def test_stream_refuses_what_is_not_pcapng():
    s = PcapngStream()
    s.feed((CAPTURES / "sample.pcap").read_bytes())
    with pytest.raises(LiveError, match="pcapng"):
        s.take()


def test_writer_frames_and_statistics_round_trip(tmp_path):
    """Frames written by PcapngWriter read back (portclass and tshark) as the original capture's flows."""
    src = CAPTURES / "sample.pcap"
    frames = _pcap_frames(src)
    out = tmp_path / "w.pcapng"
    with open(out, "wb") as fh:
        w = PcapngWriter(fh, [("lo", 1)], "portclass test")
        for data, ts, wire in frames:
            w.write(data, ts, 0, wire)
        w.close({0: InterfaceCounters("lo", received=len(frames) + 3, dropped=3)}, ts_ns=frames[-1][1])
    want, _ = _flows_of_file(src)
    got, stats = _flows_of_file(out)
    assert got.equals(want)
    assert stats.packets == len(frames)
    s = PcapngStream()
    s.feed(out.read_bytes())
    s.take()
    assert s.state.isb == {0: {stream.ISB_IFRECV: len(frames) + 3, stream.ISB_IFDROP: 3}}
    from tests.tshark import need_tshark  # (a skip outside CI; in CI it fails: tests/conftest.py)

    r = subprocess.run([need_tshark(), "-r", str(out), "-T", "fields", "-e", "frame.number"], capture_output=True)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == len(frames)


def test_frame_batcher_equals_the_file_and_keeps_tags():
    src = CAPTURES / "sample.pcap"
    frames = _pcap_frames(src)
    fb = FrameBatcher([1], file_name=str(src))
    agg = FlowAggregator(300 * 10**9)
    tags: list = []
    for k in range(0, len(frames), 9):  # batches of 9 frames
        for j, (data, ts, wire) in enumerate(frames[k : k + 9]):
            fb.add(data, ts, 0, wire, tag=f"p{k + j + 1}")
        b, t = fb.take()
        assert b.pkt_index.size == 0 or all(t[i - (k + 1)] == f"p{i}" for i in b.pkt_index.tolist())
        tags += t
        agg.add(b)
    want, _ = _flows_of_file(src)
    assert agg.result().equals(want)
    assert len(tags) == len(frames)


def test_frame_batcher_count_limit_and_link_types():
    fb = FrameBatcher([1, 113])
    fb.max_packets = 2
    for i in range(4):
        fb.add(bytes(60), 10**18 + i, i % 2)
    b, tags = fb.take()
    assert b.stats.packets == 2 and len(tags) == 2 and fb.take() is None


def _isb(received: int, dropped: int) -> bytes:
    body = struct.pack("<III", 0, 0, 0) + stream._opt(stream.ISB_IFRECV, struct.pack("<Q", received))
    body += stream._opt(stream.ISB_IFDROP, struct.pack("<Q", dropped)) + stream._opt(0, b"")
    return stream._block(stream.ISB, body)


def test_stream_finds_statistics_blocks_between_packets():
    """Statistics blocks anywhere among the packet blocks (not only at the end) give their counters,
    the latest one winning, and the packets around them all arrive."""
    frames = _pcap_frames(CAPTURES / "sample.pcap")
    fh = io.BytesIO()
    w = PcapngWriter(fh, [("lo", 1)], "portclass test")
    half = len(frames) // 2
    for data, ts, wire in frames[:half]:
        w.write(data, ts, 0, wire)
    fh.write(_isb(5, 1) + _isb(half, 2))  # two in a row, between packets
    cut = fh.tell()
    for data, ts, wire in frames[half:]:
        w.write(data, ts, 0, wire)
    fh.write(_isb(len(frames), 3))
    whole = fh.getvalue()
    s = PcapngStream()
    s.feed(whole[:cut])
    first = s.take()
    assert s.state.isb == {0: {stream.ISB_IFRECV: half, stream.ISB_IFDROP: 2}}
    s.feed(whole[cut:])
    second = s.take()
    assert s.state.isb == {0: {stream.ISB_IFRECV: len(frames), stream.ISB_IFDROP: 3}}
    assert s.state.packets == len(frames)
    assert int(first.pkt_index.max()) <= half < int(second.pkt_index.min())
    s.feed(_isb(len(frames) + 1, 4))  # a statistics block alone
    s.take()
    assert s.state.isb[0][stream.ISB_IFDROP] == 4


def _pipe_backend(**kw) -> tuple[backends.DumpcapBackend, int]:
    """A dumpcap backend reading a pipe this test writes pcapng into (dumpcap's side played by the test)."""
    b = backends.DumpcapBackend(["lo"], **kw)
    r, w = os.pipe()
    os.set_blocking(r, False)
    b.fd = r
    return b, w


def test_dumpcap_batches_by_size_before_their_time():
    """A batch goes to the flow stage once ``batch_bytes`` are buffered, long before ``batch_interval``."""
    data = (CAPTURES / "sample.pcapng").read_bytes()
    b, w = _pipe_backend(batch_interval=3600.0, batch_bytes=4096)
    try:
        os.write(w, data)
        os.close(w)
        got = []
        for _ in range(50):
            got += b.poll(0.05)
            if b.eof and not b.stream.pending:
                break
        assert len(got) >= 3  # 17 kB in batches of about 4 kB, no waiting for the hour
        assert b.packets == 114
        assert sum(int(x.batch.stats.packets) for x in got) == 114
    finally:
        os.close(b.fd)


def test_dumpcap_batches_by_time_when_few_packets_come():
    """Under ``batch_bytes``, what is buffered waits for ``batch_interval`` (one batch, not one per read)."""
    data = (CAPTURES / "sample.pcapng").read_bytes()
    b, w = _pipe_backend(batch_interval=0.3, batch_bytes=1 << 30)
    try:
        b._last_take = time.monotonic()
        os.write(w, data[:8000])
        assert b.poll(0.05) == []  # not due yet, far under the size
        os.write(w, data[8000:])
        time.sleep(0.3)
        got = b.poll(0.05)
        assert len(got) == 1 and b.packets == 114
    finally:
        os.close(w)
        os.close(b.fd)


def test_parse_isb_options():
    body = struct.pack("<III", 0, 0, 0) + struct.pack("<HHQ", 4, 8, 10) + struct.pack("<HHQ", 5, 8, 2)
    body += struct.pack("<HH", 0, 0)
    assert parse_isb(body, "<") == (0, {4: 10, 5: 2})


def test_dumpcap_drop_lines_and_errors():
    lines = [
        "Capturing on 'Loopback: lo' and 'eth0'",
        "Packets received/dropped on interface 'Loopback: lo': 100/3 (pcap:2/dumpcap:1/flushed:0/ps_ifdrop:4) (97.1%)",
        "Packets received/dropped on interface 'eth0': 5/0 (pcap:0/dumpcap:0/flushed:0/ps_ifdrop:0) (100.0%)",
    ]
    got = parse_dumpcap_drops(lines, ["lo", "eth0"])
    assert got[0] == InterfaceCounters("lo", received=100, dropped=3, if_dropped=4)
    assert got[1].dropped == 0 and got[1].name == "eth0"
    perm = dumpcap_error(['dumpcap: You do not have permission to capture on device "lo".'], ["lo"])
    assert "setcap cap_net_raw,cap_net_admin=eip /usr/bin/dumpcap" in str(perm) and "\n" not in str(perm)
    nodev = dumpcap_error(['dumpcap: There is no device named "nosuch0".', "(No such device exists)"], ["nosuch0"])
    assert "no interface named 'nosuch0'" in str(nodev) and "lo" in str(nodev)
    bad = dumpcap_error(
        [
            "dumpcap: Invalid capture filter \"udp prt 5\" for interface 'lo'.",
            "",
            "That string isn't a valid capture filter (can't parse filter expression: syntax error).",
        ],
        ["lo"],
    )
    assert "syntax error" in str(bad)


def test_bpf_compiler_messages():
    assert compile_bpf("tcp port 80 or udp port 53") is None
    assert "syntax error" in compile_bpf("udp prt 5")
    with pytest.raises(LiveError, match=r"invalid capture filter 'udp prt 5': .*syntax error"):
        check_bpf("udp prt 5", ["lo"])
    check_bpf(None, ["lo"])


def test_interfaces_are_checked():
    checks.check_interfaces(["lo"])
    with pytest.raises(LiveError, match=r"no interface named 'nosuch0'; interfaces here: .*\blo\b"):
        checks.check_interfaces(["nosuch0"])
    assert checks.linktype_of("lo") == 1 and checks.linktype_of("any") == 113 and checks.is_loopback("lo")


def test_missing_program_names_the_debian_package(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(LiveError, match="dumpcap not found on PATH: install the Debian package wireshark-common"):
        checks.find_program("dumpcap")
    with pytest.raises(LiveError, match="Debian package tshark"):
        backends.import_pyshark()


def test_dumpcap_command_line():
    b = make_backend("dumpcap", ["lo", "eth0"], "udp", count=10, buffer_mib=8)
    assert b.command_line() == [
        "dumpcap", "-n", "-q", "-w", "-",
        "-i", "lo", "-f", "udp", "-B", "8",
        "-i", "eth0", "-f", "udp", "-B", "8",
        "-c", "10", "-t",
    ]  # fmt: skip
    with pytest.raises(LiveError, match="unknown backend"):
        make_backend("tcpdump", ["lo"])


def test_tshark_names():
    assert tshark_protocol("eth:ethertype:ip:udp:dns") == "dns"
    assert tshark_protocol("eth:ethertype:ip:tcp:tls") == "tls"
    assert tshark_protocol("eth:ethertype:ip:udp:data") == "data"
    assert tshark_protocol("eth:ethertype:arp") == "arp"
    assert pick_protocol(["tcp", "tcp", "tls", "tcp"]) == "tls"
    assert pick_protocol(["udp", "data", "data"]) == "udp"
    assert pick_protocol([]) is None


def test_lag_summary():
    lag = LagStats(label=[0.2, 0.4, 1.0], batch=[0.01])
    d = lag.to_dict()
    assert d["label_oldest_s"] == {"p50": 0.4, "p95": 1.0, "max": 1.0} and d["refreshes"] == 3
    assert LagStats().to_dict()["batch_s"]["max"] is None


@pytest.fixture(scope="module")
def live_result(reg) -> LiveResult:
    a = analyze([CAPTURES / "sample.pcap"], reg)
    names = [f"proto{i}" for i in range(len(a.flows))]
    a.labels.tshark_protocol = np.array(names, dtype=object)  # as the engine sets it (pyshark backend)
    return LiveResult(
        analysis=a,
        backend="pyshark",
        options=LiveOptions(["lo"], bpf="tcp"),
        counters={0: InterfaceCounters("lo", received=10, dropped=0)},
        stopped_by="SIGINT",
        lag=LagStats(label=[0.5]),
        protocols=names,
        started_at_ns=0,
    )


def _flow_keys(result: LiveResult) -> dict[tuple, str | None]:
    """(source.ip, source.port, destination.ip, destination.port, transport, event.start) -> tshark's name."""
    fl = result.analysis.flows
    assert result.protocols is not None
    cip = format_addresses(fl.client_hi, fl.client_lo)
    sip = format_addresses(fl.server_hi, fl.server_lo)
    start = iso_times(fl.first_ts_ns).tolist()
    proto = {6: "tcp", 17: "udp", 132: "sctp", 33: "dccp"}
    return {
        (
            str(cip[i]),
            int(fl.client_port[i]),
            str(sip[i]),
            int(fl.server_port[i]),
            proto.get(int(fl.proto[i]), str(int(fl.proto[i]))),
            start[i],
        ): name
        for i, name in enumerate(result.protocols)
    }


def _doc_key(doc: dict) -> tuple:
    s, d, n = doc.get("source", {}), doc.get("destination", {}), doc.get("network", {})
    return (
        s.get("ip"),
        s.get("port"),
        d.get("ip"),
        d.get("port"),
        n.get("transport"),
        doc.get("event", {}).get("start"),
    )


def test_live_jsonl_and_json_carry_live_meta_and_tshark_names(live_result):
    want = _flow_keys(live_result)
    lines = output.render(live_result, "jsonl").splitlines()
    head = json.loads(lines[0])
    assert head["event"]["dataset"] == "portclass.notice"
    assert head["portclass"]["live"]["stopped_by"] == "SIGINT" and head["portclass"]["live"]["dropped"] == 0
    docs = [json.loads(x) for x in lines[1:]]
    assert len(docs) == len(live_result.analysis.flows)
    assert sorted(d["portclass"]["tshark_protocol"] for d in docs) == sorted(want.values())
    for d in docs:
        assert want[_doc_key(d)] == d["portclass"]["tshark_protocol"]
    doc = json.loads(output.render(live_result, "json"))
    assert doc["live"]["backend"] == "pyshark"
    assert sorted(f["portclass"]["tshark_protocol"] for f in doc["flows"]) == sorted(want.values())


def test_live_csv(live_result):
    text = output.render(live_result, "csv")
    assert any(line.startswith("# live capture: ") for line in text.splitlines())
    rows = list(csv.DictReader(line for line in io.StringIO(text) if not line.startswith("#")))
    assert len(rows) == len(live_result.analysis.flows)
    assert sorted(r[output.TSHARK_FIELD] for r in rows) == sorted(live_result.protocols)


def test_live_report_to_a_device_keeps_the_device(live_result, tmp_path):
    """``-o /dev/null`` must not replace the device node with a file (an atomic rename would)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = {}
    t = threading.Thread(target=lambda: got.setdefault("data", fifo.read_bytes()))
    t.start()
    output.write(live_result, "jsonl", str(fifo))
    t.join(10)
    assert fifo.is_fifo() and got["data"].startswith(b'{"@timestamp"')


def test_doctests():
    for mod in (checks, stream, engine, backends):
        assert doctest.testmod(mod, optionflags=doctest.ELLIPSIS).failed == 0, mod.__name__


def test_a_live_stream_is_listed_once_across_batches():
    """Merged stats list the stream once, however many batches it yields (merges append)."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    from classifier.capture.columns import CaptureStats
    from classifier.live.stream import FrameBatcher

    fb = FrameBatcher([1], file_name="lo")
    merged = CaptureStats()
    for i in range(3):
        fb.add(bytes(Ether() / IP(src="127.0.0.1", dst="127.0.0.1") / UDP(sport=5000 + i, dport=53)), ts_ns=i)
        batch, _ = fb.take()
        merged.merge(batch.stats)
    assert merged.files == ["lo"] and merged.packets == 3


def test_lag_samples_stay_bounded():
    """A sensor runs for days: lag keeps the last LAG_SAMPLES values, the count and the maximum of all."""
    lag = LagStats()
    for i in range(engine.LAG_SAMPLES + 500):
        lag.batch.append(1000.0 if i == 3 else 0.5)
    assert len(lag.batch) == engine.LAG_SAMPLES and lag.batch.n == engine.LAG_SAMPLES + 500
    assert lag.to_dict()["batch_s"] == {"p50": 0.5, "p95": 0.5, "max": 1000.0}
