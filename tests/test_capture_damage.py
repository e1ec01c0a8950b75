"""Damage in one capture never costs the others their results (issue 9): timestamps out of range,
broken gzip streams, bad blocks, unreadable files, each a one-line warning naming file and place."""

from __future__ import annotations

import gzip
import random
import struct
from pathlib import Path

import numpy as np
import pytest

from classifier import feed
from classifier.capture import pcapng
from classifier.capture.columns import TS_LIMIT_NS, CaptureStats
from classifier.capture.reader import DEFAULT_CHUNK_BYTES, read_batches
from classifier.capture.writer import Frame, write_pcapng
from classifier.pipeline import analyze
from tests.shared import shared

T0 = 1_700_000_000 * 10**9
GOOD = "443-curl.pcap"


def udp_frame(sport: int = 40000) -> bytes:
    body = struct.pack(">HHHH", sport, 53, 16, 0) + b"q" * 8
    a, b = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 1, 0, 64, 17, 0, a, b)
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + body


def read(paths: list[Path], child: bool = False) -> tuple[int, CaptureStats]:
    """Rows and merged counters of ``paths``; ``child``: read by a child process (``classifier.feed``)."""
    rows, stats = 0, CaptureStats()
    source = feed.file_batches(paths, DEFAULT_CHUNK_BYTES, errors="warn")
    with feed.batches(source, evidence=child, child=child) as items:
        for b, _ in items:
            rows += len(b)
            stats.merge(b.stats)
    return rows, stats


# ---- timestamps --------------------------------------------------------------------------------


def exact_ns(ts: int, resol: int, offset_s: int) -> int | None:
    """What a timestamp means, with Python's unbounded integers (None: outside the kept range)."""
    n = resol & 0x7F
    den = 2**n if resol & 0x80 else 10**n
    ns = ts * 10**9 // den + offset_s * 10**9
    return ns if -TS_LIMIT_NS <= ns < TS_LIMIT_NS else None


def test_timestamp_conversion_is_exact_for_every_resolution_and_offset() -> None:
    """Every if_tsresol byte, offsets up to the int64 extremes, counts up to 2^64 - 1, against exact arithmetic."""
    rng = random.Random(20260101)
    edges = [0, 1, 2**32 - 1, 2**32, 2**62, 2**63 - 1, 2**63, 2**64 - 1]
    offsets = [0, 1, -1, 3_000_000_000, -3_000_000_000, 2**62, -(2**63), 2**63 - 1, 9_223_372_036, -9_223_372_037]
    for resol in range(256):
        ts = np.array(edges + [rng.getrandbits(rng.choice([20, 40, 56, 64])) for _ in range(40)], np.uint64)
        for off in offsets:
            iface = pcapng.Interface(linktype=1, snaplen=0, tsresol=resol, ts_offset_s=off)
            ns, ok = pcapng.timestamps_ns(ts, iface)
            want = [exact_ns(int(t), resol, off) for t in ts.tolist()]
            assert ok.tolist() == [w is not None for w in want], (resol, off)
            assert ns.tolist() == [0 if w is None else w for w in want], (resol, off)


@pytest.mark.parametrize(
    ("resol", "offset", "ticks"),
    [
        (6, 2**62, 0),  # issue 9: if_tsoffset far out: OverflowError, and the other files were lost
        (6, -(2**63), 0),
        (0x80, 0, 2**62),  # one-second units: the old code wrapped round to a negative time, silently
        (9, 0, 2**63 + 5),  # nanoseconds beyond 2116
    ],
)
def test_timestamp_out_of_range_is_a_warning_and_other_files_stay(
    tmp_path: Path, resol: int, offset: int, ticks: int
) -> None:
    """The smallest input: one interface description and one packet; a good capture given after it."""
    bad = tmp_path / "offset.pcapng"
    write_pcapng(bad, [(1, resol, offset)], [Frame(udp_frame(), 0)])
    data = bytearray(bad.read_bytes())
    epb = len(data) - struct.unpack_from("<I", data, len(data) - 4)[0]  # the last block: the packet
    assert struct.unpack_from("<I", data, epb)[0] == 6
    struct.pack_into("<II", data, epb + 12, ticks >> 32, ticks & 0xFFFFFFFF)
    bad.write_bytes(bytes(data))
    good = shared("captures", "ndpi", "pcap", GOOD)
    rows, stats = read([bad, good])
    alone, good_stats = read([good])
    assert rows == alone and stats.packets == good_stats.packets
    where = f"{bad}: packet 1 at byte {epb}"
    assert stats.warnings == [f"{where}: timestamp out of range {what(resol, offset)}; stopped reading"]


def what(resol: int, offset: int) -> str:
    n = resol & 0x7F
    return f"(unit {'2' if resol & 0x80 else '10'}^-{n} s, offset {offset} s)"


