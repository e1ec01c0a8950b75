"""Live reports at the stop come from running aggregates, as a file run's do: ``-f json`` of a live capture
equals ``portclass -f json`` on the pcapng the sensor wrote; ``--max-flows`` bounds its flow list; a
streamed run's summary has the file run's tables; pyshark's per-packet votes leave with their flow.

Captures use the scapy backend on the loopback interface with the helpers of ``test_sensor``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from classifier.live.engine import ProtocolVotes
from classifier.pipeline import analyze
from tests.conftest import ROOT
from tests.shared import shared
from tests.test_sensor import Traffic, finish, live, sensor, wait_started

CAPTURES = ROOT / "captures"
SAME = ("packets", "flows", "flows_by_transport", "flow_packets", "flow_bytes", "flagged_flows", "flows_by_status")


def _flow_rows(doc: dict) -> Counter:
    """The json document's flows as a multiset of what labels them (not their times)."""
    return Counter(
        (
            f["source"].get("port"),
            f["destination"].get("port"),
            f["network"]["transport"],
            f["network"]["packets"],
            f["network"]["bytes"],
            f["portclass"].get("service"),
            f["portclass"]["status"],
            tuple(f["portclass"].get("flags", ())),
            f["portclass"].get("severity"),
        )
        for f in doc["flows"]
    )


def _file_json(pcap: Path, *args: str) -> dict:
    xml = shared("registry", "service-names-port-numbers.xml")
    cmd = [sys.executable, "-m", "classifier", "--registry", str(xml), "-f", "json", *args, str(pcap)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@live
def test_live_json_equals_the_file_run_on_the_written_pcap(tmp_path):
    """The live -f json report (aggregates + worst flows) says what `portclass -f json` says of the same packets."""
    out, pcap = tmp_path / "live.json", tmp_path / "seen.pcapng"
    # idle timeouts past the run: a source port the kernel reuses makes one flow in both (live expiry by the
    # wall clock could end a flow while its next packet still waits in the backend's queue)
    timeouts = ("--idle-timeout", "udp=30,tcp=30")
    proc = sensor("--duration", "3", "-f", "json", "-o", str(out), "--write-pcap", str(pcap), *timeouts)
    with Traffic():
        wait_started(proc)
        rc, stdout, err = finish(proc)
    assert rc == 0, err
    got = json.loads(out.read_text())
    want = _file_json(pcap, *timeouts)
    assert got["totals"]["flows"] > 50 and got["totals"]["flagged_flows"] > 0
    assert {k: got["totals"][k] for k in SAME} == {k: want["totals"][k] for k in SAME}
    assert _flow_rows(got) == _flow_rows(want) and len(got["flows"]) == got["totals"]["flows"]
    assert "flows_shown" not in got and got["live"]["stopped_by"] == "duration"
    assert "Services claimed by server port" in stdout  # the summary, from the same aggregates


@live
def test_live_json_holds_no_flow_list_beyond_max_flows(tmp_path):
    """--max-flows 5: five flows (the worst), every flow still counted, and the report says what it left out."""
    out = tmp_path / "live.json"
    proc = sensor("--duration", "3", "-f", "json", "-o", str(out), "--max-flows", "5")
    with Traffic():
        wait_started(proc)
        rc, _, err = finish(proc)
    assert rc == 0, err
    doc = json.loads(out.read_text())
    n = doc["totals"]["flows"]
    assert n > 50 and len(doc["flows"]) == 5
    assert doc["flows_shown"]["flows"] == 5 and doc["flows_shown"]["left_out"] == n - 5
    flagged = doc["totals"]["flagged_flows"]
    assert sum(1 for f in doc["flows"] if f["portclass"].get("severity", 0) > 0) == min(flagged, 5)


@live
def test_streamed_run_ends_with_the_file_runs_tables(tmp_path):
    """-f jsonl -o FILE: the summary after the stop has the services and flagged tables, counting every flow."""
    out = tmp_path / "flows.jsonl"
    proc = sensor("--duration", "3", "-f", "jsonl", "-o", str(out))
    with Traffic():
        wait_started(proc)
        rc, stdout, err = finish(proc)
    assert rc == 0, err
    written = len(out.read_text().splitlines()) - 2  # notice and closing lines
    m = re.search(r"Services claimed by server port \(top (\d+) of (\d+)\)", stdout)
    assert m and int(m.group(2)) >= 2, stdout  # the UDP and the TCP port
    assert re.search(rf"Flows\s+{written:,} ", stdout), stdout
    assert f"Written  {written:,} flows" in stdout


def test_votes_leave_with_their_flow(reg):
    """pop_flows names ended flows and drops their votes; a later flow on the same key keeps its own."""
    a = analyze([CAPTURES / "sample.pcap"], reg)
    votes = ProtocolVotes()

    def key(fl, i):
        client = (int(fl.client_hi[i]), int(fl.client_lo[i]), int(fl.client_port[i]))
        server = (int(fl.server_hi[i]), int(fl.server_lo[i]), int(fl.server_port[i]))
        return votes._key(int(fl.proto[i]), int(fl.ip_version[i]), client, server)

    keys = [key(a.flows, i) for i in range(len(a.flows))]
    fl = a.flows.take(np.array([i for i, k in enumerate(keys) if keys.count(k) == 1]))  # one flow per key
    n = len(fl)
    assert n >= 10
    for i, (t0, t1) in enumerate(zip(fl.first_ts_ns.tolist(), fl.last_ts_ns.tolist(), strict=True)):
        votes.by_key.setdefault(key(fl, i), []).extend([(t0, "tcp"), (t0, "http"), (t1 + 10**9, "dns")])
    assert votes.pop_flows(fl) == ["http"] * n
    assert sum(len(v) for v in votes.by_key.values()) == n  # only the later flows' votes are left
    assert votes.pop_flows(fl) == [None] * n  # the ended flows' votes went
    later = fl.take(np.arange(n))
    later.first_ts_ns = later.last_ts_ns + 10**9
    later.last_ts_ns = later.first_ts_ns
    assert votes.pop_flows(later) == ["dns"] * n and not votes.by_key
