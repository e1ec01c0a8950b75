"""``--format zeek``: a conn.log in Zeek's TSV layout, read back by an independent reader and by Zeek-log libraries."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from classifier.capture.columns import CaptureStats
from classifier.filters import FlowFilter, apply
from classifier.flows import FlowTable
from classifier.label import Labels
from classifier.pipeline import Analysis
from classifier.registry.compile import compile_records
from classifier.registry.model import Provenance, Record
from classifier.report import write, zeek
from classifier.report.rows import flow_columns
from tests.conftest import run_cli
from tests.synthetic import (
    EVIDENCE,
    EVIDENCE_ORDER,
    EXPECTED,
    HAVE_READER,
    ORDER,
    T0,
    evidence_analysis,
    known_analysis,
    write_pcap,
)

# Zeek's conn.log columns (base/protocols/conn/main.zeek, Conn::Info; community_id from
# policy/protocols/conn/community-id-logging.zeek), with the types its #types line shows.
ZEEK_CONN = [
    ("ts", "time"),
    ("uid", "string"),
    ("id.orig_h", "addr"),
    ("id.orig_p", "port"),
    ("id.resp_h", "addr"),
    ("id.resp_p", "port"),
    ("proto", "enum"),
    ("service", "string"),
    ("duration", "interval"),
    ("orig_bytes", "count"),
    ("resp_bytes", "count"),
    ("conn_state", "string"),
    ("local_orig", "bool"),
    ("local_resp", "bool"),
    ("missed_bytes", "count"),
    ("history", "string"),
    ("orig_pkts", "count"),
    ("orig_ip_bytes", "count"),
    ("resp_pkts", "count"),
    ("resp_ip_bytes", "count"),
    ("tunnel_parents", "set[string]"),
    ("ip_proto", "count"),
    ("community_id", "string"),
]


# --------------------------------------------------------------------------- an independent reader


def _unescape(s: str) -> str:
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), s)


def read_conn_log(text: str) -> tuple[dict[str, str], list[dict[str, object]]]:
    """Parse a Zeek TSV log by its own header: directives, then typed rows (None for unset)."""
    lines = text.split("\n")
    assert lines[-1] == ""
    meta: dict[str, str] = {}
    rows: list[dict[str, object]] = []
    sep = None
    fields: list[str] = []
    types: list[str] = []
    for line in lines[:-1]:
        if line.startswith("#separator "):
            sep = _unescape(line.split(" ", 1)[1])
            continue
        if line.startswith("#"):
            assert sep is not None, "#separator must come first"
            key, _, value = line[1:].partition(sep)
            meta[key] = value
            if key == "fields":
                fields = value.split(sep)
            elif key == "types":
                types = value.split(sep)
            continue
        cells = line.split(sep)
        assert len(cells) == len(fields) == len(types)
        rows.append({f: _convert(c, t, meta) for f, t, c in zip(fields, types, cells, strict=True)})
    return meta, rows


def _convert(cell: str, ztype: str, meta: dict[str, str]) -> object:
    if cell == meta["unset_field"]:
        return None
    if ztype.startswith("set["):
        if cell == meta["empty_field"]:
            return []
        return [_convert(x, ztype[4:-1], meta) for x in cell.split(meta["set_separator"])]
    if ztype in ("count", "port"):
        return int(cell)
    if ztype in ("time", "interval"):
        assert re.fullmatch(r"\d+\.\d{6}", cell), cell  # Zeek's %.6f
        return float(cell)
    if ztype == "bool":
        return {"T": True, "F": False}[cell]
    if cell == meta["empty_field"]:
        return ""
    return _unescape(cell)


# --------------------------------------------------------------------------- tests


@pytest.fixture()
def analysis(reg) -> Analysis:
    return known_analysis(reg)


def test_header_follows_zeeks_layout(analysis):
    text = zeek.render(analysis)
    lines = text.split("\n")
    assert lines[0] == "#separator \\x09"
    assert lines[1:5] == ["#set_separator\t,", "#empty_field\t(empty)", "#unset_field\t-", "#path\tconn"]
    assert re.fullmatch(r"#open\t\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d", lines[5])
    fields_i = next(i for i, ln in enumerate(lines) if ln.startswith("#fields\t"))
    assert lines[fields_i + 1].startswith("#types\t")
    names = lines[fields_i].split("\t")[1:]
    types = lines[fields_i + 1].split("\t")[1:]
    assert list(zip(names, types, strict=True))[: len(ZEEK_CONN)] == ZEEK_CONN
    assert [n for n in names if n.startswith("portclass_")] == names[len(ZEEK_CONN) :]
    assert dict(zip(names, types, strict=True))["portclass_flags"] == "set[string]"
    # the registry's warning and provenance in # header lines, before #fields
    head = "\n".join(lines[:fields_i])
    assert f"#portclass_notice\t{analysis.registry.provenance.notice}" in head
    assert "#portclass_registry\tIANA registry: " in head and "2026-08-17" in head
    assert re.fullmatch(r"#close\t\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d", lines[-2]) and lines[-1] == ""
    data = lines[fields_i + 2 : -2]
    assert len(data) == 6 and not any(ln.startswith("#") for ln in data)


def test_rows_read_back_with_known_values(analysis):
    meta, rows = read_conn_log(zeek.render(analysis))
    assert meta["path"] == "conn"
    assert [r["id.resp_p"] for r in rows] == ORDER
    cid = flow_columns(analysis)["network.community_id"]
    for row, port, community in zip(rows, ORDER, cid, strict=True):
        e = EXPECTED[port]
        assert row["ts"] == pytest.approx(e["start"] / 1e9, abs=1e-7)
        assert row["id.orig_h"] == e["client"] and row["id.orig_p"] == e["cport"]
        assert row["id.resp_h"] == e["server"]
        assert row["proto"] == e["transport"]
        assert row["ip_proto"] == (6 if e["transport"] == "tcp" else 17)
        assert row["orig_pkts"] == e["c_pkts"] and row["resp_pkts"] == e["s_pkts"]
        assert row["duration"] == pytest.approx((e["end"] - e["start"]) / 1e9, abs=1e-7)
        assert row["conn_state"] == e["conn_state"]
        assert row["community_id"] == community and community.startswith("1:")
        assert row["portclass_service"] == e["service"]
        assert row["portclass_aliases"] == e["aliases"]
        assert row["portclass_status"] == e["status"]
        assert row["portclass_flags"] == e["flags"]
        assert row["portclass_severity"] == e["severity"]
        assert row["portclass_server_rule"] == e["rule"]
        assert row["portclass_transport"] == e["transport"]
        assert row["portclass_orig_wire_bytes"] == e["c_bytes"]
        assert row["portclass_resp_wire_bytes"] == e["s_bytes"]
        # what portclass cannot know stays unset, never a made-up value
        for name in zeek.NEVER_SET:
            assert row[name] is None, name
        # no payload evidence in these flows: Zeek's service stays unset, the verdict says why
        assert row["service"] is None and row["portclass_protocol"] is None
        assert row["portclass_verdict"] == "unverified" and row["portclass_server_name"] is None
    assert rows[0]["portclass_description"] == "World Wide Web HTTP"
    assert meta["portclass_unset"].startswith(",".join(zeek.NEVER_SET))


def test_evidence_fills_service_and_verdict_fields(reg):
    """Zeek's service is the protocol the payload showed (Zeek's analyzer names); the registry's name stays apart."""
    a = evidence_analysis(reg)
    text = zeek.render(a)
    meta, rows = read_conn_log(text)
    assert "service" not in meta["portclass_unset"].split(" ")[0].split(",")
    types = dict(zip(meta["fields"].split("\t"), meta["types"].split("\t"), strict=True))
    assert [types[f] for f in ("service", "portclass_verdict", "portclass_protocol", "portclass_server_name")] == [
        "string"
    ] * 4
    assert meta["fields"].split("\t")[-4:-1] == ["portclass_verdict", "portclass_protocol", "portclass_server_name"]
    assert len(rows) == len(EVIDENCE_ORDER)
    for row, name in zip(rows, EVIDENCE_ORDER, strict=True):
        e = EVIDENCE[name]
        assert row["id.resp_p"] == e["port"], name
        assert row["service"] == e["zeek_service"], name
        assert row["portclass_verdict"] == e["verdict"], name
        assert row["portclass_protocol"] == e["protocol"], name
        assert row["portclass_server_name"] == e["server_name"], name
    by_name = dict(zip(EVIDENCE_ORDER, rows, strict=True))
    # SSH answering on 443/tcp: Zeek would say ssh, the registry says https, and the flag says so
    h = by_name["H"]
    assert (h["service"], h["portclass_service"], h["portclass_protocol"]) == ("ssh", "https", "ssh")
    assert h["portclass_flags"] == ["service-mismatch"] and h["portclass_severity"] == 6
    # TLS is Zeek's "ssl"; the client's server name is its own field
    g = by_name["G"]
    assert (g["service"], g["portclass_protocol"], g["portclass_service"]) == ("ssl", "tls", "imaps")
    assert g["portclass_server_name"] == "mail.example.org"


