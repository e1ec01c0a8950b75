"""Streamed machine formats hold what the whole-run writers write, in end order.

Each capture goes through the command line (streamed: flows written as they end) and through
``pipeline.analyze`` + the whole-run writer; the documents, rows and lines must be the same
multiset, the head (notice, ``#`` lines, Zeek header) the same apart from wall-clock stamps.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from classifier.cli import main
from classifier.pipeline import analyze
from classifier.report import write
from tests.shared import shared

CAPTURES = [
    Path("captures/sample.pcap"),
    shared("captures", "ndpi", "pcap", "dns_long_domainname.pcap"),
    shared("captures", "ndpi", "pcap", "quic.pcap"),
]


def _both(cap: Path, fmt: str, tmp_path: Path, xml_path: Path, reg) -> tuple[Path, Path]:
    streamed, whole = tmp_path / f"s.{fmt}", tmp_path / f"w.{fmt}"
    assert main(["--registry", str(xml_path), str(cap), "-f", fmt, "-o", str(streamed), "--no-progress"]) == 0
    write(analyze([cap], reg), fmt, whole)
    return streamed, whole


@pytest.mark.parametrize("cap", CAPTURES, ids=lambda p: p.name)
def test_jsonl_streamed_same_documents(cap: Path, tmp_path: Path, xml_path: Path, reg) -> None:
    s, w = _both(cap, "jsonl", tmp_path, xml_path, reg)
    sd = [json.loads(x) for x in s.read_text().splitlines()]
    wd = [json.loads(x) for x in w.read_text().splitlines()]
    assert sd[0] == wd[0]  # the notice: warning, provenance, whole-run totals, first packet's time
    assert sd[0]["portclass"]["totals"]["flows"] == len(sd) - 1 > 0
    key = lambda d: json.dumps(d, sort_keys=True)  # noqa: E731
    assert sorted(map(key, sd[1:])) == sorted(map(key, wd[1:]))


@pytest.mark.parametrize("cap", CAPTURES, ids=lambda p: p.name)
def test_csv_and_zeek_streamed_same_rows(cap: Path, tmp_path: Path, xml_path: Path, reg) -> None:
    s, w = _both(cap, "csv", tmp_path, xml_path, reg)
    sl, wl = s.read_text().splitlines(), w.read_text().splitlines()
    head = [x for x in wl if x.startswith("#")]
    assert sl[: len(head) + 1] == wl[: len(head) + 1]  # '#' lines and the column header
    assert sorted(sl[len(head) + 1 :]) == sorted(wl[len(head) + 1 :]) and len(sl) > len(head) + 1
    s, w = _both(cap, "zeek", tmp_path, xml_path, reg)
    stamp = ("#open", "#close")
    sl = [x for x in s.read_text().splitlines() if not x.startswith(stamp)]
    wl = [x for x in w.read_text().splitlines() if not x.startswith(stamp)]
    hs = [x for x in sl if x.startswith("#")]
    assert hs == [x for x in wl if x.startswith("#")]
    assert sorted(sl) == sorted(wl)
    assert s.read_text().splitlines()[-1].startswith("#close")


@pytest.mark.parametrize("cap", CAPTURES, ids=lambda p: p.name)
def test_parquet_streamed_same_table(cap: Path, tmp_path: Path, xml_path: Path, reg) -> None:
    import pyarrow.parquet as pq

    s, w = _both(cap, "parquet", tmp_path, xml_path, reg)
    st, wt = pq.read_table(s), pq.read_table(w)
    assert st.schema.remove_metadata().equals(wt.schema.remove_metadata())
    sm, wm = dict(st.schema.metadata), dict(wt.schema.metadata)
    sm.pop(b"portclass.created"), wm.pop(b"portclass.created")
    assert sm == wm
    order = [("network.community_id", "ascending"), ("@timestamp", "ascending")]
    assert st.sort_by(order).to_pylist() == wt.sort_by(order).to_pylist() and st.num_rows > 0


def test_timeout_options(tmp_path: Path, xml_path: Path, capsys) -> None:
    """--idle-timeout per transport and --active-timeout parse; a bad spec is one line, exit 2."""
    out = tmp_path / "f.jsonl"
    args = ["--registry", str(xml_path), "captures/sample.pcap", "-f", "jsonl", "-o", str(out), "--no-progress"]
    assert main([*args, "--idle-timeout", "tcp=300,udp=60", "--active-timeout", "3600"]) == 0
    docs = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(docs) == 20 and all("flow_part" not in d.get("portclass", {}) for d in docs[1:])
    with pytest.raises(SystemExit) as exc:
        main([*args, "--idle-timeout", "tcp=300,smtp=5"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "unknown transport 'smtp'" in err[-1]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "zeek"])
def test_chunk_written_in_slices_is_the_same(fmt: str, reg, monkeypatch) -> None:
    """A chunk of many flows is written a few thousand at a time (columns of ``rows`` flows, lines of
    ``TEXT_ROWS``): the bytes do not depend on either slice."""
    import io as _io

    from classifier.report import stream
    from classifier.report.stream import _Body

    a = analyze([shared("captures", "ndpi", "pcap", "443-curl.pcap"), Path("captures/sample.pcap")], reg)
    outs = []
    for rows, text_rows in ((3, 2), (10**6, 2), (10**6, 5), (10**6, 10**6)):
        monkeypatch.setattr(stream, "TEXT_ROWS", text_rows)
        buf = _io.BytesIO()
        _Body(fmt, buf).add(a, rows=rows)
        outs.append(buf.getvalue())
    assert outs.count(outs[0]) == len(outs) and outs[0].count(b"\n") == len(a.flows) > 10


def test_jobs_changes_nothing_in_the_output(tmp_path: Path, xml_path: Path, capsys) -> None:
    """``--jobs 2`` (a reading process feeds the engine, ``classifier.feed``) writes what ``--jobs 1`` does."""
    base = ["--registry", str(xml_path), "captures/sample.pcap", "-f", "csv", "--no-progress", "-o"]
    assert main([*base, str(tmp_path / "a.csv"), "--jobs", "1"]) == 0
    capsys.readouterr()
    assert main([*base, str(tmp_path / "b.csv"), "--jobs", "2"]) == 0
    assert capsys.readouterr().err == ""
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()



def _no_writer_left() -> None:
    import multiprocessing

    assert not [p for p in multiprocessing.active_children() if p.name == "portclass-writer"]


def test_writing_error_in_the_writer_process_is_one_line(tmp_path: Path, xml_path: Path, capsys, monkeypatch) -> None:
    """The body is written by a process of its own (``report.writer``): a full disk there still ends the run
    with one line naming the output, exit 2, the output file as it was, and no writing process left."""
    import errno

    from classifier.report import stream

    def full(self, c) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(stream._Body, "_add", full)  # in the forked writer too
    out = tmp_path / "flows.jsonl"
    out.write_bytes(b"before\n")
    argv = ["--registry", str(xml_path), "captures/sample.pcap", "-f", "jsonl", "-o", str(out), "--no-progress"]
    assert main([*argv, "--jobs", "2"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"portclass: {out}: No space left on device"]
    assert out.read_bytes() == b"before\n"
    _no_writer_left()
    assert main([*argv, "--jobs", "1"]) == 2  # one process: the same line
    assert capsys.readouterr().err.strip().splitlines() == [f"portclass: {out}: No space left on device"]


def test_killed_writer_process_is_one_line(tmp_path: Path, xml_path: Path, capsys, monkeypatch) -> None:
    """The writing process killed (out of memory, kill -9) while writing: one line naming the output,
    exit 70, the output file as it was."""
    import os
    import signal

    from classifier.errors import EXIT_INTERNAL
    from classifier.report import stream

    monkeypatch.setattr(stream._Body, "_add", lambda self, c: os.kill(os.getpid(), signal.SIGKILL))
    out = tmp_path / "flows.csv"
    out.write_bytes(b"before\n")
    argv = ["--registry", str(xml_path), "captures/sample.pcap", "-f", "csv", "-o", str(out), "--no-progress"]
    assert main([*argv, "--jobs", "2"]) == EXIT_INTERNAL
    why = "the writing process ended unexpectedly (killed by SIGKILL) after"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"portclass: {out}: {why}"), err
    assert out.read_bytes() == b"before\n"
    _no_writer_left()


def test_reading_error_stops_the_writer(tmp_path: Path, reg, monkeypatch) -> None:
    """An error while reading, with chunks sent to the writing process: it propagates, the writing
    process ends, the output is untouched."""
    from classifier.engine import Ended
    from classifier.report import stream
    from classifier.report.stream import analyze_streamed

    monkeypatch.setattr(stream, "writer_process", lambda *a: True)
    whole = analyze([Path("captures/sample.pcap")], reg)

    def failing(paths, registry, on_ended, **kw):
        for _ in range(5):
            on_ended(Ended(whole.flows, whole.labels, *(np.zeros(len(whole.flows), t) for t in (np.int32, np.uint8))))
        raise OSError("capture vanished")

    out = tmp_path / "flows.csv"
    with pytest.raises(OSError, match="capture vanished"):
        analyze_streamed(["captures/sample.pcap"], reg, "csv", out, failing)
    assert not out.exists()
    _no_writer_left()


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "zeek", "parquet"])
def test_writer_process_writes_what_one_process_does(fmt: str, tmp_path: Path, xml_path: Path) -> None:
    """With the writing process (``--jobs 2``) the file is byte for byte the one-process file (``--jobs 1``),
    but for the wall-clock stamps (Zeek's ``#open``/``#close``, Parquet's ``portclass.created``)."""
    import re

    for cap in CAPTURES:
        base = ["--registry", str(xml_path), str(cap), "-f", fmt, "--no-progress", "-o"]
        assert main([*base, str(tmp_path / "one"), "--jobs", "1"]) == 0
        assert main([*base, str(tmp_path / "two"), "--jobs", "2"]) == 0
        one, two = (tmp_path / "one").read_bytes(), (tmp_path / "two").read_bytes()
        if fmt == "parquet":  # the creation time is stored in the footer: the same length either way
            stamp = rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"
            one, two = re.sub(stamp, b"T", one), re.sub(stamp, b"T", two)
        elif fmt == "zeek":
            one, two = re.sub(rb"#(open|close)\t\S+", b"", one), re.sub(rb"#(open|close)\t\S+", b"", two)
        assert one == two and one.count(b"\n") > 1, cap
