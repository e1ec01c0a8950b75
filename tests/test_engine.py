"""The engine: flows out as they end, the same flows as a whole-capture view when no rule cuts one.

The reference is the batch path every stage was built on: every packet into one ``FlowAggregator``,
``finalize``, ``label_flows`` and ``verdicts`` at the end.  The engine streams the same batches with
passes every 64 packets; the expiry rules are checked on crafted packets with known answers.
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest

from classifier.capture.reader import read_batches
from classifier.engine import END_REASONS, Ended, Engine, Timeouts
from classifier.evidence.match import scan
from classifier.evidence.verdict import verdicts
from classifier.flows import FlowAggregator, make_batch
from classifier.label import Labels
from classifier.pipeline import analyze, label_flows
from tests.shared import shared

S = 10**9
A, B = "192.0.2.1", "198.51.100.2"


def _corpus() -> list[str]:
    return sorted(p.name for p in shared("captures", "ndpi", "pcap").iterdir())


def _key_order(e: Ended) -> np.ndarray:
    fl = e.flows
    return np.lexsort((fl.first_ts_ns, fl.server_port, fl.client_port, fl.server_lo, fl.client_lo, fl.proto))


def _same(x: Ended, y: Ended) -> bool:
    ox, oy = _key_order(x), _key_order(y)
    if not x.flows.take(ox).equals(y.flows.take(oy), chunking=True):
        return False
    return all(
        np.array_equal(np.take(getattr(x.labels, f.name), ox), np.take(getattr(y.labels, f.name), oy))
        for f in fields(Labels)
        if f.name != "tshark_protocol"
    )


def _reference(path: str, reg) -> tuple[Ended, object]:
    agg = FlowAggregator(300 * S)
    for b in read_batches([path], errors="warn"):
        agg.add(b, scan(b))
    flows, labels = label_flows(agg.result(), reg)
    verdicts(flows, labels, reg)
    n = len(flows)
    return Ended(flows, labels, np.zeros(n, np.int32), np.zeros(n, np.uint8)), agg.stats


def _stream(path: str, reg, timeouts: Timeouts) -> tuple[Ended, Engine]:
    eng = Engine(reg, timeouts, min_packets=64)
    out = []
    for b in read_batches([path], errors="warn"):
        out.extend(eng.add(b))
    out.append(eng.flush())
    return Ended.concat(out), eng


def test_corpus_streamed_equals_batch(reg) -> None:
    """Every capture of the nDPI corpus: same flows, counters, labels and verdicts, streamed or held.

    With the close rule off only the idle rule ends flows early, and on a capture whose time runs
    forwards it ends only flows no later packet could join; captures whose time steps back are
    compared on what streaming must keep anyway (packets and bytes).
    """
    differ, early, steps = [], 0, 0
    for name in _corpus():
        path = str(shared("captures", "ndpi", "pcap", name))
        ref, stats = _reference(path, reg)
        got, eng = _stream(path, reg, Timeouts(close_grace_s=None))
        assert eng.stats == stats, name
        early += sum(v for k, v in eng.counters.ended.items() if k != "flush")
        ts = np.concatenate([b.ts_ns for b in read_batches([path], errors="warn")] or [np.zeros(0, np.int64)])
        monotonic = bool((np.diff(ts) >= 0).all())
        steps += not monotonic
        if monotonic and not _same(got, ref):
            differ.append(name)
        assert int(got.flows.total_packets().sum()) == int(ref.flows.total_packets().sum()), name
        assert int(got.flows.total_bytes().sum()) == int(ref.flows.total_bytes().sum()), name
        # the end order: ended chunks in end time order within each chunk, never a flow twice
        assert len(got) >= len(ref), name
    assert not differ, differ
    assert early > 0  # the idle rule did end flows before the end of some captures
    assert len(_corpus()) - steps > 200  # most captures are compared row for row


def test_analyze_is_the_engine(reg) -> None:
    """``pipeline.analyze`` (file analysis) gives the engine's flows with its counters."""
    path = str(shared("captures", "ndpi", "pcap", _corpus()[0]))
    a = analyze([path], reg)
    got, eng = _stream(path, reg, Timeouts())
    assert len(a.flows) == len(got) and a.counters is not None
    assert sum(a.counters.ended.values()) == len(a.flows)
    assert int(a.flows.total_packets().sum()) == int(got.flows.total_packets().sum())


