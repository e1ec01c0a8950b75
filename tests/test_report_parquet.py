"""``--format parquet``: flat ECS columns that read back in pandas and DuckDB equal to the JSON output's flows."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from classifier.capture.columns import CaptureStats
from classifier.cli import main
from classifier.errors import PortclassError
from classifier.filters import FlowFilter, apply
from classifier.flows import FlowTable
from classifier.label import Labels
from classifier.pipeline import Analysis
from classifier.report import machine, write
from classifier.report.rows import nest
from tests.conftest import run_cli
from tests.synthetic import (
    EVIDENCE,
    EVIDENCE_FILE,
    EVIDENCE_ORDER,
    EXPECTED,
    HAVE_READER,
    ORDER,
    evidence_analysis,
    known_analysis,
    write_pcap,
)

EVIDENCE_TYPES = {
    "network.protocol": "string",
    "portclass.verdict": "string",
    "portclass.verdict_note": "string",
    "portclass.evidence.signature": "string",
    "portclass.evidence.direction": "string",
    "portclass.evidence.file": "string",
    "portclass.evidence.packet": "int64",
    "tls.client.server_name": "string",
}
"""Arrow types of the payload-evidence columns."""

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture()
def analysis(reg) -> Analysis:
    return known_analysis(reg)


def _iso(ns: int) -> str:
    """Nanoseconds since the epoch as the JSON output writes times (ISO 8601, microseconds, Z)."""
    return str(np.datetime_as_string(np.datetime64(int(ns), "ns"), unit="us")) + "Z"


def _plain(value):
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def json_flows(a: Analysis) -> list[dict]:
    return json.loads(machine.render(a, "json"))["flows"]


def pandas_flows(path: Path) -> list[dict]:
    import pandas as pd

    df = pd.read_parquet(path)
    out = []
    for rec in df.to_dict("records"):
        flat = {}
        for key, value in rec.items():
            if key in ("@timestamp", "event.start", "event.end"):
                flat[key] = _iso(value.tz_convert("UTC").tz_localize(None).as_unit("ns").value)
            else:
                flat[key] = _plain(value)
        out.append(nest({k: v for k, v in flat.items() if v is not None}))  # as the JSON: no nulls
    return out


def duckdb_flows(path: Path) -> list[dict]:
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    names = [r[0] for r in con.sql(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()]
    times = {"@timestamp", "event.start", "event.end"}
    select = ", ".join(f'epoch_us("{n}")' if n in times else f'"{n}"' for n in names)
    out = []
    for values in con.sql(f"SELECT {select} FROM read_parquet('{path}')").fetchall():
        flat = {}
        for n, v in zip(names, values, strict=True):
            flat[n] = _iso(v * 1000) if n in times else v
        out.append(nest({k: v for k, v in flat.items() if v is not None}))  # as the JSON: no nulls
    return out


def test_reads_back_in_pandas_equal_to_json(analysis, tmp_path):
    path = tmp_path / "flows.parquet"
    write(analysis, "parquet", path)
    flows = pandas_flows(path)
    expected = json_flows(analysis)
    assert len(flows) == 6
    assert flows == expected
    # real values, not just agreement
    assert [f["destination"]["port"] for f in flows] == ORDER
    for f, port in zip(flows, ORDER, strict=True):
        e = EXPECTED[port]
        assert f["source"]["ip"] == e["client"] and f["destination"]["ip"] == e["server"]
        assert (f["source"]["packets"], f["destination"]["packets"]) == (e["c_pkts"], e["s_pkts"])
        assert (f["source"]["bytes"], f["destination"]["bytes"]) == (e["c_bytes"], e["s_bytes"])
        assert f["portclass"].get("service") == e["service"] and f["portclass"]["flags"] == e["flags"]
        assert f["event"]["duration"] == e["end"] - e["start"]
    assert flows[0]["@timestamp"] == "2023-11-14T22:13:20.000000Z"


def test_reads_back_in_duckdb_equal_to_json(analysis, tmp_path):
    duckdb = pytest.importorskip("duckdb")
    path = tmp_path / "flows.parquet"
    write(analysis, "parquet", path)
    assert duckdb_flows(path) == json_flows(analysis)
    con = duckdb.connect()
    q = f"""SELECT "destination.port", "portclass.severity" FROM read_parquet('{path}')
            WHERE list_contains("portclass.flags", 'dynamic-port') OR "portclass.status" = 'unassigned'
            ORDER BY "destination.port" """
    assert con.sql(q).fetchall() == [(42000, 5), (60000, 2)]
    types = dict((r[0], r[1]) for r in con.sql(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall())
    assert types["@timestamp"] == "TIMESTAMP WITH TIME ZONE"
    assert types["destination.port"] == "INTEGER" and types["portclass.flags"] == "VARCHAR[]"
    meta = dict(con.sql(f"SELECT key, value FROM parquet_kv_metadata('{path}')").fetchall())
    assert meta[b"portclass.notice"].decode() == analysis.registry.provenance.notice


def test_evidence_columns_are_typed_even_without_evidence(analysis, reg, tmp_path):
    """The same explicit schema whether no flow had payload evidence (all null) or some did."""
    schemas = []
    for a in (analysis, evidence_analysis(reg)):
        path = tmp_path / f"{len(schemas)}.parquet"
        write(a, "parquet", path)
        schema = pq.read_schema(path)
        assert {n: str(schema.field(n).type) for n in EVIDENCE_TYPES} == EVIDENCE_TYPES
        schemas.append(schema.remove_metadata())
    assert schemas[0].equals(schemas[1])
    table = pq.read_table(tmp_path / "0.parquet")
    assert table.column("portclass.verdict").to_pylist() == ["unverified"] * 6
    assert table.column("portclass.evidence.packet").null_count == 6


def test_tshark_columns_are_strings(reg, tmp_path):
    """After ``--dissect tshark`` Wireshark's protocol and the agreement are string columns equal to the JSON."""
    a = evidence_analysis(reg)
    order = np.argsort(a.flows.first_ts_ns, kind="stable")
    theirs = {"A": "http", "C": "dns", "F": "ssh", "G": "tls", "H": "ssh", "E": "tcp"}
    ts = np.full(len(a.flows), None, dtype=object)
    for name, i in zip(EVIDENCE_ORDER, order.tolist(), strict=True):
        ts[i] = theirs.get(name)
    a.labels.tshark_protocol = ts
    path = tmp_path / "flows.parquet"
    write(a, "parquet", path)
    table = pq.read_table(path)
    assert str(table.schema.field("portclass.tshark_protocol").type) == "string"
    assert str(table.schema.field("portclass.tshark_agreement").type) == "string"
    assert table.column("portclass.tshark_protocol").to_pylist() == [theirs.get(n) for n in EVIDENCE_ORDER]
    agreement = dict(zip(EVIDENCE_ORDER, table.column("portclass.tshark_agreement").to_pylist(), strict=True))
    assert (agreement["A"], agreement["H"], agreement["B"]) == ("agree", "agree", "unknown")
    assert pandas_flows(path) == json_flows(a)


