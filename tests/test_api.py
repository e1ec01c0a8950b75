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
from tests.synthetic import EXPECTED, HAVE_READER, ORDER, T0, batch, known_analysis, write_pcap


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

    def fake(paths, registry, idle_timeout_s):
        seen.update(paths=paths, registry=registry, idle=idle_timeout_s)
        return known_analysis(registry)

    monkeypatch.setattr(api, "analyze", fake)
    cap = tmp_path / "a.pcap"
    cap.write_bytes(b"")
    res = classifier.classify(cap, registry=reg, idle_timeout=60)
    assert len(res) == 6 and seen == {"paths": [cap], "registry": reg, "idle": 60}
    res = classifier.classify([str(cap), str(cap)], registry=xml_path)
    assert seen["paths"] == [str(cap), str(cap)] and seen["registry"].provenance.sha256 == reg.provenance.sha256
    with pytest.raises(FileNotFoundError, match="missing.pcap"):
        classifier.classify(tmp_path / "missing.pcap", registry=reg)


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
