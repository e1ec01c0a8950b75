"""What each flow said (classifier.evidence.extract): HTTP request line and headers, DNS question, SSH
software, server greetings; checked against tshark's dissectors on real captures and the project sample."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from classifier.api import classify
from tests.conftest import ROOT
from tests.shared import shared


def tshark_fields(pcap: Path, display: str, *fields: str) -> set[tuple[str, ...]]:
    """tshark's values of ``fields`` for the frames matching ``display`` (first occurrence of each field)."""
    cmd = ["tshark", "-r", str(pcap), "-n", "-Y", display, "-T", "fields", "-E", "occurrence=f"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return {tuple(line.split("\t")) for line in out.splitlines() if line.strip()}


@pytest.mark.parametrize("name", ["http_auth.pcap", "exe_download.pcap", "http-manipulated.pcap", "ocsp.pcapng"])
def test_http_request_fields_match_tshark(reg, name) -> None:
    """Each TCP connection with a request tshark dissects has one in portclass (a flow keeps its first
    well-formed one), and each of portclass's requests is one tshark read, field for field."""
    pcap = shared("captures", "ndpi", "pcap", name)
    mine = [
        (r["http.request.method"], r["url.original"], r["url.domain"] or "", r["user_agent.original"] or "")
        for r in classify(pcap, reg)
        if r["http.request.method"]
    ]
    said = tshark_fields(pcap, "http.request", "tcp.stream", "http.request.method", "http.request.uri", "http.host",
                         "http.user_agent")  # fmt: skip
    theirs = {
        (m, uri, host.split(":")[0].lower() if not host.startswith("[") else host.lower(), ua[:112])
        for m, uri, host, ua in ((t + ("", "", "", "", ""))[1:5] for t in said)
    }
    assert len(mine) == len({t[0] for t in said}) > 0, (mine, said)
    assert set(mine) <= {(m, u[:120], h, a) for m, u, h, a in theirs}, set(mine) - theirs


@pytest.mark.parametrize("name", ["dns_long_domainname.pcap", "dns-invalid-chars.pcap", "bad-dns-traffic.pcap"])
def test_dns_question_matches_tshark(reg, name) -> None:
    """Each flow's question is one tshark read, and every flow with a query has one; tshark shows an
    unprintable label byte escaped (``\\004``), portclass writes '?' (dns-invalid-chars.pcap has three)."""
    import re

    from classifier.evidence.extract import QTYPES

    pcap = shared("captures", "ndpi", "pcap", name)
    mine = [(r["dns.question.name"], r["dns.question.type"]) for r in classify(pcap, reg) if r["dns.question.name"]]
    said = tshark_fields(pcap, "dns.flags.response == 0", "ip.src", "udp.srcport", "ip.dst", "udp.dstport",
                         "dns.qry.name", "dns.qry.type")  # fmt: skip
    by_name = {(re.sub(r"\\\d{3}", "?", q).lower()[:96], QTYPES.get(int(t), t)) for *_, q, t in said}
    assert len(mine) == len({tuple(t[:4]) for t in said}) > 0, (mine, said)
    assert set(mine) <= by_name, set(mine) - by_name


def test_sample_capture_says_what_each_flow_said(reg) -> None:
    rows = dict(enumerate(classify(ROOT / "captures" / "sample.pcap", reg)))
    said = {
        k: {c: v for c, v in r.items() if v is not None and (c.split(".")[0] in ("http", "url", "user_agent", "dns")
            or c in ("portclass.ssh.client_software", "portclass.ssh.server_software", "portclass.server_greeting"))}
        for k, r in rows.items()
    }  # fmt: skip
    got = [d for d in said.values() if d]
    assert {"http.request.method": "GET", "url.original": "/", "url.domain": "example.com",
            "user_agent.original": "curl/8.5.0"} in got  # fmt: skip
    assert {"dns.question.name": "example.com", "dns.question.type": "TXT"} in got
    assert {"portclass.ssh.client_software": "OpenSSH_9.6", "portclass.ssh.server_software": "OpenSSH_9.2"} in got
    assert {"portclass.server_greeting": "mail.example.com ESMTP Postfix"} in got
    # the mismatch flows say what they are: HTTP on 3306 names its host
    assert any(d.get("url.domain") == "db.example.com" for k, d in said.items() if rows[k]["destination.port"] == 3306)


def test_flagged_flows_show_what_they_said_in_terminal_and_html(xml_path, tmp_path) -> None:
    from tests.conftest import run_cli

    res = run_cli("--registry", str(xml_path), str(ROOT / "captures" / "sample.pcap"), env={"COLUMNS": "160"})
    assert "GET db.example.com/" in res.stdout  # HTTP on 3306 (mysql)
    assert "OpenSSH_9.6 -> OpenSSH_9.2" in res.stdout  # SSH on 443 (https)
    assert "example.org AAAA" in res.stdout  # DNS on 40000
    from classifier.pipeline import analyze
    from classifier.registry.sources import compile_file
    from classifier.report.html import table_payload

    a = analyze([ROOT / "captures" / "sample.pcap"], compile_file(xml_path, use_cache=False))
    said = table_payload(a)["server_names"]
    assert {"GET db.example.com/", "OpenSSH_9.6 -> OpenSSH_9.2", "example.org AAAA"} <= set(said)


def test_what_flows_said_reaches_zeek_and_parquet(xml_path, tmp_path) -> None:
    import pyarrow.parquet as pq

    from tests.conftest import run_cli

    zeek, parquet = tmp_path / "conn.log", tmp_path / "flows.parquet"
    sample = str(ROOT / "captures" / "sample.pcap")
    for fmt, out in (("zeek", zeek), ("parquet", parquet)):
        res = run_cli("--registry", str(xml_path), "--format", fmt, "-o", str(out), sample)
        assert res.returncode == 0, res.stderr
    lines = zeek.read_text().splitlines()
    fields = next(x for x in lines if x.startswith("#fields")).split("\t")[1:]
    rows = [dict(zip(fields, x.split("\t"), strict=True)) for x in lines if not x.startswith("#")]
    (mysql,) = [r for r in rows if r["id.resp_p"] == "3306"]
    assert (mysql["portclass_http_method"], mysql["portclass_http_host"], mysql["portclass_http_uri"]) == (
        "GET", "db.example.com", "/")  # fmt: skip
    assert {r["portclass_dns_qtype_name"] for r in rows if r["portclass_dns_query"] == "example.org"} == {"AAAA"}
    t = pq.read_table(parquet).to_pylist()
    (row,) = [r for r in t if r["destination.port"] == 3306]
    assert row["url.domain"] == "db.example.com" and row["http.request.method"] == "GET"


def test_dns_name_longer_than_the_field_is_cut_not_dotted() -> None:
    """A question name past the 96-byte field keeps its own characters up to the cut (it once ended in a
    stray '.': the dot of a label the field had no room for overwrote the last character)."""
    import struct

    import numpy as np

    from classifier.evidence.extract import dns_question, fields_of

    labels = [b"a" * 40, b"b" * 40, b"c" * 30, b"example", b"org"]
    name = b".".join(labels).decode()
    msg = struct.pack("!6H", 7, 0x0100, 1, 0, 0, 0) + b"".join(bytes([len(x)]) + x for x in labels) + b"\0"
    msg += struct.pack("!2H", 16, 1)
    got = dns_question(np.frombuffer(msg, np.uint8), np.array([0]), np.array([len(msg)]))
    assert fields_of("dns", got[0].tobytes()) == {"dns.question.name": name[:96], "dns.question.type": "TXT"}
