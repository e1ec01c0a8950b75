"""Zeek's connection semantics (conn_state, history, bytes) on crafted TCP sessions written with scapy.

Each expected value is worked out from Zeek's documentation (base/protocols/conn/main.zeek: the
conn_state table, the history letters and their repetition rules) and its TCP analyzer's endpoint
states; nothing here is computed by portclass's own code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from classifier import conn
from classifier.capture.reader import read_batches
from classifier.flows import FlowAggregator, concat_batches, orient

scapy = pytest.importorskip("scapy.all")
IP, TCP, UDP, Ether, Raw, wrpcap = scapy.IP, scapy.TCP, scapy.UDP, scapy.Ether, scapy.Raw, scapy.wrpcap

C, S = "192.0.2.1", "198.51.100.2"
CP, SP = 40000, 80
CI, SI = 1000, 5000  # initial sequence numbers


def c(flags: str, seq: int, ack: int = 0, data: bytes = b"", win: int = 8192):
    """A client -> server packet (seq/ack relative to the initial sequence numbers)."""
    tcp = TCP(sport=CP, dport=SP, flags=flags, seq=CI + seq, ack=SI + ack if ack else 0, window=win)
    p = Ether() / IP(src=C, dst=S) / tcp
    return p / Raw(data) if data else p


def s(flags: str, seq: int, ack: int = 0, data: bytes = b"", win: int = 8192):
    """A server -> client packet."""
    tcp = TCP(sport=SP, dport=CP, flags=flags, seq=SI + seq, ack=CI + ack if ack else 0, window=win)
    p = Ether() / IP(src=S, dst=C) / tcp
    return p / Raw(data) if data else p


HANDSHAKE = [c("S", 0), s("SA", 0, 1), c("A", 1, 1)]
CLOSE = [c("FA", 11, 1), s("FA", 1, 12), c("A", 12, 2)]  # after 10 bytes from the client
D10, D20 = b"x" * 10, b"y" * 20

SESSIONS = {
    # name: (packets, conn_state, history, orig_bytes, resp_bytes, missed_bytes)
    "SF": (
        HANDSHAKE
        + [c("PA", 1, 1, D10), s("A", 1, 11), s("PA", 1, 11, D20), c("FA", 11, 21), s("FA", 21, 12), c("A", 12, 22)],
        "SF", "ShADadFf", 10, 20, 0,
    ),
    "S0": ([c("S", 0), c("S", 0)], "S0", "S", 0, 0, 0),
    "REJ": ([c("S", 0), s("RA", 0, 1)], "REJ", "Sr", 0, 0, 0),
    "S1": (HANDSHAKE + [c("PA", 1, 1, D10), s("A", 1, 11)], "S1", "ShADa", 10, 0, 0),
    "S2": (HANDSHAKE + [c("PA", 1, 1, D10), c("FA", 11, 1)], "S2", "ShADF", 10, 0, 0),
    "S3": (HANDSHAKE + [s("FA", 1, 1)], "S3", "ShAf", 0, 0, 0),
    "RSTO": (HANDSHAKE + [c("R", 1)], "RSTO", "ShAR", 0, 0, 0),
    "RSTR": (HANDSHAKE + [c("PA", 1, 1, D10), s("R", 1)], "RSTR", "ShADr", 10, 0, 0),
    "RSTOS0": ([c("S", 0), c("R", 1)], "RSTOS0", "SR", 0, 0, 0),
    # the capture begins with the server's SYN-ACK: Zeek flips the roles ('^')
    "RSTRH": ([s("SA", 0, 1), s("R", 1)], "RSTRH", "^hr", 0, 0, 0),
    "SH": ([c("S", 0), c("F", 1)], "SH", "SF", 0, 0, 0),
    "SHR": ([s("SA", 0, 1), s("FA", 1, 1)], "SHR", "^hf", 0, 0, 0),
    # mid-stream: no SYN seen, not closed
    "OTH": ([c("PA", 1, 1, D10), s("A", 1, 11)], "OTH", "Da", 10, 0, 0),
    # mid-stream, closed both ways: Zeek calls it SF; the client's first pure ACK comes last
    "midstream-closed": (
        [c("PA", 1, 1, D10), s("A", 1, 11), c("FA", 11, 1), s("FA", 1, 12), c("A", 12, 2)],
        "SF", "DaFfA", 10, 0, 0,
    ),
    # the client's data packet sent twice: T after D
    "retransmission": (
        HANDSHAKE + [c("PA", 1, 1, D10), c("PA", 1, 1, D10), s("A", 1, 11)] + CLOSE,
        "SF", "ShADTaFf", 10, 0, 0,
    ),
    # the second segment arrives before the first: Zeek counts the late one as a retransmission, no gap
    "out-of-order": (
        HANDSHAKE
        + [c("PA", 11, 1, D10), c("PA", 1, 1, D10), s("A", 1, 21), c("FA", 21, 1), s("FA", 1, 22), c("A", 22, 2)],
        "SF", "ShADTaFf", 20, 0, 0,
    ),
    # bytes 11..20 never captured, but acknowledged: orig_bytes counts them, missed_bytes says so
    "gap": (
        HANDSHAKE
        + [c("PA", 1, 1, D10), c("PA", 21, 1, D10), s("A", 1, 31), c("FA", 31, 1), s("FA", 1, 32), c("A", 32, 2)],
        "SF", "ShADGaFf", 30, 0, 10,
    ),
    # the server advertises a zero window: 'w' after its 'a'
    "zero-window": (HANDSHAKE + [c("PA", 1, 1, D10), s("A", 1, 11, win=0)], "S1", "ShADaw", 10, 0, 0),
    # two RSTs with different sequence numbers are both recorded, a repeated one is not; sequence
    # numbers after a RST are not trusted for the size
    "two-resets": (HANDSHAKE + [c("R", 1), c("R", 1), c("R", 7)], "RSTO", "ShARR", 0, 0, 0),
    # SYN+FIN (multi-flag, 'Q') and FIN+RST ('I'); the history does not read S...R, so not RSTOS0 but OTH
    "odd-flags": ([c("SF", 0), c("FR", 1)], "OTH", "QI", 0, 0, 0),
}


def session_flows(path: Path, per_packet: bool = False):
    """Oriented flows of a capture (registry rule skipped), optionally merged one packet at a time."""
    agg = FlowAggregator(idle_timeout_ns=0, min_packets=1 if per_packet else 1 << 18)
    for b in read_batches([str(path)]):
        if per_packet:
            for i in range(len(b)):
                one = concat_batches([b])
                idx = np.array([i])
                agg.add(type(b)(**{k: getattr(one, k)[idx] for k in (
                    "ts_ns", "wire_len", "ip_version", "src_hi", "src_lo", "dst_hi", "dst_lo", "proto", "sport",
                    "dport", "tcp_flags", "frag", "payload_off", "payload_len", "pkt_index", "file_index",
                    "tcp_seq", "tcp_ack", "tcp_win", "tcp_len", "ip_len")}, data=one.data))
        else:
            agg.add(b)
    return orient(agg.result(), None)


def write(tmp_path: Path, name: str, pkts: list) -> Path:
    """Packets one millisecond apart in a pcap under tmp_path."""
    for i, p in enumerate(pkts):
        p.time = 1_700_000_000 + i / 1000
    path = tmp_path / f"{name}.pcap"
    wrpcap(str(path), pkts)
    return path


@pytest.mark.parametrize("name", list(SESSIONS))
def test_crafted_session_matches_zeek(tmp_path: Path, name: str) -> None:
    pkts, state, hist, ob, rb, missed = SESSIONS[name]
    t = session_flows(write(tmp_path, name, pkts))
    assert len(t) == 1
    f = conn.conn_fields(t)
    assert f["conn_state"][0] == state
    assert f["history"][0] == hist
    assert (int(f["orig_bytes"][0]), int(f["resp_bytes"][0]), int(f["missed_bytes"][0])) == (ob, rb, missed)
    # Zeek's ip_bytes: the IP total length of every packet each way
    ip_len = [len(p[IP]) for p in pkts]
    from_c = [n for n, p in zip(ip_len, pkts, strict=True) if p[IP].src == C]
    assert (int(f["orig_ip_bytes"][0]), int(f["resp_ip_bytes"][0])) == (sum(from_c), sum(ip_len) - sum(from_c))


@pytest.mark.parametrize("name", ["SF", "RSTRH", "retransmission", "two-resets", "odd-flags", "midstream-closed"])
def test_one_packet_per_chunk_gives_the_same_connection(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, SESSIONS[name][0])
    whole, parts = session_flows(path), session_flows(path, per_packet=True)
    assert parts.equals(whole, chunking=True)
    fw, fp = conn.conn_fields(whole), conn.conn_fields(parts)
    for key in ("conn_state", "orig_bytes", "resp_bytes", "orig_ip_bytes", "resp_ip_bytes"):
        assert fp[key].tolist() == fw[key].tolist(), key
    if "T" not in fw["history"][0]:
        assert fp["history"].tolist() == fw["history"].tolist()


def test_udp_states_and_zero_duration_bytes(tmp_path: Path) -> None:
    q = Ether() / IP(src=C, dst=S) / UDP(sport=5353, dport=53) / Raw(b"q" * 12)
    a = Ether() / IP(src=S, dst=C) / UDP(sport=53, dport=5353) / Raw(b"a" * 30)
    t = session_flows(write(tmp_path, "udp", [q, a]))
    f = conn.conn_fields(t)
    got = (f["conn_state"][0], f["history"][0], int(f["orig_bytes"][0]), int(f["resp_bytes"][0]))
    assert got == ("SF", "Dd", 12, 30)
    t = session_flows(write(tmp_path, "udp1", [q]))
    f = conn.conn_fields(t)
    # one packet: no duration, so Zeek leaves orig_bytes unset
    assert (f["conn_state"][0], f["history"][0], int(f["orig_bytes"][0])) == ("S0", "D", -1)


def test_state_machine_function_composition_is_exact() -> None:
    gen, comp, funcs, state0 = conn.machine()
    rng = np.random.default_rng(7)
    ids = gen[rng.integers(0, 2, 400), rng.integers(0, 16, 400), rng.integers(0, 2, 400)]
    first = rng.random(400) < 0.1
    first[0] = True
    got = conn.compose_segments(ids, first)
    want = []
    for i in range(400):
        if first[i]:
            want.append(conn.IDENTITY.copy())
        want[-1] = funcs[ids[i]][want[-1]]  # apply packet i after what came before
    assert np.array_equal(funcs[got], np.array(want))
    # the table is the composition of the functions it numbers
    a, b = rng.integers(0, len(funcs), 50), rng.integers(0, len(funcs), 50)
    assert np.array_equal(funcs[comp[a, b]], np.take_along_axis(funcs[b], funcs[a].astype(np.intp), axis=1))


def test_shipped_state_machine_tables_are_current() -> None:
    built = conn.build_machine()
    conn.machine.cache_clear()
    shipped = conn.machine()
    for a, b in zip(built, shipped, strict=True):
        assert np.array_equal(a, b)
