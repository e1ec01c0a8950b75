"""Peer programs the pipeline benchmark runs on the same capture (run as separate processes).

    python benchmarks/peers.py dpkt FILE       # per-packet dpkt loop building bidirectional flows
    python benchmarks/peers.py scapy FILE N    # scapy PcapReader loop over the first N packets
    python benchmarks/peers.py nfstream FILE   # NFStream, iterate the flows
Each prints "<flows> flows <packets> packets".
"""

from __future__ import annotations

import sys


def _key(src: bytes, dst: bytes, proto: int, sport: int, dport: int) -> tuple:
    a, b = (src, sport), (dst, dport)
    return (proto, a, b) if a <= b else (proto, b, a)


def run_dpkt(path: str) -> None:
    """The classic dpkt loop: parse every frame in Python and count packets/bytes per flow."""
    import dpkt

    flows: dict[tuple, list[int]] = {}
    n = 0
    with open(path, "rb") as fh:
        for _ts, buf in dpkt.pcap.Reader(fh):
            n += 1
            try:
                eth = dpkt.ethernet.Ethernet(buf)
            except (dpkt.UnpackError, IndexError):
                continue
            ip = eth.data
            if not isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6):
                continue
            l4 = ip.data
            if not isinstance(l4, dpkt.tcp.TCP | dpkt.udp.UDP):
                continue
            src = ip.src
            dst = ip.dst
            k = _key(src, dst, ip.p if isinstance(ip, dpkt.ip.IP) else ip.nxt, l4.sport, l4.dport)
            st = flows.get(k)
            if st is None:
                flows[k] = [1, len(buf)]
            else:
                st[0] += 1
                st[1] += len(buf)
    print(f"{len(flows)} flows {n} packets")


def run_scapy(path: str, limit: int) -> None:
    """scapy's PcapReader loop over the first ``limit`` packets."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.utils import PcapReader

    flows: dict[tuple, list[int]] = {}
    n = 0
    for pkt in PcapReader(path):
        n += 1
        if n > limit:
            n -= 1
            break
        ip = pkt.getlayer(IP) or pkt.getlayer(IPv6)
        l4 = pkt.getlayer(TCP) or pkt.getlayer(UDP)
        if ip is None or l4 is None:
            continue
        k = _key(str(ip.src).encode(), str(ip.dst).encode(), 6 if l4.name == "TCP" else 17, l4.sport, l4.dport)
        st = flows.setdefault(k, [0, 0])
        st[0] += 1
        st[1] += len(pkt)
    print(f"{len(flows)} flows {n} packets")


def run_nfstream(path: str) -> None:
    """NFStream with its defaults, iterating every flow."""
    from nfstream import NFStreamer

    flows = 0
    packets = 0
    for f in NFStreamer(source=path):
        flows += 1
        packets += f.bidirectional_packets
    print(f"{flows} flows {packets} packets")


if __name__ == "__main__":
    tool, file = sys.argv[1], sys.argv[2]
    if tool == "dpkt":
        run_dpkt(file)
    elif tool == "scapy":
        run_scapy(file, int(sys.argv[3]))
    elif tool == "nfstream":
        run_nfstream(file)
    else:
        raise SystemExit(f"unknown peer {tool}")
