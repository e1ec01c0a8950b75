"""Reading one capture with two processes (``classifier.capture.parallel``) equals reading it sequentially."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from classifier.capture import parallel
from classifier.capture.parallel import Plan, plan_split, read_flows
from classifier.capture.reader import read_batches
from classifier.conn import CHUNK_DEPENDENT
from classifier.evidence.match import scan
from classifier.flows import FlowAggregator, finalize, orient
from tests.shared import shared

TIMEOUT = 300 * 10**9
SMALL_CHUNK = 4 << 20


def _compare(path: Path, chunk_bytes: int, plan: Plan | None = None, mode: str = "parallel") -> None:
    agg = FlowAggregator(TIMEOUT)
    for b in read_batches([str(path)], chunk_bytes):
        agg.add(b, scan(b))
    seq = orient(agg.result(), None)
    plan = plan if plan is not None else plan_split(path, chunk_bytes)
    assert plan is not None
    table, stats, interrupted = read_flows(path, TIMEOUT, scan, chunk_bytes=chunk_bytes, plan=plan)
    assert parallel.last_mode == mode
    assert not interrupted
    par = orient(finalize(table), None)
    for name, col in seq.columns().items():
        other = getattr(par, name)
        if name not in CHUNK_DEPENDENT:  # retransmission/hole figures depend on the chunking (classifier.conn)
            assert col.dtype == other.dtype and np.array_equal(col, other), name
    assert par.equals(seq, chunking=True)
    assert stats == agg.stats


@pytest.fixture(scope="module")
def bench300k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("par") / "bench300k.pcap"
    subprocess.run(
        [sys.executable, str(shared("bench", "make_bench_pcap.py")), str(out), "--packets", "300000"],
        check=True,
        capture_output=True,
    )
    return out


def test_pcap_small_chunks(bench300k: Path) -> None:
    _compare(bench300k, SMALL_CHUNK)
    plan = plan_split(bench300k, SMALL_CHUNK)
    assert plan is not None and plan.tail is not None
    _compare(bench300k, SMALL_CHUNK, Plan(plan.split, plan.fmt))  # the child reads on to the end


def test_pcapng(bench300k: Path, tmp_path: Path) -> None:
    if shutil.which("editcap") is None:
        pytest.skip("editcap not installed")
    ng = tmp_path / "bench.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(bench300k), str(ng)], check=True)
    _compare(ng, SMALL_CHUNK)


@pytest.fixture(scope="module")
def bench140mb(bench300k: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Over two default chunks (plan_split's minimum): the 300k capture, then its records again, cut inside one."""
    out = tmp_path_factory.mktemp("par") / "bench140mb.pcap"
    data = bench300k.read_bytes()
    with open(out, "wb") as g:
        g.write(data)
        g.write(data[24 : 140_000_000 - len(data)])
    return out


def test_default_chunks_file_cut_inside_a_record(bench140mb: Path) -> None:
    """Issue 9: this ran only where a benchmark had left /tmp/bench1m.pcap; now it builds its own input."""
    plan = plan_split(bench140mb)
    assert plan is not None
    _compare(bench140mb, 64 << 20, plan)
    _, stats, _ = read_flows(bench140mb, TIMEOUT, plan=plan)
    assert len(stats.warnings) == 1 and "last record cut short" in stats.warnings[0]


def test_wrong_boundary_falls_back(bench300k: Path) -> None:
    plan = plan_split(bench300k, SMALL_CHUNK)
    assert plan is not None
    rec = struct.unpack_from("<I", bench300k.read_bytes()[plan.split + 8 : plan.split + 12])[0]
    for wrong in (plan.split + 16 + rec, plan.split + 1):  # the next record start; no record start
        _compare(bench300k, SMALL_CHUNK, Plan(wrong, plan.fmt), mode="fallback")


def _corrupt_after(src: Path, dst: Path, offset: int, records: int) -> None:
    data = bytearray(src.read_bytes())
    p = offset
    for _ in range(records):
        p += 16 + struct.unpack_from("<I", data, p + 8)[0]
    struct.pack_into("<I", data, p + 8, 0xFFFFFF00)
    dst.write_bytes(data)


@pytest.mark.parametrize("where", ["child", "tail"])
def test_damage_in_later_ranges_renumbers_warning(bench300k: Path, tmp_path: Path, where: str) -> None:
    plan = plan_split(bench300k, SMALL_CHUNK)
    assert plan is not None and plan.tail is not None
    bad = tmp_path / "bad.pcap"
    _corrupt_after(bench300k, bad, plan.split if where == "child" else plan.tail, 5000)
    _compare(bad, SMALL_CHUNK, plan)


def test_damage_in_first_range(bench300k: Path, tmp_path: Path) -> None:
    plan = plan_split(bench300k, SMALL_CHUNK)
    assert plan is not None
    bad = tmp_path / "bad.pcap"
    _corrupt_after(bench300k, bad, 24, 1000)
    _compare(bad, SMALL_CHUNK, plan, mode="fallback")


# ---- IP fragments straddling the split ------------------------------------------------------

FRAME = 200


def _frame(src: int, dst: int, ident: int, flags_off: int, body: bytes) -> bytes:
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(body), ident, flags_off, 64, 17, 0, src.to_bytes(4, "big"),
                     dst.to_bytes(4, "big"))  # fmt: skip
    eth = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
    f = eth + ip + body
    return f + b"\x00" * (FRAME - len(f))


