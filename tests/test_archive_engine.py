"""The engine's edge hook (``hold_heads``, ``export``, ``join``): two files labelled apart, then joined,
give the flows one engine gives reading both in order (crafted packets, every rule at the edge)."""

from __future__ import annotations

import numpy as np
import pytest

from classifier.engine import Ended, Engine, Timeouts
from classifier.flows import make_batch

S = 1_000_000_000
SYN, SYNACK, ACK, FIN, RST = 0x02, 0x12, 0x10, 0x11, 0x04
A, B = "192.0.2.1", "192.0.2.2"

# (ts s, src, dst, sport, dport, proto, flags); file 1 is [0, 100], file 2 [110, 400]; idle 60 s
FILE1 = [
    (0, A, B, 1000, 80, 6, SYN), (1, B, A, 80, 1000, 6, SYNACK), (60, A, B, 1000, 80, 6, ACK),  # K1 crosses
    (95, A, B, 1000, 80, 6, ACK),
    (50, A, B, 2000, 53, 17, 0), (90, B, A, 53, 2000, 17, 0),  # K2 udp crosses (gap 30 s)
    (20, A, B, 3000, 22, 6, SYN), (21, B, A, 22, 3000, 6, SYNACK), (22, A, B, 3000, 22, 6, FIN),
    (23, B, A, 22, 3000, 6, FIN), (24, A, B, 3000, 22, 6, ACK),  # K3 closed in file 1
    (98, A, B, 4000, 443, 6, ACK), (99, A, B, 4000, 443, 6, FIN),  # K4: FIN one way, port reused in file 2
    (30, A, B, 5000, 123, 17, 0),  # K5: too old to continue (idle)
    (97, A, B, 6000, 25, 6, ACK),  # K6: continues, then a later flow of the key in file 2
]
FILE2 = [
    (110, B, A, 80, 1000, 6, ACK), (150, A, B, 1000, 80, 6, ACK), (300, A, B, 1000, 80, 6, ACK),  # K1
    (120, A, B, 2000, 53, 17, 0),  # K2
    (112, A, B, 4000, 443, 6, SYN), (113, B, A, 443, 4000, 6, SYNACK), (114, A, B, 4000, 443, 6, ACK),  # K4 new
    (111, A, B, 5000, 123, 17, 0),  # K5 new flow (gap 81 s)
    (115, B, A, 25, 6000, 6, ACK), (200, A, B, 6000, 25, 6, ACK), (201, B, A, 25, 6000, 6, ACK),  # K6 split
    (390, A, B, 7000, 80, 6, SYN),  # moves the clock on: the head flows end while file 2 is read
]


def _batch(rows: list[tuple]) -> object:
    rows = sorted(rows, key=lambda r: r[0])
    cols = list(zip(*rows, strict=True))
    return make_batch(ts_ns=np.array(cols[0]) * S, src=list(cols[1]), dst=list(cols[2]), sport=list(cols[3]),
                      dport=list(cols[4]), proto=list(cols[5]), tcp_flags=list(cols[6]))  # fmt: skip


def _flows(chunks: list[Ended]) -> list[tuple]:
    e = Ended.concat([c for c in chunks if len(c)])
    f = e.flows
    return sorted(zip(f.client_port.tolist(), f.server_port.tolist(), f.first_ts_ns.tolist(), f.last_ts_ns.tolist(),
                      f.packets_c2s.tolist(), f.packets_s2c.tolist(), strict=True))  # fmt: skip


def _feed(eng: Engine, rows: list[tuple], out: list[Ended]) -> None:
    for r in sorted(rows, key=lambda r: r[0]):  # one packet a batch: a pass after each
        out.extend(eng.add(_batch([r])))


@pytest.mark.parametrize("grace", [5.0, None])
def test_two_files_joined_at_the_edge_equal_one_engine(reg, grace):
    to = Timeouts(idle_s=60, close_grace_s=grace)
    one: list[Ended] = []
    ref = Engine(reg, to, evidence=False, min_packets=1, separate_files=False)
    _feed(ref, FILE1 + FILE2, one)
    one.append(ref.flush())

    parts: list[Ended] = []
    e1 = Engine(reg, to, evidence=False, min_packets=1)
    _feed(e1, FILE1, parts)
    parts.append(e1.expire())
    edge1 = e1.export()
    e2 = Engine(reg, to, evidence=False, min_packets=1, hold_heads=True)
    _feed(e2, FILE2, parts)
    parts.append(e2.expire())
    edge2 = e2.export()
    # what file 2 holds back: the first flow of each key within 60 s of its first packet, never written
    held = {(int(p), int(q)) for p, q in zip(edge2.table.client_port, edge2.table.server_port, strict=True)}
    assert {(1000, 80), (2000, 53), (4000, 443), (5000, 123), (6000, 25)} <= held  # unoriented: A side first
    driver = Engine(reg, to, evidence=False)
    parts += [driver.join(edge1), driver.join(edge2), driver.flush()]

    expected = _flows(one)
    assert _flows(parts) == expected
    def of(port: int) -> list[tuple[int, int, int]]:
        return [(f // S, last // S, pc + ps) for c, s, f, last, pc, ps in expected if port in (c, s)]

    assert of(1000) == [(0, 150, 6), (300, 300, 1)]  # K1: one flow across both files, then idle
    assert of(2000) == [(50, 120, 3)]  # K2 too
    assert of(6000) == [(97, 115, 2), (200, 201, 2)]  # K6: joined, then a later flow after 85 s
    assert of(5000) == [(30, 30, 1), (111, 111, 1)]  # K5: too old to continue
    assert len(of(4000)) == 2  # K4: a bare SYN after a FIN starts a new flow across the edge

def test_export_without_held_heads_is_the_alive_flows(reg):
    eng = Engine(reg, Timeouts(idle_s=60), evidence=False, min_packets=1)
    out: list[Ended] = []
    _feed(eng, FILE1, out)
    out.append(eng.expire())
    edge = eng.export()
    assert edge.clock_ns == 99 * S and not edge.done.any()
    assert eng.alive == 0 and len(eng.flush()) == 0
    assert len(edge.table) + len(_flows(out)) == 6  # K1..K6: none lost, none twice
