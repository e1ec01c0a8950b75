"""Malformed records and implausible sources: one rule for every rendering, never a traceback.

A record whose port is not a port or range (``1e3``, ``80-90-100``, ``-1``, `` 8 0 ``) is skipped and
counted (``registry info`` shows the count and an example); a "full" rendering holding a handful of
records is read as partial, so the ports it omits are unknown rather than unassigned.
"""

from __future__ import annotations

import json

import pytest

from classifier.registry.compile import STATUS_NAMES
from classifier.registry.sources import compile_file
from tests.conftest import run_cli
from tests.shared import shared

BAD_PORTS = ["1e3", "80-90-100", "-1", " 8 0 ", "70000", "90-80"]
XML_HTTP = b"<name>http</name>\n    <protocol>tcp</protocol>"
CSV_HTTP = b"\nhttp,80,tcp,"


def _mutate(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1, old
    return data.replace(old, new)


def _xml_with(xml_path, port: str, *, name: bytes = b"<name>http</name>") -> bytes:
    """The 2026 XML with the http/tcp record's <number>80</number> replaced (and its name, if asked)."""
    data = xml_path.read_bytes()
    assert data.count(XML_HTTP) == 1
    at = data.index(XML_HTTP)
    num = data.index(b"<number>80</number>", at)
    head = data[:at] + XML_HTTP.replace(b"<name>http</name>", name) + data[at + len(XML_HTTP) : num]
    return head + f"<number>{port}</number>".encode() + data[num + len(b"<number>80</number>") :]


@pytest.mark.parametrize("port", BAD_PORTS)
def test_xml_bad_port_is_skipped_and_counted(tmp_path, user_dirs, xml_path, port):
    f = tmp_path / "bad.xml"
    f.write_bytes(_xml_with(xml_path, port))
    res = run_cli("--registry", str(f), "registry", "info", "--format", "json")
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    d = json.loads(res.stdout)
    assert d["records"] == 14532 and d["skipped"] == 1 and d["full"]
    assert d["skipped_example"].startswith("record ") and "(http)" in d["skipped_example"]
    assert repr(port.strip()) in d["skipped_example"]
    table = run_cli("--registry", str(f), "registry", "info")
    assert "1 malformed records" in table.stdout and "(http)" in table.stdout
    dump = run_cli("registry", "dump", str(f))
    assert dump.returncode == 0 and len(dump.stdout.splitlines()) == 14532
    imp = run_cli("registry", "import", str(f))
    assert imp.returncode == 0 and "Traceback" not in imp.stderr, imp.stderr
    reg = compile_file(f, use_cache=False)  # 80/tcp keeps its other records (www, www-http), not http
    names = [r.name for r in reg.names_on("tcp", 80)]
    assert "http" not in names and "www" in names
    assert "1 malformed records skipped" in reg.provenance.line()


def test_xml_empty_number_is_a_name_only_record(tmp_path, xml_path):
    """An empty <number> means no port, as an empty CSV cell does: the record is kept, name only."""
    f = tmp_path / "empty.xml"
    f.write_bytes(_xml_with(xml_path, ""))
    reg = compile_file(f, use_cache=False)
    assert reg.provenance.records == 14533 and reg.provenance.skipped == 0
    assert any(r.name == "http" and r.transport == "tcp" and r.port_low is None for r in reg.records)


def test_xml_record_with_neither_name_nor_port_is_skipped(tmp_path, xml_path):
    data = _xml_with(xml_path, " ", name=b"")
    f = tmp_path / "nameless.xml"
    f.write_bytes(data)
    reg = compile_file(f, use_cache=False)
    assert reg.provenance.skipped == 1 and "names neither a service nor a port" in reg.provenance.skipped_example


def test_analysis_with_damaged_registry_reports_it(tmp_path, user_dirs, xml_path):
    f = tmp_path / "bad.xml"
    f.write_bytes(_xml_with(xml_path, "1e3"))
    out = tmp_path / "r.json"
    cap = shared("captures", "ndpi", "pcap", "http-lines-split.pcap")
    res = run_cli("--registry", str(f), "-f", "json", "-o", str(out), str(cap))
    assert res.returncode in (0, 1) and "Traceback" not in res.stderr, res.stderr
    doc = json.loads(out.read_text())
    text = json.dumps(doc)
    assert '"skipped": 1' in text and "1 malformed records skipped" in text


@pytest.mark.parametrize("port", BAD_PORTS)
def test_csv_bad_port_is_skipped_and_counted(tmp_path, csv_path, port):
    f = tmp_path / "bad.csv"
    f.write_bytes(_mutate(csv_path.read_bytes(), CSV_HTTP, f'\nhttp,"{port}",tcp,'.encode()))
    reg = compile_file(f, use_cache=False)
    p = reg.provenance
    assert p.records == 14473 and p.skipped == 1 and p.full
    assert p.skipped_example.startswith("line ") and repr(port.strip()) in p.skipped_example


@pytest.mark.parametrize("port", ["80-90-100", "70000", "90-80"])
def test_text_bad_port_is_skipped_and_counted(tmp_path, port):
    text = (
        "Service Name Port Number Transport Protocol Description\n"
        "ftp 21 tcp File Transfer Protocol [Control] [Jon_Postel] [Jon_Postel]\n"
        f"http {port} tcp World Wide Web HTTP [Tim_Berners_Lee] [Tim_Berners_Lee]\n"
        f"{port} udp Reserved\n"
        "ssh 22 tcp The Secure Shell (SSH) Protocol [RFC4251]\n"
    )
    f = tmp_path / "bad.txt"
    f.write_text(text)
    reg = compile_file(f, use_cache=False)
    p = reg.provenance
    assert [r.name for r in reg.records] == ["ftp", "ssh"]
    assert p.skipped == 2, [r.to_dict() for r in reg.records]
    assert repr(port) in p.skipped_example


def test_csv_two_rows_is_partial_not_full(tmp_path, user_dirs):
    """A 2-row CSV is no edition: what it lists is labelled, every other port is unknown (not unassigned)."""
    f = tmp_path / "two.csv"
    f.write_text(
        "Service Name,Port Number,Transport Protocol,Description\n"
        "http,80,tcp,World Wide Web HTTP\n"
        "domain,53,udp,Domain Name Server\n"
    )
    reg = compile_file(f, use_cache=False)
    p = reg.provenance
    assert not p.full and "only 2 records" in p.partial_reason and "PARTIAL" in p.line()
    assert STATUS_NAMES[reg.status[0, 80]] == "assigned"
    assert STATUS_NAMES[reg.status[0, 81]] == "unknown"  # before: "unassigned"
    assert STATUS_NAMES[reg.status[0, 60000]] == "dynamic"
    res = run_cli("--registry", str(f), "registry", "info", "--format", "json")
    d = json.loads(res.stdout)
    assert d["full"] is False and d["counts"]["tcp"]["unassigned"] == 0 and d["counts"]["tcp"]["assigned"] == 1
    table = run_cli("--registry", str(f), "registry", "info")
    assert "PARTIAL (only 2 records" in table.stdout


def test_real_editions_stay_full(reg, csv_path):
    assert reg.provenance.full and reg.provenance.partial_reason is None
    assert compile_file(csv_path, use_cache=False).provenance.full


def test_markup_in_registry_text_is_printed_not_interpreted(tmp_path, user_dirs, xml_path):
    """Registry text holding rich markup ("[/]") is data: printed as is, no MarkupError traceback."""
    data = xml_path.read_bytes().replace(b"<updated>2026-08-17</updated>", b"<updated>2026 [/] [bold]x</updated>", 1)
    f = tmp_path / "markup[bold]x.xml"
    f.write_bytes(data)
    res = run_cli("--registry", str(f), "registry", "info")
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert "2026 [/] [bold]x" in res.stdout and "markup[bold]x.xml" in res.stdout
    show = run_cli("--registry", str(f), "registry", "show", "80/tcp")
    assert show.returncode == 0 and "markup[bold]x.xml" in show.stdout, show.stderr


def test_html_file_is_named_as_such(tmp_path, user_dirs):
    """A saved web page given as the registry: named as HTML, not refused for its DTD."""
    f = tmp_path / "service-names-port-numbers.xml"
    f.write_bytes(b"<!DOCTYPE html>\n<html><body><h1>403 Forbidden</h1></body></html>\n")
    res = run_cli("registry", "import", str(f))
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert f"{f}: an HTML page, not the registry" in res.stderr and "DTD" not in res.stderr
