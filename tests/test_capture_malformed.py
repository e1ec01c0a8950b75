"""Damaged input never raises a traceback: what came before the damage is kept, a warning says where.

Files that are not captures at all (garbage, empty, unreadable) raise ``CaptureError``, one
file at a time, so a caller reading several files decides (``errors="warn"`` goes on).
"""

from __future__ import annotations

import gzip
import os
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from classifier.capture.columns import CaptureStats, PacketBatch
from classifier.capture.reader import read_batches
from classifier.capture.writer import Frame, write_pcap, write_pcapng
from classifier.errors import CaptureError
from tests.shared import shared

SAMPLE = "443-curl.pcap"  # 100-odd Ethernet TCP packets
BIG = "teams.pcap"  # 700 KB, so the lock-step lanes are used


def corpus(name: str) -> Path:
    return shared("captures", "ndpi", "pcap", name)


def record_offsets(raw: bytes) -> list[int]:
    """Offsets of the records of a little-endian classic pcap (the obvious sequential walk)."""
    offs, off = [], 24
    while off + 16 <= len(raw):
        incl = struct.unpack_from("<I", raw, off + 8)[0]
        if off + 16 + incl > len(raw):
            break
        offs.append(off)
        off += 16 + incl
    return offs


def read(paths: list[Path], **kw: object) -> tuple[list[PacketBatch], CaptureStats]:
    batches = list(read_batches(paths, **kw))  # type: ignore[arg-type]
    stats = CaptureStats()
    for b in batches:
        stats.merge(b.stats)
    return batches, stats


def pkt_indexes(batches: list[PacketBatch]) -> list[int]:
    return [int(i) for b in batches for i in b.pkt_index]


@pytest.fixture(scope="module")
def sample() -> tuple[bytes, list[int], list[int]]:
    """Bytes, record offsets and the packet numbers that have ports, of an intact capture."""
    raw = corpus(SAMPLE).read_bytes()
    batches, _ = read([corpus(SAMPLE)])
    return raw, record_offsets(raw), pkt_indexes(batches)


@pytest.mark.parametrize("name", [SAMPLE, BIG])
@pytest.mark.parametrize("where", ["header", "body"])
def test_cut_mid_record(tmp_path: Path, name: str, where: str) -> None:
    raw = corpus(name).read_bytes()
    offs = record_offsets(raw)
    k = len(offs) // 2  # 0-based record that gets cut
    cut = offs[k] + (9 if where == "header" else 16 + 5)
    path = tmp_path / "cut.pcap"
    path.write_bytes(raw[:cut])
    full, _ = read([corpus(name)])
    for kw in ({}, {"chunk_bytes": 4096}, {"lane_bytes": 512}):
        batches, stats = read([path], **kw)
        assert pkt_indexes(batches) == [i for i in pkt_indexes(full) if i <= k]
        assert stats.packets == k
        incl = struct.unpack_from("<I", raw, offs[k] + 8)[0]
        what = (
            "last record header cut short (9 of 16 bytes)"
            if where == "header"
            else f"last record cut short (21 of {16 + incl} bytes)"
        )
        assert stats.warnings == [f"{path}: packet {k + 1} at byte {offs[k]}: {what}; ignored"]


@pytest.mark.parametrize("name", [SAMPLE, BIG])
def test_record_length_too_large(tmp_path: Path, name: str) -> None:
    raw = bytearray(corpus(name).read_bytes())
    offs = record_offsets(bytes(raw))
    k = 2 * len(offs) // 3
    struct.pack_into("<I", raw, offs[k] + 8, 0xFFFF_FFFF)
    path = tmp_path / "bad.pcap"
    path.write_bytes(bytes(raw))
    full, _ = read([corpus(name)])
    for kw in ({}, {"chunk_bytes": 8192}, {"lane_bytes": 1024}):
        batches, stats = read([path], **kw)
        assert pkt_indexes(batches) == [i for i in pkt_indexes(full) if i <= k]
        assert stats.warnings == [
            f"{path}: packet {k + 1} at byte {offs[k]}: record length 4294967295 exceeds 262144; stopped reading"
        ]


