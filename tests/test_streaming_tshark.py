"""``--dissect tshark`` joined to flows as they end (``evidence.tshark.TsharkStream``): tshark runs beside
the reading and only the frames of flows still alive are held; the names and every report equal the
whole-run join (``evidence.tshark.dissect`` over every flow held to the end)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

import classifier.pipeline as pipeline
from classifier.cli import main
from classifier.evidence.tshark import dissect
from classifier.report import write
from tests.shared import shared
from tests.test_streaming_filters import _write_udp_pcap
from tests.tshark import need_tshark

CAPTURES = ["telegram_videocall.pcapng", "zoom.pcap", "quic.pcap"]


def test_tshark_join_holds_only_flows_alive(tmp_path, reg, monkeypatch):
    """20,000 short flows one after another: at most about a pass of frames is held, none at the end, and
    every flow gets tshark's own name for it (DNS on port 53, NTP on port 123)."""
    need_tshark()
    monkeypatch.setattr(pipeline, "CHUNK_BYTES", 1 << 18)
    monkeypatch.setattr(pipeline, "PASS_PACKETS", 4096)
    streams = []
    opinion = pipeline._second_opinion
    monkeypatch.setattr(pipeline, "_second_opinion", lambda paths: streams.append(opinion(paths)) or streams[-1])
    cap = tmp_path / "seq.pcap"
    _write_udp_pcap(cap, 20_000)
    a = pipeline.analyze([cap], reg, 1.0, tshark=True, jobs=1)
    (stream,) = streams
    assert len(a.flows) == 20_000 and a.counters.peak_alive < 2_000  # held to the end: 20,000
    assert stream.frames == 40_000 and stream.held == 0 and 0 < stream.peak_runs < 6_000
    assert Counter(a.labels.tshark_protocol.tolist()) == {"dns": 10_000, "ntp": 10_000}
    assert (a.labels.tshark_protocol == dissect([str(cap)], a.flows)).all()


def _whole(cap: Path, reg, fmt: str, out: Path) -> None:
    """The whole-run report: every flow held to the end, then tshark's names joined to all of them."""
    import dataclasses

    a = pipeline.analyze([cap], reg, hold=True)
    a.labels.tshark_protocol = dissect(a.stats.files, a.flows)
    write(dataclasses.replace(a, tshark=True), fmt, out, top=20, max_rows=50_000)


@pytest.mark.parametrize("name", CAPTURES)
def test_tshark_as_flows_end_equals_the_whole_run(name, tmp_path, xml_path, reg, monkeypatch):
    need_tshark()
    monkeypatch.setenv("COLUMNS", "200")
    cap = shared("captures", "ndpi", "pcap", name)
    for fmt in ("terminal", "jsonl", "csv", "json"):
        s, w = tmp_path / f"s.{fmt}", tmp_path / f"w.{fmt}"
        assert main(["--registry", str(xml_path), str(cap), "--dissect", "tshark", "-f", fmt, "-o", str(s)]) == 0
        _whole(cap, reg, fmt, w)
        st, wt = s.read_text(), w.read_text()
        if fmt == "jsonl":
            sd, wd = [json.loads(x) for x in st.splitlines()], [json.loads(x) for x in wt.splitlines()]
            assert sd[0] == wd[0]
            assert all("tshark_protocol" in d["portclass"] for d in sd[1:]) and len(sd) > 1
            key = lambda d: json.dumps(d, sort_keys=True)  # noqa: E731
            assert sorted(map(key, sd[1:])) == sorted(map(key, wd[1:]))
        elif fmt == "json":
            assert json.loads(st) == json.loads(wt)
        else:  # the summary (with its portclass vs tshark table) and CSV (its tshark columns in the header)
            assert sorted(st.splitlines()) == sorted(wt.splitlines())
            assert "tshark" in st
