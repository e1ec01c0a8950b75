"""The project's own sample captures get the labels the registry gives their server ports.

Expected flows, counts and labels come from captures/expected.json (written by
captures/make_captures.py from what it put on the wire); the flags expected per flow are listed here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli
from tests.shared import shared

EXPECTED = json.loads((ROOT / "captures" / "expected.json").read_text())
FLAGS = {
    "unassigned-4": ["unassigned-port"],
    "reserved-230": ["reserved-port"],
    "unauthorized-42000": ["unauthorized-use-known", "unassigned-port"],
    "unauthorized-44515": ["unauthorized-use-known", "unassigned-port"],
    "p2p-dynamic": ["dynamic-port"],
    "mismatch-ssh-on-443": ["service-mismatch"],
    "mismatch-http-on-3306": ["service-mismatch"],
    "mismatch-dns-on-40000": ["service-mismatch"],
}
SAMPLES = ["sample.pcap", "sample.pcapng", "sample-sll.pcap"]


@pytest.fixture(scope="module", params=SAMPLES)
def report(request):
    xml = shared("registry", "service-names-port-numbers.xml")
    res = run_cli(
        "--registry", str(xml), str(ROOT / "captures" / request.param), "--format", "json", "--idle-timeout", "0"
    )
    assert res.returncode == 0, res.stderr
    return request.param, json.loads(res.stdout)


def _find(doc, f):
    hits = [
        r
        for r in doc["flows"]
        if r["source"]["ip"] == f["client"]
        and r["source"]["port"] == f["client_port"]
        and r["destination"]["ip"] == f["server"]
        and r["destination"]["port"] == f["server_port"]
        and r["network"]["transport"] == f["transport"]
    ]
    return sorted(hits, key=lambda r: r["event"]["start"])


def test_every_flow_and_nothing_else(report):
    name, doc = report
    assert len(doc["flows"]) == len(EXPECTED["flows"])
    assert doc["totals"]["packets"] == EXPECTED["frames"]
    assert doc["totals"]["no_ports"] == {"ICMP": EXPECTED["non_flow_frames"]["icmp"]}
    assert doc["totals"]["non_ip"] == EXPECTED["non_flow_frames"]["arp"]


@pytest.mark.parametrize("flow", EXPECTED["flows"], ids=[f["name"] for f in EXPECTED["flows"]])
def test_flow_label(report, flow):
    name, doc = report
    hits = _find(doc, flow)
    r = hits[1] if flow["name"] == "http-port-reuse" else hits[0]
    exp = flow["expected"]
    pc = r["portclass"]
    assert pc.get("service") == exp["service"]  # absent (not null) where no service is registered
    assert pc["status"] == exp["status"]
    assert pc["flags"] == FLAGS.get(flow["name"], [])
    assert pc["server_rule"] == flow["server_rule"]
    assert (r["source"]["packets"], r["destination"]["packets"]) == (flow["packets_c2s"], flow["packets_s2c"])
    assert [r["source"]["bytes"], r["destination"]["bytes"]] == flow["bytes"][name]
    assert r["network"]["type"] == f"ipv{flow['ip_version']}"
    assert r["network"]["community_id"].startswith("1:")
    assert doc["notice"].startswith("ASSIGNMENT OF A PORT NUMBER")


def test_readme_first_command_output():
    """The README's demo: the warning first, then provenance, totals, services and flagged flows."""
    xml = shared("registry", "service-names-port-numbers.xml")
    res = run_cli("--registry", str(xml), str(ROOT / "captures" / "sample.pcap"))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    order = [out.index(s) for s in ("IANA registry notice", "2026-08-17", "Capture", "Services claimed", "Flagged")]
    assert order == sorted(order)
    assert "NOR THAT IT NECESSARILY" in out and "8 flagged" in out and "42000/tcp" in out


def test_exit_code_fail_on_flagged():
    xml = shared("registry", "service-names-port-numbers.xml")
    res = run_cli(
        "--registry",
        str(xml),
        str(ROOT / "captures" / "sample.pcap"),
        "--fail-on",
        "flagged",
        "--format",
        "jsonl",
        "-o",
        "/dev/null",
    )
    assert res.returncode == 1


def test_output_file_is_atomic(tmp_path: Path):
    xml = shared("registry", "service-names-port-numbers.xml")
    out = tmp_path / "flows.jsonl"
    res = run_cli("--registry", str(xml), str(ROOT / "captures" / "sample.pcap"), "--format", "jsonl", "-o", str(out))
    assert res.returncode == 0 and res.stdout == ""
    lines = out.read_text().splitlines()
    assert json.loads(lines[0])["event"]["dataset"] == "portclass.notice"
    assert len(lines) == 1 + len(EXPECTED["flows"])
    assert [p.name for p in tmp_path.iterdir()] == ["flows.jsonl"]