def test_evidence_read_back_by_zeek_libraries(reg, tmp_path):
    """parsezeeklogs and zat read the new fields with the same values as the independent reader."""
    a = evidence_analysis(reg)
    path = tmp_path / "conn.log"
    write(a, "zeek", path)
    _, mine = read_conn_log(path.read_text())
    parsezeeklogs = pytest.importorskip("parsezeeklogs")
    with parsezeeklogs.ZeekLog(path) as log:
        theirs = list(log)
        assert log.skipped == 0
        assert log.types["portclass_verdict"] == "string" and log.types["service"] == "string"
    assert [r["service"] for r in theirs] == [EVIDENCE[n]["zeek_service"] for n in EVIDENCE_ORDER]
    assert [r["portclass_verdict"] for r in theirs] == [EVIDENCE[n]["verdict"] for n in EVIDENCE_ORDER]
    for m, t in zip(mine, theirs, strict=True):
        for key in ("service", "portclass_verdict", "portclass_protocol", "portclass_server_name"):
            assert t[key] == m[key], key
    pytest.importorskip("zat")
    from zat.log_to_dataframe import LogToDataFrame
    from zat.zeek_log_reader import ZeekLogReader

    rows = list(ZeekLogReader(str(path)).readrows())
    assert [r["service"] for r in rows] == [EVIDENCE[n]["zeek_service"] or "-" for n in EVIDENCE_ORDER]
    assert [r["portclass_server_name"] for r in rows] == [EVIDENCE[n]["server_name"] or "-" for n in EVIDENCE_ORDER]
    df = LogToDataFrame().create_dataframe(str(path), ts_index=False)
    assert df["portclass_verdict"].astype(str).tolist() == [EVIDENCE[n]["verdict"] for n in EVIDENCE_ORDER]
    assert df.loc[df["portclass_verdict"] == "mismatch", ["id.resp_p", "service"]].values.tolist() == [[443, "ssh"]]


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"tab\there#,x", "tab\there#,x"),
        (b"-", "-"),
        (b"(empty)", "(empty)"),
        (b"line\nbreak\\", "line\nbreak\\"),
        (b"bad\xffutf8", "bad\ufffdutf8"),
    ],
)
def test_hostile_server_names_are_escaped(reg, tmp_path, raw, text):
    """A TLS server name comes from packets: whatever its bytes, it reads back as one value of one line."""
    a = evidence_analysis(reg)
    i = int(np.flatnonzero(a.flows.server_name != b"")[0])
    a.flows.server_name[i] = raw
    path = tmp_path / "conn.log"
    write(a, "zeek", path)
    body = path.read_text()
    assert body.count("\n") == len(body.rstrip("\n").split("\n"))
    _, rows = read_conn_log(body)
    assert [r["portclass_server_name"] for r in rows if r["portclass_server_name"]] == [text]
    parsezeeklogs = pytest.importorskip("parsezeeklogs")
    theirs = [r["portclass_server_name"] for r in parsezeeklogs.read_zeek(path)]
    assert [x for x in theirs if x] == [text]