def test_binary_resolution_fraction_exact(tmp_path: Path) -> None:
    """2^-40 s units (with an offset, as they span 6 months): the old code overflowed the fraction, silently."""
    path = tmp_path / "binary.pcapng"
    t = 5 * 10**9 + 123_456_789
    write_pcapng(path, [(1, 0x80 | 40, 1_700_000_000)], [Frame(udp_frame(), t)])
    ticks = (t << 40) // 10**9
    batch = next(iter(read_batches([path])))
    assert batch.ts_ns.tolist() == [T0 + (ticks * 10**9 >> 40)] and abs(int(batch.ts_ns[0]) - T0 - t) <= 1


@pytest.mark.parametrize("jobs", (1, 2))
def test_analysis_of_several_keeps_the_good_ones_with_an_extreme_offset(tmp_path: Path, reg, jobs: int) -> None:
    bad = tmp_path / "bad.pcapng"
    write_pcapng(bad, [(1, 6, 2**62)], [Frame(udp_frame(), 0)])
    good = shared("captures", "ndpi", "pcap", GOOD)
    a = analyze([bad, good], reg, evidence=False, jobs=jobs)  # jobs=2: read in a child process (classifier.feed)
    alone = analyze([good], reg, evidence=False, jobs=jobs)
    assert len(a.flows) == len(alone.flows) > 0
    assert int(a.flows.total_packets().sum()) == int(alone.flows.total_packets().sum())
    assert len(a.stats.warnings) == 1 and a.stats.warnings[0].startswith(f"{bad}: packet 1 at byte ")


# ---- damaged files among good ones -----------------------------------------------------------------


def damaged_set(d: Path) -> dict[str, Path]:
    """One capture per way of being broken, made from a real capture."""
    raw = shared("captures", "ndpi", "pcap", GOOD).read_bytes()
    z = gzip.compress(raw)
    ng = shared("captures", "ndpi", "pcap", "anydesk.pcapng").read_bytes()
    bad_len = bytearray(ng)
    second = struct.unpack_from("<I", ng, 4)[0]
    struct.pack_into("<I", bad_len, second + 4, 7)  # the block after the section header
    files = {
        "cut.pcap.gz": z[: len(z) // 3],  # gzip cut short: packets before the cut count
        "corrupt.pcap.gz": z[:20] + b"\xff" * 64 + z[84:],  # deflate data broken at once
        "garbage.pcap": b"hello, world\n" * 4,
        "empty.pcap": b"",
        "header.pcap": raw[:10],
        "bad-length.pcapng": bytes(bad_len),
    }
    out = {}
    for name, data in files.items():
        (d / name).write_bytes(data)
        out[name] = d / name
    out["missing.pcap"] = d / "missing.pcap"
    out["directory"] = d / "directory"
    out["directory"].mkdir()
    out["name-too-long"] = d / ("x" * 300)  # a traceback from Path.is_dir before the fix
    out["nul-in-name"] = d / "a\0b"
    return out


@pytest.mark.parametrize("child", (False, True), ids=("one-process", "two-processes"))
def test_each_damaged_file_is_one_warning_and_the_rest_is_kept(tmp_path: Path, child: bool) -> None:
    bad = damaged_set(tmp_path)
    good = shared("captures", "ndpi", "pcap", GOOD)
    alone, good_stats = read([good], child)
    rows, stats = read([*bad.values(), good], child)
    assert rows > alone and stats.packets > good_stats.packets  # the cut gzip's first packets count too
    assert len(stats.warnings) == len(bad)
    for w, (name, path) in zip(stats.warnings, bad.items(), strict=True):
        assert w.startswith(f"{path}: ") and "\n" not in w, name
    by_name = dict(zip(bad, stats.warnings, strict=True))
    assert "gzip stream cut short; stopped reading" in by_name["cut.pcap.gz"]
    assert "gzip stream damaged" in by_name["corrupt.pcap.gz"] and by_name["corrupt.pcap.gz"].endswith("; skipped")
    assert "block length 7 invalid" in by_name["bad-length.pcapng"]
    assert "cannot open" in by_name["missing.pcap"]
    rows_cut, stats_cut = read([bad["cut.pcap.gz"]], child)
    assert rows_cut > 0 and stats_cut.packets > 10  # before the fix: "empty file; skipped"


def test_classic_pcap_timestamps_always_fit(tmp_path: Path) -> None:
    """The largest a pcap record can say (2^32 - 1 s, fraction 2^32 - 1 units) stays inside ``TS_LIMIT_NS``."""
    for magic, unit in ((0xA1B2C3D4, 1000), (0xA1B23C4D, 1)):
        path = tmp_path / f"max{unit}.pcap"
        frame = udp_frame()
        head = struct.pack("<IHHiIII", magic, 2, 4, 0, 0, 65535, 1)
        path.write_bytes(head + struct.pack("<IIII", 2**32 - 1, 2**32 - 1, len(frame), len(frame)) + frame)
        batch = next(iter(read_batches([path])))
        assert batch.ts_ns.tolist() == [(2**32 - 1) * 10**9 + (2**32 - 1) * unit]
        assert int(batch.ts_ns[0]) < TS_LIMIT_NS and not batch.stats.warnings
