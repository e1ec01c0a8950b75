"""The same flows and counts for every chunk size, and packet accounting that adds up (issue 9).

Each capture is read whole (one chunk) and then with many small chunk sizes (every size from
the smallest upward over a stretch, and random ones); the finalized flow table and every
count must be identical.  ``reader.MIN_CHUNK_BYTES`` is lowered so that chunk boundaries fall
inside small captures, and ``fragments.LOOKAHEAD_BYTES`` too, so that the look-ahead window for
out-of-order IP fragments is cut by chunk ends often.
"""

from __future__ import annotations

import gzip
import random
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import pytest

from classifier.capture import fragments, reader
from classifier.capture.columns import CaptureStats
from classifier.capture.reader import read_batches
from classifier.capture.writer import Frame, write_pcap, write_pcapng
from classifier.flows import FlowAggregator, FlowTable
from tests.shared import shared

WHOLE = 1 << 30
TIMEOUT = 300 * 10**9
SMALLEST = 64
"""Smallest chunk the tests use (the first chunk must hold a pcap file header and a pcapng magic)."""


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader, "MIN_CHUNK_BYTES", SMALLEST)


def outcome(paths: Sequence[Path], chunk_bytes: int) -> tuple[FlowTable, CaptureStats]:
    """Finalized flows (each batch folded on its own, so chunk edges meet in ``merge``) and counts."""
    agg = FlowAggregator(TIMEOUT, min_packets=1)
    rows = 0
    for b in read_batches([str(p) for p in paths], chunk_bytes, errors="warn"):
        agg.add(b)
        rows += len(b)
    flows = agg.result()
    assert_accounting(flows, agg.stats, rows)
    return flows, agg.stats


def assert_accounting(flows: FlowTable, s: CaptureStats, rows: int) -> None:
    """Every packet read is in a flow, or counted once as without ports, non-IP, malformed or skipped."""
    assert int(flows.total_packets().sum()) == rows
    assert s.packets == (
        rows
        + sum(s.no_ports.values())
        + s.non_ip
        + s.malformed
        + s.truncated
        + sum(s.skipped_linktype.values())
        + s.fragments_unattributed
    )
    assert (flows.last_ts_ns >= flows.first_ts_ns).all()


def assert_same(a: tuple[FlowTable, CaptureStats], b: tuple[FlowTable, CaptureStats], label: object) -> None:
    assert a[0].equals(b[0]), label
    sa, sb = a[1], b[1]
    for f in ("packets", "ip_packets", "no_ports", "non_ip", "malformed", "skipped_linktype", "truncated"):
        assert getattr(sa, f) == getattr(sb, f), (label, f)
    assert sa.fragments_unattributed == sb.fragments_unattributed, label
    assert sa.warnings == sb.warnings and sa.files == sb.files, label


def chunk_sizes(size: int, seed: int, start: int = SMALLEST, stretch: int = 24, randoms: int = 12) -> list[int]:
    """Every size from ``start`` over ``stretch`` values, and random ones up to the file's size."""
    rng = random.Random(seed)
    return list(range(start, start + stretch)) + [rng.randint(start, max(size, start)) for _ in range(randoms)]


def assert_chunk_independent(paths: Sequence[Path], sizes: Sequence[int]) -> tuple[FlowTable, CaptureStats]:
    ref = outcome(paths, WHOLE)
    for c in sizes:
        assert_same(ref, outcome(paths, c), c)
    return ref


# ---- real captures -----------------------------------------------------------------------------

CORPUS = [
    "ip_fragmented_garbage.pcap",  # 1,248 later IPv4 fragments
    "fuzz-2020-02-16-11740.pcap",  # later fragments without a first one
    "quic-fuzz-overflow.pcapng",  # raw IPv4 (228) with a first fragment
    "anydesk.pcapng",  # three interfaces, micro- and nanosecond resolutions
    "443-curl.pcap",
]


@pytest.mark.parametrize("name", CORPUS)
@pytest.mark.parametrize("lookahead", [fragments.LOOKAHEAD_BYTES, 600])
def test_corpus_same_for_every_chunk_size(name: str, lookahead: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fragments, "LOOKAHEAD_BYTES", lookahead)
    path = shared("captures", "ndpi", "pcap", name)
    size = path.stat().st_size
    start = 2048 if size > 50_000 else SMALLEST  # the big ones would take a thousand chunks or more
    assert_chunk_independent([path], chunk_sizes(size, zlib.crc32(name.encode()), start, 8, 4))


def test_corpus_accounting_adds_up_for_every_capture() -> None:
    """Issue 9, item 5: over the whole corpus, default chunks and small ones."""
    d = shared("captures", "ndpi", "pcap")
    names = sorted(p.name for p in d.iterdir())
    assert len(names) > 200
    for name in names:
        outcome([d / name], WHOLE)
    for name in names[::10]:
        outcome([d / name], 4096)


# ---- crafted captures --------------------------------------------------------------------------

A, B = bytes([10, 9, 0, 1]), bytes([10, 9, 0, 2])
MF = 0x2000


def ipv4(ident: int, flags_off: int, body: bytes, src: bytes = A, dst: bytes = B) -> bytes:
    """Ethernet + IPv4 (UDP) carrying ``body``."""
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(body), ident, flags_off, 64, 17, 0, src, dst)
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + body


def first_fragment(ident: int, sport: int) -> bytes:
    return ipv4(ident, MF, struct.pack(">HHHH", sport, 53, 8 + 40, 0) + b"f" * 32)


