"""Known synthetic flows for report, filter and API tests (built with ``classifier.flows.make_batch``).

Six flows, one per row of ``EXPECTED`` (keyed by server port), started 100 ms apart from ``T0``:
an HTTP connection with handshake and teardown, a SYN-only probe of 42000/tcp (unassigned, with
known unauthorized use), a DNS query and answer, UDP between two dynamic ports, an IPv6 connection
to 443 refused with RST, and midstream TCP to 22 (no SYN seen).
"""

from __future__ import annotations

import importlib.util

from classifier.flows import FlowAggregator, make_batch
from classifier.pipeline import Analysis, label_flows

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
SYN, ACK, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08

# (t_ns, src, dst, sport, dport, proto, tcp_flags, wire_len)
PACKETS: list[tuple[int, str, str, int, int, int, int, int]] = [
    # A: http, full connection
    (T0 + 0 * MS, "192.0.2.10", "198.51.100.1", 40000, 80, 6, SYN, 74),
    (T0 + 1 * MS, "198.51.100.1", "192.0.2.10", 80, 40000, 6, SYN | ACK, 74),
    (T0 + 2 * MS, "192.0.2.10", "198.51.100.1", 40000, 80, 6, ACK, 66),
    (T0 + 3 * MS, "192.0.2.10", "198.51.100.1", 40000, 80, 6, PSH | ACK, 200),
    (T0 + 10 * MS, "198.51.100.1", "192.0.2.10", 80, 40000, 6, PSH | ACK, 1500),
    (T0 + 20 * MS, "192.0.2.10", "198.51.100.1", 40000, 80, 6, FIN | ACK, 66),
    (T0 + 21 * MS, "198.51.100.1", "192.0.2.10", 80, 40000, 6, FIN | ACK, 66),
    (T0 + 22 * MS, "192.0.2.10", "198.51.100.1", 40000, 80, 6, ACK, 66),
    # B: SYN probe to 42000/tcp, retransmitted once, never answered
    (T0 + 100 * MS, "192.0.2.10", "203.0.113.5", 40001, 42000, 6, SYN, 74),
    (T0 + 1100 * MS, "192.0.2.10", "203.0.113.5", 40001, 42000, 6, SYN, 74),
    # C: DNS
    (T0 + 200 * MS, "192.0.2.10", "192.0.2.53", 53000, 53, 17, 0, 80),
    (T0 + 205 * MS, "192.0.2.53", "192.0.2.10", 53, 53000, 17, 0, 120),
    # D: UDP between two dynamic ports
    (T0 + 300 * MS, "192.0.2.20", "192.0.2.30", 50000, 60000, 17, 0, 100),
    (T0 + 301 * MS, "192.0.2.30", "192.0.2.20", 60000, 50000, 17, 0, 110),
    # E: IPv6 connection refused
    (T0 + 400 * MS, "2001:db8::1", "2001:db8::2", 40002, 443, 6, SYN, 94),
    (T0 + 401 * MS, "2001:db8::2", "2001:db8::1", 443, 40002, 6, RST | ACK, 74),
    # F: midstream ssh (capture began after the handshake)
    (T0 + 500 * MS, "192.0.2.10", "198.51.100.1", 40003, 22, 6, PSH | ACK, 150),
    (T0 + 502 * MS, "198.51.100.1", "192.0.2.10", 22, 40003, 6, PSH | ACK, 250),
]

