"""Verdicts on the project's own captures: the deliberate mismatches are flagged with both sides said,
the honest flows are consistent, and every report carries the evidence (and tshark's opinion on request)."""

from __future__ import annotations

import csv
import io
import json
import shutil

import pytest

from tests.conftest import ROOT, run_cli
from tests.shared import shared

EXPECTED = json.loads((ROOT / "captures" / "expected.json").read_text())
SAMPLES = ["sample.pcap", "sample.pcapng", "sample-sll.pcap"]
# flow name -> (verdict, network.protocol, evidence signature, direction, packet number in the capture)
VERDICTS: dict[str, tuple[str, str | None, str | None, str | None, int | None]] = {
    "http": ("consistent", "http", "http-request", "client-to-server", 4),
    "http-port-reuse": ("consistent", "http", "http-request", "client-to-server", 14),
    "tls": ("consistent", "tls", "tls-client-hello", "client-to-server", 23),
    "dns": ("consistent", "dns", "dns", "client-to-server", 29),
    "ssh": ("consistent", "ssh", "ssh-banner", "server-to-client", 34),
    "unassigned-4": ("unverified", None, None, None, None),
    "reserved-230": ("unverified", None, None, None, None),
    "unauthorized-42000": ("unverified", None, None, None, None),
    "unauthorized-44515": ("unverified", None, None, None, None),
    "p2p-dynamic": ("unverified", None, None, None, None),
    "ipv6-smtp": ("consistent", "smtp", "smtp-greeting", "server-to-client", 67),
    "vlan-ntp": ("consistent", "ntp", "ntp", "client-to-server", 75),
    "qinq-http-alt": ("consistent", "http", "http-request", "client-to-server", 80),
    "sctp-diameter": ("unverified", None, None, None, None),
    "ipv4-fragmented-dns": ("consistent", "dns", "dns", "client-to-server", 89),
    "ipv6-fragmented-syslog": ("consistent", "syslog", "syslog", "client-to-server", 92),
    "mismatch-ssh-on-443": ("mismatch", "ssh", "ssh-banner", "server-to-client", 97),
    "mismatch-http-on-3306": ("mismatch", "http", "http-request", "client-to-server", 105),
    "mismatch-dns-on-40000": ("mismatch", "dns", "dns", "client-to-server", 110),
}
NOTES = {
    "mismatch-ssh-on-443": "port 443/tcp registered for https; payload is SSH",
    "mismatch-http-on-3306": "port 3306/tcp registered for mysql; payload is HTTP",
    "mismatch-dns-on-40000": "port 40000/udp registered for safetynetp; payload is DNS",
}


def xml() -> str:
    return str(shared("registry", "service-names-port-numbers.xml"))


def find(doc_flows: list[dict], f: dict) -> dict:
    hits = [
        r
        for r in doc_flows
        if r["source"]["ip"] == f["client"]
        and r["source"]["port"] == f["client_port"]
        and r["destination"]["ip"] == f["server"]
        and r["destination"]["port"] == f["server_port"]
        and r["network"]["transport"] == f["transport"]
    ]
    hits.sort(key=lambda r: r["event"]["start"])
    return hits[1] if f["name"] == "http-port-reuse" else hits[0]


@pytest.fixture(scope="module", params=SAMPLES)
def report(request):
    res = run_cli("--registry", xml(), str(ROOT / "captures" / request.param), "-f", "json", "--idle-timeout", "0")
    assert res.returncode == 0, res.stderr
    return request.param, json.loads(res.stdout)


def test_table_covers_every_sample_flow() -> None:
    assert set(VERDICTS) == {f["name"] for f in EXPECTED["flows"]}


@pytest.mark.parametrize("flow", EXPECTED["flows"], ids=[f["name"] for f in EXPECTED["flows"]])
def test_verdict_and_evidence(report, flow) -> None:
    capture, doc = report
    r = find(doc["flows"], flow)
    verdict, proto, sig, direction, packet = VERDICTS[flow["name"]]
    pc = r["portclass"]
    assert pc["verdict"] == verdict
    assert r["network"].get("protocol") == proto
    ev = pc.get("evidence", {})  # absent values are left out, never null
    assert (ev.get("signature"), ev.get("direction"), ev.get("packet")) == (sig, direction, packet)
    assert ev.get("file") == (None if sig is None else str(ROOT / "captures" / capture))
    assert pc.get("verdict_note") == NOTES.get(flow["name"])
    assert ("service-mismatch" in pc["flags"]) == (verdict == "mismatch")
    if verdict == "mismatch":
        assert pc["severity"] == 6 and pc["flags"][0] == "service-mismatch"
    assert r.get("tls", {}).get("client", {}).get("server_name") == ("example.com" if flow["name"] == "tls" else None)


