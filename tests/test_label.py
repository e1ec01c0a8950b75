"""Labels from the server port: names, statuses and the flag vocabulary, on synthetic flows."""

from __future__ import annotations

import numpy as np
import pytest

from classifier.flows import SERVER_RULES, FlowAggregator, make_batch
from classifier.label import flag_list, label_ports
from classifier.pipeline import Analysis, label_flows
from classifier.registry.compile import STATUS_NAMES

SYN, SYNACK = 0x02, 0x12


def _analysis(reg, packets):
    cols = {k: [p[k] for p in packets] for k in packets[0]}
    agg = FlowAggregator(0)
    agg.add(make_batch(**cols))
    flows, labels = label_flows(agg.result(), reg)
    return Analysis(flows, labels, agg.stats, reg)


def _pkt(ts, src, dst, sport, dport, proto=6, flags=0):
    return {"ts_ns": ts, "src": src, "dst": dst, "sport": sport, "dport": dport, "proto": proto, "tcp_flags": flags}


def _label(a, i):
    names = a.registry.service_names
    sid = int(a.labels.service[i])
    return (
        int(a.flows.server_port[i]),
        str(names[sid]) if sid >= 0 else None,
        STATUS_NAMES[int(a.labels.status[i])],
        flag_list(int(a.labels.flags[i])),
        SERVER_RULES[int(a.flows.server_rule[i])],
    )


def test_labels_of_typical_flows(reg):
    a = _analysis(
        reg,
        [
            _pkt(1, "192.0.2.10", "198.51.100.1", 51000, 80, flags=SYN),
            _pkt(2, "198.51.100.1", "192.0.2.10", 80, 51000, flags=SYNACK),
            _pkt(3, "192.0.2.10", "203.0.113.9", 40000, 42000, flags=SYN),
            _pkt(4, "192.0.2.10", "203.0.113.9", 41000, 4370, flags=SYN),
            _pkt(5, "192.0.2.10", "203.0.113.9", 33500, 443, flags=SYN),  # client port 33500: flagged range
            # a reply seen first: the registry decides; the client's 33501 (a flagged range) is ignored
            _pkt(6, "198.51.100.7", "192.0.2.10", 53, 33501, proto=17),
            _pkt(7, "192.0.2.20", "192.0.2.21", 50000, 50001, proto=17),
            _pkt(8, "192.0.2.20", "192.0.2.21", 1234, 0, flags=SYN),
            _pkt(9, "2001:db8::1", "2001:db8::2", 40001, 300, proto=17),  # tacacss is tcp only
            _pkt(10, "192.0.2.30", "192.0.2.31", 40002, 443, proto=33),  # https not registered for dccp
            _pkt(11, "192.0.2.30", "192.0.2.31", 40003, 3868, proto=132),  # diameter over sctp
        ],
    )
    got = {_label(a, i)[0]: _label(a, i)[1:] for i in range(len(a.flows))}
    assert got == {
        80: ("http", "assigned", [], "syn"),
        42000: (None, "unassigned", ["unauthorized-use-known", "unassigned-port"], "syn"),
        4370: ("elpro-tunnel", "assigned", [], "syn"),
        443: ("https", "assigned", [], "syn"),  # the client's ephemeral 33500 is ignored after a SYN
        53: ("domain", "assigned", [], "registry"),
        50001: (None, "dynamic", ["dynamic-port"], "first-packet"),
        0: (None, "reserved", ["reserved-port"], "syn"),
        300: (None, "reserved", ["reserved-port", "transport-not-registered"], "lower-port"),
        3868: ("diameter", "assigned", [], "registry"),
    }
    dccp = int(np.flatnonzero(a.flows.proto == 33)[0])
    assert _label(a, dccp)[1:4] == (None, "unassigned", ["transport-not-registered", "unassigned-port"])


def test_client_port_counts_without_syn(reg):
    """Where the server side is a guess the 'client' may be the real server: its port's note counts."""
    lab = label_ports(
        reg,
        np.array([6, 6]),
        client_port=np.array([33500, 33500]),
        server_port=np.array([443, 443]),
        client_counts=np.array([True, False]),
    )
    assert [flag_list(int(f)) for f in lab.flags] == [["unauthorized-use-known"], []]
    assert lab.severity.tolist() == [5, 0]


def test_non_port_protocol_is_unlabelled(reg):
    lab = label_ports(reg, np.array([47]), np.array([0]), np.array([0]))
    assert lab.transport.tolist() == [-1] and lab.flags.tolist() == [0] and lab.service.tolist() == [-1]


@pytest.mark.parametrize(("port", "transport", "status"), [(22, 6, "assigned"), (4, 6, "unassigned")])
def test_million_flows_one_call(reg, port, transport, status):
    n = 1_000_000
    lab = label_ports(reg, np.full(n, transport), np.full(n, 50000), np.full(n, port))
    assert len(lab) == n and set(lab.status.tolist()) == {STATUS_NAMES.index(status)}