def _udp(ts: list[float], sport: int = 40000, dport: int = 53) -> object:
    n = len(ts)
    return make_batch(
        ts_ns=[int(t * S) for t in ts],
        src=[A if i % 2 == 0 else B for i in range(n)],
        dst=[B if i % 2 == 0 else A for i in range(n)],
        sport=[sport if i % 2 == 0 else dport for i in range(n)],
        dport=[dport if i % 2 == 0 else sport for i in range(n)],
        proto=17,
    )


def _run(reg, batches: list, timeouts: Timeouts) -> list[tuple[int, int, int, str, int]]:
    """(first s, last s, packets, reason, part) of each flow in the order the engine gave them out."""
    eng = Engine(reg, timeouts, min_packets=1, evidence=False)
    out = []
    for b in batches:
        for e in eng.add(b):
            out.append(("pass", e))
    out.append(("flush", eng.flush()))
    rows = []
    for _, e in out:
        for i in range(len(e)):
            rows.append(
                (
                    int(e.flows.first_ts_ns[i] // S),
                    int(e.flows.last_ts_ns[i] // S),
                    int(e.flows.total_packets()[i]),
                    END_REASONS[int(e.reason[i])],
                    int(e.part[i]),
                )
            )
    return rows


def test_idle_per_transport(reg) -> None:
    """udp=60: a UDP flow quiet for 61 s ends at the next pass; tcp keeps its 300 s."""
    t = Timeouts.parse_idle("tcp=300,udp=60")
    rows = _run(reg, [_udp([0, 1]), _udp([62], sport=41000), _udp([63])], t)
    assert rows[0] == (0, 1, 2, "idle", 0)  # ended at the clock 62 s, before the others
    assert sorted(rows[1:]) == [(62, 62, 1, "flush", 0), (63, 63, 1, "flush", 0)]
    # the default 300 s keeps the same packets in one flow
    rows = _run(reg, [_udp([0, 1]), _udp([62])], Timeouts())
    assert rows == [(0, 62, 3, "flush", 0)]


def _tcp(ts: list[float], flags: list[int], c2s: list[bool], sport: int = 40000) -> object:
    return make_batch(
        ts_ns=[int(t * S) for t in ts],
        src=[A if d else B for d in c2s],
        dst=[B if d else A for d in c2s],
        sport=[sport if d else 80 for d in c2s],
        dport=[80 if d else sport for d in c2s],
        tcp_flags=flags,
    )


SYN, SYNACK, ACK, FINACK, RST = 0x02, 0x12, 0x10, 0x11, 0x04


def test_tcp_close_with_grace(reg) -> None:
    """FIN both ways: a late ACK within the 5 s grace joins; after the grace the flow is out."""
    hs = _tcp([0, 0.1, 0.2, 1, 1.1], [SYN, SYNACK, ACK, FINACK, FINACK], [True, False, True, True, False])
    late = _tcp([4], [ACK], [True])  # within the grace: the last ACK
    other = _tcp([10], [SYN], [True], sport=41000)  # the clock moves on
    rows = _run(reg, [hs, late, other], Timeouts())
    assert rows[0] == (0, 4, 6, "closed", 0)
    assert rows[1] == (10, 10, 1, "flush", 0)
    # one FIN only is not closed: the flow waits for its idle timeout
    half = _tcp([0, 0.1, 1], [SYN, SYNACK, FINACK], [True, False, True])
    assert _run(reg, [half, other], Timeouts())[0][3] == "flush"
    # RST closes at once (after the grace)
    rst = _tcp([0, 0.1, 0.2], [SYN, SYNACK, RST], [True, False, True])
    assert _run(reg, [rst, other], Timeouts())[0] == (0, 0, 3, "closed", 0)
    # close rule off: the same packets stay one flow to the end
    assert _run(reg, [hs, late, other], Timeouts(close_grace_s=None))[0] == (0, 4, 6, "flush", 0)


def test_active_timeout_parts(reg) -> None:
    """--active-timeout 60: a flow of 160 s comes out in three numbered parts, packets conserved."""
    ts = list(range(0, 161, 10))
    batches = [_udp([t]) for t in ts]  # one packet a batch: a pass after each
    rows = _run(reg, batches, Timeouts(active_s=60))
    # cut when the clock is more than 60 s past the part's start: at 70 s, then at 150 s
    assert rows == [(0, 70, 8, "active", 1), (80, 150, 8, "active", 2), (160, 160, 1, "flush", 3)]
    # off by default: one whole flow
    assert _run(reg, batches, Timeouts()) == [(0, 160, len(ts), "flush", 0)]


def test_time_going_backwards(reg) -> None:
    """A step back of more than the idle timeout ends every flow alive before it at the next pass;
    a small step back (jitter) keeps flows going."""
    fwd = [10_000, 10_001]
    back = [0, 1]
    rows = _run(reg, [_udp(fwd + back)], Timeouts())  # one batch across the step: the flow stage splits
    assert rows == [(10_000, 10_001, 2, "split", 0), (0, 1, 2, "flush", 0)]
    other = _udp([10_000, 10_001], sport=41000)  # a flow of another key, before the step
    rows = _run(reg, [other, _udp(back)], Timeouts())
    assert rows == [(10_000, 10_001, 2, "idle", 0), (0, 1, 2, "flush", 0)]
    rows = _run(reg, [_udp(fwd), _udp(back)], Timeouts())  # the same key across batches: split by the merge
    assert rows == [(10_000, 10_001, 2, "split", 0), (0, 1, 2, "flush", 0)]
    rows = _run(reg, [_udp([100, 101]), _udp([50, 102])], Timeouts())  # 51 s back: within the timeout
    assert rows == [(50, 102, 4, "flush", 0)]


@pytest.mark.parametrize("min_packets", [1, 3, 1 << 18])
def test_memory_follows_flows_alive(reg, min_packets: int) -> None:
    """Flows that ended leave the table: 50 short UDP exchanges one after another, at most a few alive."""
    eng = Engine(reg, Timeouts(idle_s=5), min_packets=min_packets, evidence=False)
    total = 0
    for k in range(50):
        for e in eng.add(_udp([k * 10, k * 10 + 1], sport=40000 + k)):
            total += len(e)
    total += len(eng.flush())
    assert total == 50
    assert eng.counters.ended["idle"] == (49 if min_packets < 1 << 18 else 0)
    assert eng.counters.peak_alive <= (2 if min_packets == 1 else 50)


def test_snapshot_keeps_flows(reg) -> None:
    eng = Engine(reg, min_packets=1, evidence=False)
    list(eng.add(_udp([0, 1])))
    snap = eng.snapshot()
    assert len(snap) == 1 and int(snap.flows.total_packets()[0]) == 2
    list(eng.add(_udp([2])))
    assert int(eng.flush().flows.total_packets()[0]) == 3


def test_api_flows_as_they_end(reg) -> None:
    """``classifier.flows_as_they_end``: the chunks add up to ``classify``'s flows."""
    import classifier

    path = shared("captures", "ndpi", "pcap", _corpus()[0])
    chunks = list(classifier.flows_as_they_end(path, reg))
    whole = classifier.classify(path, reg)
    assert sum(len(c) for c in chunks) == len(whole) > 0
    assert sum(int(c.table.total_packets().sum()) for c in chunks) == int(whole.table.total_packets().sum())
