"""Every capture of the nDPI corpus goes through the whole pipeline and every report without an exception."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from classifier.pipeline import analyze
from classifier.report import machine, terminal
from tests.shared import shared


def _corpus():
    return sorted(p.name for p in shared("captures", "ndpi", "pcap").iterdir())


@pytest.mark.parametrize("name", _corpus())
def test_capture_runs_through_everything(reg, name):
    a = analyze([shared("captures", "ndpi", "pcap", name)], reg, idle_timeout_s=0)
    st = a.stats
    assert st.packets > 0 or st.warnings  # a fuzzed file may be damaged at its first record
    assert int(a.flows.packets_c2s.sum() + a.flows.packets_s2c.sum()) <= st.packets
    terminal.render(a, Console(file=io.StringIO(), width=140))
    doc = json.loads(machine.render(a, "json"))
    assert len(doc["flows"]) == len(a.flows)
    lines = machine.render(a, "jsonl").splitlines()
    assert len(lines) == len(a.flows) + 1
    assert machine.render(a, "csv").count("\n") == len(a.flows) + 4


def test_corpus_is_there():
    assert len(_corpus()) == 266
