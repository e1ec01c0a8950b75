"""Several capture files: each flow says its file; files are not merged unless they are one timeline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from classifier.flows import continues, file_groups
from tests.conftest import run_cli
from tests.shared import shared
from tests.test_conn import SESSIONS, write

scapy = pytest.importorskip("scapy.all")


def _flows(*args: str, xml_path: Path) -> list[dict]:
    res = run_cli("--registry", str(xml_path), *args, "--no-progress", "-f", "jsonl")
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines()[1:]]


def test_copies_of_one_capture_stay_apart_unless_merged(tmp_path: Path, xml_path: Path) -> None:
    src = shared("captures", "ndpi", "pcap", "dns_long_domainname.pcap")
    a, b = tmp_path / "capture.pcap", tmp_path / "copy.pcap"
    shutil.copy(src, a)
    shutil.copy(src, b)
    one = _flows(str(a), xml_path=xml_path)
    two = _flows(str(a), str(b), xml_path=xml_path)
    assert len(two) == 2 * len(one)
    assert sorted(f["log"]["file"]["path"] for f in two) == sorted([str(a)] * len(one) + [str(b)] * len(one))
    for f in two:  # the 53/udp flow keeps its own 2 packets in each file
        assert f["network"]["packets"] == one[0]["network"]["packets"]
    merged = _flows(str(a), str(b), "--merge-files", xml_path=xml_path)
    assert len(merged) == len(one)
    assert merged[0]["network"]["packets"] == 2 * one[0]["network"]["packets"]
    assert merged[0]["log"]["file"]["path"] == str(a)  # the file of the flow's first packet
    res = run_cli("--registry", str(xml_path), str(a), str(b), "--no-progress", env={"COLUMNS": "200"})
    assert "Files    capture.pcap, copy.pcap; flows of different files kept apart" in res.stdout
    res = run_cli("--registry", str(xml_path), str(a), str(b), "--no-progress", "-f", "zeek")
    rows = [ln.split("\t") for ln in res.stdout.splitlines() if not ln.startswith("#")]
    fields = next(ln for ln in res.stdout.splitlines() if ln.startswith("#fields")).split("\t")[1:]
    assert sorted(r[fields.index("portclass_file")] for r in rows) == [str(a), str(b)]


@pytest.mark.parametrize(
    ("names", "joined"),
    [
        (("ring_00001_20240101120000.pcap", "ring_00002_20240101120100.pcap"), True),  # dumpcap ring buffer
        (("dump.pcap", "dump.pcap1"), True),  # tcpdump -C
        (("part-a.pcap", "part-b.pcap"), False),
        (("ring_00001_20240101120000.pcap", "ring_00003_20240101120100.pcap"), False),  # a part missing
    ],
)
def test_ring_buffer_parts_join_one_connection(tmp_path: Path, xml_path: Path, names, joined) -> None:
    pkts = SESSIONS["SF"][0]
    whole = write(tmp_path, "whole", pkts)
    for name, part in zip(names, (pkts[:4], pkts[4:]), strict=True):
        shutil.move(write(tmp_path, "part", part), tmp_path / name)
    got = _flows(*(str(tmp_path / n) for n in names), xml_path=xml_path)
    if joined:
        want = _flows(str(whole), xml_path=xml_path)
        assert len(got) == 1
        assert got[0]["portclass"]["conn_state"] == want[0]["portclass"]["conn_state"] == "SF"
        assert got[0]["portclass"]["history"] == want[0]["portclass"]["history"] == "ShADadFf"
        assert got[0]["network"]["packets"] == len(pkts)
    else:
        assert len(got) == 2
        assert {f["portclass"]["conn_state"] for f in got} == {"S1", "SF"}  # the second part: mid-stream, closed


def test_ring_buffer_naming() -> None:
    assert continues("/d/x_00009_20240101120000.pcapng", "/d/x_00010_20240101121000.pcapng")
    assert not continues("/d/x_00001_20240101120000.pcapng", "/e/x_00002_20240101121000.pcapng")
    assert not continues("/d/x_00001_20240101120000.pcapng", "/d/y_00002_20240101121000.pcapng")
    assert continues("/d/t.pcap0", "/d/t.pcap1") and not continues("/d/t.pcap1", "/d/t.pcap3")
    files = ["/d/a.pcap", "/d/x_00001_20240101120000.pcap", "/d/x_00002_20240101120100.pcap", "/d/b.pcap"]
    assert file_groups(files).tolist() == [0, 1, 1, 3]
    assert file_groups(files, merge=True).tolist() == [0, 0, 0, 0]