def _evidence_expected(f: dict, name: str) -> None:
    """A flow document (nested, as the JSON output) carries the evidence ``EVIDENCE[name]`` says."""
    e = EVIDENCE[name]
    assert f["destination"]["port"] == e["port"], name
    assert f["network"].get("protocol") == e["protocol"], name
    pc = f["portclass"]
    assert (pc["verdict"], pc.get("verdict_note")) == (e["verdict"], e["note"]), name
    ev = pc.get("evidence", {})  # absent values are left out, never null
    assert (ev.get("signature"), ev.get("direction"), ev.get("packet")) == (
        e["signature"], e["direction"], e["packet"]), name
    assert ev.get("file") == (EVIDENCE_FILE if e["signature"] else None), name
    assert f.get("tls", {}).get("client", {}).get("server_name") == e["server_name"], name
    assert ("service-mismatch" in pc["flags"]) == (e["verdict"] == "mismatch"), name


def test_evidence_reads_back_in_pandas_equal_to_json(reg, tmp_path):
    import pandas as pd

    a = evidence_analysis(reg)
    path = tmp_path / "flows.parquet"
    write(a, "parquet", path)
    flows = pandas_flows(path)
    assert flows == json_flows(a)
    assert len(flows) == len(EVIDENCE_ORDER)
    for f, name in zip(flows, EVIDENCE_ORDER, strict=True):
        _evidence_expected(f, name)
    # nullable packet numbers stay integers with pandas' nullable dtypes
    df = pd.read_parquet(path, dtype_backend="numpy_nullable")
    assert str(df["portclass.evidence.packet"].dtype) == "Int64"
    assert df["portclass.evidence.packet"].tolist() == [
        EVIDENCE[n]["packet"] if EVIDENCE[n]["packet"] is not None else pd.NA for n in EVIDENCE_ORDER
    ]
    assert df.loc[df["portclass.verdict"] == "mismatch", ["destination.port", "network.protocol"]].values.tolist() == [
        [443, "ssh"]
    ]
    assert df["tls.client.server_name"].dropna().tolist() == ["mail.example.org"]


