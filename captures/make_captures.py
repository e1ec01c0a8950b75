"""Write portclass's sample captures (deterministic, documentation address ranges only).

Run as ``python captures/make_captures.py [--out captures/]``.  It writes

* ``sample.pcap``      Ethernet (LINKTYPE_ETHERNET), microsecond timestamps: the README demo;
* ``sample.pcapng``    the same frames as pcapng (one interface, Ethernet);
* ``sample-sll.pcap``  the same IP packets as Linux cooked captures (LINKTYPE_LINUX_SLL),
                       VLAN tags stripped as the kernel does;
* ``expected.json``    each flow's transport, endpoints, packets and wire bytes per direction
                       (per file) and the label the IANA registry should give it.

Every frame is built with scapy from fixed values, so running it again gives byte-identical
files.  Addresses come from 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from scapy.layers.dns import DNS, DNSQR, DNSRR, DNSRROPT
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6
from scapy.layers.l2 import ARP, CookedLinux, Dot1AD, Dot1Q, Ether
from scapy.layers.sctp import SCTP, SCTPChunkCookieAck, SCTPChunkCookieEcho, SCTPChunkInit, SCTPChunkInitAck
from scapy.packet import Packet, Raw
from scapy.utils import PcapNgWriter, PcapWriter

BASE_TS = Decimal(1704067200)  # 2024-01-01T00:00:00Z
MAC_CLIENT = "02:00:00:00:00:01"
MAC_ROUTER = "02:00:00:00:00:fe"


@dataclass
class Flow:
    """One expected flow: who is client/server, what the registry should say, and its frames."""

    name: str
    transport: str
    client: str
    client_port: int
    server: str
    server_port: int
    label: dict[str, object]
    server_rule: str
    note: str = ""
    frames: list[tuple[Decimal, bool, Packet]] = field(default_factory=list)  # (ts, from_client, frame)

    def ip(self, from_client: bool) -> Packet:
        """The IP header of a packet in one direction."""
        src, dst = (self.client, self.server) if from_client else (self.server, self.client)
        return IPv6(src=src, dst=dst, hlim=64) if ":" in src else IP(src=src, dst=dst, ttl=64, id=0)

    def add(self, ts: Decimal, from_client: bool, l3: Packet, l2: Packet | None = None) -> None:
        """Append a frame: ``l3`` under an Ethernet header (or the given l2 header)."""
        src, dst = (MAC_CLIENT, MAC_ROUTER) if from_client else (MAC_ROUTER, MAC_CLIENT)
        head = l2 if l2 is not None else Ether(src=src, dst=dst)
        self.frames.append((ts, from_client, head / l3))


class TcpConv:
    """A TCP conversation with consistent sequence numbers."""

    def __init__(self, flow: Flow, ts: Decimal, l2: tuple[Packet, Packet] | None = None) -> None:
        self.f, self.ts, self.l2 = flow, ts, l2
        digest = hashlib.sha256(flow.name.encode()).digest()
        self.seq = {True: int.from_bytes(digest[:4], "big"), False: int.from_bytes(digest[4:8], "big")}

    def send(self, from_client: bool, flags: str, payload: bytes = b"", dt_ms: int = 1) -> None:
        """Send one segment; SYN and FIN consume a sequence number."""
        self.ts += Decimal(dt_ms) / 1000
        f = self.f
        sport, dport = (f.client_port, f.server_port) if from_client else (f.server_port, f.client_port)
        ack = self.seq[not from_client] if "A" in flags else 0
        seg = TCP(sport=sport, dport=dport, seq=self.seq[from_client], ack=ack, flags=flags, window=64240)
        if "S" in flags:
            seg.options = [("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]
        l3 = f.ip(from_client) / seg
        if payload:
            l3 = l3 / Raw(payload)
        l2 = None
        if self.l2 is not None:
            l2 = self.l2[0] if from_client else self.l2[1]
            l2 = l2.copy()
        f.add(self.ts, from_client, l3, l2)
        self.seq[from_client] = (self.seq[from_client] + len(payload) + ("S" in flags) + ("F" in flags)) % 2**32

    def handshake(self) -> None:
        """SYN, SYN+ACK, ACK."""
        self.send(True, "S")
        self.send(False, "SA")
        self.send(True, "A")

    def close(self) -> None:
        """FIN+ACK both ways and the last ACK."""
        self.send(True, "FA")
        self.send(False, "FA")
        self.send(True, "A")


def tls_client_hello(sni: str) -> bytes:
    """A TLS 1.3 ClientHello record with a server_name extension (fixed random and key share)."""

    def ext(kind: int, body: bytes) -> bytes:
        return struct.pack("!HH", kind, len(body)) + body

    name = sni.encode()
    sni_ext = ext(0, struct.pack("!HBH", len(name) + 3, 0, len(name)) + name)
    groups = ext(10, struct.pack("!H", 4) + struct.pack("!HH", 0x001D, 0x0017))
    sigalgs = ext(13, struct.pack("!H", 6) + struct.pack("!HHH", 0x0403, 0x0804, 0x0401))
    alpn_list = b"\x02h2\x08http/1.1"
    alpn = ext(16, struct.pack("!H", len(alpn_list)) + alpn_list)
    versions = ext(43, b"\x04\x03\x04\x03\x03")
    key = bytes(range(32, 64))
    key_share = ext(51, struct.pack("!HHH", 36, 0x001D, 32) + key)
    exts = sni_ext + groups + sigalgs + alpn + versions + key_share
    suites = struct.pack("!5H", 0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F)
    body = (
        b"\x03\x03"
        + bytes(range(32))
        + b"\x20"
        + bytes(range(64, 96))
        + struct.pack("!H", len(suites))
        + suites
        + b"\x01\x00"
        + struct.pack("!H", len(exts))
        + exts
    )
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def tls_server_hello() -> bytes:
    """A TLS 1.3 ServerHello record, ChangeCipherSpec and one opaque application-data record."""
    exts = struct.pack("!HHH", 43, 2, 0x0304) + struct.pack("!HHHH", 51, 36, 0x001D, 32) + bytes(range(96, 128))
    body = (
        b"\x03\x03"
        + bytes(range(128, 160))
        + b"\x20"
        + bytes(range(64, 96))
        + b"\x13\x01\x00"
        + struct.pack("!H", len(exts))
        + exts
    )
    hs = b"\x02" + len(body).to_bytes(3, "big") + body
    app = hashlib.sha256(b"portclass tls").digest() * 4
    return (
        b"\x16\x03\x03"
        + struct.pack("!H", len(hs))
        + hs
        + b"\x14\x03\x03\x00\x01\x01"
        + b"\x17\x03\x03"
        + struct.pack("!H", len(app))
        + app
    )


def ntp_message(client: bool, unix_ts: Decimal) -> bytes:
    """An NTPv4 client request or server reply (48 bytes) with timestamps derived from ``unix_ts``."""

    def stamp(t: Decimal) -> bytes:
        t += 2208988800  # NTP era 0 starts in 1900
        sec = int(t)
        return struct.pack("!II", sec, int((t - sec) * 2**32))

    if client:
        return struct.pack("!BBbb", 0x23, 0, 10, -20) + bytes(12) + bytes(24) + stamp(unix_ts)
    head = struct.pack("!BBbbII4s", 0x24, 2, 10, -23, 0x0000_0100, 0x0000_0200, bytes([198, 51, 100, 1]))
    t0 = unix_ts - Decimal("0.020")
    return head + stamp(t0 - 64) + stamp(t0) + stamp(unix_ts - Decimal("0.0001")) + stamp(unix_ts)


def label(service: str | None, status: str, unauthorized: str | None = None) -> dict[str, object]:
    """The registry's expected answer for a flow's (transport, server port)."""
    return {"service": service, "status": status, "unauthorized": unauthorized}


def build() -> tuple[list[Flow], list[tuple[Decimal, Packet]]]:
    """All sample flows, plus frames that are not port flows (ARP, ICMP)."""
    flows: list[Flow] = []
    t = BASE_TS

    def new(*args: object, **kw: object) -> Flow:
        f = Flow(*args, **kw)  # type: ignore[arg-type]
        flows.append(f)
        return f

    # 1-2. HTTP with a real handshake, then the same 4-tuple reused after FIN: two flows
    http = new("http", "tcp", "192.0.2.10", 50001, "198.51.100.80", 80, label("http", "assigned"), "syn")
    c = TcpConv(http, t)
    c.handshake()
    c.send(True, "PA", b"GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n")
    c.send(False, "A")
    body = b"<!doctype html><html><head><title>Example Domain</title></head><body>Example</body></html>\n"
    c.send(
        False,
        "PA",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=UTF-8\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nServer: ECS (nyd/D10E)\r\n\r\n"
        + body,
    )
    c.send(True, "A")
    c.close()
    reuse = new(
        "http-port-reuse",
        "tcp",
        "192.0.2.10",
        50001,
        "198.51.100.80",
        80,
        label("http", "assigned"),
        "syn",
        note="same 4-tuple as 'http', new SYN after its FIN: a second flow",
    )
    c = TcpConv(reuse, c.ts + Decimal("0.5"))
    c.handshake()
    c.send(True, "PA", b"GET /favicon.ico HTTP/1.1\r\nHost: example.com\r\n\r\n")
    c.send(False, "PA", b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    c.send(True, "A")
    c.close()

    # 3. TLS on 443 with a ClientHello (SNI example.com)
    t += 2
    tls = new("tls", "tcp", "192.0.2.10", 50002, "198.51.100.43", 443, label("https", "assigned"), "syn")
    c = TcpConv(tls, t)
    c.handshake()
    c.send(True, "PA", tls_client_hello("example.com"))
    c.send(False, "PA", tls_server_hello())
    c.send(True, "A")
    c.send(True, "FA")
    c.send(False, "FA")
    c.send(True, "A")

    # 4. DNS query and response on UDP 53
    t += 1
    dns = new("dns", "udp", "192.0.2.10", 53001, "198.51.100.53", 53, label("domain", "assigned"), "registry")
    q = DNS(id=0x1234, rd=1, qd=[DNSQR(qname="example.com", qtype="A")])
    r = DNS(
        id=0x1234,
        qr=1,
        rd=1,
        ra=1,
        qd=[DNSQR(qname="example.com", qtype="A")],
        an=[DNSRR(rrname="example.com", type="A", ttl=300, rdata="198.51.100.80")],
    )
    dns.add(t, True, dns.ip(True) / UDP(sport=53001, dport=53) / q)
    dns.add(t + Decimal("0.012"), False, dns.ip(False) / UDP(sport=53, dport=53001) / r)

    # 5. SSH on 22 with banners
    t += 1
    ssh = new("ssh", "tcp", "192.0.2.10", 50003, "198.51.100.22", 22, label("ssh", "assigned"), "syn")
    c = TcpConv(ssh, t)
    c.handshake()
    c.send(False, "PA", b"SSH-2.0-OpenSSH_9.2\r\n")
    c.send(True, "PA", b"SSH-2.0-OpenSSH_9.6\r\n")
    c.send(False, "A")
    c.send(True, "FA")
    c.send(False, "FA")
    c.send(True, "A")

    # 6. TCP to an unassigned port (4/tcp "Unassigned")
    t += 1
    f = new("unassigned-4", "tcp", "192.0.2.11", 50010, "198.51.100.4", 4, label(None, "unassigned"), "syn")
    c = TcpConv(f, t)
    c.handshake()
    c.send(True, "PA", b"hello\n")
    c.send(False, "RA")

    # 7. TCP to a reserved port (225-241 "Reserved"): refused
    t += 1
    f = new("reserved-230", "tcp", "192.0.2.11", 50011, "198.51.100.30", 230, label(None, "reserved"), "syn")
    c = TcpConv(f, t)
    c.send(True, "S")
    c.send(False, "RA")

    # 8-9. Unassigned ports with known unauthorized use
    t += 1
    f = new(
        "unauthorized-42000",
        "tcp",
        "192.0.2.12",
        50020,
        "203.0.113.42",
        42000,
        label(None, "unassigned", "Unauthorized Use Known on port 42000"),
        "syn",
    )
    c = TcpConv(f, t)
    c.handshake()
    c.send(True, "PA", bytes(range(48)))
    c.send(False, "PA", bytes(range(48, 112)))
    c.send(True, "RA")
    t += 1
    f = new(
        "unauthorized-44515",
        "tcp",
        "192.0.2.12",
        50021,
        "203.0.113.45",
        44515,
        label(None, "unassigned", "Known UNAUTHORIZED USE: Ports 44515 & 44516"),
        "syn",
    )
    c = TcpConv(f, t)
    c.handshake()
    c.send(True, "PA", b"\x00\x01portclass\x00")
    c.close()

    # 10. peer-to-peer UDP, both ports dynamic: the first packet's receiver is the "server"
    t += 1
    f = new(
        "p2p-dynamic",
        "udp",
        "192.0.2.13",
        55000,
        "203.0.113.77",
        61000,
        label(None, "dynamic"),
        "first-packet",
    )
    for i in range(4):
        out = i % 2 == 0
        sp, dp = (55000, 61000) if out else (61000, 55000)
        f.add(
            t + Decimal(i) / 100,
            out,
            f.ip(out) / UDP(sport=sp, dport=dp) / Raw(bytes([0x64, i]) + b"d1:ad2:id20:" + bytes(20)),
        )

    # 11. IPv6 TCP: SMTP banner and EHLO
    t += 1
    f = new("ipv6-smtp", "tcp", "2001:db8::10", 50030, "2001:db8::25", 25, label("smtp", "assigned"), "syn")
    c = TcpConv(f, t)
    c.handshake()
    c.send(False, "PA", b"220 mail.example.com ESMTP Postfix\r\n")
    c.send(True, "PA", b"EHLO client.example.com\r\n")
    c.send(False, "PA", b"250-mail.example.com\r\n250 STARTTLS\r\n")
    c.send(True, "PA", b"QUIT\r\n")
    c.send(False, "PA", b"221 2.0.0 Bye\r\n")
    c.close()

    # 12. 802.1Q VLAN 100: NTP client/server
    t += 1
    f = new("vlan-ntp", "udp", "192.0.2.14", 50124, "198.51.100.123", 123, label("ntp", "assigned"), "registry")
    for i, out in enumerate((True, False)):
        src, dst = (MAC_CLIENT, MAC_ROUTER) if out else (MAC_ROUTER, MAC_CLIENT)
        l2 = Ether(src=src, dst=dst) / Dot1Q(vlan=100, prio=0)
        sp, dp = (50124, 123) if out else (123, 50124)
        msg = ntp_message(client=out, unix_ts=t + Decimal(i) / 50)
        f.add(t + Decimal(i) / 50, out, f.ip(out) / UDP(sport=sp, dport=dp) / Raw(msg), l2)

    # 13. QinQ (802.1ad S-tag 200, 802.1Q C-tag 300): HTTP on 8080
    t += 1
    f = new("qinq-http-alt", "tcp", "192.0.2.15", 50131, "198.51.100.88", 8080, label("http-alt", "assigned"), "syn")
    tags = (
        Ether(src=MAC_CLIENT, dst=MAC_ROUTER, type=0x88A8) / Dot1AD(vlan=200, type=0x8100) / Dot1Q(vlan=300),
        Ether(src=MAC_ROUTER, dst=MAC_CLIENT, type=0x88A8) / Dot1AD(vlan=200, type=0x8100) / Dot1Q(vlan=300),
    )
    c = TcpConv(f, t, l2=tags)
    c.handshake()
    c.send(True, "PA", b"GET /status HTTP/1.1\r\nHost: example.com:8080\r\n\r\n")
    c.send(False, "PA", b"HTTP/1.1 204 No Content\r\n\r\n")
    c.close()

    # 14. SCTP association setup (Diameter, 3868/sctp)
    t += 1
    f = new(
        "sctp-diameter", "sctp", "192.0.2.15", 50040, "198.51.100.68", 3868, label("diameter", "assigned"), "registry"
    )
    init = SCTPChunkInit(init_tag=0x0A0B0C0D, a_rwnd=106496, n_out_streams=10, n_in_streams=10, init_tsn=1000)
    f.add(t, True, f.ip(True) / SCTP(sport=50040, dport=3868, tag=0) / init)
    cookie = b"portclass-cookie" * 2
    ack = SCTPChunkInitAck(init_tag=0x01020304, a_rwnd=106496, n_out_streams=10, n_in_streams=10, init_tsn=5000)
    f.add(t + Decimal("0.001"), False, f.ip(False) / SCTP(sport=3868, dport=50040, tag=0x0A0B0C0D) / ack)
    f.add(
        t + Decimal("0.002"),
        True,
        f.ip(True) / SCTP(sport=50040, dport=3868, tag=0x01020304) / SCTPChunkCookieEcho(cookie=cookie),
    )
    f.add(
        t + Decimal("0.003"), False, f.ip(False) / SCTP(sport=3868, dport=50040, tag=0x0A0B0C0D) / SCTPChunkCookieAck()
    )

    # 15. IPv4 fragments: a large EDNS DNS response on UDP 53
    t += 1
    f = new(
        "ipv4-fragmented-dns", "udp", "192.0.2.16", 53002, "198.51.100.54", 53, label("domain", "assigned"), "registry"
    )
    q = DNS(id=0x4321, rd=1, qd=[DNSQR(qname="example.com", qtype="TXT")], ar=[DNSRROPT(rclass=4096)])
    f.add(t, True, f.ip(True) / UDP(sport=53002, dport=53) / q)
    txt = [DNSRR(rrname="example.com", type="TXT", ttl=300, rdata=[f"v=sample{i:02d} " + "x" * 180]) for i in range(12)]
    r = DNS(
        id=0x4321, qr=1, rd=1, ra=1, qd=[DNSQR(qname="example.com", qtype="TXT")], an=txt, ar=[DNSRROPT(rclass=4096)]
    )
    whole = IP(src=f.server, dst=f.client, ttl=64, id=0x5151) / UDP(sport=53, dport=53002) / r
    for i, frag in enumerate(fragment(whole, fragsize=1480)):
        f.add(t + Decimal("0.020") + Decimal(i) / 10000, False, frag)

    # 16. IPv6 fragments: a large syslog message on UDP 514
    t += 1
    f = new(
        "ipv6-fragmented-syslog",
        "udp",
        "2001:db8::16",
        50050,
        "2001:db8::514",
        514,
        label("syslog", "assigned"),
        "registry",
    )
    msg = b"<134>1 2024-01-01T00:00:16Z host.example.com app - - - " + b"portclass sample " * 120
    whole6 = (
        IPv6(src=f.client, dst=f.server, hlim=64)
        / IPv6ExtHdrFragment(id=0x6161)
        / UDP(sport=50050, dport=514)
        / Raw(msg)
    )
    for i, frag in enumerate(fragment6(whole6, 1280)):
        f.add(t + Decimal(i) / 10000, True, frag)

    # 17-19. deliberate mismatches for the evidence stage
    t += 1
    f = new(
        "mismatch-ssh-on-443",
        "tcp",
        "192.0.2.17",
        50060,
        "198.51.100.44",
        443,
        label("https", "assigned"),
        "syn",
        note="SSH banner on the https port",
    )
    c = TcpConv(f, t)
    c.handshake()
    c.send(False, "PA", b"SSH-2.0-OpenSSH_9.2\r\n")
    c.send(True, "PA", b"SSH-2.0-OpenSSH_9.6\r\n")
    c.close()
    t += 1
    f = new(
        "mismatch-http-on-3306",
        "tcp",
        "192.0.2.18",
        50070,
        "198.51.100.33",
        3306,
        label("mysql", "assigned"),
        "syn",
        note="HTTP request on the mysql port",
    )
    c = TcpConv(f, t)
    c.handshake()
    c.send(True, "PA", b"GET / HTTP/1.1\r\nHost: db.example.com:3306\r\n\r\n")
    c.send(False, "PA", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    c.close()
    t += 1
    f = new(
        "mismatch-dns-on-40000",
        "udp",
        "192.0.2.19",
        50080,
        "198.51.100.40",
        40000,
        label("safetynetp", "assigned"),
        "registry",
        note="a DNS query and answer on a high port assigned to something else",
    )
    q = DNS(id=0x0BAD, rd=1, qd=[DNSQR(qname="example.org", qtype="AAAA")])
    r = DNS(
        id=0x0BAD,
        qr=1,
        rd=1,
        ra=1,
        qd=[DNSQR(qname="example.org", qtype="AAAA")],
        an=[DNSRR(rrname="example.org", type="AAAA", ttl=60, rdata="2001:db8::80")],
    )
    f.add(t, True, f.ip(True) / UDP(sport=50080, dport=40000) / q)
    f.add(t + Decimal("0.004"), False, f.ip(False) / UDP(sport=40000, dport=50080) / r)

    # not port flows: ARP and an ICMP echo (counted by the reader, never flows)
    t += 1
    extra = [
        (
            t,
            Ether(src=MAC_CLIENT, dst="ff:ff:ff:ff:ff:ff")
            / ARP(op=1, hwsrc=MAC_CLIENT, psrc="192.0.2.10", pdst="192.0.2.1"),
        ),
        (
            t + Decimal("0.001"),
            Ether(src=MAC_CLIENT, dst=MAC_ROUTER)
            / IP(src="192.0.2.10", dst="198.51.100.80", id=0)
            / ICMP(id=1, seq=1)
            / Raw(bytes(32)),
        ),
        (
            t + Decimal("0.002"),
            Ether(src=MAC_ROUTER, dst=MAC_CLIENT)
            / IP(src="198.51.100.80", dst="192.0.2.10", id=0)
            / ICMP(type=0, id=1, seq=1)
            / Raw(bytes(32)),
        ),
    ]
    return flows, extra


def to_sll(frame: Packet, from_client: bool) -> Packet:
    """The frame as a Linux cooked capture: link header replaced, VLAN tags stripped."""
    inner = frame.payload
    while isinstance(inner, (Dot1Q, Dot1AD)):
        inner = inner.payload
    proto = {IP: 0x0800, IPv6: 0x86DD, ARP: 0x0806}[type(inner)]
    src = MAC_CLIENT if from_client else MAC_ROUTER
    return (
        CookedLinux(
            pkttype=4 if from_client else 0,
            lladdrtype=1,
            lladdrlen=6,
            src=bytes.fromhex(src.replace(":", "")) + b"\0\0",
            proto=proto,
        )
        / inner.copy()
    )


def write(out: Path) -> dict[str, object]:
    """Write the captures and expected.json into ``out``; return the expected data."""
    out.mkdir(parents=True, exist_ok=True)
    flows, extra = build()
    frames: list[tuple[Decimal, int, bool, Packet]] = []  # ts, flow index (-1 none), from_client, frame
    for i, f in enumerate(flows):
        frames += [(ts, i, fc, fr) for ts, fc, fr in f.frames]
    frames += [(ts, -1, fr.src == MAC_CLIENT, fr) for ts, fr in extra]
    frames.sort(key=lambda x: (x[0], x[1]))
    raw = []
    for ts, i, fc, fr in frames:
        fr = fr.__class__(bytes(fr))  # freeze checksums and lengths
        fr.time = ts
        raw.append((ts, i, fc, fr))
    names = {"sample.pcap": "ether", "sample.pcapng": "ether", "sample-sll.pcap": "sll"}
    with PcapWriter(str(out / "sample.pcap"), linktype=1, sync=True) as w:
        for _, _, _, fr in raw:
            w.write(fr)
    w2 = PcapNgWriter(str(out / "sample.pcapng"))
    for _, _, _, fr in raw:
        w2.write(fr)
    w2.close()
    sll = []
    for ts, i, fc, fr in raw:
        p = CookedLinux(bytes(to_sll(fr, fc)))
        p.time = ts
        sll.append((i, fc, p))
    with PcapWriter(str(out / "sample-sll.pcap"), linktype=113, sync=True) as w:
        for _, _, p in sll:
            w.write(p)

    expected_flows = []
    for i, f in enumerate(flows):
        counts: dict[str, dict[str, list[int]]] = {}
        for fname, kind in names.items():
            pk, by = [0, 0], [0, 0]
            seq = (
                [(fc, len(fr)) for _, j, fc, fr in raw if j == i]
                if kind == "ether"
                else [(fc, len(p)) for j, fc, p in sll if j == i]
            )
            for fc, n in seq:
                pk[0 if fc else 1] += 1
                by[0 if fc else 1] += n
            counts[fname] = {"packets": pk, "bytes": by}
        expected_flows.append(
            {
                "name": f.name,
                "transport": f.transport,
                "ip_version": 6 if ":" in f.client else 4,
                "client": f.client,
                "client_port": f.client_port,
                "server": f.server,
                "server_port": f.server_port,
                "server_rule": f.server_rule,
                "packets_c2s": counts["sample.pcap"]["packets"][0],
                "packets_s2c": counts["sample.pcap"]["packets"][1],
                "bytes": {k: v["bytes"] for k, v in counts.items()},
                "expected": f.label,
                "note": f.note,
            }
        )
    data = {
        "about": "Flows in sample.pcap / sample.pcapng / sample-sll.pcap and the label the IANA registry "
        "should give each (service of the server port on its transport, or the port's status). "
        "bytes are wire bytes [client->server, server->client] per file; IP fragments count "
        "in their datagram's flow. Written by make_captures.py.",
        "registry": "IANA service-names-port-numbers (shared/registry), as of 2025-08-26 or later",
        "idle_timeout_ns": 0,
        "non_flow_frames": {"arp": 1, "icmp": 2},
        "frames": len(raw),
        "flows": expected_flows,
    }
    (out / "expected.json").write_text(json.dumps(data, indent=2) + "\n")
    return data


def main(argv: list[str] | None = None) -> int:
    """Command line entry: write the sample captures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="output folder")
    args = ap.parse_args(argv)
    data = write(args.out)
    print(f"wrote {data['frames']} frames, {len(data['flows'])} flows to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
