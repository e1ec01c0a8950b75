"""Link types and protocol-number tables: which header comes next, declared as data.

Every packet carries a *kind*: the header that starts at its cursor (``K.ETHER``, ``K.IPV4``,
...) or, once decoding is over, a terminal outcome (``K.DONE`` ... ``K.SKIP``).  A link type
names the first kind; the tables below map the "next protocol" numbers found in headers
(ethertypes, PPP protocols, BSD address families, IP protocol numbers) to the next kind.
``decode`` turns them into NumPy lookup arrays, so choosing the next header is one gather.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class K(IntEnum):
    """What a packet's cursor points at, or how its decoding ended (terminals first)."""

    DONE = 0  # transport ports found: the packet becomes a row
    NOPORTS = 1  # IP, but the innermost protocol has no ports (ICMP, ESP, OSPF, ...)
    NONIP = 2  # no IP layer (ARP, STP, LLDP, ...)
    MALFORMED = 3  # a header contradicts itself (bad IP version, IHL < 5, ...)
    TRUNCATED = 4  # the capture stops before the ports
    FRAG = 5  # later IP fragment waiting to be attributed to its datagram
    SKIP = 6  # link type not supported
    # headers (non-terminal)
    ETHER = 8
    VLAN = 9
    LLC = 10
    MPLS = 11
    PPPOE = 12
    PPP = 13
    CHDLC = 14
    NULL = 15
    SLL = 16
    SLL2 = 17
    PPI = 18
    RADIOTAP = 19
    WLAN = 20
    IPVER = 21
    IPV4 = 22
    IPV6 = 23
    IPEXT = 24
    L4 = 25
    GRE = 26
    GTP = 27
    VXLAN = 28
    ERSPAN2 = 29
    ERSPAN3 = 30


TERMINALS = 8
"""Kinds below this value are final outcomes."""
N_KINDS = max(K) + 1

LINKTYPES: dict[int, tuple[str, K]] = {
    0: ("NULL", K.NULL),  # BSD loopback, address family in the capturing host's byte order
    1: ("ETHERNET", K.ETHER),
    9: ("PPP", K.PPP),
    12: ("RAW", K.IPVER),  # DLT_RAW on most BSDs
    14: ("RAW", K.IPVER),  # DLT_RAW on OpenBSD
    50: ("PPP_HDLC", K.PPP),
    51: ("PPP_ETHER", K.PPPOE),
    101: ("RAW", K.IPVER),
    104: ("C_HDLC", K.CHDLC),
    105: ("IEEE802_11", K.WLAN),
    108: ("LOOP", K.NULL),  # OpenBSD loopback: address family in network byte order
    113: ("LINUX_SLL", K.SLL),
    127: ("IEEE802_11_RADIOTAP", K.RADIOTAP),
    192: ("PPI", K.PPI),
    228: ("IPV4", K.IPV4),
    229: ("IPV6", K.IPV6),
    276: ("LINUX_SLL2", K.SLL2),
}
"""Supported link types: number -> (LINKTYPE_ name, kind of the first header)."""

OTHER_LINKTYPE_NAMES: dict[int, str] = {
    3: "AX25",
    6: "IEEE802_5",
    7: "ARCNET_BSD",
    8: "SLIP",
    10: "FDDI",
    100: "ATM_RFC1483",
    106: "ATM_CLIP",
    107: "FRELAY",
    119: "PRISM_HEADER",
    122: "IP_OVER_FC",
    123: "SUNATM",
    138: "APPLE_IP_OVER_IEEE1394",
    139: "MTP2_WITH_PHDR",
    140: "MTP2",
    141: "MTP3",
    142: "SCCP",
    143: "DOCSIS",
    144: "LINUX_IRDA",
    163: "IEEE802_11_AVS",
    165: "BACNET_MS_TP",
    166: "PPP_PPPD",
    169: "GPRS_LLC",
    177: "LINUX_LAPD",
    187: "BLUETOOTH_HCI_H4",
    189: "USB_LINUX",
    195: "IEEE802_15_4_WITHFCS",
    201: "BLUETOOTH_HCI_H4_WITH_PHDR",
    215: "IEEE802_15_4_NONASK_PHY",
    220: "USB_LINUX_MMAPPED",
    227: "CAN_SOCKETCAN",
    230: "IEEE802_15_4_NOFCS",
    235: "DVB_CI",
    239: "NFLOG",
    240: "NETANALYZER",
    247: "IPOIB",
    249: "USBPCAP",
    251: "BLUETOOTH_LE_LL",
    253: "NETLINK",
    254: "BLUETOOTH_LINUX_MONITOR",
    256: "BLUETOOTH_LE_LL_WITH_PHDR",
    263: "IEEE802_15_4_TAP",
    266: "NORDIC_BLE",
    274: "ETW",
    283: "ZBOSS_NCP",
}
OTHER_LINKTYPE_NAMES.update({147 + i: f"USER{i}" for i in range(16)})


