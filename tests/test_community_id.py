"""Community ID v1: the spec's published baseline values, Zeek's test values, and an
independent byte-by-byte implementation of the spec's pseudo-code on random flows."""

from __future__ import annotations

import base64
import doctest
import hashlib
import ipaddress
import socket
import struct
from pathlib import Path

import numpy as np
import pytest

import classifier.community_id as CID
from classifier.community_id import community_id, community_id_v1
from classifier.flows import addr_to_words, finalize, flows_from_batch, make_batch, orient

CAPTURES = Path(__file__).resolve().parents[1] / "captures"

# corelight/community-id-spec baseline (baseline_deflt.json / baseline_seed1.json): the port
# protocols, each given in both directions; and zeek's community_id_v1 tests (1.2.3.4 / 5.6.7.8).
VECTORS: list[tuple[int, str, str, int, int, str, str]] = [
    # proto, saddr, daddr, sport, dport, seed 0, seed 1
    (
        6,
        "128.232.110.120",
        "66.35.250.204",
        34855,
        80,
        "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
        "1:3V71V58M3Ksw/yuFALMcW0LAHvc=",
    ),
    (17, "192.168.1.52", "8.8.8.8", 54585, 53, "1:d/FP5EW3wiY1vCndhwleRRKHowQ=", "1:Q9We8WO3piVF8yEQBNJF4uiSVrI="),
    (132, "192.168.170.8", "192.168.170.56", 7, 7, "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=", "1:5w3ZRjeKBzqT3zsaEECDGjUbYeg="),
    (
        6,
        "2001:470:e5bf:dead:4957:2174:e82c:4887",
        "2607:f8b0:400c:c03::1a",
        63943,
        25,
        "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
        "1:eJYTW6AOzFLlSUoESovMjnu7rMw=",
    ),
    (6, "1.2.3.4", "5.6.7.8", 1122, 3344, "1:wCb3OG7yAFWelaUydu0D+125CLM=", "1:HhA1B+6CoLbiKPEs5nhNYN4XWfk="),
    (17, "1.2.3.4", "5.6.7.8", 1122, 3344, "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg=", "1:OShq+iKDAMVouh/4bMxB9Sz4amw="),
    (6, "10.0.0.1", "10.0.0.2", 10, 11569, "1:SXBGMX1lBOwhhoDrZynfROxnhnM=", "1:HmBRGR+fUyXF4t8WEtal7Y0gEAo="),
    (132, "192.168.170.8", "192.168.170.56", 7, 80, "1:jQgCxbku+pNGw8WPbEc/TS/uTpQ=", "1:Y1/0jQg6e+I3ZwZZ9LP65DNbTXU="),
]


def spec_reference(saddr: str, daddr: str, sport: int, dport: int, proto: int, seed: int = 0) -> str:
    """The spec's pseudo-code, one flow at a time, from text addresses (independent of our columns)."""
    fam = socket.AF_INET6 if ":" in saddr else socket.AF_INET
    s, d = socket.inet_pton(fam, saddr), socket.inet_pton(fam, daddr)
    sp, dp = struct.pack("!H", sport), struct.pack("!H", dport)
    if not (s < d or (s == d and sp < dp)):
        s, d, sp, dp = d, s, dp, sp
    digest = hashlib.sha1(struct.pack("!H", seed) + s + d + struct.pack("BB", proto, 0) + sp + dp).digest()
    return "1:" + base64.b64encode(digest).decode("ascii")


def cid_of(rows: list[tuple[int, str, str, int, int]], seed: int = 0) -> list[str]:
    """community_id_v1 over (proto, saddr, daddr, sport, dport) rows."""
    s = [addr_to_words(r[1]) for r in rows]
    d = [addr_to_words(r[2]) for r in rows]
    return community_id_v1(
        np.array([w[2] for w in s], dtype=np.uint8),
        np.array([r[0] for r in rows], dtype=np.uint8),
        np.array([w[0] for w in s], dtype=np.uint64),
        np.array([w[1] for w in s], dtype=np.uint64),
        np.array([r[3] for r in rows], dtype=np.uint16),
        np.array([w[0] for w in d], dtype=np.uint64),
        np.array([w[1] for w in d], dtype=np.uint64),
        np.array([r[4] for r in rows], dtype=np.uint16),
        seed=seed,
    )


