"""Flow stage: exact per-direction counts, splitting rules, associative merging, server side,
and the project's sample captures (through scapy here, and through the capture reader once it exists)."""

from __future__ import annotations

import doctest
import importlib
import ipaddress
import json
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

import classifier.flows as F
from classifier.capture.columns import FRAG_FIRST, FRAG_LATER, FRAG_NONE, CaptureStats, PacketBatch
from classifier.flows import (
    FLOW_DTYPES,
    SERVER_RULES,
    START_CLOSED,
    FlowAggregator,
    FlowTable,
    addr_to_words,
    finalize,
    flows_from_batch,
    make_batch,
    merge,
    orient,
)

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "captures"
SYN, SYNACK, ACK, FINACK, RSTACK, RST, PSHACK = 0x02, 0x12, 0x10, 0x11, 0x14, 0x04, 0x18
C, S = "192.0.2.10", "198.51.100.80"  # client, server
SEC = 10**9


# ----------------------------------------------------------------------------- helpers


def pkts(*rows: tuple, **kw: object) -> PacketBatch:
    """Batch from (ts, src, sport, dst, dport[, flags[, wire_len[, proto[, payload_len]]]]) tuples."""
    cols = list(zip(*[r + (None,) * (9 - len(r)) for r in rows], strict=True))
    ts, src, sp, dst, dp, fl, wl, pr, pl = cols
    return make_batch(
        ts_ns=list(ts),
        src=list(src),
        dst=list(dst),
        sport=list(sp),
        dport=list(dp),
        tcp_flags=[0 if v is None else v for v in fl],
        wire_len=[60 if v is None else v for v in wl],
        proto=[6 if v is None else v for v in pr],
        payload_len=[0 if v is None else v for v in pl],
        **kw,
    )


def slice_batch(b: PacketBatch, lo: int, hi: int) -> PacketBatch:
    """Packets [lo, hi) of a batch as a batch."""
    kw = {}
    for f in fields(b):
        v = getattr(b, f.name)
        kw[f.name] = v[lo:hi] if isinstance(v, np.ndarray) and f.name != "data" else v
    kw["stats"] = CaptureStats(packets=len(kw["ts_ns"]))
    return PacketBatch(**kw)


def run(b: PacketBatch, timeout: int = 0) -> FlowTable:
    """Finalized flows of one batch."""
    return finalize(flows_from_batch(b, timeout))


def rows_of(t: FlowTable) -> list[dict]:
    """Rows as dicts, in flow order (first_ts)."""
    return sorted((t.row(i) for i in range(len(t))), key=lambda r: (r["first_ts_ns"], r["key_hash"]))


def reference(batch: PacketBatch, timeout: int) -> list[tuple]:
    """The flows of a batch by a plain per-packet loop (the specification the vector code must match)."""
    open_flows: dict[tuple, dict] = {}
    flows = []
    for i in range(len(batch)):
        sa = (int(batch.src_hi[i]), int(batch.src_lo[i]), int(batch.sport[i]))
        da = (int(batch.dst_hi[i]), int(batch.dst_lo[i]), int(batch.dport[i]))
        rev = sa > da
        a, b = (da, sa) if rev else (sa, da)
        proto = int(batch.proto[i])
        key = (proto, int(batch.ip_version[i]), a, b)
        fl, ts, tcp = int(batch.tcp_flags[i]), int(batch.ts_ns[i]), proto == 6
        bare = tcp and (fl & 0x12) == 0x02
        f = open_flows.get(key)
        if f is not None and ((timeout and abs(ts - f["tail"]) > timeout) or (bare and f["finrst"])):
            f = None
        if f is None:
            f = {"key": key, "pk": [0, 0], "by": [0, 0], "fl": [0, 0], "first": ts, "last": ts, "sender": int(rev)}
            f["tail"] = ts
            f.update(syn=-1, synack=-1, syn_start=bare, finrst=False, pay=[[], []])
            flows.append(f)
            open_flows[key] = f
        d = int(rev)
        f["pk"][d] += 1
        f["by"][d] += int(batch.wire_len[i])
        f["fl"][d] |= fl
        f["tail"] = ts  # the previous packet in capture order (idle timeout)
        f["first"], f["last"] = min(f["first"], ts), max(f["last"], ts)  # start and end: min and max
        f["finrst"] |= tcp and bool(fl & 5)
        if bare and f["syn"] < 0:
            f["syn"] = d
        if tcp and (fl & 0x12) == 0x12 and f["synack"] < 0:
            f["synack"] = d
        if batch.payload_len[i] > 0 and batch.frag[i] != FRAG_LATER and len(f["pay"][d]) < 3:
            f["pay"][d].append((int(batch.file_index[i]), int(batch.pkt_index[i])))
    out = []
    for f in flows:
        pay = tuple(tuple(p + [(0, -1)] * (3 - len(p))) for p in f["pay"])
        out.append(
            f["key"]
            + (tuple(f["pk"]), tuple(f["by"]), tuple(f["fl"]), f["first"], f["last"], f["sender"])
            + (f["syn"], f["synack"], bool(f["syn_start"]), pay)
        )
    return sorted(out)


