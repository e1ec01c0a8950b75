"""portclass's observed protocol against nDPI's, flow by flow, on nDPI's test corpus (../shared).

The comparison is benchmarks/ndpi_agreement.py's; the floors are what it measured when the
signature tables were written (see its table), less a small margin.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.conftest import ROOT
from tests.shared import shared


def _module():
    spec = importlib.util.spec_from_file_location("ndpi_agreement", ROOT / "benchmarks" / "ndpi_agreement.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def rows():
    ndpi = shared("captures", "ndpi")
    mod = _module()
    return mod, mod.compare(ndpi / "pcap", ndpi / "result")


# protocol -> (at least this many joined flows nDPI names it, agreement floor in %)
FLOORS = {"http": (900, 99.0), "tls": (450, 98.0), "dns": (250, 99.0), "quic": (100, 95.0), "snmp": (15, 100.0)}


@pytest.mark.parametrize("proto", sorted(FLOORS))
def test_agreement_per_protocol(rows, proto) -> None:
    _, r = rows
    least, floor = FLOORS[proto]
    row = r[proto]
    assert row.ndpi >= least
    assert 100 * row.same / row.ndpi >= floor, (proto, row)


def test_overall_agreement_and_precision(rows) -> None:
    mod, r = rows
    t = mod.total(r)
    assert t.ndpi >= 1800
    assert 100 * t.same / t.ndpi >= 98.0
    assert 100 * t.precise / t.portclass >= 98.0  # where portclass names a protocol, nDPI agrees


def test_known_protocol_on_a_port_registered_for_something_else_is_a_mismatch(rows) -> None:
    mod, r = rows
    t = mod.total(r)
    assert t.nonstd >= 50
    assert 100 * t.nonstd_mismatch / t.nonstd >= 95.0
    assert r["tls"].nonstd_mismatch == r["tls"].nonstd
    # and where portclass flags a mismatch, nDPI's deep inspection names the same protocol
    assert t.flagged >= 60
    assert 100 * t.flagged_confirmed / t.flagged >= 90.0


def test_parse_line_forms(tmp_path) -> None:
    mod = _module()
    p = tmp_path / "x.out"
    p.write_text(
        "\t1\tUDP [2001:db8::1]:5353 <-> [ff02::fb]:5353 [proto: 8/MDNS][IP: 0/Unknown][Confidence: DPI]\n"
        "\t2\tTCP 192.0.2.1:5 -> 198.51.100.2:80 [VLAN: 3][proto: 7/HTTP][Confidence: Match by port]\n"
        "\t3\tICMP 192.0.2.1:0 <-> 198.51.100.2:0 [proto: 81/ICMP]\n"
    )
    got = mod.parse_ndpi(p)
    assert got == [
        ((17, ("2001:db8::1", 5353), ("ff02::fb", 5353)), "MDNS", "DPI"),
        ((6, ("192.0.2.1", 5), ("198.51.100.2", 80)), "HTTP", "Match by port"),
    ]