def _udp(sport: int, dport: int) -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + 150, 0) + b"x" * 150


def _record(i: int, frame: bytes) -> bytes:
    return struct.pack("<IIII", 1_700_000_000 + i // 1000, (i % 1000) * 1000, len(frame), len(frame)) + frame


A, B = 0x0A090001, 0x0A090002
FIRST, LATER = 0x2000, 22  # MF with offset 0; offset 176 bytes, last fragment


def _filler(i: int) -> bytes:
    return _frame(0x0A000000 + i % 50, 0x0A010000 + i % 7, i & 0xFFFF, 0, _udp(10000 + i % 50, 53))


def _straddle(recs: list[bytes], k: int, d: int) -> dict[int, tuple[int, int]]:
    """Fragments around record ``k`` (a range boundary); ``d`` keeps datagram ids and ports apart.

    Returns the expected packets of the flows, by (client port, server port).
    """
    later = b"y" * 166
    put = {
        k - 3: _frame(A, B, d + 1, FIRST, _udp(d + 1, 9999)),  # 1: first fragment before the boundary
        k - 2: _frame(A, B, d + 3, FIRST, _udp(d + 3, 9999)),  # 3: a first fragment before the boundary...
        k + 1: _frame(A, B, d + 1, LATER, later),  # ...1's later fragment: the reader after it cannot know its ports
        k + 2: _frame(A, B, d + 2, LATER, later),  # 2: no first fragment anywhere (unattributed)
        k + 3: _frame(A, B, d + 3, LATER, later),  # 3: first fragments before (wins) and after it
        k + 5: _frame(A, B, d + 3, FIRST, _udp(d + 5, 9999)),
        k + 6: _frame(A, B, d + 4, LATER, later),  # 4: only a first fragment after it, same chunk
        k + 7: _frame(A, B, d + 4, FIRST, _udp(d + 4, 9999)),
        k + 10: _frame(A, B, d + 6, FIRST, _udp(d + 6, 9999)),  # 6: both after the boundary
        k + 11: _frame(A, B, d + 6, LATER, later),
    }
    for i, f in put.items():
        recs[i] = _record(i, f)
    return {(d + 1, 9999): 2, (d + 3, 9999): 2, (d + 5, 9999): 1, (d + 4, 9999): 2, (d + 6, 9999): 2}


@pytest.mark.parametrize("with_tail", [True, False])
def test_fragments_straddling_split(tmp_path: Path, with_tail: bool) -> None:
    n = 24000
    path = tmp_path / "frag.pcap"
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    recs = [_record(i, _filler(i)) for i in range(n)]
    path.write_bytes(head + b"".join(recs))
    chunk = 64 << 10
    plan = plan_split(path, chunk)
    assert plan is not None and plan.tail is not None
    if not with_tail:
        plan = Plan(plan.split, plan.fmt)
    size = len(recs[0])
    expect = {}
    for d, boundary in ((1000, plan.split), (2000, plan.tail)):
        if boundary is not None:
            assert (boundary - 24) % size == 0
            expect.update(_straddle(recs, (boundary - 24) // size, d))
    path.write_bytes(head + b"".join(recs))
    _compare(path, chunk, plan)
    table, stats, _ = read_flows(path, TIMEOUT, scan, chunk_bytes=chunk, plan=plan)
    t = finalize(table)
    assert stats.fragments_unattributed == (2 if with_tail else 1)
    got = {(int(a), int(b)): int(p) for a, b, p in zip(t.client_port, t.server_port, t.total_packets(), strict=True)}
    assert {k: got.get(k) for k in expect} == expect


def test_analyze_jobs_same_result(bench140mb: Path, reg) -> None:
    from classifier.pipeline import analyze

    parallel.last_mode = ""
    a1 = analyze([bench140mb], reg, jobs=1, hold=True)  # two processes hold flows to the end
    assert parallel.last_mode == ""  # jobs=1 never splits
    a2 = analyze([bench140mb], reg, jobs=2)
    assert parallel.last_mode == "parallel"  # 134 MiB: split after the first 64 MiB chunk
    assert a1.flows.equals(a2.flows, chunking=True) and a1.stats == a2.stats  # chunks differ: T/G counts may
    assert all(np.array_equal(getattr(a1.labels, f), getattr(a2.labels, f)) for f in vars(a1.labels) if
               isinstance(getattr(a1.labels, f), np.ndarray))  # fmt: skip


def test_pcapng_interface_in_child_range_rereads_tail(bench300k: Path, tmp_path: Path) -> None:
    """A new interface in the child's range changes the state the tail was read with: the tail is read again."""
    if shutil.which("editcap") is None:
        pytest.skip("editcap not installed")
    ng = tmp_path / "bench.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(bench300k), str(ng)], check=True)
    plan = plan_split(ng, SMALL_CHUNK)
    assert plan is not None and plan.tail is not None
    data = bytearray(ng.read_bytes())
    p = plan.split
    for _ in range(100):
        p += struct.unpack_from("<I", data, p + 4)[0]
    idb = struct.pack("<IIHHII", 1, 20, 147, 0, 0, 20)  # LINKTYPE_USER0: not supported, one warning
    odd = tmp_path / "idb.pcapng"
    odd.write_bytes(bytes(data[:p]) + idb + bytes(data[p:]))
    plan = plan_split(odd, SMALL_CHUNK)
    assert plan is not None and plan.tail is not None and plan.split < p < plan.tail
    _compare(odd, SMALL_CHUNK, plan, mode="parallel+reread")
