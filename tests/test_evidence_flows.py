"""Evidence through the flow stage: first recognised packet per direction and first server name,
exact against a per-packet reference, associative across any cut and grouping, turned with the flow."""

from __future__ import annotations

import numpy as np
import pytest

from classifier.capture.columns import PacketBatch
from classifier.flows import (
    SERVER_NAME_BYTES,
    FlowAggregator,
    FlowTable,
    PacketTags,
    finalize,
    flows_from_batch,
    merge,
    orient,
)
from tests.test_flows import random_batch, random_grouping, slice_batch


def random_tags(rng: np.random.Generator, n: int) -> PacketTags:
    """Sparse signature codes, and a server name on some tagged packets."""
    sig = (rng.integers(1, 6, n) * (rng.random(n) < 0.25)).astype(np.uint8)
    tagged = np.flatnonzero(sig)
    rows = np.sort(rng.choice(tagged, size=tagged.size // 3, replace=False)) if tagged.size else tagged
    names = np.array([f"h{int(r)}.example".encode() for r in rows], dtype=f"S{SERVER_NAME_BYTES}")
    return PacketTags(sig=sig, name_rows=rows.astype(np.int64), names=names)


def slice_tags(t: PacketTags, lo: int, hi: int) -> PacketTags:
    keep = (t.name_rows >= lo) & (t.name_rows < hi)
    return PacketTags(t.sig[lo:hi].copy(), t.name_rows[keep] - lo, t.names[keep])


def reference(batch: PacketBatch, tags: PacketTags, timeout: int) -> list[tuple]:
    """Per flow (as tests.test_flows.reference splits them): key, first ts, evidence each way, server name."""
    names = dict(zip(tags.name_rows.tolist(), tags.names.tolist(), strict=True))
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
        if f is not None and ((timeout and abs(ts - f["last"]) > timeout) or (bare and f["finrst"])):
            f = None
        if f is None:
            f = {"key": key, "first": ts, "last": ts, "finrst": False, "ev": [(0, 0, -1), (0, 0, -1)], "name": b""}
            flows.append(f)
            open_flows[key] = f
        f["last"] = ts
        f["finrst"] |= tcp and bool(fl & 5)
        d = int(rev)
        s = int(tags.sig[i])
        if s and f["ev"][d][0] == 0:
            f["ev"][d] = (s, int(batch.file_index[i]), int(batch.pkt_index[i]))
        if i in names and not f["name"]:
            f["name"] = names[i]
    return sorted((f["key"], f["first"], tuple(f["ev"]), f["name"]) for f in flows)


def as_reference(t: FlowTable) -> list[tuple]:
    out = []
    for i in range(len(t)):
        a = (int(t.client_hi[i]), int(t.client_lo[i]), int(t.client_port[i]))
        b = (int(t.server_hi[i]), int(t.server_lo[i]), int(t.server_port[i]))
        ev = tuple(
            (
                int(getattr(t, f"evidence_sig_{d}")[i]),
                int(getattr(t, f"evidence_file_{d}")[i]),
                int(getattr(t, f"evidence_pkt_{d}")[i]),
            )
            for d in ("c2s", "s2c")
        )
        ev = tuple(e if e[0] else (0, 0, -1) for e in ev)
        out.append(((int(t.proto[i]), int(t.ip_version[i]), a, b), int(t.first_ts_ns[i]), ev, bytes(t.server_name[i])))
    return sorted(out)


@pytest.mark.parametrize("v6", [False, True])
def test_evidence_matches_reference_in_any_grouping(v6: bool) -> None:
    rng = np.random.default_rng(11 if v6 else 5)
    for trial in range(12):
        n = int(rng.integers(1, 300))
        batch = random_batch(rng, n, v6)
        tags = random_tags(rng, n)
        timeout = int(rng.choice([0, 30, 200]))
        want = reference(batch, tags, timeout)
        whole = finalize(flows_from_batch(batch, timeout, tags))
        assert as_reference(whole) == want, trial
        cuts = np.unique(np.concatenate([[0, n], rng.integers(0, n + 1, int(rng.integers(1, 8)))]))
        parts = [
            flows_from_batch(slice_batch(batch, lo, hi), timeout, slice_tags(tags, lo, hi))
            for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)
        ]
        grouped = finalize(random_grouping(parts, rng, timeout))
        assert grouped.equals(whole, chunking=True), trial


@pytest.mark.parametrize("min_packets", [1, 7, 1 << 20])
def test_aggregator_pools_tags_with_their_batches(min_packets: int) -> None:
    rng = np.random.default_rng(3)
    n = 400
    batch = random_batch(rng, n)
    tags = random_tags(rng, n)
    agg = FlowAggregator(idle_timeout_ns=50, min_packets=min_packets)
    for lo in range(0, n, 37):
        hi = min(lo + 37, n)
        # every other batch without tags: its packets count as recognising nothing
        agg.add(slice_batch(batch, lo, hi), slice_tags(tags, lo, hi) if (lo // 37) % 2 == 0 else None)
    odd = (np.arange(n) // 37) % 2 == 1
    sig = tags.sig.copy()
    sig[odd] = 0
    keep = ~odd[tags.name_rows]
    expected_tags = PacketTags(sig, tags.name_rows[keep], tags.names[keep])
    assert agg.result().equals(finalize(flows_from_batch(batch, 50, expected_tags)), chunking=True)


def test_tags_must_cover_the_batch() -> None:
    rng = np.random.default_rng(1)
    batch = random_batch(rng, 10)
    with pytest.raises(ValueError):
        flows_from_batch(batch, 0, PacketTags.none(9))


def test_no_tags_leaves_the_columns_empty() -> None:
    rng = np.random.default_rng(2)
    t = finalize(flows_from_batch(random_batch(rng, 50), 0))
    assert not t.evidence_sig_c2s.any() and not t.evidence_sig_s2c.any()
    assert (t.evidence_pkt_c2s == -1).all() and (t.server_name == b"").all()


def test_orient_turns_the_evidence_with_the_flow() -> None:
    from classifier.flows import make_batch

    b = make_batch(
        ts_ns=[0, 1, 2],
        src=["198.51.100.9", "192.0.2.1", "198.51.100.9"],
        dst=["192.0.2.1", "198.51.100.9", "192.0.2.1"],
        sport=[50000, 22, 50000],
        dport=[22, 50000, 22],
        tcp_flags=[0x02, 0x12, 0x18],
        payload_len=[0, 20, 20],
    )
    tags = PacketTags(np.array([0, 7, 9], np.uint8), np.array([2]), np.array([b"x.example"], dtype="S64"))
    t = orient(finalize(flows_from_batch(b, 0, tags)), None)
    r = t.row(0)
    assert r["server_port"] == 22
    assert (r["evidence_sig_c2s"], r["evidence_pkt_c2s"]) == (9, 3)
    assert (r["evidence_sig_s2c"], r["evidence_pkt_s2c"]) == (7, 2)
    assert r["server_name"] == b"x.example"
    # merging oriented tables puts them back in canonical order first
    again = merge(t, FlowTable.empty(), 0)
    assert len(again) == 1


def test_each_flow_of_one_five_tuple_keeps_what_it_said(tmp_path, reg) -> None:
    """Two TCP connections on one 5-tuple (a new SYN after FIN), in one batch: each flow reports its own
    HTTP request, as it does when the two fall in different chunks (a fuzz-found chunk dependence)."""
    from scapy.all import IP, TCP, Ether, Raw, wrpcap

    from classifier.evidence.verdict import said_columns
    from classifier.pipeline import analyze

    c, s = ("192.0.2.1", 50001), ("198.51.100.2", 80)
    pkts, t = [], 1_700_000_000.0

    def add(src, dst, flags, seq, ack, payload=b""):
        nonlocal t
        p = Ether() / IP(src=src[0], dst=dst[0]) / TCP(sport=src[1], dport=dst[1], flags=flags, seq=seq, ack=ack)
        if payload:
            p = p / Raw(payload)
        p.time = t
        t += 0.01
        pkts.append(p)

    for path in (b"/first", b"/second"):
        req = b"GET " + path + b" HTTP/1.1\r\nHost: example.com\r\n\r\n"
        add(c, s, "S", 100, 0)
        add(s, c, "SA", 500, 101)
        add(c, s, "A", 101, 501)
        add(c, s, "PA", 101, 501, req)
        add(s, c, "PA", 501, 101 + len(req), b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        add(c, s, "FA", 101 + len(req), 540)
        add(s, c, "FA", 540, 102 + len(req))
        add(c, s, "A", 102 + len(req), 541)
    wrpcap(str(tmp_path / "two.pcap"), pkts)
    a = analyze([tmp_path / "two.pcap"], reg)
    assert len(a.flows) == 2
    order = np.argsort(a.flows.first_ts_ns)
    cols = said_columns(a.flows)
    key = next(k for k in cols if k.startswith("url."))
    assert [cols[key][i] for i in order.tolist()] == ["/first", "/second"]
