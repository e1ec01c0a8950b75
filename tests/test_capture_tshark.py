"""The capture stage against tshark, packet by packet, on real captures and on built ones.

tshark (``-n``, IP and IPv6 reassembly off) is an independent decoder: for every packet we
take its innermost TCP/UDP/SCTP/DCCP layer and the IP layer just before it, exactly as
``tshark -z conv,tcp`` picks the conversation of an IP-in-IP or GRE packet.  Our row for the
same frame number must have the same protocol, ports, addresses, timestamp, frame length and
TCP flags (and TCP payload length when the frame is not cut by the snap length), and the
number of rows must equal tshark's number of packets with ports, up to these documented
difference classes:

* ``icmp-quote``: ICMP/ICMPv6 errors quote the header of the packet that caused them; tshark
  dissects the quoted TCP/UDP header as a layer of the ICMP packet.  For us the packet is ICMP
  (counted in ``stats.no_ports``): it is not part of the quoted flow.
* ``later-fragment``: IP fragments after the first carry no transport header, so tshark (with
  reassembly off) shows no ports; we give them their datagram's ports (``frag == FRAG_LATER``).
  With reassembly on, tshark would show the ports on the last fragment instead.  (Inside a UDP
  tunnel, tshark would fall back to the outer UDP ports; we attribute the inner fragment.)

Link types absent from the corpus (PPP, PPP_HDLC, C_HDLC, SLL2, LOOP, raw 12/14, IPv6 229,
PPI, 802.11, radiotap) and encapsulations it lacks (QinQ, MPLS, PPPoE, 802.3 SNAP, VXLAN, GRE,
ERSPAN, GTP-U extension headers, IPv6 extension headers, AH, DCCP, IPv6 fragments, snap-length
cuts, multi-interface pcapng with nanosecond and binary timestamps, SPB) are built here with
scapy and compared the same way.
"""

from __future__ import annotations

import ipaddress
import shutil
import struct
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from classifier.capture.columns import FRAG_LATER, CaptureStats
from classifier.capture.reader import read_batches
from classifier.capture.writer import Frame, write_pcap, write_pcapng
from tests.shared import shared

TSHARK = shutil.which("tshark")
pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")

FIELDS = [
    "frame.number",
    "frame.protocols",
    "frame.len",
    "frame.cap_len",
    "frame.time_epoch",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.flags",
    "tcp.len",
    "udp.srcport",
    "udp.dstport",
    "sctp.srcport",
    "sctp.dstport",
    "dccp.srcport",
    "dccp.dstport",
]
TRANSPORTS = {"tcp": 6, "udp": 17, "sctp": 132, "dccp": 33}

CORPUS = {
    "443-curl.pcap": "classic pcap, Ethernet",
    "nfsv2.pcap": "big-endian pcap, RPC over UDP",
    "sctp.cap": "big-endian pcap, SCTP",
    "anydesk.pcapng": "pcapng, three interfaces, microsecond and nanosecond if_tsresol",
    "sites.pcapng": "pcapng, 22 interfaces, IPv4 and IPv6",
    "KakaoTalk_chat.pcap": "Linux cooked capture (SLL, 113)",
    "tls_heur__vmess-tcp.pcapng": "pcapng SLL, IPv6",
    "ocs.pcap": "raw IP (101)",
    "pfcp.pcapng": "pcapng raw IP (101)",
    "nats.pcap": "BSD loopback (NULL, 0)",
    "openwire.pcapng": "pcapng NULL, IPv6",
    "ossfuzz_seed_fake_traces_4.pcapng": "LINKTYPE_IPV4 (228), a pcap despite its name",
    "kerberos_fuzz.pcapng": "pcapng LINKTYPE_IPV4 (228)",
    "quic-fuzz-overflow.pcapng": "228 with an IP first fragment",
    "false_positives.pcapng": "802.1Q stacked VLANs, GTP-U tunnels (decapsulated)",
    "zoom.pcap": "VLAN, GTP-U, ICMP errors quoting UDP",
    "gre.pcapng": "GRE version 1 (PPTP) carrying PPP carrying IPv4/UDP, nine interfaces",
    "6in4tunnel.pcap": "IPv6 in IPv4 (decapsulated)",
    "6in6tunnel.pcap": "IPv6 in IPv6 (decapsulated)",
    "teredo.pcap": "Teredo: UDP 3544 whose inner IPv6 carries no ports",
    "ip_fragmented_garbage.pcap": "IPv4 fragments (later fragments attributed)",
    "ah.pcapng": "IPv4 AH then ICMP",
    "esp.pcapng": "ESP (no ports)",
    "android.pcap": "IPv6 hop-by-hop options",
    "fuzz-2020-02-16-11740.pcap": "fuzzed: malformed headers, truncated packets",
    "whatsapp_login_call.pcap": "ICMP errors quoting UDP",
    "teams.pcap": "802.3 LLC frames (STP)",
}


