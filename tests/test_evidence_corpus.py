"""The protocol table on real traffic: nDPI's test corpus (../shared/captures/ndpi) against nDPI's own results.

Every signature that matches a packet of the corpus counts as tested on real bytes
(``test_evidence.test_every_signature_has_a_positive_case``); every protocol portclass names
on a joined flow is checked against the protocol nDPI's deep inspection names there
(benchmarks/ndpi_agreement.py), with the issue's targets as floors.
"""

from __future__ import annotations

import functools
import importlib.util
import sys

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.shared import shared


@functools.lru_cache(maxsize=1)
def corpus_signatures() -> frozenset[str]:
    """Names of the signatures that match at least one packet of the shared corpus (empty without it)."""
    from classifier.capture.reader import read_batches
    from classifier.errors import PortclassError
    from classifier.evidence.match import SIG_NAMES, scan

    try:
        pcaps = sorted(shared("captures", "ndpi", "pcap").iterdir())
    except pytest.skip.Exception:
        return frozenset()
    seen: set[int] = set()
    for p in pcaps:
        try:
            for b in read_batches([p]):
                seen.update(np.unique(scan(b).sig).tolist())
        except PortclassError:
            continue
    return frozenset(SIG_NAMES[c] for c in seen if c)


def _module():
    spec = importlib.util.spec_from_file_location("ndpi_agreement_corpus", ROOT / "benchmarks" / "ndpi_agreement.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def result():
    ndpi = shared("captures", "ndpi")
    return _module().compare(ndpi / "pcap", ndpi / "result")


# protocol -> flows nDPI names it on which portclass must name it too (measured, less a margin)
RECALL = {
    "slp": 590, "stun": 55, "dhcp": 13, "tuya": 13, "fix": 12, "spotify": 8, "radius": 20, "tds": 4,
    "openvpn": 4, "enip": 4, "syncthing": 4, "ldp": 3, "ike": 2, "mysql": 2, "nats": 2, "git": 1, "hl7": 1,
    "tns": 1, "smpp": 1, "rtcp": 1, "syslog": 1, "nomachine": 1, "wireguard": 1, "kerberos": 1, "iec104": 1,
    "dlms": 1, "xmpp": 4, "raknet": 5, "tftp": 4, "coap": 4, "dropbox": 5, "oicq": 29, "nfs": 2,
}  # fmt: skip


@pytest.mark.parametrize("proto", sorted(RECALL))
def test_protocol_named_on_real_flows_where_ndpi_names_it(result, proto) -> None:
    assert result.rows[proto].same >= RECALL[proto], result.rows[proto]


BELOW_98 = {"stun", "sunrpc"}
"""Precision below 98 % against nDPI, and why: STUN opens WebRTC flows nDPI names after their later DTLS/SRTP;
portmapper calls (ONC RPC) nDPI names NFS."""


def test_precision_against_ndpi(result) -> None:
    low = {k for k, r in result.rows.items() if r.portclass and 100 * r.precise < 98 * r.portclass}
    assert low <= BELOW_98, {k: result.rows[k] for k in low - BELOW_98}


def test_issue_targets(result) -> None:
    """Known Proto on Non Std Port -> mismatch (>= 90 %); mismatch where nDPI names another protocol (<= 1 %)."""
    ns = result.nonstd - result.nonstd_allowed
    assert ns >= 40 and result.nonstd_mismatch >= 0.90 * ns
    assert result.flagged >= 100 and result.flagged_other <= 0.01 * result.flagged
    assert result.dpi_named >= 0.85 * result.dpi


def test_applications_agree_with_ndpi(result) -> None:
    """Where portclass names an application (TLS server name, carried protocol) and nDPI names one: the same."""
    assert result.app_named >= 250, result.app_named
    assert result.app_agree == result.app_named, result.app_wrong.most_common(5)
    assert result.app_found >= 0.4 * result.app_known, (result.app_found, result.app_known)


def test_wrong_names_of_the_issue_are_gone(result) -> None:
    """LDAP is not Modbus, DNS on 53 is not NetBIOS, NoMachine is not plain TLS, IRC is not FTP."""
    assert result.rows["netbios"].wrong.get("DNS", 0) == 0
    assert result.rows["modbus"].wrong.get("LDAP", 0) == 0
    assert result.rows["tls"].wrong.get("NoMachine", 0) == 0
    assert "IRC" not in result.rows["ftp"].wrong


def test_parse_line_forms(tmp_path) -> None:
    mod = _module()
    p = tmp_path / "x.out"
    p.write_text(
        "\t1\tUDP [2001:db8::1]:5353 <-> [ff02::fb]:5353 [proto: 8/MDNS][IP: 0/Unknown][Confidence: DPI]\n"
        "\t2\tTCP 192.0.2.1:5 -> 198.51.100.2:80 [VLAN: 3][proto: 7/HTTP][Confidence: Match by port]"
        "[Risk: ** Known Proto on Non Std Port **]\n"
        "\t3\tICMP 192.0.2.1:0 <-> 198.51.100.2:0 [proto: 81/ICMP]\n"
    )
    got = [(f.key, f.master, f.app, f.confidence, f.nonstd) for f in mod.parse_ndpi(p)]
    assert got == [
        ((17, ("2001:db8::1", 5353), ("ff02::fb", 5353)), "MDNS", "", "DPI", False),
        ((6, ("192.0.2.1", 5), ("198.51.100.2", 80)), "HTTP", "", "Match by port", True),
    ]


def test_readme_lists_every_protocol_of_the_table() -> None:
    """The README's protocol table is the table's (one row per record, how it is recognised)."""
    from classifier.evidence.table import PROTOCOLS

    text = (ROOT / "README.md").read_text()
    missing = [p.name for p in PROTOCOLS if f"| {p.display} (`{p.name}`) | {p.how.replace('|', '/')} |" not in text]
    assert not missing