def test_uids_are_zeek_shaped_unique_and_stable(analysis, reg):
    _, rows = read_conn_log(zeek.render(analysis))
    uids = [r["uid"] for r in rows]
    assert all(re.fullmatch(r"C[0-9A-Za-z]{17}", u) for u in uids)
    assert len(set(uids)) == len(uids)
    _, again = read_conn_log(zeek.render(known_analysis(reg)))
    assert [r["uid"] for r in again] == uids
    # a filter keeps each flow's uid
    _, some = read_conn_log(zeek.render(apply(analysis, FlowFilter(ports=(53, 22)))))
    assert [r["uid"] for r in some] == [uids[ORDER.index(53)], uids[ORDER.index(22)]]


def test_duration_unset_for_a_single_packet(reg):
    from classifier.flows import FlowAggregator, make_batch
    from classifier.pipeline import label_flows

    agg = FlowAggregator(0)
    agg.add(make_batch(ts_ns=[T0], src=["192.0.2.1"], dst=["192.0.2.2"], sport=50000, dport=53, proto=17))
    flows, labels = label_flows(agg.result(), reg)
    a = Analysis(flows=flows, labels=labels, stats=agg.stats, registry=reg)
    _, rows = read_conn_log(zeek.render(a))
    assert rows[0]["duration"] is None and rows[0]["conn_state"] == "S0"
    assert rows[0]["ts"] == pytest.approx(T0 / 1e9)