# ---- the two decoders ---------------------------------------------------------------------------
def tshark_packets(path: Path) -> dict[int, dict]:
    """frame number -> what tshark says about the packet's innermost transport layer."""
    cmd = [TSHARK, "-n", "-r", str(path), "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE"]
    cmd += ["-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    packets = {}
    for line in out.splitlines():
        v = dict(zip(FIELDS, line.split("\t"), strict=True))
        layers = v["frame.protocols"].split(":")
        rec: dict = {
            "protocols": v["frame.protocols"],
            "len": int(v["frame.len"]),
            "cut": v["frame.len"] != v["frame.cap_len"],
            # simple packet blocks have no timestamp: tshark prints none, we say 0
            "ts": int(Decimal(v["frame.time_epoch"]) * 1_000_000_000) if v["frame.time_epoch"] else 0,
        }
        ti = max((i for i, name in enumerate(layers) if name in TRANSPORTS), default=None)
        if ti is not None:
            t = layers[ti]
            occ = layers[:ti].count(t)
            sports = v[f"{t}.srcport"].split(",")
            ii = max((i for i, name in enumerate(layers[:ti]) if name in ("ip", "ipv6")), default=None)
            if ii is not None and occ < len(sports) and sports[occ]:
                ip = layers[ii]
                iocc = layers[:ii].count(ip)
                rec.update(
                    proto=TRANSPORTS[t],
                    sport=int(sports[occ]),
                    dport=int(v[f"{t}.dstport"].split(",")[occ]),
                    src=v[f"{ip}.src"].split(",")[iocc],
                    dst=v[f"{ip}.dst"].split(",")[iocc],
                    icmp_quote=any(name in ("icmp", "icmpv6") for name in layers[:ti]),
                )
                if t == "tcp":
                    flags = v["tcp.flags"].split(",")
                    # no flags field: TCP cut before its window field, or a bogus header length; we say 0
                    rec["flags"] = int(flags[occ], 16) & 0xFF if occ < len(flags) and flags[occ] else 0
                    lens = v["tcp.len"].split(",")
                    rec["tcp_len"] = int(lens[occ]) if occ < len(lens) and lens[occ] else None
        packets[int(v["frame.number"])] = rec
    return packets


def _addr(ver: int, hi: int, lo: int) -> str:
    if ver == 4:
        return str(ipaddress.IPv4Address(lo & 0xFFFF_FFFF))
    return str(ipaddress.IPv6Address((hi << 64) | lo))


def our_packets(path: Path) -> tuple[dict[int, dict], CaptureStats]:
    """frame number -> our row, and the merged stats."""
    stats = CaptureStats()
    rows: dict[int, dict] = {}
    for b in read_batches([path], lane_bytes=2048):
        stats.merge(b.stats)
        for i in range(len(b)):
            ver = int(b.ip_version[i])
            rows[int(b.pkt_index[i])] = {
                "proto": int(b.proto[i]),
                "sport": int(b.sport[i]),
                "dport": int(b.dport[i]),
                "src": _addr(ver, int(b.src_hi[i]), int(b.src_lo[i])),
                "dst": _addr(ver, int(b.dst_hi[i]), int(b.dst_lo[i])),
                "flags": int(b.tcp_flags[i]),
                "frag": int(b.frag[i]),
                "len": int(b.wire_len[i]),
                "ts": int(b.ts_ns[i]),
                "payload_len": int(b.payload_len[i]),
                "payload_off": int(b.payload_off[i]),
            }
    return rows, stats


def compare(path: Path) -> tuple[dict[str, int], list[str], CaptureStats]:
    """Difference classes with counts, unexplained differences, and our stats."""
    theirs = tshark_packets(path)
    ours, stats = our_packets(path)
    assert set(ours) <= set(theirs), "rows for frames tshark does not have"
    classes: dict[str, int] = {}
    problems: list[str] = []
    for n, t in theirs.items():
        o = ours.get(n)
        if "proto" in t and t["icmp_quote"]:
            cls = "icmp-quote" if o is None else "icmp-quote-row"
        elif "proto" not in t:
            cls = (
                "later-fragment"
                if o is not None and o["frag"] == FRAG_LATER
                else ("no-ports" if o is None else "ours-only")
            )
        elif o is None:
            cls = "tshark-only"
        else:
            keys = ["proto", "sport", "dport", "src", "dst", "len", "ts"] + (["flags"] if t["proto"] == 6 else [])
            diff = [k for k in keys if o[k] != t[k]]
            if (
                t.get("tcp_len") is not None
                and not t["cut"]
                and o["payload_off"] >= 0
                and o["payload_len"] != t["tcp_len"]
            ):
                diff.append("payload_len")
            cls = "same" if not diff else "differs"
            if diff:
                problems.append(f"frame {n} ({t['protocols']}): {diff}: tshark {t} ours {o}")
        classes[cls] = classes.get(cls, 0) + 1
        if cls in ("icmp-quote-row", "ours-only", "tshark-only"):
            problems.append(f"frame {n} ({t['protocols']}): {cls}: tshark {t} ours {o}")
    tshark_with_ports = sum(1 for t in theirs.values() if "proto" in t)
    expected_rows = tshark_with_ports - classes.get("icmp-quote", 0) + classes.get("later-fragment", 0)
    if len(ours) != expected_rows:
        problems.append(f"{len(ours)} rows, expected {expected_rows}")
    if stats.packets != len(theirs):
        problems.append(f"{stats.packets} packets read, tshark read {len(theirs)}")
    return classes, problems, stats


def _check(path: Path) -> tuple[dict[str, int], CaptureStats]:
    classes, problems, stats = compare(path)
    assert not problems, "\n".join(problems[:20])
    quoted = classes.get("icmp-quote", 0)
    assert quoted <= stats.no_ports["ICMP"] + stats.no_ports["ICMPv6"]
    return classes, stats


@pytest.mark.parametrize("name", sorted(CORPUS), ids=sorted(CORPUS))
def test_corpus_matches_tshark(name: str) -> None:
    path = shared("captures", "ndpi", "pcap", name)
    classes, stats = _check(path)
    assert classes.get("same", 0) > 0 or name in ("esp.pcapng", "teredo.pcap")


def test_corpus_difference_classes() -> None:
    """The documented classes do occur in the corpus (so the comparison above really exercises them)."""
    frag, _, _ = compare(shared("captures", "ndpi", "pcap", "ip_fragmented_garbage.pcap"))
    assert frag.get("later-fragment") == 1248
    quote, _, stats = compare(shared("captures", "ndpi", "pcap", "whatsapp_login_call.pcap"))
    assert quote.get("icmp-quote") == 10 and stats.no_ports["ICMP"] >= 10
    tunnel, _, _ = compare(shared("captures", "ndpi", "pcap", "6in4tunnel.pcap"))
    assert tunnel.get("same", 0) >= 77  # inner IPv6 TCP/UDP, not the outer IPv4


# ---- built captures for what the corpus lacks ---------------------------------------------------
def _scapy():  # noqa: ANN202 - the scapy.all module
    """scapy, imported only for the built captures (their tests skip without it)."""
    return pytest.importorskip("scapy.all")


ETH_ADDRS = bytes.fromhex("00112233445566778899aabb")


def _eth(ethertype: int, payload: bytes) -> bytes:
    return ETH_ADDRS + struct.pack(">H", ethertype) + payload


def _ip4(sport: int, dport: int, udp: bool = False, src: str = "10.0.0.1", dst: str = "10.0.0.2") -> bytes:
    s = _scapy()
    t = s.UDP(sport=sport, dport=dport) if udp else s.TCP(sport=sport, dport=dport, flags="PA")
    return bytes(s.IP(src=src, dst=dst) / t / s.Raw(b"hello"))


def _ip6(sport: int, dport: int, udp: bool = False) -> bytes:
    s = _scapy()
    t = s.UDP(sport=sport, dport=dport) if udp else s.TCP(sport=sport, dport=dport, flags="S")
    return bytes(s.IPv6(src="2001:db8::1", dst="2001:db8::2") / t / s.Raw(b"x" * 10))


def _sll(proto: int, payload: bytes) -> bytes:
    return struct.pack(">HHH8sH", 0, 1, 6, b"\x00\x11\x22\x33\x44\x55\x00\x00", proto) + payload


def _sll2(proto: int, payload: bytes) -> bytes:
    return struct.pack(">HHIHBB8s", proto, 0, 2, 1, 0, 6, b"\x00\x11\x22\x33\x44\x55\x00\x00") + payload


def _wlan(payload: bytes, qos: bool = False) -> bytes:
    hdr = bytes([0x88 if qos else 0x08, 0x01]) + b"\x00\x00" + b"\x00\x11\x22\x33\x44\x55" * 3 + b"\x00\x00"
    return hdr + (b"\x00\x00" if qos else b"") + b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + payload


def _ether_encapsulations() -> list[bytes]:
    s = _scapy()
    v4 = [_ip4(1000 + i, 80 + i) for i in range(3)]
    v6 = _ip6(2000, 443)
    outer = s.IP(src="1.1.1.1", dst="2.2.2.2")
    gtp_inner = v4[2]
    gtp = b"\x34\xff" + struct.pack(">H", len(gtp_inner) + 8) + b"\x00\x00\x00\x01\x00\x00\x00\x85"
    gtp += b"\x01\x00\x01\x00" + gtp_inner  # one extension header (PDU session container)
    icmp = bytes(s.IP(src="7.7.7.7", dst="8.8.8.8") / s.ICMP())
    gtp_icmp = b"\x30\xff" + struct.pack(">H", len(icmp)) + b"\x00\x00\x00\x02" + icmp
    vxlan_arp = b"\x08" + b"\0" * 7 + _eth(0x0806, b"\0" * 28)
    erspan = b"\x10\x00\x88\xbe" + b"\x00\x00\x00\x01" + b"\x10\x00\x00\x01\x00\x00\x00\x00"
    ah4 = s.AH(nh=6, payloadlen=4, spi=1, seq=1, icv=b"\x00" * 12)
    ah6 = s.AH(nh=17, payloadlen=4, spi=1, seq=1, icv=b"\x00" * 12)
    dccp = struct.pack(">HHBBH", 5000, 6000, 4, 0, 0) + b"\x00" * 12
    v6ext = s.IPv6(src="::1", dst="::2") / s.IPv6ExtHdrHopByHop() / s.IPv6ExtHdrDestOpt() / s.IPv6ExtHdrRouting()
    return [
        _eth(0x88A8, b"\x00\x64\x81\x00" + b"\x00\x0a\x08\x00" + v4[0]),  # 802.1ad + 802.1Q
        _eth(0x8100, b"\x00\x0a\x86\xdd" + v6),
        _eth(0x8847, b"\x00\x01\x00\x40" + b"\x00\x02\x01\x40" + v4[1]),  # two MPLS labels
        _eth(0x8864, b"\x11\x00\x00\x01" + struct.pack(">H", len(v4[2]) + 2) + b"\x00\x21" + v4[2]),  # PPPoE
        ETH_ADDRS + struct.pack(">H", len(v4[0]) + 8) + b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + v4[0],  # 802.3 SNAP
        ETH_ADDRS + struct.pack(">H", 38) + b"\x42\x42\x03" + b"\x00" * 35,  # 802.3 STP: non-IP
        _eth(0x0800, bytes(outer / s.UDP(sport=4000, dport=4789) / s.Raw(b"\x08" + b"\0" * 7 + _eth(0x800, v4[1])))),
        _eth(0x0800, bytes(outer / s.GRE(key_present=1, key=5, seqnum_present=1, proto=0x0800) / s.Raw(v4[2]))),
        _eth(0x0800, bytes(s.IP(src="1.1.1.1", dst="2.2.2.2", proto=47) / s.Raw(b"\0\0\x65\x58" + _eth(0x800, v4[0])))),
        _eth(0x0800, bytes(s.IP(src="1.1.1.1", dst="2.2.2.2", proto=47) / s.Raw(erspan + _eth(0x800, v4[1])))),
        _eth(0x0800, bytes(outer / s.UDP(sport=2152, dport=2152) / s.Raw(gtp))),  # GTP-U: decapsulated
        _eth(0x0800, bytes(outer / s.UDP(sport=2152, dport=2152) / s.Raw(b"\x32\x01\x00\x04" + b"\0" * 8))),  # echo
        _eth(0x0800, bytes(outer / s.UDP(sport=2152, dport=2152) / s.Raw(gtp_icmp))),  # inner ICMP: outer row
        _eth(0x0800, bytes(outer / s.UDP(sport=4001, dport=4789) / s.Raw(vxlan_arp))),  # inner ARP: outer row
        _eth(0x0800, bytes(s.IP(src="1.1.1.1", dst="2.2.2.2", options=[s.IPOption_RR()]) / s.TCP(sport=1, dport=2))),
        _eth(0x0800, bytes(outer / s.SCTP(sport=36412, dport=36412))),
        _eth(0x0800, bytes(s.IP(src="1.1.1.1", dst="2.2.2.2", proto=33) / s.Raw(dccp))),
        _eth(0x0800, bytes(outer / ah4 / s.TCP(sport=7, dport=8))),
        _eth(0x86DD, bytes(v6ext / s.UDP(sport=9, dport=10))),
        _eth(0x86DD, bytes(s.IPv6(src="::1", dst="::2") / ah6 / s.UDP(sport=11, dport=12))),
        _eth(0x0800, bytes(outer / s.IPv6(src="::3", dst="::4") / s.TCP(sport=13, dport=14))),  # 6in4
        _eth(
            0x86DD, bytes(s.IPv6(src="::3", dst="::4") / s.IP(src="3.3.3.3", dst="4.4.4.4") / s.UDP(sport=15, dport=16))
        ),
        _eth(
            0x0800,
            bytes(outer / s.ICMP(type=3, code=3) / s.IP(src="2.2.2.2", dst="1.1.1.1") / s.UDP(sport=17, dport=18)),
        ),
    ]


def _fragments() -> list[bytes]:
    s = _scapy()
    big = s.IP(src="10.1.1.1", dst="10.1.1.2", id=777) / s.UDP(sport=4444, dport=5555) / s.Raw(b"A" * 3000)
    big2 = s.IP(src="10.1.1.1", dst="10.1.1.2", id=778) / s.UDP(sport=4445, dport=5556) / s.Raw(b"B" * 2000)
    big6 = s.IPv6(src="2001:db8::a", dst="2001:db8::b") / s.IPv6ExtHdrFragment(id=0x1234)
    big6 = big6 / s.UDP(sport=6666, dport=7777) / s.Raw(b"C" * 3000)
    frames = [_eth(0x0800, bytes(f)) for f in s.fragment(big, fragsize=1000)]
    frames += [_eth(0x0800, bytes(f)) for f in s.fragment(big2, fragsize=1000)][::-1]  # out of order
    frames += [_eth(0x86DD, bytes(f)) for f in s.fragment6(big6, 1280)]
    frames.append(_eth(0x0800, bytes(s.IP(src="9.9.9.9", dst="8.8.8.8", id=99, frag=100, proto=17) / s.Raw(b"z" * 20))))
    frames.append(_eth(0x0800, bytes(s.IP(src="9.9.9.9", dst="8.8.8.8", id=98, frag=10, proto=1) / s.Raw(b"z" * 20))))
    return frames


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Captures for link types and encapsulations the corpus does not have."""
    _scapy()
    d = tmp_path_factory.mktemp("built")
    v4 = [_ip4(1000 + i, 80 + i) for i in range(3)] + [_ip4(53, 5353, udp=True)]
    v6 = [_ip6(2000 + i, 443) for i in range(2)] + [_ip6(5353, 53, udp=True)]
    out: dict[str, Path] = {}

    def pcap(name: str, linktype: int, frames: list, **kw: object) -> None:
        out[name] = d / f"{name}.pcap"
        write_pcap(out[name], linktype, frames, **kw)  # type: ignore[arg-type]

    lcp = b"\xff\x03\xc0\x21\x01\x01\x00\x04"
    pcap(
        "ppp",
        9,
        [b"\xff\x03\x00\x21" + p for p in v4] + [b"\xff\x03\x00\x57" + p for p in v6] + [b"\x00\x21" + v4[0], lcp],
    )
    pcap(
        "ppp_hdlc",
        50,
        [b"\xff\x03\x00\x21" + p for p in v4] + [b"\x0f\x00\x08\x00" + v4[1], b"\xff\x03\x00\x57" + v6[0]],
    )
    pcap("c_hdlc", 104, [b"\x0f\x00\x08\x00" + p for p in v4] + [b"\x8f\x00\x86\xdd" + v6[0]])
    pcap("sll2", 276, [_sll2(0x0800, p) for p in v4] + [_sll2(0x86DD, p) for p in v6] + [_sll2(0x0806, b"\0" * 28)])
    pcap("sll_vlan", 113, [_sll(0x8100, b"\x00\x05\x08\x00" + v4[0]), _sll(0x0800, v4[1])])
    pcap("loop", 108, [struct.pack(">I", 2) + p for p in v4] + [struct.pack(">I", 24) + p for p in v6])
    null = [struct.pack("<I", 2) + v4[0], struct.pack(">I", 2) + v4[1]]
    null += [struct.pack("<I", af) + p for af, p in zip((30, 28, 24), v6, strict=True)]
    pcap("null_both_orders", 0, null)
    pcap("raw12", 12, v4 + v6)
    pcap("raw14", 14, v4 + v6)
    pcap("ipv4_228", 228, v4)
    pcap("ipv6_229", 229, v6)
    ppi = [struct.pack("<BBHI", 0, 0, 8, 1) + _eth(0x0800, v4[0])]
    ppi += [struct.pack("<BBHI", 0, 0, 8, 105) + _wlan(v4[1]), struct.pack("<BBHI", 0, 0, 8, 105) + _wlan(v4[2], True)]
    pcap("ppi", 192, ppi)
    pcap("ieee802_11", 105, [_wlan(v4[0]), _wlan(v4[1], qos=True), bytes([0x80, 0]) + b"\0" * 30])
    pcap("radiotap", 127, [struct.pack("<BBHI", 0, 0, 8, 0) + _wlan(p) for p in v4[:2]])
    pcap("ether_encapsulations", 1, _ether_encapsulations())
    pcap("fragments", 1, _fragments())
    full = _eth(0x0800, v4[0])
    cuts = (10, 14, 20, 34, 36, 38, 40, 47, 48, 54)
    pcap("snaplen_cuts", 1, [Frame(full[:n], 1_600_000_000_000_000_000 + n, len(full)) for n in cuts])
    out["multi_interface"] = d / "multi_interface.pcapng"
    ts = 1_600_000_000_000_000_000
    write_pcapng(
        out["multi_interface"],
        [(1, 6), (101, 9), (113, 0x80 | 20), (147, 6)],
        [
            Frame(_eth(0x0800, v4[0]), ts + 123_456_000, iface=0),
            Frame(v6[0], ts + 1_123_456_789, iface=1),
            Frame(_sll(0x0800, v4[1]), ts + 2_500_000_000, iface=2),
            Frame(b"\x01\x02\x03", ts + 3_000_000_000, iface=3),
            Frame(_eth(0x86DD, v6[1]), ts + 4_000_001_000, iface=0),
        ],
    )
    out["big_endian"] = d / "big_endian.pcapng"
    write_pcapng(
        out["big_endian"],
        [(1, 6), (101, 9)],
        [Frame(_eth(0x800, v4[0]), ts), Frame(v6[0], ts + 7, iface=1)],
        byteorder=">",
    )
    out["simple_blocks"] = d / "simple_blocks.pcapng"
    write_pcapng(out["simple_blocks"], [(1, 6)], [_eth(0x0800, q) for q in v4], simple=True)
    return out


BUILT = [
    "ppp",
    "ppp_hdlc",
    "c_hdlc",
    "sll2",
    "sll_vlan",
    "loop",
    "null_both_orders",
    "raw12",
    "raw14",
    "ipv4_228",
    "ipv6_229",
    "ppi",
    "ieee802_11",
    "radiotap",
    "ether_encapsulations",
    "fragments",
    "snaplen_cuts",
    "multi_interface",
    "big_endian",
    "simple_blocks",
]


@pytest.mark.parametrize("name", BUILT)
def test_built_matches_tshark(built: dict[str, Path], name: str) -> None:
    classes, stats = _check(built[name])
    assert classes.get("same", 0) >= 2
    assert stats.malformed == 0


def test_built_outcomes(built: dict[str, Path]) -> None:
    """What the built captures must produce beyond agreeing with tshark."""
    _, s = our_packets(built["fragments"])
    assert s.fragments_unattributed == 1 and s.no_ports["ICMP"] == 1
    rows, _ = our_packets(built["fragments"])
    assert sum(r["frag"] == FRAG_LATER for r in rows.values()) == 7  # incl. one sent before its first fragment
    _, s = our_packets(built["multi_interface"])
    assert s.skipped_linktype == {"LINKTYPE_USER0 (147)": 1}
    assert any("LINKTYPE_USER0 (147) is not supported" in w for w in s.warnings)
    _, s = our_packets(built["snaplen_cuts"])
    assert s.truncated == 5  # cut before the ports: 10 (Ethernet), 14, 20, 34 (IPv4), 36 (half the ports)
    rows, s = our_packets(built["ether_encapsulations"])
    assert s.non_ip == 1 and s.no_ports["ICMP"] == 1
    tunnels = [(r["sport"], r["dport"]) for r in rows.values() if r["src"] == "1.1.1.1"]
    assert (2152, 2152) in tunnels and (4001, 4789) in tunnels  # inner packets without ports
    _, s = our_packets(built["ieee802_11"])
    assert s.non_ip == 1  # the beacon
