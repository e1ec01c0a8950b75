"""``--format json`` (one document): each flow leaves an absent value out, as the JSON Lines output does."""

from __future__ import annotations

import json

from tests.conftest import ROOT, run_cli
from tests.shared import shared


def _nulls(value, path=""):
    """The paths under ``value`` whose value is null (or an empty object)."""
    if value is None or value == {}:
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nulls(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nulls(v, f"{path}[{i}]")]
    return []


def test_json_flows_have_no_nulls_and_equal_the_jsonl_documents():
    xml = shared("registry", "service-names-port-numbers.xml")
    cap = str(ROOT / "captures" / "sample.pcap")
    doc = json.loads(run_cli("--registry", str(xml), cap, "-f", "json", "--idle-timeout", "0").stdout)
    lines = run_cli("--registry", str(xml), cap, "-f", "jsonl", "--idle-timeout", "0").stdout.splitlines()
    flows = doc["flows"]
    assert len(flows) == 19
    assert [p for f in flows for p in _nulls(f)] == []
    # the same documents as JSON Lines (after its notice line)
    assert flows == [json.loads(line) for line in lines[1:]]
    # real values: the unassigned port 4 flow has no service at all; a DNS flow has no tls object
    by_port = {(f["network"]["transport"], f["destination"]["port"]): f for f in flows}
    unassigned = by_port[("tcp", 4)]["portclass"]
    assert unassigned["status"] == "unassigned" and "service" not in unassigned
    dns = by_port[("udp", 53)]
    assert dns["portclass"]["service"] == "domain" and "tls" not in dns