def as_reference(t: FlowTable) -> list[tuple]:
    """A canonical table in ``reference``'s shape."""
    out = []
    for i in range(len(t)):
        a = (int(t.client_hi[i]), int(t.client_lo[i]), int(t.client_port[i]))
        b = (int(t.server_hi[i]), int(t.server_lo[i]), int(t.server_port[i]))
        pay = tuple(
            tuple((int(fc[i, k]), int(pc[i, k])) for k in range(3))
            for fc, pc in ((t.payload_file_c2s, t.payload_pkt_c2s), (t.payload_file_s2c, t.payload_pkt_s2c))
        )
        out.append(
            (int(t.proto[i]), int(t.ip_version[i]), a, b)
            + ((int(t.packets_c2s[i]), int(t.packets_s2c[i])), (int(t.bytes_c2s[i]), int(t.bytes_s2c[i])))
            + ((int(t.tcp_flags_c2s[i]), int(t.tcp_flags_s2c[i])), int(t.first_ts_ns[i]), int(t.last_ts_ns[i]))
            + (int(t.first_sender[i]), int(t.syn_sender[i]), int(t.synack_sender[i]), bool(t.syn_start[i]), pay)
        )
    return sorted(out)


def random_batch(rng: np.random.Generator, n: int, v6: bool = False, backwards: bool = False) -> PacketBatch:
    """Packets over a few endpoints, so keys repeat and every flag rule interacts.

    ``backwards``: the clock also jumps back between packets.
    """
    v4 = ["192.0.2.1", "192.0.2.2", "198.51.100.3"]
    v6s = ["2001:db8::1", "2001:db8::2"]
    src_i = rng.integers(0, 3, n)
    dst_i = rng.integers(0, 3, n)
    src = [v4[i] for i in src_i]
    dst = [v4[i] for i in dst_i]
    if v6:
        six = rng.random(n) < 0.4
        src = [v6s[i % 2] if s else a for i, s, a in zip(src_i, six, src, strict=True)]
        dst = [v6s[i % 2] if s else a for i, s, a in zip(dst_i, six, dst, strict=True)]
    ports = np.array([80, 443, 50000, 50001])
    flagset = np.array([SYN, SYNACK, ACK, FINACK, RSTACK, RST, PSHACK, 0, 0x03])
    return make_batch(
        ts_ns=np.cumsum(rng.integers(-40 if backwards else 0, 40, n)),
        src=src,
        dst=dst,
        sport=ports[rng.integers(0, 4, n)],
        dport=ports[rng.integers(0, 4, n)],
        proto=np.array([6, 6, 6, 17])[rng.integers(0, 4, n)],
        tcp_flags=flagset[rng.integers(0, len(flagset), n)],
        wire_len=rng.integers(54, 1500, n),
        payload_len=rng.integers(0, 3, n) * rng.integers(0, 100, n),
        frag=rng.integers(0, 3, n),
        file_index=rng.integers(0, 2, n),
    )


def random_grouping(parts: list[FlowTable], rng: np.random.Generator, timeout: int) -> FlowTable:
    """Merge consecutive parts in a random binary tree (order kept, grouping random)."""
    if len(parts) == 1:
        return parts[0]
    cut = int(rng.integers(1, len(parts)))
    return merge(random_grouping(parts[:cut], rng, timeout), random_grouping(parts[cut:], rng, timeout), timeout)


# ----------------------------------------------------------------------------- the table


def test_flow_table_columns_and_helpers() -> None:
    t = run(pkts((0, C, 50000, S, 80, SYN), (1, "192.0.2.11", 50001, S, 443, SYN)))
    assert [f.name for f in fields(FlowTable)] == list(FLOW_DTYPES)
    for name, col in t.columns().items():
        assert col.dtype == FLOW_DTYPES[name].base, name
        assert col.shape == (2,) + FLOW_DTYPES[name].shape, name
    assert len(t) == 2
    assert len(FlowTable.concat([t, t])) == 4
    assert t.take(np.array([1])).row(0) == t.row(1)
    assert t.take(np.array([False, True])).equals(t.take(np.array([1])))
    assert len(FlowTable.empty()) == 0 and FlowTable.empty(3).payload_pkt_s2c.tolist() == [[-1] * 3] * 3
    assert SERVER_RULES[0] == "unoriented" and len(set(SERVER_RULES)) == len(SERVER_RULES)