def later_fragment(ident: int) -> bytes:
    return ipv4(ident, 5, b"l" * 8)  # offset 40 bytes, last fragment


def filler(i: int) -> bytes:
    return ipv4(0x7000 + i, 0, struct.pack(">HHHH", 40000 + i % 3, 80, 16, 0) + b"x" * 8, src=bytes([10, 8, 0, 1]))


def frames(spec: list[bytes]) -> list[Frame]:
    return [Frame(f, 1_700_000_000 * 10**9 + i * 10**6) for i, f in enumerate(spec)]


def test_out_of_order_fragments_same_for_every_chunk_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The smallest case: a later fragment sent before its first fragment, a chunk end between them.

    Before the fix a chunk end between them left the fragment unattributed; a whole read gave it ports.
    """
    path = tmp_path / "ooo.pcap"
    write_pcap(path, 1, frames([later_fragment(1), filler(0), first_fragment(1, 5001)]))
    flows, stats = assert_chunk_independent([path], range(SMALLEST, path.stat().st_size + 1))
    got = {int(p): int(n) for p, n in zip(flows.client_port, flows.total_packets(), strict=True)}
    assert got == {5001: 2, 40000: 1} and stats.fragments_unattributed == 0
    gz = tmp_path / "ooo.pcap.gz"  # streamed (not mapped): chunks carry their tail over
    gz.write_bytes(gzip.compress(path.read_bytes()))
    gz_flows, _ = assert_chunk_independent([gz], range(SMALLEST, path.stat().st_size + 1, 7))
    assert gz_flows.equals(flows)


def test_fragment_look_ahead_window_and_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule at its edges: before wins over after; the window; after-matching stays in its file."""
    monkeypatch.setattr(fragments, "LOOKAHEAD_BYTES", 300)  # about three of these frames
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    spec = [
        first_fragment(1, 5001),
        later_fragment(1),  # 1: a first fragment before it and one after it: the one before
        later_fragment(2),  # 2: its first fragment is within the window after it
        filler(0),
        first_fragment(2, 5002),
        first_fragment(1, 5011),
        later_fragment(3),  # 3: its first fragment comes too late (unattributed)
        *[filler(i) for i in range(1, 5)],
        first_fragment(3, 5003),
        later_fragment(4),  # 4: its first fragment opens the next file: not matched
    ]
    write_pcap(a, 1, frames(spec))
    write_pcap(b, 1, frames([first_fragment(4, 5004), later_fragment(4)]))  # ... but this one is
    flows, stats = assert_chunk_independent([a, b], range(SMALLEST, a.stat().st_size + 1, 5))
    got = {int(p): int(n) for p, n in zip(flows.client_port, flows.total_packets(), strict=True)}
    assert got == {5001: 2, 5002: 2, 5011: 1, 5003: 1, 5004: 2, 40000: 2, 40001: 2, 40002: 1}
    assert stats.fragments_unattributed == 2


@pytest.mark.parametrize("capacity", [fragments.CAPACITY, 3])
def test_random_fragment_captures_same_for_every_chunk_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capacity: int
) -> None:
    """Fragments of a few datagrams in random order among filler, two files, windows cut by chunk ends.

    With ``capacity`` 3, a later fragment matches only among the 3 most recent first fragments.
    """
    monkeypatch.setattr(fragments, "LOOKAHEAD_BYTES", 400)
    monkeypatch.setattr(fragments, "CAPACITY", capacity)
    rng = random.Random(9 + capacity)
    for case in range(6):
        paths = []
        for k in range(2):
            spec = [filler(i) for i in range(rng.randint(0, 6))]
            for _ in range(rng.randint(8, 20)):
                ident = rng.randint(1, 4)
                kind = rng.random()
                spec.insert(
                    rng.randint(0, len(spec)),
                    first_fragment(ident, 5000 + rng.randint(0, 9)) if kind < 0.4 else later_fragment(ident),
                )
            p = tmp_path / f"r{case}-{k}.pcap"
            write_pcap(p, 1, frames(spec))
            paths.append(p)
        size = sum(p.stat().st_size for p in paths)
        assert_chunk_independent(paths, chunk_sizes(size, case, stretch=6, randoms=6))


def test_packet_before_its_interface_description(tmp_path: Path) -> None:
    """A packet block naming an interface described only after it is malformed, however the file is cut.

    Before the fix it took that interface when the description fell in the same chunk, else was malformed.
    """
    path = tmp_path / "late-idb.pcapng"
    write_pcapng(path, [(1, 6)], frames([filler(0), filler(1), filler(2)]))
    data = path.read_bytes()
    shb_len = struct.unpack_from("<I", data, 4)[0]
    idb_len = struct.unpack_from("<I", data, shb_len + 4)[0]
    blocks = data[shb_len + idb_len :]
    first_len = struct.unpack_from("<I", blocks, 4)[0]
    early = bytearray(blocks[:first_len])
    struct.pack_into("<I", early, 8, 1)  # names interface 1, described after it
    idb = data[shb_len : shb_len + idb_len]
    path.write_bytes(data[: shb_len + idb_len] + bytes(early) + idb + blocks[first_len:])
    flows, stats = assert_chunk_independent([path], range(SMALLEST, path.stat().st_size + 1))
    assert stats.packets == 3 and stats.malformed == 1 and int(flows.total_packets().sum()) == 2