def test_evidence_reads_back_in_duckdb_equal_to_json(reg, tmp_path):
    duckdb = pytest.importorskip("duckdb")
    a = evidence_analysis(reg)
    path = tmp_path / "flows.parquet"
    write(a, "parquet", path)
    flows = duckdb_flows(path)
    assert flows == json_flows(a)
    for f, name in zip(flows, EVIDENCE_ORDER, strict=True):
        _evidence_expected(f, name)
    con = duckdb.connect()
    types = dict((r[0], r[1]) for r in con.sql(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall())
    assert {n: types[n] for n in EVIDENCE_TYPES} == {
        n: ("BIGINT" if t == "int64" else "VARCHAR") for n, t in EVIDENCE_TYPES.items()
    }
    q = f"""SELECT "portclass.verdict", count(*) FROM read_parquet('{path}') GROUP BY 1 ORDER BY 1"""
    assert con.sql(q).fetchall() == [("consistent", 4), ("mismatch", 1), ("unregistered", 1), ("unverified", 2)]
    q = f"""SELECT "destination.port", "portclass.service", "network.protocol", "portclass.evidence.packet"
            FROM read_parquet('{path}') WHERE "portclass.verdict" = 'mismatch'"""
    assert con.sql(q).fetchall() == [(443, "https", "ssh", 26)]


def test_metadata_carries_warning_and_provenance(analysis, tmp_path):
    path = tmp_path / "flows.parquet"
    write(analysis, "parquet", path)
    meta = {k.decode(): v.decode() for k, v in pq.read_schema(path).metadata.items()}
    prov = analysis.registry.provenance
    assert meta["portclass.notice"] == prov.notice
    assert meta["portclass.notice_source"] == "registry"
    assert meta["portclass.note"].startswith("portclass labels flows by port number only")
    assert meta["portclass.label_basis"].startswith("server port number in the IANA registry")
    reg = json.loads(meta["portclass.registry"])
    assert reg["sha256"] == prov.sha256 and reg["edition"] == "2026-08-17" and reg["full"] is True
    assert meta["portclass.registry_line"] == prov.line()
    assert json.loads(meta["portclass.source_files"]) == ["synthetic"]
    totals = json.loads(meta["portclass.totals"])
    assert totals["flows"] == 6 and totals["flagged_flows"] == 2 and totals["packets"] == 18
    assert "portclass.selection" not in meta


def test_types_read_well_in_pandas(analysis, tmp_path):
    import pandas as pd

    path = tmp_path / "flows.parquet"
    write(analysis, "parquet", path)
    df = pd.read_parquet(path)
    assert str(df["@timestamp"].dtype) == "datetime64[us, UTC]"
    assert str(df["destination.port"].dtype) == "int32"
    assert str(df["network.bytes"].dtype) == "int64"
    assert df.groupby("network.transport")["network.bytes"].sum().to_dict() == {
        "tcp": 2112 + 148 + 168 + 400,
        "udp": 410,
    }
    assert df.loc[df["portclass.severity"] > 0, "destination.port"].tolist() == [42000, 60000]


def test_filtered_file_keeps_whole_totals(analysis, tmp_path):
    path = tmp_path / "flows.parquet"
    write(apply(analysis, FlowFilter(flags=("dynamic-port",))), "parquet", path)
    table = pq.read_table(path)
    assert table.column("destination.port").to_pylist() == [60000]
    meta = table.schema.metadata
    sel = json.loads(meta[b"portclass.selection"])
    assert sel == {
        "filter": "--flag dynamic-port",
        "kept_flows": 1,
        "total_flows": 6,
        "kept_flagged_flows": 1,
        "total_flagged_flows": 2,
    }
    totals = json.loads(meta[b"portclass.totals"])
    assert totals["flows"] == 6 and totals["selection"]["kept_flows"] == 1


def test_empty_analysis(reg, tmp_path):
    empty = Analysis(
        flows=FlowTable.empty(),
        labels=Labels(
            transport=np.zeros(0, np.int8),
            status=np.zeros(0, np.uint8),
            service=np.zeros(0, np.int32),
            flags=np.zeros(0, np.uint8),
            severity=np.zeros(0, np.uint8),
        ),
        stats=CaptureStats(),
        registry=reg,
    )
    path = tmp_path / "empty.parquet"
    write(empty, "parquet", path)
    table = pq.read_table(path)
    assert table.num_rows == 0
    assert table.schema.field("portclass.flags").type == pa.list_(pa.string())
    assert {n: str(table.schema.field(n).type) for n in EVIDENCE_TYPES} == EVIDENCE_TYPES
    assert table.schema.metadata[b"portclass.notice"] == reg.provenance.notice.encode()


def test_needs_an_output_file(analysis, monkeypatch):
    with pytest.raises(PortclassError, match="give -o FILE"):
        write(analysis, "parquet", None)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    with pytest.raises(PortclassError, match="refusing to write binary Parquet to a terminal"):
        write(analysis, "parquet", "-")


def test_dash_writes_to_a_pipe(analysis, monkeypatch):
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw))
    write(analysis, "parquet", "-")
    assert pq.read_table(io.BytesIO(raw.getvalue())).num_rows == 6