def test_exact_counts_per_direction() -> None:
    b = pkts(
        (100, C, 50000, S, 80, SYN, 74),
        (110, S, 80, C, 50000, SYNACK, 74),
        (120, C, 50000, S, 80, ACK, 66),
        (130, C, 50000, S, 80, PSHACK, 200, 6, 134),
        (140, S, 80, C, 50000, PSHACK, 1500, 6, 1434),
        (150, S, 80, C, 50000, PSHACK, 900, 6, 834),
        (160, C, 50000, S, 80, FINACK, 66),
    )
    t = run(b)
    assert len(t) == 1
    r = t.row(0)
    # canonical orientation: client is the lower endpoint (192.0.2.10 < 198.51.100.80)
    assert (r["client"], r["client_port"], r["server"], r["server_port"]) == (C, 50000, S, 80)
    assert (r["packets_c2s"], r["packets_s2c"]) == (4, 3)
    assert (r["bytes_c2s"], r["bytes_s2c"]) == (74 + 66 + 200 + 66, 74 + 1500 + 900)
    assert (r["tcp_flags_c2s"], r["tcp_flags_s2c"]) == (SYN | ACK | PSHACK | FINACK, SYNACK | PSHACK)
    assert (r["first_ts_ns"], r["last_ts_ns"]) == (100, 160)
    assert (r["first_sender"], r["syn_sender"], r["synack_sender"], r["syn_start"]) == (0, 0, 1, True)
    assert r["payload_pkt_c2s"] == [4, -1, -1] and r["payload_pkt_s2c"] == [5, 6, -1]
    assert r["start_kind"] == START_CLOSED and r["server_rule_name"] == "unoriented"


def test_keys_separate_proto_ports_and_addresses() -> None:
    b = pkts(
        (0, C, 5000, S, 53, 0, 80, 17),
        (1, C, 5000, S, 53, SYN, 60, 6),  # same endpoints, other transport
        (2, C, 5001, S, 53, 0, 80, 17),  # other client port
        (3, "192.0.2.11", 5000, S, 53, 0, 80, 17),
        (4, S, 53, C, 5000, 0, 90, 17),  # reply joins the first
        (5, "2001:db8::1", 5000, "2001:db8::2", 53, 0, 100, 17),
    )
    t = run(b)
    assert len(t) == 5
    assert sorted(int(v) for v in t.total_packets()) == [1, 1, 1, 1, 2]
    v6 = [t.row(i) for i in range(len(t)) if t.ip_version[i] == 6]
    assert len(v6) == 1 and (v6[0]["client"], v6[0]["server"]) == ("2001:db8::1", "2001:db8::2")


def test_idle_timeout_splits_and_zero_disables() -> None:
    b = pkts(
        (0, C, 50000, S, 53, 0, 70, 17),
        (5 * SEC, S, 53, C, 50000, 0, 90, 17),
        (100 * SEC, C, 50000, S, 53, 0, 70, 17),  # 95 s of silence
        (101 * SEC, S, 53, C, 50000, 0, 90, 17),
    )
    split = rows_of(run(b, 60 * SEC))
    assert [(r["packets_c2s"], r["packets_s2c"]) for r in split] == [(1, 1), (1, 1)]
    assert [(r["first_ts_ns"], r["last_ts_ns"]) for r in split] == [(0, 5 * SEC), (100 * SEC, 101 * SEC)]
    assert len(run(b, 0)) == 1
    assert len(run(b, 95 * SEC)) == 1  # a gap equal to the timeout does not split
    # time going backwards by more than the timeout (files out of order) splits too
    back = pkts((100 * SEC, C, 50000, S, 53, 0, 70, 17), (0, C, 50000, S, 53, 0, 70, 17))
    assert len(run(back, 60 * SEC)) == 2


def test_fin_or_rst_then_syn_starts_a_new_flow() -> None:
    b = pkts(
        (0, C, 50000, S, 80, SYN),
        (1, S, 80, C, 50000, SYNACK),
        (2, C, 50000, S, 80, FINACK),
        (3, S, 80, C, 50000, FINACK),
        (4, C, 50000, S, 80, ACK),
        (10, C, 50000, S, 80, SYN),  # port reuse
        (11, S, 80, C, 50000, SYNACK),
        (12, C, 50000, S, 80, RST),
        (20, C, 50000, S, 80, SYN),  # after RST
    )
    t = rows_of(run(b))
    assert [(r["packets_c2s"], r["packets_s2c"]) for r in t] == [(3, 2), (2, 1), (1, 0)]
    assert all(r["syn_start"] for r in t)