EXPECTED: dict[int, dict] = {
    80: dict(
        client="192.0.2.10",
        cport=40000,
        server="198.51.100.1",
        transport="tcp",
        service="http",
        status="assigned",
        flags=[],
        severity=0,
        rule="syn",
        c_pkts=5,
        s_pkts=3,
        c_bytes=472,
        s_bytes=1640,
        start=T0,
        end=T0 + 22 * MS,
        conn_state="SF",
        aliases=["www", "www-http"],
    ),
    42000: dict(
        client="192.0.2.10",
        cport=40001,
        server="203.0.113.5",
        transport="tcp",
        service=None,
        status="unassigned",
        flags=["unauthorized-use-known", "unassigned-port"],
        severity=5,
        rule="syn",
        c_pkts=2,
        s_pkts=0,
        c_bytes=148,
        s_bytes=0,
        start=T0 + 100 * MS,
        end=T0 + 1100 * MS,
        conn_state="S0",
        aliases=[],
    ),
    53: dict(
        client="192.0.2.10",
        cport=53000,
        server="192.0.2.53",
        transport="udp",
        service="domain",
        status="assigned",
        flags=[],
        severity=0,
        rule="registry",
        c_pkts=1,
        s_pkts=1,
        c_bytes=80,
        s_bytes=120,
        start=T0 + 200 * MS,
        end=T0 + 205 * MS,
        conn_state="SF",
        aliases=[],
    ),
    60000: dict(
        client="192.0.2.20",
        cport=50000,
        server="192.0.2.30",
        transport="udp",
        service=None,
        status="dynamic",
        flags=["dynamic-port"],
        severity=2,
        rule="first-packet",
        c_pkts=1,
        s_pkts=1,
        c_bytes=100,
        s_bytes=110,
        start=T0 + 300 * MS,
        end=T0 + 301 * MS,
        conn_state="SF",
        aliases=[],
    ),
    443: dict(
        client="2001:db8::1",
        cport=40002,
        server="2001:db8::2",
        transport="tcp",
        service="https",
        status="assigned",
        flags=[],
        severity=0,
        rule="syn",
        c_pkts=1,
        s_pkts=1,
        c_bytes=94,
        s_bytes=74,
        start=T0 + 400 * MS,
        end=T0 + 401 * MS,
        conn_state="REJ",
        aliases=[],
    ),
    22: dict(
        client="192.0.2.10",
        cport=40003,
        server="198.51.100.1",
        transport="tcp",
        service="ssh",
        status="assigned",
        flags=[],
        severity=0,
        rule="registry",
        c_pkts=1,
        s_pkts=1,
        c_bytes=150,
        s_bytes=250,
        start=T0 + 500 * MS,
        end=T0 + 502 * MS,
        conn_state="OTH",
        aliases=[],
    ),
}
"""Server port -> what every report must say about that flow."""

ORDER = [80, 42000, 53, 60000, 443, 22]
"""Server ports in start-time order (the order reports list flows)."""


def batch():
    """All packets as one ``PacketBatch``, in capture (time) order."""
    pk = sorted(PACKETS)
    return make_batch(
        ts_ns=[p[0] for p in pk],
        src=[p[1] for p in pk],
        dst=[p[2] for p in pk],
        sport=[p[3] for p in pk],
        dport=[p[4] for p in pk],
        proto=[p[5] for p in pk],
        tcp_flags=[p[6] for p in pk],
        wire_len=[p[7] for p in pk],
    )


def known_analysis(reg, idle_timeout_s: float = 300.0) -> Analysis:
    """The labelled ``Analysis`` of ``PACKETS`` (as ``pipeline.analyze`` would return it)."""
    agg = FlowAggregator(int(idle_timeout_s * 1e9))
    agg.add(batch())
    flows, labels = label_flows(agg.result(), reg)
    return Analysis(
        flows=flows,
        labels=labels,
        stats=agg.stats,
        registry=reg,
        idle_timeout_s=idle_timeout_s,
        inputs=["synthetic"],
    )


# --------------------------------------------------------------------------- payload evidence

