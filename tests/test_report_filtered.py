"""A filtered report says what it kept; its totals still describe the whole capture."""

from __future__ import annotations

import json

from tests.conftest import ROOT, run_cli
from tests.shared import shared


def _run(*args: str):
    xml = shared("registry", "service-names-port-numbers.xml")
    res = run_cli("--registry", str(xml), str(ROOT / "captures" / "sample.pcap"), *args)
    assert res.returncode == 0, res.stderr
    return res


def test_json_totals_whole_and_selection():
    doc = json.loads(_run("--flagged-only", "--format", "json").stdout)
    assert doc["totals"]["flows"] == 19 and len(doc["flows"]) == 8
    assert doc["totals"]["selection"] == {
        "filter": "--flagged-only",
        "kept_flows": 8,
        "total_flows": 19,
        "kept_flagged_flows": 8,
        "total_flagged_flows": 8,
    }


def test_csv_and_terminal_state_the_filter():
    csv = _run("--port", "22", "--format", "csv").stdout.splitlines()
    assert csv[3] == "# filter --port 22: kept 1 of 19 flows (0 flagged)"
    assert csv[5].split(",")[csv[4].split(",").index("destination.port")] == "22"  # the one row kept
    term = _run("--port", "22").stdout
    assert "Shown below: filter --port 22: kept 1 of 19 flows (0 flagged)" in term
    assert "19 (tcp 12, udp 6, sctp 1)" in term  # the capture's totals are not narrowed


def test_output_to_dev_null_keeps_the_device(tmp_path):
    """`-o /dev/null` writes into the device; a rename would replace it (as root) with a file."""
    import os
    import stat

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    from classifier.registry.cache import atomic_write

    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    atomic_write(fifo, b"through the pipe")
    assert os.read(reader, 100) == b"through the pipe"
    os.close(reader)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    _run("--format", "jsonl", "-o", "/dev/null")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_unwritable_output_is_one_line(tmp_path):
    """A report into a missing directory fails in one line naming the file; nothing is created."""
    xml = shared("registry", "service-names-port-numbers.xml")
    for fmt in ("terminal", "jsonl", "html", "parquet", "zeek"):
        out = tmp_path / "missing" / f"report.{fmt}"
        res = run_cli("--registry", str(xml), str(ROOT / "captures" / "sample.pcap"), "-f", fmt, "-o", str(out))
        assert res.returncode == 2, (fmt, res.stderr)
        assert res.stderr == f"portclass: {out}: cannot write a file in {out.parent} (No such file or directory)\n"
        assert not out.parent.exists()


def test_negative_idle_timeout_is_a_usage_error():
    xml = shared("registry", "service-names-port-numbers.xml")
    res = run_cli("--registry", str(xml), str(ROOT / "captures" / "sample.pcap"), "--idle-timeout", "-5")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.splitlines()[-1] == "portclass analyze: error: argument --idle-timeout: must be 0 or more: '-5'"


def test_option_values_are_checked_before_reading():
    xml = shared("registry", "service-names-port-numbers.xml")
    for args, msg in [
        (("--idle-timeout", "nan"), "argument --idle-timeout: must be 0 or more: 'nan'"),
        (("--top", "-3"), "argument --top: must be more than 0: '-3'"),
        (("--jobs", "0"), "argument --jobs: must be more than 0: '0'"),
    ]:
        res = run_cli("--registry", str(xml), str(ROOT / "captures" / "sample.pcap"), *args)
        assert res.returncode == 2 and res.stderr.splitlines()[-1] == f"portclass analyze: error: {msg}"


def test_live_refuses_an_unwritable_output_before_capturing(tmp_path):
    out = tmp_path / "missing" / "flows.jsonl"
    res = run_cli("live", "-i", "lo", "--duration", "30", "-f", "jsonl", "-o", str(out))
    assert res.returncode == 2
    assert res.stderr == f"portclass: {out}: cannot write a file in {out.parent} (No such file or directory)\n"
