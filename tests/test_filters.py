"""Flow filters (``--flagged-only``, ``--flag``, ``--service``, ``--status``, ``--port``, ``--host``) and exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from classifier.cli import main
from classifier.errors import PortclassError
from classifier.filters import FilteredAnalysis, FlowFilter, apply, mask, parse_host, whole_totals
from classifier.report.summary import totals
from tests.conftest import run_cli
from tests.synthetic import EXPECTED, HAVE_READER, ORDER, known_analysis, write_pcap


@pytest.fixture()
def analysis(reg):
    return known_analysis(reg)


def ports_kept(a, **kw) -> set[int]:
    sub = apply(a, FlowFilter(**kw))
    return set(sub.flows.server_port.tolist())


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({}, set(ORDER)),
        ({"flagged_only": True}, {42000, 60000}),
        ({"flags": ("dynamic-port",)}, {60000}),
        ({"flags": ("unauthorized-use-known",)}, {42000}),
        ({"flags": ("unassigned-port", "dynamic-port")}, {42000, 60000}),
        ({"flags": ("reserved-port",)}, set()),
        ({"services": ("http",)}, {80}),
        ({"services": ("www",)}, {80}),  # an alias of http on 80/tcp
        ({"services": ("WWW-HTTP",)}, {80}),  # case-insensitive
        ({"services": ("domain", "ssh")}, {53, 22}),
        ({"statuses": ("assigned",)}, {80, 53, 443, 22}),
        ({"statuses": ("unassigned", "dynamic")}, {42000, 60000}),
        ({"ports": (53,)}, {53}),
        ({"ports": (40000,)}, {80}),  # the client's side counts too
        ({"ports": (50000, 443)}, {60000, 443}),
        ({"hosts": ("198.51.100.1",)}, {80, 22}),
        ({"hosts": ("192.0.2.53",)}, {53}),
        ({"hosts": ("192.0.2.0/24",)}, {80, 42000, 53, 60000, 22}),
        ({"hosts": ("192.0.2.16/28",)}, {60000}),  # .20 and .30
        ({"hosts": ("203.0.113.0/24", "2001:db8::2")}, {42000, 443}),
        ({"hosts": ("2001:db8::/32",)}, {443}),
        ({"hosts": ("::/0",)}, {443}),  # IPv6 blocks match IPv6 flows only
        ({"hosts": ("0.0.0.0/0",)}, {80, 42000, 53, 60000, 22}),
        ({"flagged_only": True, "hosts": ("192.0.2.20",)}, {60000}),  # options combine with AND
        ({"services": ("http",), "ports": (53,)}, set()),
    ],
)
def test_each_option_selects_the_known_flows(analysis, kw, expected):
    assert ports_kept(analysis, **kw) == expected


def test_selection_and_whole_capture(analysis):
    sub = apply(analysis, FlowFilter(flagged_only=True))
    assert isinstance(sub, FilteredAnalysis)
    assert sub.selection.to_dict() == {
        "filter": "--flagged-only",
        "kept_flows": 2,
        "total_flows": 6,
        "kept_flagged_flows": 2,
        "total_flagged_flows": 2,
    }
    assert sub.selection.line() == "filter --flagged-only: kept 2 of 6 flows (2 flagged)"
    assert sub.stats is analysis.stats and sub.whole is analysis
    # labels stay parallel to the kept flows
    idx = np.flatnonzero(mask(analysis, FlowFilter(flagged_only=True)))
    for name in ("transport", "status", "service", "flags", "severity"):
        assert np.array_equal(getattr(sub.labels, name), getattr(analysis.labels, name)[idx])
    assert sub.flows.equals(analysis.flows.take(idx))
    # totals: the capture stays whole, the selection is stated
    t = whole_totals(sub)
    assert t["flows"] == 6 and t["packets"] == 18 and t["flagged_flows"] == 2
    assert t["selection"]["kept_flows"] == 2
    assert totals(sub).packets == 18  # capture counters of the filtered analysis are the whole capture's


def test_chained_filters_count_against_the_whole_capture(analysis):
    sub = apply(apply(analysis, FlowFilter(hosts=("192.0.2.0/24",))), FlowFilter(ports=(53,)))
    assert sub.selection.filter == "--host 192.0.2.0/24 --port 53"
    assert (sub.selection.kept, sub.selection.total) == (1, 6)
    assert sub.whole is analysis


def test_empty_filter_is_the_analysis_itself(analysis):
    assert not FlowFilter()
    assert apply(analysis, FlowFilter()) is analysis


def test_bad_values_are_refused(analysis):
    with pytest.raises(ValueError, match="unknown flag"):
        FlowFilter(flags=("dynamic",))
    with pytest.raises(ValueError, match="unknown status"):
        FlowFilter(statuses=("free",))
    with pytest.raises(ValueError, match="not in 0-65535"):
        FlowFilter(ports=(65536,))
    with pytest.raises(ValueError, match="not an IP address"):
        FlowFilter(hosts=("example.org",))
    with pytest.raises(PortclassError, match="no service named nosuchservice"):
        apply(analysis, FlowFilter(services=("nosuchservice",)))
    assert str(parse_host("192.0.2.77/26")) == "192.0.2.64/26"


# --------------------------------------------------------------------------- command line


@pytest.fixture()
def cli(tmp_path, xml_path, monkeypatch):
    """Run ``portclass`` in-process on the known flows (the capture stage is replaced)."""
    import classifier.commands.analyze as cmd

    cap = tmp_path / "known.pcap"
    cap.write_bytes(b"")
    monkeypatch.setattr(cmd, "analyze", lambda paths, registry, *a, **k: known_analysis(registry))

    def run(*args: str) -> int:
        return main(["--registry", str(xml_path), str(cap), "--no-progress", *args])

    return run


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ((), 0),  # flagged flows, but no --fail-on
        (("--fail-on", "never"), 0),
        (("--fail-on", "flagged"), 1),
        (("--fail-on", "flagged", "--status", "assigned"), 0),  # the flagged flows were filtered out
        (("--fail-on", "flagged", "--port", "53"), 0),
        (("--fail-on", "flagged", "--flag", "dynamic-port"), 1),
        (("--fail-on", "flagged", "--host", "2001:db8::/64"), 0),
        (("--fail-on", "flagged", "--service", "www"), 0),
    ],
)
def test_exit_codes_after_filtering(cli, capsys, tmp_path, args, code):
    out = tmp_path / "r.json"
    assert cli("-f", "json", "-o", str(out), *args) == code
    assert json.loads(out.read_text())["flows"]


def test_filtered_json_holds_the_kept_flows_and_says_so(cli, capsys, tmp_path):
    out = tmp_path / "r.json"
    assert cli("-f", "json", "-o", str(out), "--flagged-only") == 0
    doc = json.loads(out.read_text())
    assert [f["destination"]["port"] for f in doc["flows"]] == [42000, 60000]
    assert doc["totals"]["packets"] == 18  # the capture's counters stay whole
    err = capsys.readouterr().err
    assert "portclass: filter --flagged-only: kept 2 of 6 flows (2 flagged)" in err


def test_usage_errors_exit_2_with_one_line(tmp_path, xml_path):
    cap = tmp_path / "x.pcap"
    cap.write_bytes(b"")
    base = ["--registry", str(xml_path), str(cap), "--no-progress"]
    for extra, needle in [
        (["--flag", "bogus"], "invalid choice"),
        (["--status", "free"], "invalid choice"),
        (["--port", "70000"], "port 70000 is not in 0-65535"),
        (["--port", "http"], "not a port number"),
        (["--host", "not-an-ip"], "not an IP address or CIDR block"),
        (["--service", "nosuchservice"], "no service named nosuchservice"),
    ]:
        r = run_cli(*base, *extra)
        assert r.returncode == 2, (extra, r.stderr)
        assert needle in r.stderr, (extra, r.stderr)
    r = run_cli("--registry", str(xml_path), str(tmp_path / "missing.pcap"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1


def test_help_documents_filters_formats_and_exit_codes():
    r = run_cli("analyze", "--help")
    assert r.returncode == 0
    for needle in (
        "--flagged-only",
        "--flag NAME",
        "--service NAME",
        "--status STATUS",
        "--port N",
        "--host ADDR",
        "--fail-on",
        "zeek",
        "parquet",
        "exit codes:",
        "130",
        "CIDR",
    ):
        assert needle in r.stdout, needle


@pytest.mark.skipif(not HAVE_READER, reason="capture reader not there yet")
def test_cli_end_to_end_exit_codes(tmp_path, xml_path):
    pcap = tmp_path / "known.pcap"
    write_pcap(pcap)
    base = ["--registry", str(xml_path), str(pcap), "--no-progress", "-f", "jsonl"]
    r = run_cli(*base, "--fail-on", "flagged")
    assert r.returncode == 1, r.stderr
    r = run_cli(*base, "--fail-on", "flagged", "--service", "http", "--service", "domain")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [d["destination"]["port"] for d in lines[1:]] == [80, 53]
    assert "kept 2 of 6 flows" in r.stderr
    r = run_cli(*base, "--fail-on", "flagged", "--host", "192.0.2.30", "--port", "60000")
    assert r.returncode == 1
    flows = [json.loads(x) for x in r.stdout.splitlines()][1:]
    assert [(f["source"]["ip"], f["portclass"]["flags"]) for f in flows] == [
        (EXPECTED[60000]["client"], ["dynamic-port"])
    ]