def test_atomic_write_keeps_the_old_file_on_failure(analysis, tmp_path, monkeypatch):
    import classifier.atomic as atomic

    path = tmp_path / "flows.parquet"
    write(analysis, "parquet", path)
    before = path.read_bytes()
    written = []

    def full_disk(fd):  # fails after the new bytes went to the temporary file
        written.append(sorted(p.name for p in tmp_path.iterdir()))
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "fsync", full_disk)
    with pytest.raises(OSError, match="disk full"):
        write(apply(analysis, FlowFilter(ports=(53,))), "parquet", path)
    assert written  # the new bytes were all written (to an anonymous or a named temporary file)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flows.parquet"]


def test_cli_refuses_parquet_without_output_before_reading(tmp_path, xml_path, monkeypatch, capsys):
    import classifier.commands.analyze as cmd

    cap = tmp_path / "x.pcap"
    cap.write_bytes(b"")
    monkeypatch.setattr(cmd, "analyze", lambda *a, **k: pytest.fail("read the capture before refusing"))
    assert main(["--registry", str(xml_path), str(cap), "-f", "parquet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "portclass: --format parquet writes a binary file: give -o FILE (or -o - for a pipe)"
    r = run_cli("--registry", str(xml_path), str(cap), "-f", "parquet")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "give -o FILE" in r.stderr


def test_cli_writes_parquet_equal_to_json(tmp_path, xml_path, reg, monkeypatch):
    import classifier.commands.analyze as cmd

    cap = tmp_path / "x.pcap"
    cap.write_bytes(b"")
    monkeypatch.setattr(cmd, "analyze", lambda paths, registry, *a, **k: known_analysis(registry))
    out, js = tmp_path / "f.parquet", tmp_path / "f.json"
    assert main(["--registry", str(xml_path), str(cap), "-f", "parquet", "-o", str(out), "--no-progress"]) == 0
    assert main(["--registry", str(xml_path), str(cap), "-f", "json", "-o", str(js), "--no-progress"]) == 0
    assert pandas_flows(out) == json.loads(js.read_text())["flows"]


@pytest.mark.skipif(not HAVE_READER, reason="capture reader not there yet")
def test_cli_end_to_end_from_a_pcap(tmp_path, xml_path):
    pcap = tmp_path / "known.pcap"
    write_pcap(pcap)
    out, js = tmp_path / "f.parquet", tmp_path / "f.json"
    for fmt, dest in (("parquet", out), ("json", js)):
        r = run_cli("--registry", str(xml_path), str(pcap), "-f", fmt, "-o", str(dest), "--no-progress")
        assert r.returncode == 0, r.stderr
    flows = pandas_flows(out)
    assert flows == json.loads(js.read_text())["flows"]
    assert duckdb_flows(out) == flows
    assert [f["destination"]["port"] for f in flows] == ORDER
    assert [f["portclass"]["flags"] for f in flows] == [EXPECTED[p]["flags"] for p in ORDER]
    assert [f["source"]["bytes"] for f in flows] == [EXPECTED[p]["c_bytes"] for p in ORDER]


SAMPLE = Path(__file__).resolve().parents[1] / "captures" / "sample.pcap"


@pytest.mark.skipif(not (HAVE_READER and SAMPLE.is_file()), reason="captures/sample.pcap or the reader not there yet")
def test_sample_capture_parquet_equals_json(tmp_path, xml_path):
    out, js = tmp_path / "s.parquet", tmp_path / "s.json"
    for fmt, dest in (("parquet", out), ("json", js)):
        r = run_cli("--registry", str(xml_path), str(SAMPLE), "-f", fmt, "-o", str(dest), "--no-progress")
        assert r.returncode == 0, r.stderr
    flows = json.loads(js.read_text())["flows"]
    assert flows and pandas_flows(out) == flows
    assert duckdb_flows(out) == flows