def test_syn_retransmission_and_synack_do_not_split() -> None:
    b = pkts(
        (0, C, 50000, S, 80, SYN),
        (1, C, 50000, S, 80, SYN),  # retransmitted SYN
        (2, S, 80, C, 50000, SYNACK),
        (3, C, 50000, S, 80, ACK),
        (4, C, 50000, S, 80, SYN),  # a stray SYN mid-flow, no FIN/RST before it
        (5, S, 80, C, 50000, FINACK),
        (6, C, 50000, S, 80, SYNACK),  # SYN+ACK after FIN: not a new connection
        (7, C, 50000, S, 53, SYN, 60, 17),  # UDP "flags" never count
    )
    assert sorted(int(v) for v in run(b).total_packets()) == [1, 7]


def test_fin_in_one_flow_does_not_split_another() -> None:
    b = pkts((0, C, 50000, S, 80, FINACK), (1, C, 50001, S, 80, SYN), (2, C, 50001, S, 80, SYN))
    assert sorted(int(v) for v in run(b).total_packets()) == [1, 2]


SCENARIO = pkts(
    (0, C, 50000, S, 80, ACK),  # mid-stream start
    (1, S, 80, C, 50000, PSHACK, 500, 6, 440),
    (2, C, 50000, S, 80, SYN),  # stray SYN, no FIN yet: same flow
    (3, C, 50000, S, 80, FINACK),
    (4, C, 50000, S, 80, SYN),  # new flow
    (5, S, 80, C, 50000, SYNACK),
    (6, C, 50000, S, 80, SYN),  # retransmission: same flow
    (7, C, 50000, S, 80, PSHACK, 300, 6, 240),
    (8, C, 50000, S, 80, RSTACK),
    (9, C, 50000, S, 80, SYN),  # new flow
    (30, C, 50000, S, 80, SYN),  # idle timeout: new flow
    (31, S, 80, C, 50000, SYNACK),
    (32, C, 50000, S, 53, 0, 80, 17, 20),
    (33, S, 53, C, 50000, 0, 90, 17, 30),
    (34, C, 50001, S, 80, SYN),
    (35, C, 50001, S, 80, SYN),
)


def test_split_at_every_cut_equals_unsplit() -> None:
    n = len(SCENARIO)
    for timeout in (0, 10):
        whole = run(SCENARIO, timeout)
        assert as_reference(whole) == reference(SCENARIO, timeout)
        for i in range(n + 1):
            for j in range(i, n + 1):
                parts = [
                    flows_from_batch(slice_batch(SCENARIO, lo, hi), timeout) for lo, hi in ((0, i), (i, j), (j, n))
                ]
                left = merge(merge(parts[0], parts[1], timeout), parts[2], timeout)
                right = merge(parts[0], merge(parts[1], parts[2], timeout), timeout)
                assert left.equals(right), (timeout, i, j)
                assert finalize(left).equals(whole), (timeout, i, j)


@pytest.mark.parametrize(("v6", "backwards"), [(False, False), (True, False), (False, True)])
def test_random_batches_match_reference_in_any_grouping(v6: bool, backwards: bool) -> None:
    """Any cut and grouping gives the reference's flows, also where timestamps go backwards."""
    rng = np.random.default_rng(20240101 + v6 + 2 * backwards)
    for _ in range(250):
        n = int(rng.integers(1, 90))
        b = random_batch(rng, n, v6=v6, backwards=backwards)
        timeout = int(rng.choice([0, 30, 60, 200]))
        expected = reference(b, timeout)
        assert as_reference(run(b, timeout)) == expected
        cuts = sorted({0, n} | set(rng.integers(0, n + 1, int(rng.integers(1, 7))).tolist()))
        parts = [flows_from_batch(slice_batch(b, lo, hi), timeout) for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)]
        first = random_grouping(parts, rng, timeout)
        for _ in range(3):
            assert random_grouping(parts, rng, timeout).equals(first)
        assert as_reference(finalize(first)) == expected


def test_hash_collisions_fall_back_to_exact_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    cases = []
    for _ in range(40):
        n = int(rng.integers(2, 60))
        b = random_batch(rng, n, v6=bool(rng.integers(0, 2)))
        cuts = sorted({0, n} | set(rng.integers(0, n + 1, 3).tolist()))
        cases.append((b, cuts, reference(b, 50)))
    # every key hashes to one of four values: nearly every group collides
    monkeypatch.setattr(F, "_finish_hash", lambda h: h & np.uint64(3))
    for b, cuts, expected in cases:
        assert as_reference(run(b, 50)) == expected
        parts = [flows_from_batch(slice_batch(b, lo, hi), 50) for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)]
        left = parts[0]
        for p in parts[1:]:
            left = merge(left, p, 50)
        right = parts[-1]
        for p in reversed(parts[:-1]):
            right = merge(p, right, 50)
        assert left.equals(right)
        assert as_reference(finalize(left)) == expected


