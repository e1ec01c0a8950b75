"""The terminal summary's flows tables: a filter lists what it kept, a narrow terminal says what it left
out, first-seen times carry their date only when the capture spans days."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from rich.console import Console

from classifier import api
from classifier.report import terminal
from tests.conftest import ROOT, run_cli
from tests.shared import shared

SAMPLE = ROOT / "captures" / "sample.pcap"


def _xml() -> str:
    return str(shared("registry", "service-names-port-numbers.xml"))


def _summary(path: Path, width: int) -> str:
    flows = api.classify([path], registry=_xml())
    buf = io.StringIO()
    terminal.render(flows.analysis, Console(file=buf, width=width, color_system=None), 20)
    return buf.getvalue()


def _rows(table: str) -> list[str]:
    return [ln for ln in table.splitlines() if " → " in ln and "client → server" not in ln]


def test_filtered_run_lists_the_kept_flows_worst_first_capped_by_top():
    wide = {"COLUMNS": "160"}  # a pipe's summary is COLUMNS wide (160 when unset)
    res = run_cli("--registry", _xml(), str(SAMPLE), "--service", "www", env=wide)
    assert res.returncode == 0, res.stderr
    table = res.stdout[res.stdout.index("Flows kept by the filter --service www") :]
    assert "(top 2 of 2)" in table.splitlines()[0]
    rows = _rows(table)
    assert len(rows) == 2 and table.count("198.51.100.80:80/tcp") == 2
    assert [r.split()[:3] for r in rows] == [["—", "192.0.2.10:50001", "→"]] * 2  # not flagged
    assert [r.split()[-4:] for r in rows] == [
        ["832", "B", "00:00:00.001Z", "syn"],
        ["603", "B", "00:00:00.511Z", "syn"],
    ]
    assert "Flagged flows" not in res.stdout  # the kept flows replace the (here empty) flagged table
    res = run_cli("--registry", _xml(), str(SAMPLE), "--status", "unassigned", "--top", "2", env=wide)
    table = res.stdout[res.stdout.index("Flows kept by the filter") :]
    assert "(top 2 of 3; 1 more left out (--top))" in table.splitlines()[0]
    rows = _rows(table)
    assert [r.split()[0] for r in rows] == ["unauthorized-use-known,"] * 2  # worst first
    assert "203.0.113.42:42000/tcp" in table and "203.0.113.45:44515/tcp" in table
    assert "198.51.100.4:4/tcp" not in table  # the third, left out by --top


def test_a_pipe_takes_its_width_from_columns():
    narrow = run_cli("--registry", _xml(), str(SAMPLE), env={"COLUMNS": "80"}).stdout
    assert max(len(ln) for ln in narrow.splitlines()) == 80
    assert "narrow terminal (80 columns): columns packets, payload, first seen, server by" in narrow
    wide = run_cli("--registry", _xml(), str(SAMPLE), env={"COLUMNS": "200"}).stdout
    assert "narrow terminal" not in wide and "server by" in wide


@pytest.mark.parametrize("width", [80, 200])
def test_narrow_terminal_names_the_columns_it_left_out(width):
    out = _summary(SAMPLE, width)
    table = out[out.index("Flagged flows") :]
    header = next(ln for ln in table.splitlines() if "client → server" in ln)
    assert max(len(ln) for ln in table.splitlines()) <= width
    if width == 80:
        assert header.split() == ["flags", "client", "→", "server", "service", "bytes"]
        assert (
            "narrow terminal (80 columns): columns packets, payload, first seen, server by left out; "
            "widen to 144 columns to see them" in " ".join(table.split())
        )
        # whole words stay whole: a flag or an endpoint never breaks mid-name
        lines = table.splitlines()
        assert sum("unauthorized-use-known," in ln for ln in lines) == 2
        assert sum("203.0.113.42:42000/tcp" in ln for ln in lines) == 1
    else:
        assert header.split()[-6:] == ["payload", "packets", "bytes", "first", "seen", "server", "by"][-6:]
        assert "narrow terminal" not in table
        row = next(r for r in _rows(table) if "198.51.100.33:3306/tcp" in r)
        assert row.split()[-5:] == ["8", "541", "B", "00:00:17.001Z", "syn"]


def _spread_over_days(src: Path, dest: Path, days: int, after_s: int) -> None:
    """``src`` (a classic little-endian pcap) with every packet from ``after_s`` seconds on moved ``days`` later."""
    data = bytearray(src.read_bytes())
    pos, start = 24, None
    while pos < len(data):
        sec = struct.unpack_from("<I", data, pos)[0]
        start = sec if start is None else start
        if sec - start >= after_s:
            struct.pack_into("<I", data, pos, sec + days * 86400)
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
    dest.write_bytes(bytes(data))


def test_times_carry_their_date_when_the_capture_spans_days(tmp_path):
    one_day = _summary(SAMPLE, 200)
    assert "2024-01-01 00:00:00.001Z → 2024-01-01 00:00:18.004Z" in one_day  # the span line: always dated
    row = next(r for r in _rows(one_day[one_day.index("Flagged flows") :]) if "3306/tcp" in r)
    assert "00:00:17.001Z" in row and "2024-01-01" not in row
    spread = tmp_path / "spread.pcap"
    _spread_over_days(SAMPLE, spread, 2, after_s=17)  # the mysql flow starts at 17.001 s
    out = _summary(spread, 200)
    assert "2024-01-01 00:00:00.001Z → 2024-01-03 00:00:18.004Z" in out
    table = out[out.index("Flagged flows") :]
    row = next(r for r in _rows(table) if "3306/tcp" in r)
    assert "2024-01-03 00:00:17.001Z" in row
    row = next(r for r in _rows(table) if "42000/tcp" in r)
    assert "2024-01-01 00:00:07.001Z" in row
