"""Every capture of the real corpus reads without an exception, and the columns keep their contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from classifier.capture import decode
from classifier.capture.columns import (
    FRAG_FIRST,
    FRAG_LATER,
    FRAG_NONE,
    IPV4_MAPPED_LO_PREFIX,
    CaptureStats,
    PacketBatch,
)
from classifier.capture.linktypes import LINKTYPES
from classifier.capture.reader import read_batches
from tests.shared import shared

DTYPES = {
    "ts_ns": np.int64,
    "wire_len": np.uint32,
    "ip_version": np.uint8,
    "src_hi": np.uint64,
    "src_lo": np.uint64,
    "dst_hi": np.uint64,
    "dst_lo": np.uint64,
    "proto": np.uint8,
    "sport": np.uint16,
    "dport": np.uint16,
    "tcp_flags": np.uint8,
    "frag": np.uint8,
    "payload_off": np.int64,
    "payload_len": np.int32,
    "pkt_index": np.int64,
    "file_index": np.uint16,
    "data": np.uint8,
}
COLUMNS = [f for f in DTYPES if f != "data"]


def corpus_names() -> list[str]:
    """Names of the corpus captures (collection fails loudly when ../shared is absent)."""
    return sorted(p.name for p in shared("captures", "ndpi", "pcap").iterdir())


def corpus(name: str) -> Path:
    return shared("captures", "ndpi", "pcap", name)


def read(path: Path, **kw: object) -> tuple[list[PacketBatch], CaptureStats]:
    batches = list(read_batches([path], **kw))  # type: ignore[arg-type]
    stats = CaptureStats()
    for b in batches:
        stats.merge(b.stats)
    return batches, stats


def columns(batches: list[PacketBatch]) -> dict[str, np.ndarray]:
    """Columns of all batches end to end; payload offsets (chunk-relative) become the payload bytes."""
    out = {c: np.concatenate([getattr(b, c) for b in batches]) if batches else np.empty(0) for c in COLUMNS}
    payloads = []
    for b in batches:
        for off, n in zip(b.payload_off.tolist(), b.payload_len.tolist(), strict=True):
            payloads.append(b.data[off : off + n].tobytes() if off >= 0 else None)
    out["payload_off"] = np.array(payloads, dtype=object)
    return out


def outcome_total(rows: int, s: CaptureStats) -> int:
    """Every packet read ends in exactly one of these."""
    return (
        rows
        + sum(s.no_ports.values())
        + s.non_ip
        + s.malformed
        + s.truncated
        + sum(s.skipped_linktype.values())
        + s.fragments_unattributed
    )


@pytest.mark.parametrize("name", corpus_names())
def test_corpus_file_reads(name: str) -> None:
    path = corpus(name)
    batches, stats = read(path)
    rows = sum(len(b) for b in batches)
    assert outcome_total(rows, stats) == stats.packets
    assert stats.files == [str(path)]
    assert stats.bytes == path.stat().st_size
    assert not stats.skipped_linktype  # every link type in the corpus is supported
    last = 0
    for b in batches:
        for c, dt in DTYPES.items():
            col = getattr(b, c)
            assert col.dtype == dt, c
            assert c == "data" or len(col) == len(b), c
        if not len(b):
            continue
        assert (np.diff(b.pkt_index) > 0).all() and b.pkt_index[0] > last
        last = int(b.pkt_index[-1])
        assert set(np.unique(b.proto).tolist()) <= {6, 17, 132, 33}
        assert set(np.unique(b.ip_version).tolist()) <= {4, 6}
        assert set(np.unique(b.frag).tolist()) <= {FRAG_NONE, FRAG_FIRST, FRAG_LATER}
        v4 = b.ip_version == 4
        for hi, lo in ((b.src_hi, b.src_lo), (b.dst_hi, b.dst_lo)):
            assert (hi[v4] == 0).all() and ((lo[v4] >> np.uint64(32)) == (IPV4_MAPPED_LO_PREFIX >> np.uint64(32))).all()
        has = b.payload_off >= 0
        assert (b.payload_len[has] >= 0).all() and (b.payload_len[~has] == 0).all()
        assert (b.payload_off[has] + b.payload_len[has] <= b.data.size).all()
        assert (b.tcp_flags[b.proto != 6] == 0).all()
        assert (b.file_index == 0).all()
    assert last <= stats.packets


def test_corpus_link_types_are_known() -> None:
    """The corpus holds Ethernet, SLL, raw IP, NULL and IPv4 (228) captures, all in LINKTYPES."""
    for lt in (1, 113, 101, 0, 228):
        assert lt in LINKTYPES


@pytest.fixture(scope="module")
def reference() -> dict[str, tuple[dict[str, np.ndarray], CaptureStats]]:
    """Columns and stats of each corpus file read the default way."""
    out = {}
    for name in corpus_names():
        batches, stats = read(corpus(name))
        out[name] = (columns(batches), stats)
    return out


def _same(a: tuple[dict[str, np.ndarray], CaptureStats], b: tuple[dict[str, np.ndarray], CaptureStats]) -> None:
    for c in COLUMNS:
        assert np.array_equal(a[0][c], b[0][c]), c
    sa, sb = a[1], b[1]
    for f in ("packets", "ip_packets", "no_ports", "non_ip", "malformed", "skipped_linktype", "truncated"):
        assert getattr(sa, f) == getattr(sb, f), f
    assert sa.fragments_unattributed == sb.fragments_unattributed
    assert [w.split(": ", 1)[1] for w in sa.warnings] == [w.split(": ", 1)[1] for w in sb.warnings]


def test_chunking_and_lanes_change_nothing(reference: dict) -> None:
    """Tiny chunks (records carried across chunk ends) and tiny lanes give the same columns."""
    for name, ref in reference.items():
        batches, stats = read(corpus(name), chunk_bytes=4096, lane_bytes=256)
        _same(ref, (columns(batches), stats))


def test_fast_path_changes_nothing(reference: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-gather Ethernet/IPv4 path gives exactly what the general decoder gives."""
    monkeypatch.setattr(decode, "FAST_PATH", False)
    for name, ref in reference.items():
        batches, stats = read(corpus(name))
        _same(ref, (columns(batches), stats))


def test_directory_reads_every_capture(reference: dict) -> None:
    """The corpus directory as one input: all files, in name order, file_index into stats.files."""
    d = shared("captures", "ndpi", "pcap")
    stats = CaptureStats()
    rows = 0
    for b in read_batches([d]):
        stats.merge(b.stats)
        rows += len(b)
        if len(b):
            assert Path(stats.files[int(b.file_index[0])]).name in reference
    assert [Path(f).name for f in stats.files] == sorted(reference)
    assert stats.packets == sum(s.packets for _, s in reference.values())
    assert rows == sum(len(c["pkt_index"]) for c, _ in reference.values())