def test_ipv4_only_and_mixed_batches_hash_keys_alike() -> None:
    v4 = pkts((0, C, 50000, S, 80, SYN), (1, S, 80, C, 50000, SYNACK))
    mixed = pkts((2, C, 50000, S, 80, ACK), (3, "2001:db8::1", 1, "2001:db8::2", 2, SYN))
    a, b = flows_from_batch(v4, 0), flows_from_batch(mixed, 0)
    v4_rows = b.take(b.ip_version == 4)
    assert a.key_hash.tolist() == v4_rows.key_hash.tolist()
    assert np.array_equal(F._table_hash(b), b.key_hash)
    t = finalize(merge(a, b, 0))
    assert sorted(int(v) for v in t.total_packets()) == [1, 3]


def test_payload_refs_first_three_each_way_skip_later_fragments() -> None:
    b = make_batch(
        ts_ns=list(range(8)),
        src=[C, C, S, C, C, C, S, C],
        dst=[S, S, C, S, S, S, C, S],
        sport=[5000, 5000, 53, 5000, 5000, 5000, 53, 5000],
        dport=[53, 53, 5000, 53, 53, 53, 5000, 53],
        proto=17,
        payload_len=[10, 0, 20, 1400, 600, 5, 7, 9],
        frag=[FRAG_NONE, FRAG_NONE, FRAG_NONE, FRAG_FIRST, FRAG_LATER, FRAG_NONE, FRAG_NONE, FRAG_NONE],
        pkt_index=[11, 12, 13, 14, 15, 16, 17, 18],
        file_index=[0, 0, 0, 1, 1, 1, 1, 1],
    )
    whole = run(b).row(0)
    assert whole["payload_pkt_c2s"] == [11, 14, 16] and whole["payload_file_c2s"] == [0, 1, 1]
    assert whole["payload_pkt_s2c"] == [13, 17, -1]
    for cut in range(len(b) + 1):
        t = finalize(
            merge(flows_from_batch(slice_batch(b, 0, cut), 0), flows_from_batch(slice_batch(b, cut, len(b)), 0), 0)
        )
        assert t.row(0) == whole


# ----------------------------------------------------------------------------- server side


def status_array(assigned: dict[str, list[int]]) -> np.ndarray:
    """A (4, 65536) port status array with the given ports ASSIGNED (1), others unassigned."""
    st = np.zeros((4, 65536), dtype=np.uint8)
    for transport, ports in assigned.items():
        st[("tcp", "udp", "sctp", "dccp").index(transport), ports] = F.ASSIGNED
    return st


def oriented(b: PacketBatch, status: np.ndarray | None = None) -> dict:
    t = orient(run(b), status)
    assert len(t) == 1
    return t.row(0)


def test_server_is_the_receiver_of_the_syn() -> None:
    # the SYN goes from the lower port to the higher: no port heuristic would say so
    r = oriented(pkts((0, S, 80, C, 50000, SYN), (1, C, 50000, S, 80, SYNACK)), status_array({"tcp": [80]}))
    assert (r["server"], r["server_port"], r["server_rule_name"]) == (C, 50000, "syn")
    assert (r["packets_c2s"], r["packets_s2c"], r["first_sender"], r["syn_sender"], r["synack_sender"]) == (
        1,
        1,
        0,
        0,
        1,
    )


def test_server_is_the_sender_of_the_synack_when_the_syn_was_missed() -> None:
    r = oriented(pkts((0, S, 8080, C, 3000, SYNACK), (1, C, 3000, S, 8080, ACK)))
    assert (r["server"], r["server_port"], r["server_rule_name"]) == (S, 8080, "syn-ack")


def test_registry_rule_prefers_the_assigned_port() -> None:
    b = pkts((0, S, 5432, C, 3000, 0, 90, 17), (1, C, 3000, S, 5432, 0, 90, 17))
    r = oriented(b, status_array({"udp": [5432]}))
    assert (r["server_port"], r["server_rule_name"], r["packets_c2s"]) == (5432, "registry", 1)
    # the registry's tcp entry does not count for udp, and both assigned decides nothing
    assert oriented(b, status_array({"tcp": [5432]}))["server_rule_name"] == "first-packet"
    assert oriented(b, status_array({"udp": [3000, 5432]}))["server_rule_name"] == "first-packet"


def test_port_heuristics_and_first_packet() -> None:
    # mid-stream TCP (no SYN seen): the dynamic-range port is the client's
    r = oriented(pkts((0, S, 3306, C, 51000, ACK), (1, C, 51000, S, 3306, ACK)))
    assert (r["server_port"], r["server_rule_name"]) == (3306, "ephemeral")
    r = oriented(pkts((0, C, 22, S, 2222, 0, 90, 17)))
    assert (r["server_port"], r["server_rule_name"]) == (22, "lower-port")
    # both dynamic: the first packet's receiver
    r = oriented(pkts((0, C, 61000, S, 55000, 0, 90, 17), (1, S, 55000, C, 61000, 0, 90, 17)))
    assert (r["server"], r["server_port"], r["server_rule_name"], r["first_sender"]) == (S, 55000, "first-packet", 0)