def test_parsezeeklogs_reads_the_same_flows(analysis, tmp_path):
    parsezeeklogs = pytest.importorskip("parsezeeklogs")
    path = tmp_path / "conn.log"
    write(analysis, "zeek", path)
    _, mine = read_conn_log(path.read_text())
    with parsezeeklogs.ZeekLog(path) as log:
        theirs = list(log)
        assert log.path == "conn"
        assert log.skipped == 0
        assert log.header.directives["portclass_notice"] == analysis.registry.provenance.notice
        assert log.types["portclass_flags"] == "set[string]"
    assert len(theirs) == len(mine) == 6
    for a, b in zip(mine, theirs, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], float):
                assert b[key] == pytest.approx(a[key], abs=1e-7), key
            else:
                assert b[key] == a[key], key


def test_zat_reads_the_same_flows(analysis, tmp_path):
    pytest.importorskip("zat")
    from zat.log_to_dataframe import LogToDataFrame
    from zat.zeek_log_reader import ZeekLogReader

    path = tmp_path / "conn.log"
    write(analysis, "zeek", path)
    _, mine = read_conn_log(path.read_text())
    rows = list(ZeekLogReader(str(path)).readrows())
    assert [r["id.resp_p"] for r in rows] == ORDER
    for a, b in zip(mine, rows, strict=True):
        for key in ("uid", "id.orig_h", "id.orig_p", "id.resp_h", "proto", "orig_pkts", "resp_pkts", "community_id"):
            assert b[key] == a[key], key
        assert b["ts"].timestamp() == pytest.approx(a["ts"], abs=1e-6)
        assert b["portclass_service"] == (a["portclass_service"] or "-")
        assert b["portclass_severity"] == a["portclass_severity"]
    df = LogToDataFrame().create_dataframe(str(path), ts_index=False)
    assert len(df) == 6
    assert df["id.resp_p"].tolist() == ORDER
    assert df["portclass_status"].astype(str).tolist() == [EXPECTED[p]["status"] for p in ORDER]
    # Zeek's connection outcome reads back through Zeek's own tooling: states, histories, byte counts
    assert df["conn_state"].astype(str).tolist() == [EXPECTED[p]["conn_state"] for p in ORDER]
    # (make_batch's packets carry no payload: the UDP flows have no letter, so no history)
    assert df["history"].astype(object).fillna("-").tolist() == ["ShAaFf", "S", "-", "-", "Sr", "Aa"]
    assert df["orig_ip_bytes"].tolist() == [
        EXPECTED[p]["c_bytes"] - EXPECTED[p]["c_pkts"] * 14 for p in ORDER
    ]  # IP lengths: the frames less their Ethernet headers (make_batch's frames)


