"""The notebook API: ``classifier.classify``, ``classifier.load_registry`` and the ``Flows`` result."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import classifier
from classifier import api
from classifier.report import machine
from classifier.report.parquet import RAW_COLUMNS
from classifier.report.rows import flow_columns
from tests.conftest import ROOT
from tests.synthetic import EXPECTED, HAVE_READER, ORDER, T0, batch, known_analysis, write_pcap

SAMPLE = ROOT / "captures" / "sample.pcap"
SAMPLE_MISMATCHES = [
    # (client, server, port/transport, registry name, payload protocol, note)
    ("192.0.2.17", "198.51.100.44", 443, "tcp", "https", "ssh", "port 443/tcp registered for https; payload is SSH"),
    ("192.0.2.18", "198.51.100.33", 3306, "tcp", "mysql", "http",
     "port 3306/tcp registered for mysql; payload is HTTP"),
    ("192.0.2.19", "198.51.100.40", 40000, "udp", "safetynetp", "dns",
     "port 40000/udp registered for safetynetp; payload is DNS"),
]  # fmt: skip
"""The deliberate service mismatches of captures/sample.pcap (captures/README.md)."""


@pytest.fixture()
def flows(reg) -> api.Flows:
    return classifier.from_packets(batch(), reg)


def test_package_exports_the_api_lazily():
    assert classifier.classify is api.classify
    assert classifier.load_registry is api.load_registry
    assert classifier.Flows is api.Flows
    with pytest.raises(AttributeError):
        classifier.nothing_here  # noqa: B018


def test_load_registry_with_a_path(xml_path):
    reg = classifier.load_registry(xml_path)
    assert reg.provenance.edition == "2026-08-17" and reg.provenance.full
    assert reg.provenance.notice.startswith("ASSIGNMENT OF A PORT NUMBER")


def test_len_iteration_and_rows(flows, reg):
    assert len(flows) == 6
    rows = list(flows)
    assert [r["destination.port"] for r in rows] == ORDER
    assert list(rows[0]) == list(flow_columns(known_analysis(reg)))
    for r, port in zip(rows, ORDER, strict=True):
        e = EXPECTED[port]
        assert (r["source.ip"], r["source.port"], r["destination.ip"]) == (e["client"], e["cport"], e["server"])
        assert (r["portclass.service"], r["portclass.status"], r["portclass.flags"]) == (
            e["service"],
            e["status"],
            e["flags"],
        )
    nested = flows.rows(nested=True)
    assert nested == json.loads(machine.render(known_analysis(reg), "json"))["flows"]


def test_to_arrow_has_ecs_and_raw_columns(flows):
    t = flows.to_arrow()
    ecs = list(flow_columns(flows.analysis))
    assert set(ecs) <= set(t.column_names)
    assert [c for c in t.column_names if c.startswith("raw.")] == list(RAW_COLUMNS)
    assert t.column("raw.first_ts_ns").to_pylist() == [EXPECTED[p]["start"] for p in ORDER]
    assert t.column("raw.last_ts_ns").to_pylist() == [EXPECTED[p]["end"] for p in ORDER]
    assert t.column("raw.tcp_flags_c2s").to_pylist()[ORDER.index(42000)] == 0x02
    assert t.column("raw.flag_bits").to_pylist()[ORDER.index(60000)] == 8
    assert t.schema.metadata[b"portclass.notice"].startswith(b"ASSIGNMENT OF A PORT NUMBER")
    assert "raw.key_hash" not in flows.to_arrow(raw=False).column_names


def test_to_pandas(flows):
    pd = pytest.importorskip("pandas")
    df = flows.to_pandas()
    assert isinstance(df, pd.DataFrame) and len(df) == 6
    assert df["destination.port"].tolist() == ORDER
    assert df["@timestamp"].iloc[0] == pd.Timestamp(T0, unit="ns", tz="UTC")
    assert df.loc[df["portclass.severity"] > 0, "destination.port"].tolist() == [42000, 60000]
    assert [list(x) for x in df["portclass.flags"]] == [EXPECTED[p]["flags"] for p in ORDER]
    assert df["raw.first_ts_ns"].tolist() == [EXPECTED[p]["start"] for p in ORDER]
    assert df.attrs["portclass"]["portclass.notice"] == flows.notice
    assert json.loads(df.attrs["portclass"]["portclass.totals"])["flows"] == 6


def test_to_pandas_without_pandas_says_how_to_get_it(flows, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"portclass\[notebook\]"):
        flows.to_pandas()


def test_summary(flows):
    s = flows.summary()
    assert s["notice"] == flows.notice and s["registry"].startswith("IANA registry: ")
    assert s["flows"] == 6 and s["flagged"] == 2
    assert s["totals"]["packets"] == 18 and s["totals"]["flows_by_transport"] == {"tcp": 4, "udp": 2}
    assert s["flags"] == {"unauthorized-use-known": 1, "unassigned-port": 1, "dynamic-port": 1}
    top = {(r["transport"], r["port"]): r for r in s["services"]}
    assert top[("tcp", 80)]["service"] == "http" and top[("tcp", 80)]["packets"] == 8
    assert top[("udp", 53)]["service"] == "domain"
    # make_batch carries no payload bytes: inspected, nothing recognised
    assert s["verdicts"] == {"consistent": 0, "mismatch": 0, "unregistered": 0, "unverified": 6}
    assert classifier.from_packets(batch(), flows.registry, evidence=False).summary()["verdicts"] is None


def test_filter_and_repr(flows):
    sub = flows.filter(flagged_only=True)
    assert isinstance(sub, api.Flows) and len(sub) == 2
    assert [r["destination.port"] for r in sub] == [42000, 60000]
    assert repr(sub).startswith("<Flows: 2 flows (filter kept 2 of 6), 2 flagged; IANA registry: ")
    s = sub.summary()
    assert s["totals"]["flows"] == 6 and s["totals"]["selection"]["kept_flows"] == 2
    assert len(flows.filter(services=["www"], hosts=["198.51.100.0/24"])) == 1
    assert len(flows.filter(ports=[53, 22])) == 2
    assert len(flows) == 6  # filtering returns a new result


def test_write(flows, tmp_path):
    import pyarrow.parquet as pq

    flows.write(tmp_path / "f.parquet")
    assert pq.read_table(tmp_path / "f.parquet").column("destination.port").to_pylist() == ORDER
    flows.write(tmp_path / "conn.log", format="zeek")
    assert (tmp_path / "conn.log").read_text().startswith("#separator \\x09\n")


def test_classify_arguments(reg, xml_path, tmp_path, monkeypatch):
    seen = {}

    def fake(paths, registry, idle_timeout_s, **kw):
        seen.update(paths=paths, registry=registry, idle=idle_timeout_s, **kw)
        return known_analysis(registry)

    monkeypatch.setattr(api, "analyze", fake)
    cap = tmp_path / "a.pcap"
    cap.write_bytes(b"")
    res = classifier.classify(cap, registry=reg, idle_timeout=60)
    assert len(res) == 6
    assert seen == {"paths": [cap], "registry": reg, "idle": 60, "evidence": True, "tshark": False, "jobs": None}
    res = classifier.classify([str(cap), str(cap)], registry=xml_path)
    assert seen["paths"] == [str(cap), str(cap)] and seen["registry"].provenance.sha256 == reg.provenance.sha256
    with pytest.raises(FileNotFoundError, match="missing.pcap"):
        classifier.classify(tmp_path / "missing.pcap", registry=reg)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, {"evidence": True, "tshark": False}),
        ({"evidence": False}, {"evidence": False, "tshark": False}),
        ({"dissect": "portclass"}, {"evidence": True, "tshark": False}),
        ({"dissect": "tshark"}, {"evidence": True, "tshark": True}),
        ({"dissect": "none"}, {"evidence": False, "tshark": False}),
        ({"evidence": False, "dissect": "none"}, {"evidence": False, "tshark": False}),
    ],
)
def test_classify_dissect_mirrors_the_cli(reg, tmp_path, monkeypatch, kwargs, expected):
    """``evidence``/``dissect`` reach the pipeline as the CLI's ``--dissect portclass|tshark|none`` does."""
    import argparse

    from classifier.commands import analyze as cmd

    seen = {}

    def fake(paths, registry, idle_timeout_s, **kw):
        seen.update(kw)
        return known_analysis(registry)

    monkeypatch.setattr(api, "analyze", fake)
    cap = tmp_path / "a.pcap"
    cap.write_bytes(b"")
    classifier.classify(cap, registry=reg, **kwargs)
    assert seen == {**expected, "jobs": None}
    if "dissect" in kwargs:  # the same keywords as the CLI option
        assert cmd._dissect(argparse.Namespace(dissect=kwargs["dissect"])) == expected


