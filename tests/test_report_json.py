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


def _summary_figures(text: str) -> tuple[int, int, int]:
    """(flows, packets in flows, flagged) from the terminal summary's ``Flows`` line."""
    import re

    m = re.search(r"^Flows\s+([\d,]+) .*carrying ([\d,]+) packets.*; ([\d,]+) flagged", text, re.M)
    assert m, text
    return tuple(int(g.replace(",", "")) for g in m.groups())  # type: ignore[return-value]


def test_json_document_is_orjson_text_whose_values_match_the_summary_and_tshark():
    """The document is orjson's compact text of itself, a flow per line; its totals are the summary's and tshark's
    figures, and its bounded list holds the worst flows of the JSON Lines output (every flow)."""
    import subprocess

    import orjson

    from tests.tshark import need_tshark

    tshark = need_tshark()
    xml = str(shared("registry", "service-names-port-numbers.xml"))
    for name in ("telegram_videocall.pcapng", "zoom.pcap"):
        cap = str(shared("captures", "ndpi", "pcap", name))
        text = run_cli("--registry", xml, cap, "-f", "json", "--max-flows", "5").stdout
        doc = json.loads(text)
        assert text.replace("\n", "") == orjson.dumps(doc).decode()  # compact, a flow per line
        assert [json.loads(line.rstrip(",")) for line in text.splitlines()[1:-1]] == doc["flows"]
        tot = doc["totals"]
        flows, flow_packets, flagged = _summary_figures(run_cli("--registry", xml, cap, "--no-progress").stdout)
        assert (tot["flows"], tot["flow_packets"], tot["flagged_flows"]) == (flows, flow_packets, flagged)
        frames = subprocess.run([tshark, "-r", cap, "-T", "fields", "-e", "frame.number"], capture_output=True,
                                text=True, check=True).stdout.split()  # fmt: skip
        assert tot["packets"] == len(frames) > flow_packets > 0
        assert len(doc["flows"]) == 5 and doc["flows_shown"]["of"] == flows > 5
        every = [json.loads(x) for x in run_cli("--registry", xml, cap, "-f", "jsonl").stdout.splitlines()[1:]]
        assert len(every) == flows

        def badness(f):
            return (-f["portclass"]["severity"], -f["network"]["bytes"], f["event"]["start"])

        worst = sorted(every, key=badness)[:5]
        assert sorted(doc["flows"], key=badness) == worst
        assert [f["@timestamp"] for f in doc["flows"]] == sorted(f["@timestamp"] for f in doc["flows"])