def test_orient_keeps_counts_and_merge_accepts_oriented_tables() -> None:
    b = pkts((0, S, 80, C, 50000, SYN), (1, C, 50000, S, 80, SYNACK), (2, S, 80, C, 50000, ACK, 54, 6, 10))
    plain = flows_from_batch(b, 0)
    o = orient(finalize(plain), None)
    assert int(o.total_packets()[0]) == 3 and o.payload_pkt_c2s[0].tolist() == [3, -1, -1]
    assert orient(o, None).equals(o)
    assert F.canonical(o).equals(finalize(plain))
    more = flows_from_batch(pkts((3, C, 50000, S, 80, ACK)), 0)
    assert int(finalize(merge(orient(plain, None), more, 0)).total_packets()[0]) == 4
    with pytest.raises(ValueError):
        orient(o, np.zeros((2, 10), dtype=np.uint8))


# ----------------------------------------------------------------------------- streaming


@pytest.mark.parametrize("min_packets", [1, 100, 1 << 20])
def test_aggregator_equals_merge_fold_and_holds_flows_not_packets(min_packets: int) -> None:
    rng = np.random.default_rng(3)
    b = random_batch(rng, 3000, v6=True)
    expected = run(b, 100)
    for step in (1, 7, 250, 3000):
        agg = FlowAggregator(idle_timeout_ns=100, min_packets=min_packets)
        for lo in range(0, len(b), step):
            agg.add(slice_batch(b, lo, lo + step))
            assert agg.rows <= 2 * len(expected) + step
            assert agg._pooled < max(min_packets, 1)
        assert agg.result().equals(expected, chunking=True), step
        assert agg.stats.packets == len(b)


def test_aggregator_accepts_partial_tables_between_batches() -> None:
    agg = FlowAggregator(min_packets=1 << 20)
    agg.add(slice_batch(SCENARIO, 0, 5))
    agg.add_table(flows_from_batch(slice_batch(SCENARIO, 5, 9), 0))
    agg.add(slice_batch(SCENARIO, 9, len(SCENARIO)))
    assert agg.result().equals(run(SCENARIO))


def test_empty_inputs() -> None:
    e = flows_from_batch(slice_batch(SCENARIO, 0, 0), 0)
    assert len(e) == 0
    t = flows_from_batch(SCENARIO, 0)
    assert merge(e, t, 0).equals(t) and merge(t, e, 0).equals(t)
    assert len(FlowAggregator().result()) == 0
    with pytest.raises(ValueError):
        flows_from_batch(SCENARIO, -1)


def test_docstring_examples() -> None:
    res = doctest.testmod(F, optionflags=doctest.ELLIPSIS)
    assert res.failed == 0 and res.attempted > 10