# Two more flows for the evidence tests (same layout as PACKETS): G, TLS to 993/tcp (imaps) with a
# server name; H, an SSH server answering on 443/tcp (registered for https: a service mismatch).
EVIDENCE_PACKETS: list[tuple[int, str, str, int, int, int, int, int]] = [
    (T0 + 600 * MS, "192.0.2.10", "198.51.100.9", 40004, 993, 6, SYN, 74),
    (T0 + 601 * MS, "198.51.100.9", "192.0.2.10", 993, 40004, 6, SYN | ACK, 74),
    (T0 + 602 * MS, "192.0.2.10", "198.51.100.9", 40004, 993, 6, ACK, 66),
    (T0 + 603 * MS, "192.0.2.10", "198.51.100.9", 40004, 993, 6, PSH | ACK, 583),
    (T0 + 610 * MS, "198.51.100.9", "192.0.2.10", 993, 40004, 6, PSH | ACK, 1400),
    (T0 + 700 * MS, "192.0.2.11", "203.0.113.44", 40005, 443, 6, SYN, 74),
    (T0 + 701 * MS, "203.0.113.44", "192.0.2.11", 443, 40005, 6, SYN | ACK, 74),
    (T0 + 702 * MS, "192.0.2.11", "203.0.113.44", 40005, 443, 6, ACK, 66),
    (T0 + 705 * MS, "203.0.113.44", "192.0.2.11", 443, 40005, 6, PSH | ACK, 87),
    (T0 + 706 * MS, "192.0.2.11", "203.0.113.44", 40005, 443, 6, PSH | ACK, 87),
]

TAGS: dict[int, tuple[str, str | None]] = {
    T0 + 3 * MS: ("http-request", None),
    T0 + 10 * MS: ("http-response", None),
    T0 + 200 * MS: ("dns", None),
    T0 + 205 * MS: ("dns-answer", None),
    T0 + 300 * MS: ("bittorrent-dht", None),
    T0 + 502 * MS: ("ssh-banner", None),
    T0 + 603 * MS: ("tls-client-hello", "mail.example.org"),
    T0 + 610 * MS: ("tls-server-hello", None),
    T0 + 705 * MS: ("ssh-banner", None),
    T0 + 706 * MS: ("ssh-banner", None),
}
"""Packet time -> (signature the evidence stage recognises in its payload, TLS server name)."""

EVIDENCE_FILE = "synthetic.pcap"
"""The capture file name the evidence analysis says its packets came from."""

# Flow name -> what every report must say of its payload evidence.  Packet numbers count all
# packets of PACKETS + EVIDENCE_PACKETS in time order, from 1.
EVIDENCE: dict[str, dict] = {
    "A": dict(port=80, verdict="consistent", protocol="http", zeek_service="http", signature="http-request",
              direction="client-to-server", packet=4, server_name=None, note=None),
    "B": dict(port=42000, verdict="unverified", protocol=None, zeek_service=None, signature=None, direction=None,
              packet=None, server_name=None, note=None),
    "C": dict(port=53, verdict="consistent", protocol="dns", zeek_service="dns", signature="dns",
              direction="client-to-server", packet=10, server_name=None, note=None),
    "D": dict(port=60000, verdict="unregistered", protocol="bittorrent", zeek_service="bittorrent",
              signature="bittorrent-dht", direction="client-to-server", packet=12, server_name=None,
              note="port 60000/udp has no registered service; payload is BitTorrent"),
    "E": dict(port=443, verdict="unverified", protocol=None, zeek_service=None, signature=None, direction=None,
              packet=None, server_name=None, note=None),
    "F": dict(port=22, verdict="consistent", protocol="ssh", zeek_service="ssh", signature="ssh-banner",
              direction="server-to-client", packet=17, server_name=None, note=None),
    "G": dict(port=993, verdict="consistent", protocol="tls", zeek_service="ssl", signature="tls-client-hello",
              direction="client-to-server", packet=21, server_name="mail.example.org", note=None),
    "H": dict(port=443, verdict="mismatch", protocol="ssh", zeek_service="ssh", signature="ssh-banner",
              direction="server-to-client", packet=26, server_name=None,
              note="port 443/tcp registered for https; payload is SSH"),
}  # fmt: skip
EVIDENCE_ORDER = list(EVIDENCE)
"""Flow names in start-time order (the order reports list flows)."""