def test_classify_rejects_bad_dissect_before_reading(reg, tmp_path, monkeypatch):
    monkeypatch.setattr(api, "analyze", lambda *a, **k: pytest.fail("read the capture before refusing"))
    cap = tmp_path / "a.pcap"
    cap.write_bytes(b"")
    with pytest.raises(ValueError, match=r"dissect must be one of portclass, tshark, none \(or None\), not 'nDPI'"):
        classifier.classify(cap, registry=reg, dissect="nDPI")
    with pytest.raises(ValueError, match="evidence=False inspects no payload: it contradicts dissect='tshark'"):
        classifier.classify(cap, registry=reg, evidence=False, dissect="tshark")
    with pytest.raises(ValueError, match="contradicts dissect='portclass'"):
        classifier.classify(cap, registry=reg, evidence=False, dissect="portclass")
    with pytest.raises(TypeError):
        classifier.classify(cap, reg, 300.0, False)  # keyword-only


def _mismatches(flows: api.Flows) -> list[tuple]:
    return [
        (
            r["source.ip"],
            r["destination.ip"],
            r["destination.port"],
            r["network.transport"],
            r["portclass.service"],
            r["network.protocol"],
            r["portclass.verdict_note"],
        )
        for r in flows
        if r["portclass.verdict"] == "mismatch"
    ]


