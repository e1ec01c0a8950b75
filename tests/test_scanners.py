"""The outcome of connections in the analyst's views: answered vs attempts, scanners, --state/--answered.

On nDPI's synscan.pcap (one host probing about 1,000 ports of one server), the expected figures come
from tshark's own dissection: per TCP 4-tuple opened by a SYN, whether the server answered with a
SYN-ACK, only with a RST (rejected), or not at all.
"""

from __future__ import annotations

import subprocess
from collections import defaultdict

import pytest

from classifier.pipeline import analyze
from classifier.report import summary
from tests.conftest import run_cli
from tests.shared import shared
from tests.tshark import need_tshark


def synscan():
    return shared("captures", "ndpi", "pcap", "synscan.pcap")


@pytest.fixture(scope="module")
def expected() -> dict:
    """Attempts per outcome, from tshark's per-packet fields."""
    cmd = [need_tshark(), "-n", "-r", str(synscan()), "-Y", "tcp", "-T", "fields", "-E", "separator=|"]
    cmd += [x for f in ("ip.src", "tcp.srcport", "ip.dst", "tcp.dstport", "tcp.flags") for x in ("-e", f)]
    text = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    opened: dict[tuple, str] = {}
    replies: dict[tuple, set] = defaultdict(set)
    for line in text.splitlines():
        src, sp, dst, dp, flags = line.split("|")
        fl = int(flags, 16)
        if fl & 0x12 == 0x02:
            opened.setdefault((src, sp, dst, dp), src)
        else:
            replies[(dst, dp, src, sp)].add(fl)
    out = {"answered": 0, "rejected": 0, "no reply": 0, "ports": set(), "sources": set()}
    for key, src in opened.items():
        r = replies.get(key, set())
        synack, rst = any(f & 0x12 == 0x12 for f in r), any(f & 0x04 for f in r)
        kind = "answered" if synack else "rejected" if rst else "no reply"
        out[kind] += 1
        if kind != "answered":
            out["ports"].add(key[3])
            out["sources"].add(src)
    return out


@pytest.fixture(scope="module")
def analysis(reg):
    return analyze([str(synscan())], reg, idle_timeout_s=300)


def test_one_scanner_with_its_attempts_and_ports(analysis, expected) -> None:
    assert expected["sources"] == {"172.16.0.8"}
    counts = summary.outcome_counts(analysis)
    assert counts["answered"] == expected["answered"] == 3
    assert (counts["rejected"], counts["no reply"]) == (expected["rejected"], expected["no reply"])
    rows = summary.scanners(analysis)
    assert len(rows) == 1
    s = rows[0]
    assert s.source == "172.16.0.8" and s.hosts == 1 and s.answered == expected["answered"]
    assert s.attempts == expected["rejected"] + expected["no reply"]
    assert s.ports == len(expected["ports"])


def test_services_table_lists_answered_connections_only(analysis) -> None:
    rows = summary.services(analysis)
    assert sorted(r.port for r in rows) == [22, 53, 80]  # the three ports that answered
    assert all(r.flows == 1 for r in rows)
    every = summary.services(analysis, attempts=True)
    assert sum(r.flows for r in every) == len(analysis.flows)


def test_terminal_and_html_show_the_scanner(tmp_path, xml_path, expected) -> None:
    attempts = expected["rejected"] + expected["no reply"]
    res = run_cli("--registry", str(xml_path), str(synscan()), "--no-progress", env={"COLUMNS": "160"})
    assert res.returncode == 0, res.stderr
    out = res.stdout
    counts = f"(rejected {expected['rejected']}, no reply {expected['no reply']:,})"
    assert f"answered 3; attempts {attempts:,} {counts}" in out
    assert f"Services list answered and other flows; {attempts:,} unanswered attempts counted apart" in out
    scan = out[out.index("Scanners:") :]
    row = next(line for line in scan.splitlines() if "172.16.0.8" in line).split()
    assert row == ["172.16.0.8", f"{attempts:,}", str(expected["rejected"]), f"{expected['no reply']:,}",
                   str(len(expected["ports"])), "1", "3"]
    services = out[out.index("Services claimed") : out.index("Scanners:")]
    assert [ln.split()[1] for ln in services.splitlines() if "/tcp" in ln] == ["22/tcp", "53/tcp", "80/tcp"]
    html = tmp_path / "r.html"
    res = run_cli("--registry", str(xml_path), str(synscan()), "--no-progress", "-f", "html", "-o", str(html))
    assert res.returncode == 0, res.stderr
    text = html.read_text()
    table = text[text.index('id="pc-scanners"') :]
    assert f"<td>172.16.0.8</td><td class=num>{attempts:,}</td>" in table
    assert f"<td class=num>{len(expected['ports'])}</td>" in table
    assert "Unanswered attempts" in text and f"{attempts:,} (rejected" in text


def test_state_and_answered_filters(xml_path, expected) -> None:
    res = run_cli("--registry", str(xml_path), str(synscan()), "--no-progress", "--answered", "-f", "csv")
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if not ln.startswith("#")]
    head = lines[0].split(",")
    ports = sorted(int(ln.split(",")[head.index("destination.port")]) for ln in lines[1:])
    assert ports == [22, 53, 80]
    assert {ln.split(",")[head.index("portclass.conn_state")] for ln in lines[1:]} <= {"SF", "S1", "RSTO", "RSTR"}
    res = run_cli("--registry", str(xml_path), str(synscan()), "--no-progress", "--state", "REJ", "-f", "csv")
    lines = [ln for ln in res.stdout.splitlines() if not ln.startswith("#")]
    assert len(lines) - 1 == expected["rejected"]
    assert "filter --state REJ" in res.stderr
    bad = run_cli("--registry", str(xml_path), str(synscan()), "--state", "XYZ")
    assert bad.returncode == 2 and "XYZ" in bad.stderr


def test_unique_rows_equals_numpy_unique() -> None:
    """The scanners' row grouping gives np.unique(axis=0)'s rows and inverse, on random tables and an empty one."""
    import numpy as np

    from classifier.report.summary import _unique_rows

    rng = np.random.default_rng(7)
    for x in (rng.integers(0, 9, (5000, 2)).astype(np.uint64), rng.integers(0, 4, (300, 3)), np.zeros((0, 2), int)):
        rows, inv = _unique_rows(x)
        want, want_inv = np.unique(x, axis=0, return_inverse=True)
        assert np.array_equal(rows, want) and np.array_equal(inv, want_inv.reshape(-1))
