"""The lock-step record walk finds exactly the records a sequential walk finds, whatever the bytes."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from classifier.capture import pcap, pcapng
from classifier.capture.views import PAD, at
from classifier.capture.walk import walk, walk_sequential


def _buffer(raw: bytes) -> np.ndarray:
    buf = np.zeros(len(raw) + PAD, np.uint8)
    buf[: len(raw)] = np.frombuffer(raw, np.uint8)
    return buf


def _pcap_records(rng: np.random.Generator, n: int, decoys: bool) -> tuple[bytes, list[int]]:
    """Records of random sizes; with ``decoys`` payloads hold copies of plausible record headers."""
    out = bytearray()
    offsets = []
    ts = 1_600_000_000
    for _ in range(n):
        size = (
            int(rng.choice([0, 1, 14, 60, 61, 300, 1514, 9000, 65535]))
            if rng.random() < 0.3
            else int(rng.integers(0, 2000))
        )
        payload = bytearray(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        if decoys and size >= 40:
            for _ in range(3):  # plant fake headers that point at fake successors
                at_ = int(rng.integers(0, size - 16))
                fake = int(rng.integers(0, 200))
                payload[at_ : at_ + 16] = struct.pack("<IIII", ts, 5, fake, fake)
        offsets.append(24 + len(out))
        ts += int(rng.integers(0, 3))
        out += struct.pack("<IIII", ts, int(rng.integers(0, 1_000_000)), size, size + int(rng.integers(0, 5))) + payload
    return bytes(out), offsets


def _pcap_chain() -> pcap.Chain:
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    return pcap.chain(pcap.parse_file_header(head, "x"))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("decoys", [False, True])
def test_lanes_equal_sequential_pcap(seed: int, decoys: bool) -> None:
    rng = np.random.default_rng(seed)
    body, offsets = _pcap_records(rng, 3000, decoys)
    chain = _pcap_chain()
    for cut in (len(body), len(body) - 7, int(rng.integers(100, len(body)))):
        buf = _buffer(b"\0" * 24 + body[:cut])
        end = 24 + cut
        ref = walk_sequential(buf, 24, end, chain)
        for lane in (64, 512, 4096, 65536):
            got = walk(buf, at(buf, "<u4"), 24, end, chain, lane)
            assert (got.stop, got.status, got.bad_len) == (ref.stop, ref.status, ref.bad_len)
            assert np.array_equal(got.pos, ref.pos)
        if cut == len(body):
            assert ref.status == "end" and ref.pos.tolist() == offsets


@pytest.mark.parametrize("seed", range(4))
def test_lanes_stop_at_damage(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    body, offsets = _pcap_records(rng, 2000, decoys=True)
    k = int(rng.integers(1, len(offsets)))
    raw = bytearray(b"\0" * 24 + body)
    struct.pack_into("<I", raw, offsets[k] + 8, 0xFFFF_FFFF)
    buf = _buffer(bytes(raw))
    chain = _pcap_chain()
    for lane in (128, 2048, 32768):
        got = walk(buf, at(buf, "<u4"), 24, len(raw), chain, lane)
        assert got.status == "damage" and got.stop == offsets[k] and got.bad_len == 0xFFFF_FFFF
        assert got.pos.tolist() == offsets[:k]


def test_lanes_equal_sequential_pcapng() -> None:
    rng = np.random.default_rng(7)
    out = bytearray()
    offsets = []
    for i in range(3000):
        btype = 6 if rng.random() < 0.9 else int(rng.choice([5, 4, 0x40000BAD]))
        size = int(rng.integers(0, 1600))
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        if btype == 6:
            body = struct.pack("<IIIII", 0, 0, i, size, size) + data
        else:
            body = data
        body += b"\0" * (-len(body) % 4)
        n = 12 + len(body)
        offsets.append(len(out))
        out += struct.pack("<II", btype, n) + body + struct.pack("<I", n)
    chain = pcapng.chain("<")
    for cut in (len(out), len(out) - 3, len(out) // 2):
        buf = _buffer(bytes(out[:cut]))
        ref = walk_sequential(buf, 0, cut, chain)
        for lane in (256, 4096):
            got = walk(buf, at(buf, "<u4"), 0, cut, chain, lane)
            assert (got.stop, got.status) == (ref.stop, ref.status) and np.array_equal(got.pos, ref.pos)
        if cut == len(out):
            assert ref.pos.tolist() == offsets
    bad = bytearray(out)
    struct.pack_into("<I", bad, offsets[1500] + 4, 6)  # not a multiple of 4, below 12
    buf = _buffer(bytes(bad))
    got = walk(buf, at(buf, "<u4"), 0, len(bad), chain, 1024)
    assert got.status == "damage" and got.stop == offsets[1500] and got.pos.tolist() == offsets[:1500]