def test_mismatches_lead_the_flagged_flows_in_the_terminal() -> None:
    res = run_cli("--registry", xml(), str(ROOT / "captures" / "sample.pcap"))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "Payload evidence: consistent 10, mismatch 3, unregistered 0, unverified 6" in out
    table = out[out.index("Flagged flows") :]
    rows = [line for line in table.splitlines() if "→" in line and "client → server" not in line]
    assert [("service-mismatch" in line) for line in rows[:4]] == [True, True, True, False]
    for registered, observed in (("mysql", "HTTP"), ("https", "SSH"), ("safetynetp", "DNS")):
        assert any(registered in line and f" {observed} " in line for line in rows[:3]), (registered, observed)


def test_jsonl_and_csv_carry_the_evidence(tmp_path) -> None:
    res = run_cli("--registry", xml(), str(ROOT / "captures" / "sample.pcap"), "-f", "jsonl")
    lines = [json.loads(x) for x in res.stdout.splitlines()[1:]]
    ssh443 = [r for r in lines if r["destination"]["port"] == 443 and r["network"].get("protocol") == "ssh"]
    assert len(ssh443) == 1 and ssh443[0]["portclass"]["verdict"] == "mismatch"
    res = run_cli("--registry", xml(), str(ROOT / "captures" / "sample.pcap"), "-f", "csv")
    rows = list(
        csv.DictReader(io.StringIO("".join(x + "\n" for x in res.stdout.splitlines() if not x.startswith("#"))))
    )
    for col in ("network.protocol", "portclass.verdict", "portclass.evidence.signature", "tls.client.server_name"):
        assert col in rows[0]
    assert sorted(r["portclass.verdict"] for r in rows if r["portclass.verdict"] == "mismatch") == ["mismatch"] * 3
    assert [r["tls.client.server_name"] for r in rows if r["tls.client.server_name"]] == ["example.com"]


def test_dissect_none_labels_by_port_only() -> None:
    res = run_cli("--registry", xml(), str(ROOT / "captures" / "sample.pcap"), "-f", "json", "--dissect", "none")
    doc = json.loads(res.stdout)
    assert {r["portclass"]["verdict"] for r in doc["flows"]} == {"unverified"}
    assert doc["totals"]["flagged_flows"] == 5
    out = run_cli("--registry", xml(), str(ROOT / "captures" / "sample.pcap"), "--dissect", "none").stdout
    assert "Payload evidence: not inspected" in out and "5 flagged" in out


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_dissect_tshark_gives_a_second_opinion() -> None:
    res = run_cli("--registry", xml(), str(ROOT / "captures" / "sample.pcap"), "-f", "json", "--dissect", "tshark")
    assert res.returncode == 0, res.stderr
    flows = {(r["destination"]["port"], r["source"]["port"]): r for r in json.loads(res.stdout)["flows"]}
    pc = {k: (r["portclass"]["tshark_protocol"], r["portclass"]["tshark_agreement"]) for k, r in flows.items()}
    assert pc[(443, 50002)] == ("tls", "agree")
    assert pc[(22, 50003)] == ("ssh", "agree")
    assert pc[(25, 50030)] == ("smtp", "agree")
    assert pc[(514, 50050)] == ("syslog", "agree")
    # tshark decodes by port here and finds nothing it knows: portclass's evidence stands alone
    assert pc[(443, 50060)] == ("tcp", "portclass-only")
    assert pc[(3306, 50070)] == ("tcp", "portclass-only")
    assert pc[(40000, 50080)] == ("dns", "agree")
    res = run_cli("--registry", xml(), str(ROOT / "captures" / "sample.pcap"), "--dissect", "tshark")
    assert "portclass vs tshark (agree 11, differ 0, tshark-only 0, portclass-only 2" in res.stdout


def test_default_reports_have_no_tshark_fields() -> None:
    res = run_cli("--registry", xml(), str(ROOT / "captures" / "sample.pcap"), "-f", "json")
    r = json.loads(res.stdout)["flows"][0]
    assert "tshark_protocol" not in r["portclass"]
    assert "portclass vs tshark" not in run_cli("--registry", xml(), str(ROOT / "captures" / "sample.pcap")).stdout
