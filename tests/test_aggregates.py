"""Running aggregates (``classifier.report.aggregates``): the summary, ``-f json`` and ``-f html`` built
from them while flows end equal the reports built from the whole flow table, however the ended flows
are cut into chunks or merged across tasks; where a bound cuts, the reports say what they left out."""

from __future__ import annotations

import datetime as dt
import io
import json
import pickle
import re
import socket
import struct

import numpy as np
import pytest
from rich.console import Console

from classifier.engine import Ended
from classifier.filters import take_labels
from classifier.pipeline import Analysis, analyze, worst_first
from classifier.report import html as html_report
from classifier.report import machine, summary, terminal
from classifier.report.aggregates import Aggregates, _take, analyze_aggregated, with_aggregates
from tests.conftest import run_cli
from tests.shared import shared

GENERATED = dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)
CORPUS = ("synscan.pcap", "viber.pcap", "teams.pcap", "dns_exfiltration.pcap", "http_asymmetric.pcapng",
          "bt-http.pcapng", "quic.pcap", "ookla.pcap")  # fmt: skip


def _pcap(name: str) -> str:
    return str(shared("captures", "ndpi", "pcap", name))


def _chunks(a: Analysis, sizes: np.random.Generator | None = None) -> list[Ended]:
    """``a``'s flows (end order) cut into chunks of random sizes."""
    n = len(a.flows)
    part = a.part if a.part is not None else np.zeros(n, np.int32)
    e = Ended(a.flows, a.labels, part, np.zeros(n, np.uint8), a.stats)
    rng = sizes or np.random.default_rng(7)
    cuts = np.unique(np.concatenate([[0, n], rng.integers(0, n + 1, size=max(n // 7, 1))]))
    return [_take(e, np.arange(lo, hi), take_labels) for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)]


def _aggregated(a: Analysis, limit: int, **kw: object) -> Analysis:
    agg = Aggregates(limit=limit, **kw)  # type: ignore[arg-type]
    for c in _chunks(a):
        agg.add(c)
    return with_aggregates(a, pickle.loads(pickle.dumps(agg)))


def _terminal(a: Analysis, top: int = 20) -> str:
    buf = io.StringIO()
    terminal.render(a, Console(file=buf, width=200, color_system=None, highlight=False), top)
    return buf.getvalue()


def _reports(a: Analysis) -> tuple[str, str, str]:
    return _terminal(a), machine.render(a, "json"), html_report.render(a, generated=GENERATED)


@pytest.fixture(scope="module")
def corpus(reg) -> dict[str, Analysis]:
    out = {name: analyze([_pcap(name)], reg) for name in CORPUS}
    out["several files"] = analyze([_pcap(n) for n in CORPUS[:4]], reg)
    return out


@pytest.mark.parametrize("name", (*CORPUS, "several files"))
def test_reports_from_aggregates_equal_the_whole_table(corpus, name) -> None:
    """Summary, json and html of the aggregates (chunks cut at random, pickled) equal the whole-table ones."""
    a = corpus[name]
    assert len(a.flows) > 0
    whole = _reports(a)
    agg = _aggregated(a, limit=50_000)
    assert agg.aggregates.flows == len(a.flows) and not len(agg.flows)
    got = _reports(agg)
    for kind, w, g in zip(("terminal", "json", "html"), whole, got, strict=True):
        assert g == w, f"{name}: {kind} differs"
    # the terminal keeps only --top flows and still says the same
    assert _terminal(_aggregated(a, limit=20)) == whole[0]


def test_aggregates_match_the_table_functions(corpus) -> None:
    """Each aggregate against the function that reads the whole table (scanners, services, talkers...)."""
    a = corpus["synscan.pcap"]
    agg = _aggregated(a, limit=10).aggregates
    rows = summary.scanners(a)
    assert rows and agg.scanners() == rows and rows[0].ports >= 900  # the one host probing ~1,000 ports
    assert agg.services(a.registry) == summary.services(a)
    assert agg.outcome_counts() == summary.outcome_counts(a)
    assert agg.verdict_counts(True) == summary.verdict_counts(a)
    assert agg.totals(a) == summary.totals(a)
    assert html_report.talkers_chart(with_aggregates(a, agg), 10) == html_report.talkers_chart(a, 10)
    flags = a.labels.flags
    assert agg.by_flag.tolist() == [int(np.count_nonzero(flags & (1 << k))) for k in range(8)]


def test_merge_is_associative_and_equals_one_pass(corpus) -> None:
    """Aggregates of three stretches merged either way equal those of every chunk added to one."""
    a = corpus["several files"]
    chunks = _chunks(a)
    thirds = np.array_split(np.arange(len(chunks)), 3)

    def part(idx: np.ndarray) -> Aggregates:
        agg = Aggregates(limit=40, timeline_exact=25)
        for i in idx.tolist():
            agg.add(chunks[i])
        return pickle.loads(pickle.dumps(agg))

    one = part(np.arange(len(chunks)))
    left = part(thirds[0]).merge(part(thirds[1])).merge(part(thirds[2]))
    right = part(thirds[0]).merge(part(thirds[1]).merge(part(thirds[2])))
    for got in (left, right):
        assert _reports(with_aggregates(a, got)) == _reports(with_aggregates(a, one))
        assert got.worst.seq.tolist() == one.worst.seq.tolist()
        assert np.array_equal(got.timeline.counts, one.timeline.counts) and got.timeline.shift == one.timeline.shift


def test_bound_hit_says_what_it_left_out(corpus) -> None:
    """With room for 5 flows, json holds the 5 worst in end order and says of how many; html says so too;
    the timeline past its exact bound counts bins and says how wide."""
    a = corpus["teams.pcap"]
    n = len(a.flows)
    assert n > 50
    agg = _aggregated(a, limit=5, timeline_exact=10)
    doc = json.loads(machine.render(agg, "json"))
    assert doc["flows_shown"]["flows"] == 5 and doc["flows_shown"]["of"] == n
    assert doc["flows_shown"]["left_out"] == n - 5
    whole = json.loads(machine.render(a, "json"))
    worst = set(worst_first(a)[:5].tolist())  # the 5 worst flows, by start time as every json flow list
    by_start = np.argsort(a.flows.first_ts_ns, kind="stable").tolist()
    assert doc["flows"] == [whole["flows"][k] for k, i in enumerate(by_start) if i in worst]
    assert doc["totals"] == whole["totals"] and "flows_shown" not in whole
    page = html_report.render(agg, max_rows=5, generated=GENERATED)
    assert f"This table holds the 5 worst-first flows of {n:,}" in page
    note = re.search(r'id="pc-timeline-note">([\d,]+) flow starts counted in bins of', page)
    assert note and int(note[1].replace(",", "")) == n
    columns = [int(c.replace(",", "")) for c in re.findall(r"UTC \(\+[^)]*\): ([\d,]+) flows, [\d,]+ flagged", page)]
    assert sum(columns) == n
    # each column counts exactly the flows starting in it
    t0, width, counts, res = agg.aggregates.timeline.chart_bins()
    assert res and width % res == 0
    col = (a.flows.first_ts_ns.astype(np.int64) - t0) // width
    assert np.bincount(col, minlength=counts.shape[1]).tolist() == counts.sum(axis=0).tolist()
    text = _terminal(_aggregated(a, limit=3))
    flagged = int(np.count_nonzero(a.labels.severity))
    assert f"Flagged flows, worst first (top 3 of {flagged})" in text


# --------------------------------------------------------------------------- crafted capture


def _write_scan_day(path, hosts: int = 40, ports: int = 60) -> None:
    """A crafted capture over a day: a source probing ``ports`` ports (every third rejected with a RST),
    then ``hosts`` hosts each making short UDP exchanges an hour apart, so flows end all along."""
    import dpkt

    t0 = 1_767_225_600 * 10**9
    frames = []

    def frame(t: int, src: str, dst: str, sport: int, dport: int, proto: int, flags: int = 0) -> None:
        l4 = dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags) if proto == 6 else dpkt.udp.UDP(
            sport=sport, dport=dport, ulen=8 + 20, data=b"x" * 20)  # fmt: skip
        raw = bytes(l4)
        ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=proto, ttl=64, len=20 + len(raw))
        ip.data = raw
        eth = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=dpkt.ethernet.ETH_TYPE_IP, data=bytes(ip))
        frames.append((t, bytes(eth)))

    for k in range(ports):
        t = t0 + k * 10**9
        frame(t, "192.0.2.66", "198.51.100.9", 40000 + k, 1000 + k, 6, 0x02)
        if k % 3 == 0:
            frame(t + 10**6, "198.51.100.9", "192.0.2.66", 1000 + k, 40000 + k, 6, 0x14)
    for h in range(hosts):
        for hour in range(0, 24, 3):
            t = t0 + (hour * 3600 + h) * 10**9
            src = f"10.0.{h // 200}.{h % 200 + 1}"
            frame(t, src, "192.0.2.53", 50000 + hour, 53, 17)
            frame(t + 2 * 10**6, "192.0.2.53", src, 53, 50000 + hour, 17)
    out = [struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)]
    for t, raw in sorted(frames):
        out.append(struct.pack("<IIII", t // 10**9, t % 10**9, len(raw), len(raw)) + raw)
    path.write_bytes(b"".join(out))


def test_crafted_day_streamed_equals_whole_table(tmp_path, reg) -> None:
    """Flows ending all day long (idle timeout 60 s): the engine's own chunks give the whole-table reports."""
    cap = tmp_path / "day.pcap"
    _write_scan_day(cap)
    chunks: list[Ended] = []
    a = analyze([str(cap)], reg, idle_timeout_s=60, on_ended=chunks.append)
    whole = analyze([str(cap)], reg, idle_timeout_s=60)
    assert len(whole.flows) == 60 + 40 * 8
    agg = analyze_aggregated([str(cap)], reg, 50_000, idle_timeout_s=60)
    assert _reports(agg) == _reports(whole)
    rows = agg.aggregates.scanners()
    assert [(r.source, r.attempts, r.rejected, r.no_reply, r.ports, r.hosts) for r in rows] == [
        ("192.0.2.66", 60, 20, 40, 60, 1)
    ]
    assert sum(len(c) for c in chunks) == len(whole.flows) and not len(a.flows)


def test_cli_json_and_summary_from_aggregates(tmp_path, xml_path, reg) -> None:
    """The command line's json, with --max-flows cutting, says what it left out; its totals stay whole."""
    cap = tmp_path / "day.pcap"
    _write_scan_day(cap)
    out = tmp_path / "r.json"
    r = run_cli("--registry", str(xml_path), str(cap), "-f", "json", "--max-flows", "7", "-o", str(out))
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["totals"]["flows"] == 380 and len(doc["flows"]) == 7
    assert doc["flows_shown"] == {
        "flows": 7,
        "of": 380,
        "left_out": 373,
        "which": "the 7 worst of 380 flows (flagged first, then most bytes), by start time; "
        "--format jsonl, csv, zeek or parquet write every flow",
    }
    r = run_cli("--registry", str(xml_path), str(cap), "--top", "4", env={"COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    assert "Flows    380 (tcp 60, udp 320)" in r.stdout
    assert re.search(r"Flagged flows, worst first \(top 4 of \d+\)", r.stdout)
    assert "192.0.2.66" in r.stdout  # the scanners table


def test_host_tables_past_their_cap_say_they_are_approximate(tmp_path, reg) -> None:
    """With room for 10 hosts, the busiest talkers stay on top, the scanner is kept (most attempts), and
    the reports say the figures are approximate and by how much at most."""
    cap = tmp_path / "day.pcap"
    _write_scan_day(cap)
    whole = analyze([str(cap)], reg, idle_timeout_s=60)
    agg = Aggregates(limit=20, max_hosts=10)
    for c in _chunks(whole):
        agg.add(c)
    assert len(agg.hosts) <= 10 + 1 and agg.hosts.pruned > 0
    exact = Aggregates.of(whole)
    top = exact.talkers(3)
    got = agg.talkers(3)
    # the busiest hosts are kept; each figure is at most ``loss`` below the exact one
    assert [g[:2] for g in got] == [t[:2] for t in top]
    for g, t in zip(got, top, strict=True):
        assert t[2] + t[3] - agg.hosts.loss <= g[2] + g[3] <= t[2] + t[3]
    rows = agg.scanners()
    assert [r.source for r in rows] == ["192.0.2.66"] and rows[0].attempts == 60
    page = html_report.render(with_aggregates(whole, agg), generated=GENERATED)
    assert 'id="pc-talkers-note">Top talkers approximate: more than 10 hosts' in page
    assert with_aggregates(whole, Aggregates.of(whole)).aggregates.talkers_note() is None


def test_snapshot_copy_leaves_the_running_aggregates_alone(corpus) -> None:
    """A live view adds the flows alive now to a copy: the running aggregates stay as they were."""
    import copy

    a = corpus["teams.pcap"]
    chunks = _chunks(a)
    agg = Aggregates(limit=30)
    for c in chunks[:-1]:
        agg.add(c)
    before = pickle.dumps(agg)
    last = chunks[-1]
    alive = Analysis(flows=last.flows, labels=last.labels, stats=a.stats, registry=a.registry, part=last.part)
    view = copy.deepcopy(agg).merge(Aggregates.of(alive))
    assert pickle.dumps(agg) == before
    assert view.flows == len(a.flows) == agg.flows + len(last)
    assert _reports(with_aggregates(a, view))[1] == _reports(_aggregated(a, limit=30))[1]