@pytest.mark.skipif(not (HAVE_READER and SAMPLE.is_file()), reason="captures/sample.pcap or the reader not there yet")
def test_classify_sample_gives_verdicts_by_default(reg):
    flows = classifier.classify(SAMPLE, registry=reg)
    assert flows.analysis.payload_inspected
    assert _mismatches(flows) == SAMPLE_MISMATCHES
    rows = flows.rows()
    assert len(rows) == 19
    for r in rows:
        mismatch = r["portclass.verdict"] == "mismatch"
        assert ("service-mismatch" in r["portclass.flags"]) == mismatch
        assert (r["portclass.severity"] == 6) == mismatch
    verdicts = {v: sum(r["portclass.verdict"] == v for r in rows) for v in ("consistent", "mismatch", "unverified")}
    assert verdicts == {"consistent": 10, "mismatch": 3, "unverified": 6}
    assert flows.summary()["verdicts"] == {"consistent": 10, "mismatch": 3, "unregistered": 0, "unverified": 6}
    assert flows.summary()["flags"]["service-mismatch"] == 3
    tls = [r for r in rows if r["network.protocol"] == "tls"]
    assert [(r["destination.port"], r["tls.client.server_name"], r["portclass.verdict"]) for r in tls] == [
        (443, "example.com", "consistent")
    ]
    ssh443 = next(r for r in rows if r["destination.port"] == 443 and r["network.protocol"] == "ssh")
    assert ssh443["portclass.evidence.signature"] == "ssh-banner"
    assert ssh443["portclass.evidence.direction"] == "server-to-client"
    assert ssh443["portclass.evidence.file"] == str(SAMPLE) and ssh443["portclass.evidence.packet"] == 97
    # the tables carry the same
    pytest.importorskip("pandas")
    df = flows.to_pandas()
    got = df.loc[df["portclass.verdict"] == "mismatch", ["destination.port", "portclass.service", "network.protocol"]]
    assert got.values.tolist() == [[443, "https", "ssh"], [3306, "mysql", "http"], [40000, "safetynetp", "dns"]]
    # and a filter keeps them
    assert _mismatches(flows.filter(flags=["service-mismatch"])) == SAMPLE_MISMATCHES
    assert classifier.classify(SAMPLE, registry=reg, dissect="portclass").rows() == rows