def synthetic(n: int, flows: int, seed: int = 0) -> PacketBatch:
    """n TCP packets over ``flows`` interleaved IPv4 flows (first packet of each a SYN)."""
    rng = np.random.default_rng(seed)
    i = np.arange(flows)
    cl = np.uint64(0xFFFF_C000_0200) + (i % 256).astype(np.uint64)  # 192.0.2.x: distinct (addr, port)
    cp = (49152 + i // 256).astype(np.uint16)
    sv = np.uint64(0xFFFF_CB00_7100) | rng.integers(0, 256, flows).astype(np.uint64)
    spp = rng.choice(np.array([22, 53, 80, 443, 3306], dtype=np.uint16), flows)
    fid = rng.integers(0, flows, n)
    fromc = rng.random(n) < 0.6
    _, first = np.unique(fid, return_index=True)
    fromc[first] = True
    flags = np.full(n, ACK, np.uint8)
    flags[first] = SYN
    pl = (rng.integers(0, 1400, n) * (rng.random(n) < 0.5)).astype(np.int32)
    z = np.zeros(n, np.uint64)
    return PacketBatch(
        ts_ns=np.arange(n, dtype=np.int64) * 1000,
        wire_len=(pl + 54).astype(np.uint32),
        ip_version=np.full(n, 4, np.uint8),
        src_hi=z,
        src_lo=np.where(fromc, cl[fid], sv[fid]),
        dst_hi=z.copy(),
        dst_lo=np.where(fromc, sv[fid], cl[fid]),
        proto=np.full(n, 6, np.uint8),
        sport=np.where(fromc, cp[fid], spp[fid]).astype(np.uint16),
        dport=np.where(fromc, spp[fid], cp[fid]).astype(np.uint16),
        tcp_flags=flags,
        frag=np.zeros(n, np.uint8),
        payload_off=np.zeros(n, np.int64),
        payload_len=pl,
        pkt_index=np.arange(1, n + 1, dtype=np.int64),
        file_index=np.zeros(n, np.uint16),
        data=np.zeros(0, np.uint8),
        stats=CaptureStats(packets=n),
    )


def test_million_packets() -> None:
    """A million interleaved packets make exactly their 50,000 flows (speed: benchmarks/bench_flows.py)."""
    b = synthetic(1_000_000, 50_000)
    t = finalize(flows_from_batch(b, 60 * SEC))
    assert len(t) == 50_000 and int(t.total_packets().sum()) == 1_000_000


# ----------------------------------------------------------------------------- sample captures


EXPECTED = json.loads((CAPTURES / "expected.json").read_text())
CAPTURE_FILES = ["sample.pcap", "sample.pcapng", "sample-sll.pcap"]
TRANSPORT_PROTO = {"tcp": 6, "udp": 17, "sctp": 132, "dccp": 33}


def scapy_batch(path: Path) -> PacketBatch:
    """A PacketBatch of a capture decoded by scapy (a slow, independent stand-in for the reader)."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
    from scapy.layers.sctp import SCTP
    from scapy.utils import rdpcap

    rows = []
    frag_ports: dict[tuple, tuple[int, int]] = {}
    for i, p in enumerate(rdpcap(str(path)), start=1):
        ip = p.getlayer(IP) or p.getlayer(IPv6)
        if ip is None:
            continue
        fh = p.getlayer(IPv6ExtHdrFragment)
        if isinstance(ip, IPv6):
            later = fh is not None and fh.offset > 0
            fkey = (ip.src, ip.dst, fh.id) if fh is not None else None
            proto = fh.nh if fh is not None else ip.nh
        else:
            later = ip.frag > 0
            fkey = (ip.src, ip.dst, ip.id)
            proto = ip.proto
        if proto not in (6, 17, 132):
            continue
        frag = FRAG_NONE
        if later:
            sport, dport = frag_ports[fkey]
            frag, flags, payload = FRAG_LATER, 0, len(bytes(fh.payload if fh is not None else ip.payload))
        else:
            l4 = p.getlayer({6: TCP, 17: UDP, 132: SCTP}[proto])
            sport, dport = l4.sport, l4.dport
            flags = int(l4.flags) if proto == 6 else 0
            payload = len(bytes(l4.payload))
            if (fh is not None and fh.m) or (not isinstance(ip, IPv6) and ip.flags.MF):
                frag_ports[fkey] = (sport, dport)
                frag = FRAG_FIRST
        rows.append(
            (
                int(p.time * 10**6) * 1000,
                ip.src,
                ip.dst,
                sport,
                dport,
                proto,
                flags,
                p.wirelen or len(p),
                payload,
                frag,
                i,
            )
        )
    cols = list(zip(*rows, strict=True))
    return make_batch(
        ts_ns=list(cols[0]),
        src=list(cols[1]),
        dst=list(cols[2]),
        sport=list(cols[3]),
        dport=list(cols[4]),
        proto=list(cols[5]),
        tcp_flags=list(cols[6]),
        wire_len=list(cols[7]),
        payload_len=list(cols[8]),
        frag=list(cols[9]),
        pkt_index=list(cols[10]),
    )


def expected_status() -> np.ndarray:
    """Port status from expected.json's labels (ASSIGNED where a service is expected)."""
    assigned: dict[str, list[int]] = {}
    for f in EXPECTED["flows"]:
        if f["expected"]["status"] == "assigned":
            assigned.setdefault(f["transport"], []).append(f["server_port"])
    return status_array(assigned)


def check_against_expected(t: FlowTable, capture: str) -> None:
    """The oriented flows of a sample capture are exactly expected.json's flows."""
    got = sorted((t.row(i) for i in range(len(t))), key=lambda r: r["first_ts_ns"])
    want = EXPECTED["flows"]
    key = lambda r: (r["proto"], r["client"], r["client_port"], r["server"], r["server_port"])  # noqa: E731
    assert sorted(key(r) for r in got) == sorted(
        (TRANSPORT_PROTO[f["transport"]], f["client"], f["client_port"], f["server"], f["server_port"]) for f in want
    )
    for f in want:
        k = (TRANSPORT_PROTO[f["transport"]], f["client"], f["client_port"], f["server"], f["server_port"])
        matches = [r for r in got if key(r) == k]
        r = matches[0] if f["name"] != "http-port-reuse" else matches[1]
        assert (r["packets_c2s"], r["packets_s2c"]) == (f["packets_c2s"], f["packets_s2c"]), f["name"]
        assert [r["bytes_c2s"], r["bytes_s2c"]] == f["bytes"][capture], f["name"]
        assert r["server_rule_name"] == f["server_rule"], f["name"]
        assert r["ip_version"] == f["ip_version"], f["name"]


@pytest.mark.parametrize("capture", CAPTURE_FILES)
def test_sample_captures_through_scapy(capture: str) -> None:
    t = orient(run(scapy_batch(CAPTURES / capture)), expected_status())
    check_against_expected(t, capture)


def test_sample_capture_payload_refs_point_at_the_banners() -> None:
    t = orient(run(scapy_batch(CAPTURES / "sample.pcap")), expected_status())
    from scapy.utils import rdpcap

    frames = rdpcap(str(CAPTURES / "sample.pcap"))
    seen = []
    for i in range(len(t)):
        r = t.row(i)
        if r["server_port"] == 22:
            first = bytes(frames[r["payload_pkt_s2c"][0] - 1])
            assert b"SSH-2.0-OpenSSH_9.2" in first
            seen.append("ssh")
        if r["server_port"] == 443 and r["server"] == "198.51.100.43":
            hello = bytes(frames[r["payload_pkt_c2s"][0] - 1])
            assert b"example.com" in hello and b"\x16\x03\x01" in hello
            seen.append("tls")
    assert sorted(seen) == ["ssh", "tls"]  # both flows were there to check


def test_make_captures_is_reproducible(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(CAPTURES / "make_captures.py"), "--out", str(tmp_path)], check=True, capture_output=True
    )
    for name in CAPTURE_FILES + ["expected.json"]:
        assert (tmp_path / name).read_bytes() == (CAPTURES / name).read_bytes(), (
            f"{name} differs: rerun make_captures.py"
        )


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
@pytest.mark.parametrize("capture", CAPTURE_FILES)
def test_tshark_reads_the_sample_captures(capture: str) -> None:
    out = subprocess.run(
        ["tshark", "-r", str(CAPTURES / capture), "-T", "fields", "-e", "frame.len"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert len(out) == EXPECTED["frames"]


def _reader():
    """The capture reader module, or skip while it does not exist yet (any other import error fails)."""
    try:
        return importlib.import_module("classifier.capture.reader")
    except ModuleNotFoundError as e:
        if e.name == "classifier.capture.reader":
            pytest.skip("classifier/capture/reader.py not written yet")
        raise


@pytest.mark.parametrize("capture", CAPTURE_FILES)
def test_sample_captures_through_the_reader(capture: str) -> None:
    reader = _reader()
    agg = FlowAggregator(idle_timeout_ns=0)
    for batch in reader.read_batches([CAPTURES / capture]):
        agg.add(batch)
    check_against_expected(orient(agg.result(), expected_status()), capture)


def test_reader_batches_split_anywhere_give_the_same_flows() -> None:
    reader = _reader()
    batches = list(reader.read_batches([CAPTURES / "sample.pcap"]))
    whole = FlowAggregator()
    for b in batches:
        whole.add(b)
    expected = whole.result()
    allp = batches[0] if len(batches) == 1 else None
    if allp is None:
        pytest.skip("reader gave several batches; the one-batch split check needs one")
    for step in (1, 3, 17):
        agg = FlowAggregator()
        for lo in range(0, len(allp), step):
            agg.add(slice_batch(allp, lo, lo + step))
        assert agg.result().equals(expected)


def test_addr_words_round_trip() -> None:
    for a in ("192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1", "0.0.0.0"):
        hi, lo, ver = addr_to_words(a)
        assert ipaddress.ip_address(F.words_to_addr(hi, lo, ver)) == ipaddress.ip_address(a)


def _udp_frame(src: bytes, dst: bytes, sport: int, dport: int, ident: int = 1) -> bytes:
    """Ethernet + IPv4 + UDP with 8 bytes of payload."""
    import struct

    udp = struct.pack(">HHHH", sport, dport, 16, 0) + b"x" * 8
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ident, 0, 64, 17, 0, src, dst)
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + udp


def test_clock_going_backwards_gives_no_negative_duration_or_span(tmp_path: Path, reg) -> None:
    """Issue 9's smallest case: a reply stamped 5 s before its query (start after end, negative span before)."""
    from classifier.capture.writer import Frame, write_pcap
    from classifier.pipeline import analyze
    from classifier.report.rows import flow_columns
    from classifier.report.summary import totals

    a, b = bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2])
    t = 1_700_000_000 * SEC
    path = tmp_path / "backwards.pcap"
    query, reply = _udp_frame(a, b, 40000, 53), _udp_frame(b, a, 53, 40000)
    write_pcap(path, 1, [Frame(query, t + 10 * SEC), Frame(reply, t + 5 * SEC)])
    an = analyze([path], reg, evidence=False)
    assert len(an.flows) == 1
    assert (int(an.flows.first_ts_ns[0]), int(an.flows.last_ts_ns[0])) == (t + 5 * SEC, t + 10 * SEC)
    assert flow_columns(an)["event.duration"] == [5 * SEC]
    tot = totals(an)
    assert (tot.first_ts_ns, tot.last_ts_ns) == (t + 5 * SEC, t + 10 * SEC)