def evidence_analysis(reg) -> Analysis:
    """``PACKETS`` + ``EVIDENCE_PACKETS`` with the evidence stage's tags (``TAGS``), labelled and given verdicts.

    As ``pipeline.analyze`` returns it for a capture whose payloads showed what ``TAGS`` says.
    """
    import numpy as np

    from classifier.evidence import SIG_NAMES
    from classifier.evidence.verdict import verdicts
    from classifier.flows import SERVER_NAME_BYTES, PacketTags

    pk = sorted(PACKETS + EVIDENCE_PACKETS)

    def payload(p: tuple) -> int:
        if not (p[5] == 17 or p[6] & PSH):
            return 0
        return max(0, p[7] - 14 - (40 if ":" in p[1] else 20) - (20 if p[5] == 6 else 8))

    b = make_batch(
        ts_ns=[p[0] for p in pk],
        src=[p[1] for p in pk],
        dst=[p[2] for p in pk],
        sport=[p[3] for p in pk],
        dport=[p[4] for p in pk],
        proto=[p[5] for p in pk],
        tcp_flags=[p[6] for p in pk],
        wire_len=[p[7] for p in pk],
        payload_len=[payload(p) for p in pk],
    )
    named = [i for i, p in enumerate(pk) if TAGS.get(p[0], ("", None))[1]]
    tags = PacketTags(
        np.array([SIG_NAMES.index(TAGS[p[0]][0]) if p[0] in TAGS else 0 for p in pk], dtype=np.uint8),
        np.array(named, dtype=np.int64),
        np.array([TAGS[pk[i][0]][1].encode() for i in named], dtype=f"S{SERVER_NAME_BYTES}"),  # type: ignore[union-attr]
    )
    agg = FlowAggregator(int(300 * 1e9))
    agg.add(b, tags)
    agg.stats.files = [EVIDENCE_FILE]
    flows, labels = label_flows(agg.result(), reg)
    verdicts(flows, labels, reg)
    return Analysis(flows=flows, labels=labels, stats=agg.stats, registry=reg, inputs=[EVIDENCE_FILE])


HAVE_READER = importlib.util.find_spec("classifier.capture.reader") is not None
"""Whether the capture stage can read files yet (end-to-end tests skip until it can)."""


def write_pcap(path) -> None:
    """``PACKETS`` as a real Ethernet pcap with nanosecond timestamps (frames built with dpkt).

    Each frame is padded with zero payload to its ``wire_len``, so flows count the same bytes.
    """
    import socket
    import struct

    import dpkt

    out = [struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)]  # nanosecond pcap, Ethernet
    for t, src, dst, sport, dport, proto, flags, wire_len in sorted(PACKETS):
        v6 = ":" in src
        ip_hdr = 40 if v6 else 20
        l4_hdr = 20 if proto == 6 else 8
        payload = b"\x00" * max(0, wire_len - 14 - ip_hdr - l4_hdr)
        if proto == 6:
            l4 = dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, seq=1000, ack=1 if flags & ACK else 0)
        else:
            l4 = dpkt.udp.UDP(sport=sport, dport=dport, ulen=8 + len(payload))
        l4.data = payload
        raw_l4 = bytes(l4)
        if v6:
            ip = dpkt.ip6.IP6(
                src=socket.inet_pton(socket.AF_INET6, src),
                dst=socket.inet_pton(socket.AF_INET6, dst),
                nxt=proto,
                hlim=64,
                plen=len(raw_l4),
            )
            ip.data = raw_l4
            eth_type = dpkt.ethernet.ETH_TYPE_IP6
        else:
            ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=proto, ttl=64, len=20 + len(raw_l4))
            ip.data = raw_l4
            eth_type = dpkt.ethernet.ETH_TYPE_IP
        frame = bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=eth_type, data=bytes(ip)))
        out.append(struct.pack("<IIII", t // 10**9, t % 10**9, len(frame), len(frame)) + frame)
    with open(path, "wb") as fh:
        fh.write(b"".join(out))