@pytest.mark.skipif(not (HAVE_READER and SAMPLE.is_file()), reason="captures/sample.pcap or the reader not there yet")
@pytest.mark.parametrize("kwargs", [{"evidence": False}, {"dissect": "none"}])
def test_classify_without_evidence_is_port_only(reg, kwargs):
    flows = classifier.classify(SAMPLE, registry=reg, **kwargs)
    assert not flows.analysis.payload_inspected
    rows = flows.rows()
    assert len(rows) == 19
    assert {r["portclass.verdict"] for r in rows} == {"unverified"}
    assert all(r["network.protocol"] is None and r["tls.client.server_name"] is None for r in rows)
    assert all(r["portclass.evidence.packet"] is None for r in rows)
    assert not any("service-mismatch" in r["portclass.flags"] for r in rows)
    assert _mismatches(flows) == []
    s = flows.summary()
    assert s["verdicts"] is None and "service-mismatch" not in s["flags"]
    # the port labels themselves are the same as with evidence
    with_evidence = classifier.classify(SAMPLE, registry=reg).rows()
    assert [r["portclass.service"] for r in rows] == [r["portclass.service"] for r in with_evidence]


@pytest.mark.skipif(not (HAVE_READER and SAMPLE.is_file()), reason="captures/sample.pcap or the reader not there yet")
def test_classify_with_tshark(reg):
    from tests.tshark import need_tshark

    need_tshark()
    flows = classifier.classify(SAMPLE, registry=reg, dissect="tshark")
    rows = flows.rows()
    assert _mismatches(flows) == SAMPLE_MISMATCHES
    opinion = {
        (r["destination.port"], r["network.protocol"]): (
            r["portclass.tshark_protocol"],
            r["portclass.tshark_agreement"],
        )
        for r in rows
    }
    assert opinion[(443, "tls")] == ("tls", "agree")
    # tshark decodes by port and finds nothing it knows on 443 and 3306: portclass's evidence stands alone
    assert opinion[(443, "ssh")] == ("tcp", "portclass-only")
    assert opinion[(3306, "http")] == ("tcp", "portclass-only")
    assert opinion[(40000, "dns")] == ("dns", "agree")
    t = flows.to_arrow()
    assert str(t.schema.field("portclass.tshark_agreement").type) == "string"
    assert t.column("portclass.tshark_agreement").to_pylist().count("agree") == 11


@pytest.mark.skipif(not HAVE_READER, reason="capture reader not there yet")
def test_classify_a_real_capture(reg, tmp_path):
    pcap = tmp_path / "known.pcap"
    write_pcap(pcap)
    res = classifier.classify(pcap, registry=reg)
    assert len(res) == 6
    rows = res.rows()
    assert [r["destination.port"] for r in rows] == ORDER
    for r, port in zip(rows, ORDER, strict=True):
        e = EXPECTED[port]
        assert (r["source.bytes"], r["destination.bytes"]) == (e["c_bytes"], e["s_bytes"])
        assert (r["portclass.service"], r["portclass.flags"]) == (e["service"], e["flags"])
    assert np.array_equal(res.to_arrow().column("raw.first_ts_ns").to_numpy(), [EXPECTED[p]["start"] for p in ORDER])
    assert res.summary()["totals"]["files"] == 1
