"""`portclass registry ...` as a user runs it: show, info, dump, table, diff."""

from __future__ import annotations

import csv
import io
import json

from tests.conftest import run_cli


def test_show_unauthorized_unassigned(xml_path):
    res = run_cli("--registry", str(xml_path), "registry", "show", "42000/tcp", "--format", "json")
    assert res.returncode == 0, res.stderr
    (e,) = json.loads(res.stdout)
    assert (e["port"], e["transport"], e["status"]) == (42000, "tcp", "unassigned")
    assert e["flags"] == ["unauthorized-use-known"]
    assert e["unauthorized"] == ["Unauthorized Use Known on port 42000"]
    assert e["service"] is None


def test_show_alias_historic(xml_path):
    res = run_cli("--registry", str(xml_path), "registry", "show", "4370/tcp", "--format", "json")
    (e,) = json.loads(res.stdout)
    assert e["service"] == "elpro-tunnel" and e["names"] == ["elpro-tunnel"]
    assert e["aliases"] == [{"name": "elpro_tunnel", "alias_of": "elpro-tunnel", "historic": True}]
    table = run_cli("--registry", str(xml_path), "registry", "show", "4370/tcp")
    assert "elpro-tunnel" in table.stdout and "alias: elpro_tunnel (alias of elpro-tunnel, historic)" in table.stdout
    assert "2026-08-17" in table.stdout  # provenance line


def test_show_port_without_transport_and_name(xml_path):
    res = run_cli("--registry", str(xml_path), "registry", "show", "80", "ssh", "--format", "jsonl")
    rows = [json.loads(x) for x in res.stdout.splitlines()]
    ports = [(r["port"], r["transport"], r["service"]) for r in rows if "port" in r]
    assert ports == [(80, "tcp", "http"), (80, "udp", "http"), (80, "sctp", "http")]
    ssh = [(r["port_low"], r.get("transport")) for r in rows if r.get("name") == "ssh"]
    assert ssh == [(22, "tcp"), (22, "udp"), (22, "sctp"), (None, "tcp")]  # last: the DNS-SD name-only row


def test_show_unknown_name(xml_path):
    res = run_cli("--registry", str(xml_path), "registry", "show", "no-such-service-xyz")
    assert res.returncode == 2 and "no service named 'no-such-service-xyz'" in res.stderr


def test_info_json(xml_path):
    res = run_cli("--registry", str(xml_path), "registry", "info", "--format", "json")
    d = json.loads(res.stdout)
    assert d["edition"] == "2026-08-17" and d["full"] and d["records"] == 14533
    assert d["counts"]["tcp"] == {
        "unassigned": 42747,
        "assigned": 6155,
        "reserved": 250,
        "dynamic": 16384,
        "unauthorized-use-known": 175,
    }
    assert sum(v for k, v in d["counts"]["sctp"].items() if k != "unauthorized-use-known") == 65536


def test_dump_jsonl(xml_path):
    res = run_cli("registry", "dump", str(xml_path), "--format", "jsonl")
    rows = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(rows) == 14533
    for key in ("name", "port_low", "port_high", "transport", "description", "unauthorized"):
        assert key in rows[0]
    first = rows[0]
    assert (first["name"], first["port_low"], first["transport"], first["description"], first["unauthorized"]) == (
        None,
        0,
        "tcp",
        "Reserved",
        None,
    )
    r42 = next(r for r in rows if r["port_low"] == 41798)
    assert (r42["port_high"], r42["transport"], r42["unauthorized"]) == (
        42507,
        None,
        "Unauthorized Use Known on port 42000",
    )


def test_table_csv(xml_path):
    res = run_cli("--registry", str(xml_path), "registry", "table", "--transport", "udp", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert len(rows) == 65536 and list(rows[0]) == ["port", "status", "service", "flags"]
    assert rows[53] == {"port": "53", "status": "assigned", "service": "domain", "flags": ""}
    assert rows[44516] == {"port": "44516", "status": "unassigned", "service": "", "flags": "unauthorized-use-known"}
    assert rows[60000]["status"] == "dynamic"


def test_diff_editions(xml_2025_path, xml_path):
    res = run_cli("registry", "diff", str(xml_2025_path), str(xml_path), "--format", "json")
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    ch = {(c["transport"], c["port_low"], c["change"]): (c["old"], c["new"]) for c in d["port_changes"]}
    assert ch[("tcp", 1980, "renamed")] == ("pearldoc-xact", "panquest-xact")
    assert ch[("tcp", 831, "de-assigned")] == ("netconf-beep", "reserved")
    assert ch[("tcp", 5319, "assigned")] == ("unassigned", "roughtime")
    assert ch[("udp", 700, "re-described")] == ("epp: Extensible Provisioning Protocol", "epp: EPP running over QUIC")
    assert d["summary"] == {
        "re-described": 4,
        "de-assigned": 6,
        "renamed": 8,
        "assigned": 19,
        "status": 6,
        "names-added": 31,
        "names-removed": 5,
    }
    assert "ollama" in d["names_added"] and "pmcdproxy" in d["names_removed"]
    table = run_cli("registry", "diff", str(xml_2025_path), str(xml_path))
    assert "panquest-xact" in table.stdout and "summary:" in table.stdout


def test_help_lists_exit_codes():
    res = run_cli("--help")
    assert res.returncode == 0 and "exit codes:" in res.stdout and "registry" in res.stdout