def test_not_a_capture(tmp_path: Path) -> None:
    garbage = tmp_path / "notes.txt"
    garbage.write_bytes(b"<html>this is not a capture</html>")
    with pytest.raises(CaptureError) as e:
        read([garbage])
    assert e.value.path == str(garbage)
    assert str(e.value) == f"{garbage}: not a pcap or pcapng capture (it starts with 3c 68 74 6d)"
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    with pytest.raises(CaptureError, match="empty file"):
        read([empty])
    short = tmp_path / "short.pcap"
    short.write_bytes(b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00")
    with pytest.raises(CaptureError, match="pcap file header cut short"):
        read([short])
    with pytest.raises(CaptureError, match="cannot open"):
        read([tmp_path / "missing.pcap"])
    ng = tmp_path / "short.pcapng"
    ng.write_bytes(b"\x0a\x0d\x0d\x0a\x1c\x00")
    with pytest.raises(CaptureError, match="pcapng section header"):
        read([ng])


def test_header_only_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "none.pcap"
    write_pcap(path, 1, [])
    batches, stats = read([path])
    assert stats.packets == 0 and not stats.warnings and sum(len(b) for b in batches) == 0


def test_several_files_and_errors(tmp_path: Path, sample: tuple) -> None:
    raw, _, with_ports = sample
    good = tmp_path / "a.pcap"
    good.write_bytes(raw)
    bad = tmp_path / "b.pcap"
    bad.write_bytes(b"garbage garbage garbage")
    other = tmp_path / "c.pcap"
    other.write_bytes(raw)
    it = read_batches([good, bad, other])
    assert pkt_indexes([next(it)]) == with_ports
    with pytest.raises(CaptureError):
        list(it)
    batches, stats = read([good, bad, other], errors="warn")
    assert stats.files == [str(good), str(bad), str(other)]
    assert stats.warnings == [f"{bad}: not a pcap or pcapng capture (it starts with 67 61 72 62); skipped"]
    assert sorted({int(i) for b in batches for i in b.file_index}) == [0, 2]
    assert sum(len(b) for b in batches) == 2 * len(with_ports)


def test_unknown_link_type(tmp_path: Path) -> None:
    path = tmp_path / "usb.pcap"
    write_pcap(path, 189, [b"\x00" * 64] * 5)
    batches, stats = read([path])
    assert stats.packets == 5 and sum(len(b) for b in batches) == 0
    assert stats.skipped_linktype == {"LINKTYPE_USB_LINUX (189)": 5}
    assert stats.warnings == [f"{path}: link type LINKTYPE_USB_LINUX (189) is not supported; its packets are skipped"]
    odd = tmp_path / "odd.pcap"
    write_pcap(odd, 4000, [b"\x00" * 10])
    _, stats = read([odd])
    assert stats.skipped_linktype == {"LINKTYPE 4000": 1}


def _ng_frames() -> list[Frame]:
    eth = bytes.fromhex("00112233445566778899aabb0800")
    ip = bytes.fromhex("4500002800010000400600000a0000010a000002")
    tcp = struct.pack(">HHIIBBHHH", 1234, 80, 0, 0, 0x50, 0x18, 0, 0, 0)
    return [Frame(eth + ip + tcp, 1_600_000_000_000_000_000 + i * 1000) for i in range(40)]


def _ng_offsets(raw: bytes) -> list[int]:
    offs, off = [], 0
    while off + 8 <= len(raw):
        offs.append(off)
        off += struct.unpack_from("<I", raw, off + 4)[0]
    return offs


def test_pcapng_damage(tmp_path: Path) -> None:
    good = tmp_path / "good.pcapng"
    write_pcapng(good, [(1, 6)], _ng_frames())
    raw = good.read_bytes()
    offs = _ng_offsets(raw)  # SHB, IDB, then 40 EPBs
    size = offs[3] - offs[2]
    # a block length that is not a multiple of 4
    bad = bytearray(raw)
    struct.pack_into("<I", bad, offs[12] + 4, 77)
    path = tmp_path / "badlen.pcapng"
    path.write_bytes(bytes(bad))
    batches, stats = read([path])
    assert stats.packets == 10 and pkt_indexes(batches) == list(range(1, 11))
    assert stats.warnings == [f"{path}: packet 11 at byte {offs[12]}: block length 77 invalid; stopped reading"]
    # a captured length larger than its block
    bad = bytearray(raw)
    struct.pack_into("<I", bad, offs[22] + 20, 5000)
    path.write_bytes(bytes(bad))
    _, stats = read([path])
    assert stats.packets == 20
    assert stats.warnings == [
        f"{path}: packet 21 at byte {offs[22]}: "
        f"captured length 5000 does not fit its {size}-byte block; stopped reading"
    ]
    # cut in the middle of a block
    path.write_bytes(raw[: offs[30] + 20])
    _, stats = read([path])
    assert stats.packets == 28
    assert stats.warnings == [
        f"{path}: packet 29 at byte {offs[30]}: last block cut short (20 of {size} bytes); ignored"
    ]
    # an interface id that names no interface
    bad = bytearray(raw)
    struct.pack_into("<I", bad, offs[5] + 8, 3)
    path.write_bytes(bytes(bad))
    batches, stats = read([path])
    assert stats.packets == 40 and stats.malformed == 1 and 4 not in pkt_indexes(batches)


def test_pcapng_sections_in_both_byte_orders(tmp_path: Path) -> None:
    """Two sections, little- then big-endian, in one file: interfaces restart per section."""
    le, be = tmp_path / "le.pcapng", tmp_path / "be.pcapng"
    frames = _ng_frames()
    write_pcapng(le, [(1, 6)], frames[:10])
    be_frames = [Frame(f.data, f.ts_ns + 1, iface=1) for f in frames[10:25]]  # nanosecond interface
    write_pcapng(be, [(101, 9), (1, 9)], be_frames, byteorder=">")
    both = tmp_path / "both.pcapng"
    both.write_bytes(le.read_bytes() + be.read_bytes() + le.read_bytes())
    for kw in ({}, {"chunk_bytes": 4096, "lane_bytes": 256}):
        batches, stats = read([both], **kw)
        assert stats.packets == 35 and not stats.warnings and stats.malformed == 0
        ts = np.concatenate([b.ts_ns for b in batches])
        assert ts.tolist() == [f.ts_ns for f in frames[:10]] + [f.ts_ns + 1 for f in frames[10:25]] + [
            f.ts_ns for f in frames[:10]
        ]


def test_gzip(tmp_path: Path, sample: tuple) -> None:
    raw, offs, with_ports = sample
    gz = tmp_path / "sample.pcap.gz"
    gz.write_bytes(gzip.compress(raw))
    batches, stats = read([gz])
    assert pkt_indexes(batches) == with_ports and stats.bytes == gz.stat().st_size and not stats.warnings
    cut = tmp_path / "cut.pcap.gz"
    cut.write_bytes(gzip.compress(raw)[: len(gzip.compress(raw)) // 2])
    batches, stats = read([cut], chunk_bytes=4096)
    assert 0 < stats.packets < len(offs)
    assert pkt_indexes(batches) == [i for i in with_ports if i <= stats.packets]
    assert len(stats.warnings) == 1 and "gzip stream cut short; stopped reading" in stats.warnings[0]
    junk = tmp_path / "junk.gz"
    junk.write_bytes(gzip.compress(b"plain text, not a capture"))
    with pytest.raises(CaptureError, match="not a pcap or pcapng capture"):
        read([junk])


def test_directory_walk(tmp_path: Path, sample: tuple) -> None:
    raw, _, with_ports = sample
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "b.pcap").write_bytes(raw)
    (tmp_path / "sub" / "a.cap").write_bytes(raw)
    (tmp_path / "sub" / "deeper" / "c.gz").write_bytes(gzip.compress(raw))
    (tmp_path / "sub" / "README.txt").write_text("not a capture")
    (tmp_path / "sub" / "empty.pcap").write_bytes(b"")
    batches, stats = read([tmp_path])
    names = [Path(f).relative_to(tmp_path).as_posix() for f in stats.files]
    assert names == ["b.pcap", "sub/a.cap", "sub/deeper/c.gz"]
    assert sum(len(b) for b in batches) == 3 * len(with_ports)
    for b in batches:
        assert Path(stats.files[int(b.file_index[0])]).name in ("b.pcap", "a.cap", "c.gz")


def test_fragments_across_chunks(tmp_path: Path) -> None:
    """A later fragment in another chunk (or file) than its first fragment still gets its ports."""
    eth = bytes.fromhex("00112233445566778899aabb0800")

    def frag(off8: int, more: bool, payload: bytes) -> bytes:
        ip = struct.pack(
            ">BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(payload),
            4242,
            (0x2000 if more else 0) | off8,
            64,
            17,
            0,
            bytes([10, 0, 0, 1]),
            bytes([10, 0, 0, 2]),
        )
        return eth + ip + payload

    first = frag(0, True, struct.pack(">HHHH", 5000, 53, 2008, 0) + b"a" * 992)
    later = [frag(125 * i, i < 2, b"b" * 1000) for i in (1, 2)]
    path = tmp_path / "frag.pcap"
    write_pcap(path, 1, [first] + [b"\0" * 3000] * 3 + later)
    batches, stats = read([path], chunk_bytes=4096)
    assert len(batches) > 2 and stats.fragments_unattributed == 0
    rows = [
        (int(b.pkt_index[i]), int(b.sport[i]), int(b.dport[i]), int(b.frag[i])) for b in batches for i in range(len(b))
    ]
    assert rows == [(1, 5000, 53, 1), (5, 5000, 53, 2), (6, 5000, 53, 2)]
    split_a, split_b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    write_pcap(split_a, 1, [first])
    write_pcap(split_b, 1, later)
    batches, stats = read([split_a, split_b])
    assert stats.fragments_unattributed == 0 and sum(len(b) for b in batches) == 3


def test_empty_directory_and_bad_option(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing to see")
    with pytest.raises(CaptureError, match="directory holds no pcap or pcapng capture"):
        read([tmp_path])
    with pytest.raises(ValueError):
        read([tmp_path], errors="ignore")


def test_records_larger_than_the_chunk(tmp_path: Path) -> None:
    """A 200 KB record with 4 KiB chunks: the chunk grows until the record fits."""
    eth = bytes.fromhex("00112233445566778899aabb0800")
    udp = struct.pack(">HHHH", 1, 2, 0, 0) + b"x" * 200_000
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 0, 1, 0, 64, 17, 0, b"\x0a\0\0\1", b"\x0a\0\0\2") + udp
    path = tmp_path / "jumbo.pcap"
    write_pcap(path, 1, [eth + ip, eth + ip[:100]] * 3)
    for chunk in (4096, 1 << 20):
        batches, stats = read([path], chunk_bytes=chunk)
        assert not stats.warnings and stats.packets == 6
        assert [int(n) for b in batches for n in b.payload_len] == [200_000, 72] * 3


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_named_pipe(tmp_path: Path, sample: tuple) -> None:
    raw, _, with_ports = sample
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(raw))
    writer.start()
    batches, stats = read([fifo], chunk_bytes=4096)
    writer.join()
    assert pkt_indexes(batches) == with_ports and not stats.warnings


def test_mutated_captures_never_raise(tmp_path: Path) -> None:
    """Random damage (byte flips, cuts, overwritten headers, spliced garbage) to real captures:
    reading never raises anything but ``CaptureError`` at open, every packet read is accounted
    for, and payload references stay inside the chunk."""
    rng = np.random.default_rng(2024)
    d = shared("captures", "ndpi", "pcap")
    files = sorted(d.iterdir())
    path = tmp_path / "mutant"
    checked = refused = 0
    for _ in range(120):
        raw = bytearray(files[int(rng.integers(len(files)))].read_bytes())
        mode = int(rng.integers(4))
        if mode == 0:
            for _ in range(int(rng.integers(1, 50))):
                raw[int(rng.integers(len(raw)))] = int(rng.integers(256))
        elif mode == 1:
            raw = raw[: int(rng.integers(0, len(raw)))]
        elif mode == 2:
            for _ in range(int(rng.integers(1, 10))):
                p = int(rng.integers(max(min(len(raw) - 4, 2048), 1)))
                raw[p : p + 4] = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
        else:
            p = int(rng.integers(len(raw)))
            raw[p:p] = rng.integers(0, 256, int(rng.integers(1, 300)), dtype=np.uint8).tobytes()
        path.write_bytes(bytes(raw))
        for kw in ({}, {"chunk_bytes": 4096, "lane_bytes": 128}):
            try:
                batches, stats = read([path], **kw)
            except CaptureError:
                refused += 1
                continue
            checked += 1
            rows = sum(len(b) for b in batches)
            accounted = rows + sum(stats.no_ports.values()) + stats.non_ip + stats.malformed + stats.truncated
            accounted += sum(stats.skipped_linktype.values()) + stats.fragments_unattributed
            assert accounted == stats.packets
            for b in batches:
                has = b.payload_off >= 0
                assert (b.payload_off[has] + b.payload_len[has] <= b.data.size).all()
    # CaptureError only where the damage hit a file's header (6 of 240 reads with this seed): a reader that
    # refused every damaged file would check nothing
    assert checked + refused == 240 and refused <= 12, (checked, refused)


def test_same_path_twice_is_listed_twice() -> None:
    """A path given twice is read twice: two ``stats.files`` entries, ``file_index`` 0 then 1."""
    path = corpus(SAMPLE)
    once, twice = CaptureStats(), CaptureStats()
    for b in read_batches([path]):
        once.merge(b.stats)
    seen: set[int] = set()
    for b in read_batches([path, path]):
        twice.merge(b.stats)
        seen.update(int(i) for i in b.file_index)
        assert all(int(i) < len(twice.files) for i in b.file_index)
    assert twice.files == [str(path), str(path)]
    assert seen == {0, 1}
    assert once.packets > 0 and twice.packets == 2 * once.packets