def linktype_label(lt: int) -> str:
    """The ``"LINKTYPE_NAME (n)"`` key used in ``CaptureStats.skipped_linktype``."""
    name = LINKTYPES[lt][0] if lt in LINKTYPES else OTHER_LINKTYPE_NAMES.get(lt)
    return f"LINKTYPE_{name} ({lt})" if name else f"LINKTYPE {lt}"


ETHERTYPES: dict[int, K] = {
    0x0800: K.IPV4,
    0x86DD: K.IPV6,
    0x8100: K.VLAN,  # 802.1Q
    0x88A8: K.VLAN,  # 802.1ad (QinQ outer tag)
    0x9100: K.VLAN,  # pre-standard QinQ
    0x9200: K.VLAN,
    0x8847: K.MPLS,  # unicast
    0x8848: K.MPLS,  # multicast
    0x8864: K.PPPOE,  # PPPoE session stage
    0x880B: K.PPP,  # PPP (GRE version 1 / PPTP)
    0x6558: K.ETHER,  # transparent Ethernet bridging (GRE, NVGRE)
    0x88BE: K.ERSPAN2,  # ERSPAN type II (in GRE)
    0x22EB: K.ERSPAN3,  # ERSPAN type III (in GRE)
}
"""Ethertype (also SLL/SLL2 protocol, C-HDLC protocol, GRE protocol type) -> next kind; others are non-IP."""

ETHER_MAX_LENGTH = 0x05FF
"""Ethertype field values up to this are IEEE 802.3 lengths: an 802.2 LLC header follows."""

PPP_PROTOCOLS: dict[int, K] = {0x0021: K.IPV4, 0x0057: K.IPV6, 0x0281: K.MPLS, 0x0283: K.MPLS}
"""PPP protocol field -> next kind (control protocols such as LCP or IPCP are non-IP)."""

ADDRESS_FAMILIES: dict[int, K] = {2: K.IPV4, 10: K.IPV6, 24: K.IPV6, 28: K.IPV6, 30: K.IPV6}
"""BSD loopback address family -> next kind (AF_INET6 is 24/28/30 on the BSDs and macOS, 10 on Linux)."""

PORT_TRANSPORTS: frozenset[int] = frozenset({6, 17, 132, 33})
"""IP protocols whose header starts with 16-bit source and destination ports (TCP, UDP, SCTP, DCCP)."""

IP_PROTOCOLS: dict[int, K] = {
    4: K.IPV4,  # IP in IP
    41: K.IPV6,  # 6in4 / 6in6
    47: K.GRE,
    **{p: K.L4 for p in PORT_TRANSPORTS},
}
"""IP protocol -> next kind; every other protocol ends decoding as ``K.NOPORTS``."""

IPV4_EXTENSIONS: frozenset[int] = frozenset({51})
"""Headers walked over after an IPv4 header: AH."""
IPV6_EXTENSIONS: frozenset[int] = frozenset({0, 43, 44, 51, 60})
"""IPv6 extension headers walked over: hop-by-hop, routing, fragment, AH, destination options."""

UDP_TUNNELS: dict[int, K] = {2152: K.GTP, 4789: K.VXLAN}
"""UDP ports whose payload is decapsulated when it checks out (GTP-U G-PDU, VXLAN)."""

IP_PROTOCOL_NAMES: dict[int, str] = {
    0: "HOPOPT",
    1: "ICMP",
    2: "IGMP",
    3: "GGP",
    4: "IPIP",
    8: "EGP",
    9: "IGP",
    27: "RDP",
    41: "IPv6",
    43: "IPv6-Route",
    44: "IPv6-Frag",
    46: "RSVP",
    47: "GRE",
    50: "ESP",
    51: "AH",
    58: "ICMPv6",
    59: "IPv6-NoNxt",
    60: "IPv6-Opts",
    88: "EIGRP",
    89: "OSPF",
    94: "IPIP-KA9Q",
    97: "ETHERIP",
    98: "ENCAP",
    103: "PIM",
    108: "IPComp",
    112: "VRRP",
    115: "L2TP",
    124: "ISIS",
    135: "Mobility",
    136: "UDPLite",
    137: "MPLS-in-IP",
    139: "HIP",
    140: "Shim6",
    143: "Ethernet",
}
"""IP protocol names used as keys of ``CaptureStats.no_ports``."""


def ip_protocol_name(p: int) -> str:
    """Name of an IP protocol number for ``CaptureStats.no_ports`` (``"IP proto 253"`` when unnamed)."""
    return IP_PROTOCOL_NAMES.get(p, f"IP proto {p}")


def lut(table: dict[int, K], size: int, default: K) -> np.ndarray:
    """A uint8 lookup array of ``size`` entries from a ``number -> kind`` table."""
    out = np.full(size, int(default), np.uint8)
    for key, kind in table.items():
        if key < size:
            out[key] = int(kind)
    return out
