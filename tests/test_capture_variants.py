"""The same packets in every container variant give the same columns.

A real capture is rewritten with nanosecond timestamps, big-endian headers, the pre-2.3
record layout (lengths swapped) and gzip here in the test; ``editcap`` (from Wireshark)
converts it to pcapng and nanosecond pcap independently.  Reading through ``mmap`` windows
or copies, in one chunk or many, while keeping every batch or dropping each one, must not
change a single value either.
"""

from __future__ import annotations

import gzip
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from classifier.capture import source
from classifier.capture.columns import CaptureStats, PacketBatch
from classifier.capture.reader import read_batches
from tests.shared import shared

NAMES = ["443-curl.pcap", "whatsapp_login_call.pcap", "ip_fragmented_garbage.pcap", "nats.pcap", "KakaoTalk_chat.pcap"]
COLUMNS = [f for f in PacketBatch.__dataclass_fields__ if f not in ("data", "stats", "payload_off")]


def corpus(name: str) -> Path:
    return shared("captures", "ndpi", "pcap", name)


def table(paths: list[Path], **kw: object) -> tuple[dict[str, np.ndarray], CaptureStats]:
    """All columns of a read, payload offsets replaced by payload bytes, and the merged stats."""
    stats = CaptureStats()
    cols: dict[str, list] = {c: [] for c in COLUMNS}
    payloads: list[bytes | None] = []
    for b in read_batches(paths, **kw):  # type: ignore[arg-type]
        stats.merge(b.stats)
        for c in COLUMNS:
            cols[c].append(getattr(b, c))
        payloads += [
            b.data[o : o + n].tobytes() if o >= 0 else None for o, n in zip(b.payload_off, b.payload_len, strict=True)
        ]
    out = {c: np.concatenate(v) if v else np.empty(0) for c, v in cols.items()}
    out["payload"] = np.array(payloads, dtype=object)
    return out, stats


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray], skip: tuple[str, ...] = ()) -> None:
    for c in a:
        if c not in skip:
            assert np.array_equal(a[c], b[c]), c


def records(raw: bytes) -> tuple[bytes, list[tuple[int, int, int, int, bytes]]]:
    """File header and (sec, usec, incl, orig, data) of each record of a little-endian µs pcap."""
    out, off = [], 24
    while off + 16 <= len(raw):
        sec, usec, incl, orig = struct.unpack_from("<IIII", raw, off)
        out.append((sec, usec, incl, orig, raw[off + 16 : off + 16 + incl]))
        off += 16 + incl
    return raw[:24], out


def rewrite(raw: bytes, byteorder: str, nanosecond: bool, version: tuple[int, int] = (2, 4)) -> bytes:
    head, recs = records(raw)
    _, _, _, zone, sigfigs, snaplen, lt = struct.unpack_from("<IHHiIII", head)
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    parts = [struct.pack(byteorder + "IHHiIII", magic, *version, zone, sigfigs, snaplen, lt)]
    swapped = version < (2, 3)
    for sec, usec, incl, orig, data in recs:
        frac = usec * 1000 if nanosecond else usec
        a, b = (orig, incl) if swapped else (incl, orig)
        parts.append(struct.pack(byteorder + "IIII", sec, frac, a, b) + data)
    return b"".join(parts)


@pytest.mark.parametrize("name", NAMES)
def test_rewritten_headers(tmp_path: Path, name: str) -> None:
    raw = corpus(name).read_bytes()
    ref, ref_stats = table([corpus(name)])
    variants = {
        "ns_le": rewrite(raw, "<", True),
        "us_be": rewrite(raw, ">", False),
        "ns_be": rewrite(raw, ">", True),
        "v2.2_swapped": rewrite(raw, "<", False, (2, 2)),
        "v2.2_swapped_be": rewrite(raw, ">", True, (2, 2)),
    }
    for label, data in variants.items():
        p = tmp_path / f"{label}.pcap"
        p.write_bytes(data)
        got, stats = table([p])
        assert_same(ref, got)
        assert stats.packets == ref_stats.packets and not stats.warnings, label


EDITCAP = shutil.which("editcap")


@pytest.mark.skipif(EDITCAP is None, reason="editcap is not installed")
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("fmt", ["pcapng", "nsecpcap"])
def test_editcap_conversions(tmp_path: Path, name: str, fmt: str) -> None:
    out = tmp_path / f"converted.{fmt}"
    subprocess.run([EDITCAP, "-F", fmt, str(corpus(name)), str(out)], check=True, capture_output=True)
    ref, ref_stats = table([corpus(name)])
    got, stats = table([out])
    assert_same(ref, got)
    assert stats.packets == ref_stats.packets


@pytest.mark.parametrize("name", NAMES)
def test_gzip_chunks_and_copies(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ref, _ = table([corpus(name)])
    gz = tmp_path / "x.pcap.gz"
    gz.write_bytes(gzip.compress(corpus(name).read_bytes()))
    assert_same(ref, table([gz])[0])
    assert_same(ref, table([gz], chunk_bytes=4096)[0])
    assert_same(ref, table([corpus(name)], chunk_bytes=5000)[0])
    monkeypatch.setattr(source, "USE_MMAP", False)
    assert_same(ref, table([corpus(name)])[0])
    assert_same(ref, table([corpus(name)], chunk_bytes=4096)[0])


def test_buffers_are_reused_only_when_released(tmp_path: Path) -> None:
    """Batches kept by the caller keep their bytes; dropped ones let the reader reuse buffers."""
    name = "teams.pcap"
    gz = tmp_path / "t.pcap.gz"
    gz.write_bytes(gzip.compress(corpus(name).read_bytes()))
    ref, _ = table([corpus(name)])
    kept = list(read_batches([gz], 8192))  # every batch alive at once
    payloads = [
        b.data[o : o + n].tobytes() if o >= 0 else None
        for b in kept
        for o, n in zip(b.payload_off, b.payload_len, strict=True)
    ]
    assert payloads == ref["payload"].tolist()
    assert len({id(b.data.base if b.data.base is not None else b.data) for b in kept}) == len(kept)
    streamed = []
    ids = set()
    for b in read_batches([gz], 8192):  # each batch dropped before the next is read
        ids.add(id(b.data))
        streamed += [
            b.data[o : o + n].tobytes() if o >= 0 else None for o, n in zip(b.payload_off, b.payload_len, strict=True)
        ]
        del b
    assert streamed == ref["payload"].tolist()
    assert len(ids) < 10 < len(kept)  # a handful of buffers served every chunk


def test_big_capture_matches_small_lanes(tmp_path: Path) -> None:
    """A few MB built from corpus records: default lanes vs tiny lanes vs tiny chunks, all equal."""
    parts = []
    for name in NAMES[:2] + ["teams.pcap", "instagram.pcap"]:
        _, recs = records(corpus(name).read_bytes())
        parts += [struct.pack("<IIII", s, u, i, o) + d for s, u, i, o, d in recs]
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    big = tmp_path / "big.pcap"
    big.write_bytes(head + b"".join(parts * 3))
    ref, stats = table([big], lane_bytes=1 << 15)
    assert stats.packets == 3 * len(parts)
    assert_same(ref, table([big], lane_bytes=300)[0])
    assert_same(ref, table([big], chunk_bytes=100_000, lane_bytes=2048)[0])