def _odd_registry(description: str, name: str = "odd") -> object:
    recs = [Record(name=name, port_low=80, port_high=80, transport="tcp", description=description)]
    recs.append(Record(name="odd,alias", port_low=80, port_high=80, transport="tcp", description="x", alias_of=name))
    return compile_records(recs, Provenance(source="test", sha256="0" * 64, format="xml", notice="NOTICE\tTAB"))


@pytest.mark.parametrize(
    "description",
    ["tab\there # hash \\ backslash, comma", "-", "(empty)", "", "line\nbreak", "utf-8 é ü"],
)
def test_values_are_escaped_and_read_back(description, tmp_path):
    from tests.synthetic import known_analysis as build

    a = build(_odd_registry(description))
    path = tmp_path / "conn.log"
    write(a, "zeek", path)
    text = path.read_text()
    assert text.count("\n") == len(text.rstrip("\n").split("\n"))  # no raw newline inside a value
    meta, rows = read_conn_log(text)
    http = rows[ORDER.index(80)]
    assert http["portclass_description"] == description
    assert http["portclass_service"] == "odd"
    assert http["portclass_aliases"] == ["odd,alias"]  # the set separator inside an element is escaped
    assert _unescape(meta["portclass_notice"]) == "NOTICE\tTAB"
    parsezeeklogs = pytest.importorskip("parsezeeklogs")
    theirs = list(parsezeeklogs.read_zeek(path))
    assert theirs[ORDER.index(80)]["portclass_description"] == description
    assert theirs[ORDER.index(80)]["portclass_aliases"] == ["odd,alias"]
    import pandas as pd

    df = pd.read_csv(path, sep="\t", comment="#", header=None, keep_default_na=False)
    assert df.shape == (6, len(zeek.FIELDS))  # '#' inside a value cannot cut a line


def test_filter_is_stated_in_the_header(analysis):
    a = apply(analysis, FlowFilter(flagged_only=True))
    meta, rows = read_conn_log(zeek.render(a))
    assert [r["id.resp_p"] for r in rows] == [42000, 60000]
    assert meta["portclass_filter"] == "filter --flagged-only: kept 2 of 6 flows (2 flagged)"


def test_empty_analysis_is_a_valid_log(reg):
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
    meta, rows = read_conn_log(zeek.render(empty))
    assert rows == [] and meta["path"] == "conn" and "close" in meta


def test_written_atomically_to_a_file(analysis, tmp_path):
    path = tmp_path / "conn.log"
    path.write_text("old")
    write(analysis, "zeek", path)
    assert path.read_text().startswith("#separator \\x09\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conn.log"]  # no temporary file left


@pytest.mark.skipif(not HAVE_READER, reason="capture reader not there yet")
def test_cli_end_to_end_from_a_pcap(tmp_path: Path, xml_path):
    pcap = tmp_path / "known.pcap"
    write_pcap(pcap)
    out = tmp_path / "conn.log"
    r = run_cli("--registry", str(xml_path), str(pcap), "-f", "zeek", "-o", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    _, rows = read_conn_log(out.read_text())
    assert [r["id.resp_p"] for r in rows] == ORDER
    for row, port in zip(rows, ORDER, strict=True):
        e = EXPECTED[port]
        assert (row["id.orig_h"], row["id.resp_h"], row["portclass_service"]) == (
            e["client"],
            e["server"],
            e["service"],
        )
        assert (row["orig_pkts"], row["resp_pkts"], row["conn_state"]) == (e["c_pkts"], e["s_pkts"], e["conn_state"])
        assert row["portclass_flags"] == e["flags"]
