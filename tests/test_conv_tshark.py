"""Flows, packets and bytes equal tshark's conversation tables (`-z conv,tcp -z conv,udp`), timeouts off.

tshark prints bytes rounded to kB above 10 kB, so frames are compared exactly with the conversation
table and bytes exactly with the sum of `frame.len` over tshark's own per-packet fields.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from classifier.pipeline import analyze
from classifier.report.addr import format_addresses
from tests.shared import shared
from tests.tshark import conversations, exact_bytes, need_tshark

# A selection across link types and formats (Ethernet, VLAN, Linux cooked, raw IP, NULL/loopback,
# PPP, pcapng with several interfaces, IPv6, fragments). Chosen so each capture's tshark dissection
# yields the same transport endpoints as a port-level reader; see DIFFERENCES for the others.
SELECTION = [
    "443-curl.pcap",  # Ethernet
    "afp.pcap",
    "IEC104.pcap",
    "dns_long_domainname.pcap",
    "quic.pcap",
    "teams.pcap",
    "opera-vpn.pcapng",  # pcapng
    "alexa-app.pcapng",
    "KakaoTalk_chat.pcap",  # Linux cooked (SLL)
    "quickplay.pcap",
    "nats.pcap",  # BSD loopback (NULL)
    "openvpn-tlscrypt.pcap",
    "codm.pcap",  # raw IP
    "dingtalk.pcap",
]


def _ours(path):
    from classifier.registry.sources import compile_file

    reg = compile_file(shared("registry", "service-names-port-numbers.xml"))
    a = analyze([path], reg, idle_timeout_s=0)
    fl = a.flows
    cip = format_addresses(fl.client_hi, fl.client_lo)
    sip = format_addresses(fl.server_hi, fl.server_lo)
    agg: dict = defaultdict(lambda: {"frames": defaultdict(int), "bytes": defaultdict(int), "flows": 0})
    names = {6: "tcp", 17: "udp"}
    for i in range(len(fl)):
        t = names.get(int(fl.proto[i]))
        if t is None:
            continue
        c, s = (cip[i], int(fl.client_port[i])), (sip[i], int(fl.server_port[i]))
        row = agg[(t, frozenset([c, s]))]
        row["frames"][c] += int(fl.packets_c2s[i])
        row["frames"][s] += int(fl.packets_s2c[i])
        row["bytes"][c] += int(fl.bytes_c2s[i])
        row["bytes"][s] += int(fl.bytes_s2c[i])
        row["flows"] += 1
    return agg


@pytest.mark.parametrize("name", SELECTION)
def test_flows_match_tshark(name):
    need_tshark()
    path = shared("captures", "ndpi", "pcap", name)
    ours = _ours(path)
    conv = conversations(path)
    exact = exact_bytes(path)
    assert set(ours) == set(conv), set(ours) ^ set(conv)
    for key, c in conv.items():
        o = ours[key]
        for ep in key[1]:
            assert o["frames"][ep] == c["frames"][ep], (key, ep)
            assert o["bytes"][ep] == exact[key]["bytes"][ep], (key, ep)
            assert abs(o["bytes"][ep] - c["bytes"][ep]) <= c["unit"][ep] // 2 + c["rows"] * c["unit"][ep] // 2


def test_fragments_difference_class():
    """Difference class: IP fragments.

    portclass counts every fragment in its flow, attributing a later fragment by (addresses, protocol,
    IP id) to the ports of the nearest first fragment before it. tshark reassembles first and shows a
    TCP/UDP layer only in the one frame that completes a datagram. This file is garbage on purpose:
    1252 frames share IP id 0xa0, with four first fragments (frames 1, 314, 627, 940) each followed
    by 312 overlapping later ones. portclass reports four flows of 313 frames, named by the four first
    fragments' TCP headers; tshark "completes" two datagrams and reports one 42-byte frame for each,
    with the ports of the last two first fragments.
    """
    need_tshark()
    path = shared("captures", "ndpi", "pcap", "ip_fragmented_garbage.pcap")
    theirs = {k: dict(v["frames"]) for k, v in conversations(path).items()}
    pairs = [
        (("10.0.0.2", 24102), ("10.128.0.2", 10792)),
        (("10.0.0.2", 16417), ("10.128.0.2", 16419)),
        (("10.0.0.2", 9253), ("10.128.0.2", 24102)),
        (("10.0.0.2", 18730), ("10.128.0.2", 20304)),
    ]
    assert theirs == {("tcp", frozenset(p)): {p[0]: 1, p[1]: 0} for p in pairs[2:]}
    ours = {k: dict(v["frames"]) for k, v in _ours(path).items()}
    assert ours == {("tcp", frozenset(p)): {p[0]: 313, p[1]: 0} for p in pairs}