@pytest.mark.parametrize("seed_col", [0, 1])
def test_published_vectors_both_directions(seed_col: int) -> None:
    fwd = [(p, s, d, sp, dp) for p, s, d, sp, dp, *_ in VECTORS]
    rev = [(p, d, s, dp, sp) for p, s, d, sp, dp, *_ in VECTORS]
    want = [v[5 + seed_col] for v in VECTORS]
    assert cid_of(fwd, seed=seed_col) == want
    assert cid_of(rev, seed=seed_col) == want
    # and the independent reference agrees with the published values
    assert [spec_reference(s, d, sp, dp, p, seed_col) for p, s, d, sp, dp in fwd] == want


def test_the_headline_vector() -> None:
    assert cid_of([(6, "128.232.110.120", "66.35.250.204", 34855, 80)]) == ["1:LQU9qZlK+B5F3KDmev6m5PMibrg="]


def test_random_flows_match_the_spec_reference() -> None:
    rng = np.random.default_rng(11)
    rows = []
    for i in range(600):
        if i % 3 == 0:
            s = str(ipaddress.IPv6Address(int(rng.integers(0, 2**62)) << 64 | int(rng.integers(0, 2**62))))
            d = str(ipaddress.IPv6Address(int(rng.integers(0, 2**62)) << 64 | int(rng.integers(0, 4))))
        else:
            s = str(ipaddress.IPv4Address(int(rng.integers(0, 2**32))))
            d = str(ipaddress.IPv4Address(int(rng.integers(0, 2**32))))
        if i % 5 == 0:
            d = s  # equal addresses: the ports decide the order
        rows.append((int(rng.choice([6, 17, 132, 33])), s, d, int(rng.integers(0, 65536)), int(rng.integers(0, 65536))))
    for seed in (0, 1, 0xFFFF):
        assert cid_of(rows, seed) == [spec_reference(s, d, sp, dp, p, seed) for p, s, d, sp, dp in rows]


def test_flow_tables_oriented_or_not_give_the_same_ids() -> None:
    b = make_batch(
        ts_ns=[0, 1, 2],
        src=["192.168.1.52", "8.8.8.8", "2001:db8::1"],
        dst=["8.8.8.8", "192.168.1.52", "2001:db8::2"],
        sport=[54585, 53, 40000],
        dport=[53, 54585, 443],
        proto=[17, 17, 6],
        tcp_flags=[0, 0, 0x02],
    )
    t = finalize(flows_from_batch(b, 0))
    ids = community_id(t)
    assert community_id(orient(t, None)) == ids
    by_port = {int(max(t.client_port[i], t.server_port[i])): ids[i] for i in range(len(t))}
    assert by_port[54585] == "1:d/FP5EW3wiY1vCndhwleRRKHowQ="
    assert by_port[40000] == spec_reference("2001:db8::1", "2001:db8::2", 40000, 443, 6)
    assert community_id(t.take(np.zeros(0, dtype=np.int64))) == []


def test_sample_capture_flows_have_spec_ids() -> None:
    import json

    flows = json.loads((CAPTURES / "expected.json").read_text())["flows"]
    proto = {"tcp": 6, "udp": 17, "sctp": 132}
    rows = [(proto[f["transport"]], f["client"], f["server"], f["client_port"], f["server_port"]) for f in flows]
    assert cid_of(rows) == [spec_reference(s, d, sp, dp, p) for p, s, d, sp, dp in rows]


def test_seed_must_fit_16_bits() -> None:
    with pytest.raises(ValueError):
        cid_of([VECTORS[0][:5]], seed=65536)


def test_docstring_examples() -> None:
    res = doctest.testmod(CID)
    assert res.failed == 0 and res.attempted >= 2
