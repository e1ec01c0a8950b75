"""Per-direction TCP payload bytes of each conversation equal tshark's sum of ``tcp.len`` (20 real captures).

The conversation (endpoint pair) is the unit: portclass may split one pair into several flows (port
reuse), tshark's ``tcp.len`` is per packet, so both sides are summed per (sender, receiver).
"""

from __future__ import annotations

import subprocess
from collections import defaultdict

import pytest

from classifier.capture.reader import read_batches
from classifier.flows import FlowAggregator, orient
from classifier.report.addr import format_addresses
from tests.shared import shared
from tests.tshark import need_tshark

# Ethernet, pcapng, Linux cooked, BSD loopback, raw IP; retransmissions, missed segments, truncated
# frames whose IP length exceeds the frame (ndpi_match_string_subprotocol__error), a SYN scan.
SELECTION = [
    "443-curl.pcap",
    "afp.pcap",
    "IEC104.pcap",
    "teams.pcap",
    "opera-vpn.pcapng",
    "alexa-app.pcapng",
    "KakaoTalk_chat.pcap",
    "quickplay.pcap",
    "nats.pcap",
    "codm.pcap",
    "dingtalk.pcap",
    "synscan.pcap",
    "ndpi_match_string_subprotocol__error.pcapng",
    "http-lines-split.pcap",
    "smb_frags.pcap",
    "mpeg-dash.pcap",
    "munin.pcap",
    "whois.pcapng",
    "tls_2_reasms.pcapng",
    "raft.pcap",
]


def _ours(path: str) -> dict:
    agg = FlowAggregator(0)
    for b in read_batches([path]):
        agg.add(b)
    fl = orient(agg.result(), None)
    cip = format_addresses(fl.client_hi, fl.client_lo)
    sip = format_addresses(fl.server_hi, fl.server_lo)
    out: dict = defaultdict(int)
    for i in range(len(fl)):
        if fl.proto[i] == 6:
            c, s = (cip[i], int(fl.client_port[i])), (sip[i], int(fl.server_port[i]))
            out[(c, s)] += int(fl.payload_c2s[i])
            out[(s, c)] += int(fl.payload_s2c[i])
    return out


def _tshark(path: str) -> dict:
    fields = ["ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "tcp.srcport", "tcp.dstport", "tcp.len"]
    cmd = [need_tshark(), "-n", "-r", path, "-Y", "tcp && !icmp && !icmpv6", "-T", "fields", "-E", "separator=|"]
    cmd += ["-E", "occurrence=l"] + [x for f in fields for x in ("-e", f)]
    text = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True).stdout
    out: dict = defaultdict(int)
    for line in text.splitlines():
        s4, s6, d4, d6, sp, dp, ln = line.split("|")
        out[((s6 or s4, int(sp)), (d6 or d4, int(dp)))] += int(ln or 0)
    return out


@pytest.mark.parametrize("name", SELECTION)
def test_tcp_payload_bytes_match_tshark(name: str) -> None:
    path = str(shared("captures", "ndpi", "pcap", name))
    ours, theirs = _ours(path), _tshark(path)
    assert theirs and set(theirs) <= set(ours)  # ours also lists directions that sent nothing
    assert sum(theirs.values()) > 0 or name == "synscan.pcap"
    for key in set(ours) | set(theirs):
        assert ours[key] == theirs.get(key, 0), key
