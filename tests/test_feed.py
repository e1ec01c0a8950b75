"""The two-process file run (``classifier.feed``): a forked child reads, decodes and scans payloads while the
parent runs the engine.  Its output is byte for byte the one-process output; damage, bad input, signals
and a killed child keep the project's rules (one line, documented exit code, no traceback, no child left)."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from classifier import feed
from classifier.capture.reader import read_batches
from classifier.errors import EXIT_INTERNAL, CaptureError, PortclassError
from tests.shared import shared

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ("443-curl.pcap", "anydesk.pcapng", "6in4tunnel.pcap", "dtls_certificate_fragments.pcap", "doh.pcapng")


def _xml() -> str:
    return str(shared("registry", "service-names-port-numbers.xml"))


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m classifier --registry XML ARGS`` (bytes out)."""
    return subprocess.run(
        [sys.executable, "-m", "classifier", "--registry", _xml(), "--no-progress", *args],
        capture_output=True,
        cwd=ROOT,
        timeout=timeout,
    )


def both(*args: str) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """The same run with one process and with two; asserts they agree byte for byte (stdout, stderr, status)."""
    one, two = cli(*args, "--jobs", "1"), cli(*args, "--jobs", "2")
    assert _timeless(one.stdout) == _timeless(two.stdout)
    assert one.stderr == two.stderr
    assert one.returncode == two.returncode
    return one, two


def _timeless(out: bytes) -> bytes:
    """Output without Zeek's ``#open``/``#close`` lines (the wall-clock times the log was opened and closed)."""
    return b"".join(x for x in out.splitlines(keepends=True) if not x.startswith((b"#open\t", b"#close\t")))


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """Captures made by the shared benchmark generators: bench-like (100,000 packets, two read chunks) and a day."""
    d = tmp_path_factory.mktemp("made")
    out = {"bench": d / "bench.pcap", "day": d / "day.pcap"}
    subprocess.run([sys.executable, str(shared("bench", "make_bench_pcap.py")), str(out["bench"]), "--packets",
                    "100000"], check=True, capture_output=True, timeout=300)  # fmt: skip
    subprocess.run([sys.executable, str(shared("bench", "make_day_pcap.py")), "--packets", "120000", "--hours", "1",
                    str(out["day"])], check=True, capture_output=True, timeout=300)  # fmt: skip
    return out


# ---- the same output -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", CORPUS)
def test_corpus_capture_gives_the_same_jsonl(name: str) -> None:
    one, _ = both(str(shared("captures", "ndpi", "pcap", name)), "-f", "jsonl")
    assert one.returncode == 0 and one.stdout.count(b"\n") > 1


def test_whole_corpus_directory_gives_the_same_jsonl_and_warnings() -> None:
    """Hundreds of files, some damaged or of unsupported link types: flows, counters and warnings agree."""
    one, _ = both(str(shared("captures", "ndpi", "pcap")), "-f", "jsonl")
    assert one.returncode == 0 and one.stdout.count(b"\n") > 5000 and b"warning" in one.stderr


@pytest.mark.parametrize("kind", ("bench", "day"))
@pytest.mark.parametrize("fmt", ("jsonl", "zeek", "terminal"))
def test_generated_captures_give_the_same_output(made: dict[str, Path], kind: str, fmt: str) -> None:
    one, _ = both(str(made[kind]), "-f", fmt)
    assert one.returncode == 0 and len(one.stdout) > 5000


def test_dissect_none_and_filters_give_the_same_output(made: dict[str, Path]) -> None:
    one, _ = both(str(made["bench"]), "-f", "jsonl", "--dissect", "none", "--port", "53")
    assert one.returncode == 0 and one.stdout.count(b"\n") > 10


def test_api_flows_agree_with_many_small_batches(reg) -> None:
    """Library use with 4 KiB chunks: hundreds of batches through the pipe, in order, tags with them."""
    from classifier.engine import Engine

    path = shared("captures", "ndpi", "pcap", "443-curl.pcap")
    runs = []
    for child in (False, True):
        eng = Engine(reg)
        chunks = []
        with feed.batches(feed.file_batches([path], 4096), child=child) as items:
            n = 0
            for batch, tags in items:
                n += 1
                chunks.extend(eng.add(batch, tags))
        chunks.append(eng.flush())
        assert n > 20
        runs.append(chunks)
    a, b = ([(c.flows.key_hash.tolist(), c.labels.service.tolist(), c.labels.verdict.tolist()) for c in r]
            for r in runs)  # fmt: skip
    assert a == b and sum(len(c) for c in runs[0]) > 0


@pytest.mark.parametrize("share", ("all", "none"))
def test_flow_tables_built_by_the_child_equal_the_engine_s(made: dict[str, Path], reg, monkeypatch, share) -> None:
    """Pools whose flow tables the child builds (``feed.SHARE``) give the flows, labels, parts, end reasons
    and counters of one process, chunk for chunk; with "none" no table crosses."""
    from classifier.engine import Engine, Timeouts
    from classifier.flows import FlowTable, Pooled

    monkeypatch.setattr(feed, "SHARE", share)  # the child is forked: it sees the patched value
    runs = []
    for child in (False, True):
        eng = Engine(reg, Timeouts(idle_s=20, active_s=600), min_packets=20000)
        chunks, tables = [], 0
        source = feed.file_batches([made["day"]], 1 << 20)
        with feed.batches(source, child=child, flows=eng.flow_stage()) as items:
            for batch, tags in items:
                tables += isinstance(tags, Pooled)
                chunks.extend(eng.add(batch, tags))
        chunks.append(eng.flush())
        runs.append((chunks, tables, eng.counters, eng.stats))
    (one, none, c1, s1), (two, tables, c2, s2) = runs
    assert none == 0 and (tables > 3 if share == "all" else tables == 0)
    assert len(one) == len(two) > 3 and c1 == c2 and c1.ended["idle"] > 100 and s1.packets == s2.packets
    assert s1.files == s2.files and s1.bytes == s2.bytes
    for a, b in zip(one, two, strict=True):
        assert a.flows.equals(b.flows) and a.part.tolist() == b.part.tolist() and a.reason.tolist() == b.reason.tolist()
        for name in ("service", "verdict", "flags"):
            assert getattr(a.labels, name).tolist() == getattr(b.labels, name).tolist(), name
    assert sum(len(c) for c in one) == len(FlowTable.concat([c.flows for c in one])) > 1000


# ---- damage and bad input --------------------------------------------------------------------------


def _record_offsets(path: Path) -> list[int]:
    """Byte offsets of the records of a little-endian classic pcap."""
    data = path.read_bytes()
    offs, at = [], 24
    while at + 16 <= len(data):
        offs.append(at)
        at += 16 + struct.unpack_from("<I", data, at + 8)[0]
    return offs


def test_damage_in_the_middle_keeps_what_came_before(made: dict[str, Path], tmp_path: Path) -> None:
    """A record length that cannot be, at 70% of a two-chunk capture: the same warning and flows both ways."""
    src = made["bench"]
    offs = _record_offsets(src)
    cut = offs[len(offs) * 7 // 10]
    data = bytearray(src.read_bytes())
    struct.pack_into("<I", data, cut + 8, 0x7FFF_FFFF)
    bad = tmp_path / "damaged.pcap"
    bad.write_bytes(bytes(data))
    one, _ = both(str(bad), "-f", "jsonl")
    assert one.returncode == 0
    err = one.stderr.decode().splitlines()
    assert len(err) == 1 and err[0].startswith(f"portclass: warning: {bad}: packet {len(offs) * 7 // 10 + 1} at byte")
    assert err[0].endswith("; stopped reading")
    head = __import__("json").loads(one.stdout.splitlines()[0])["portclass"]["totals"]
    assert head["packets"] == len(offs) * 7 // 10


def test_cut_capture_and_damaged_set(made: dict[str, Path], tmp_path: Path) -> None:
    """A capture cut in the middle of a record, among files broken every way: same report and warnings."""
    from tests.test_capture_damage import damaged_set

    bad = damaged_set(tmp_path)
    cut = tmp_path / "cut.pcap"
    data = made["bench"].read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3 + 7])
    paths = [str(p) for name, p in bad.items() if os.path.exists(p)]  # the CLI checks these first
    one, _ = both(*paths, str(cut), "-f", "jsonl")
    assert one.returncode == 0
    assert one.stderr.decode().count("portclass: warning: ") == len(paths) + 1
    assert "last record cut short" in one.stderr.decode()


@pytest.mark.parametrize("content", (b"hello, world\n" * 4, b""), ids=("not-a-capture", "empty"))
def test_single_bad_file_is_one_line_exit_2(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pcap"
    path.write_bytes(content)
    one, two = both(str(path), "-f", "jsonl")
    assert two.returncode == 2 and two.stdout == b""
    lines = two.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"portclass: {path}: "), lines


def test_child_errors_are_raised_in_the_parent() -> None:
    """A ``CaptureError`` keeps its file and exit code; another exception carries the child's traceback."""

    def bad_capture():
        raise CaptureError("not a pcap or pcapng capture", path="/x/y.pcap")

    with pytest.raises(CaptureError) as err, feed.Feed(bad_capture) as f:
        list(f)
    assert str(err.value) == "/x/y.pcap: not a pcap or pcapng capture" and err.value.exit_code == 2

    def bug():
        yield from read_batches([shared("captures", "ndpi", "pcap", "443-curl.pcap")])
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug") as err, feed.Feed(bug) as f:
        list(f)
    assert "in the reading process" in "".join(getattr(err.value, "__notes__", []))


# ---- a killed child, signals --------------------------------------------------------------------------


def _children(pid: int, name: str | None = "portclass-feed") -> list[int]:
    """Child process ids of ``pid`` (its main thread's) named ``name`` (the reading process; None: any,
    the writing process of a streamed format too, ``report.writer``)."""
    try:
        kids = [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return [k for k in kids if name is None or _comm(k) == name]


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _gone(pid: int, within: float = 10.0) -> bool:
    """True once ``pid`` is no longer running (gone, or a zombie waiting to be reaped)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


def _wait_child(proc: subprocess.Popen, within: float = 60.0) -> int:
    deadline = time.monotonic() + within
    while not (kids := _children(proc.pid)):
        assert proc.poll() is None and time.monotonic() < deadline, "no reading process appeared"
        time.sleep(0.002)
    return kids[0]


def test_killed_child_is_one_line_not_a_hang(tmp_path: Path) -> None:
    """kill -9 of the reading process while it waits on a named pipe: one line naming the input, exit 70."""
    fifo = tmp_path / "pipe.pcap"
    os.mkfifo(fifo)
    head = shared("captures", "ndpi", "pcap", "443-curl.pcap").read_bytes()
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "classifier", "--registry", _xml(), "--no-progress", "--jobs", "2", str(fifo), "-f",
         "jsonl", "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)  # fmt: skip
    with open(fifo, "wb") as w:  # opened once the child opens it for reading
        w.write(head)
        w.flush()
        child = _wait_child(proc)
        os.kill(child, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERNAL
    why = "the reading process ended unexpectedly (killed by SIGKILL) after 0 batches"
    assert err.decode() == f"portclass: {fifo}: {why}\n"
    assert not out.exists()


def test_killed_child_in_the_api_raises() -> None:
    def slow():
        yield from read_batches([shared("captures", "ndpi", "pcap", "443-curl.pcap")])
        time.sleep(120)

    with pytest.raises(PortclassError, match=r"killed by SIGKILL\) after 1 batches") as err, feed.Feed(slow) as f:
        for _ in f:
            os.kill(f._proc.pid, signal.SIGKILL)
    assert err.value.exit_code == EXIT_INTERNAL


@pytest.mark.parametrize("sig, group", ((signal.SIGINT, True), (signal.SIGTERM, False), (signal.SIGTERM, True)))
def test_signal_stops_parent_and_child(made: dict[str, Path], tmp_path: Path, sig: int, group: bool) -> None:
    """Ctrl-C (to the process group) or SIGTERM while reading: partial report, one line, 128 + N, child gone."""
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "classifier", "--registry", _xml(), "--no-progress", "--jobs", "2", str(made["day"]),
         "-f", "jsonl", "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
        start_new_session=True)  # fmt: skip
    _wait_child(proc)
    kids = _children(proc.pid, None)  # the reading and the writing process (report.writer)
    assert len(kids) == 2
    time.sleep(0.05)
    os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    text = err.decode()
    assert all(_gone(k) for k in kids), "a child process was left running"
    assert "Traceback" not in text and len(text.splitlines()) == 1, text
    if proc.returncode == 0:  # it had finished before the signal came
        return
    assert proc.returncode == 128 + sig, text
    name = signal.Signals(sig).name
    assert text.startswith(f"portclass: interrupted by {name}"), text


def test_parent_killed_leaves_no_child(made: dict[str, Path]) -> None:
    """kill -9 of the parent: the child dies at its next write (a broken pipe)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "classifier", "--registry", _xml(), "--no-progress", "--jobs", "2", str(made["day"]),
         "-f", "jsonl", "-o", os.devnull], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)  # fmt: skip
    _wait_child(proc)
    kids = _children(proc.pid, None)  # the reading and the writing process (report.writer)
    assert len(kids) == 2
    proc.kill()
    proc.communicate(timeout=60)
    assert all(_gone(k, 30.0) for k in kids), "a child process outlived its parent"


# ---- when two processes are used ------------------------------------------------------------------------


def test_two_processes_by_default_only_for_large_inputs(tmp_path: Path) -> None:
    small = shared("captures", "ndpi", "pcap", "443-curl.pcap")
    big = tmp_path / "big.pcap"
    with open(big, "wb") as f:
        f.truncate(feed.MIN_BYTES)  # sparse: only its size matters here
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    many = feed.cpus() >= 2
    assert feed.two_processes([small], None) is False
    assert feed.two_processes([big], None) is many and feed.two_processes([fifo], None) is many
    assert feed.two_processes([tmp_path], None) is many  # a directory: its files' sizes
    assert feed.two_processes([big], 1) is False and feed.two_processes([small], 2) is True


def test_only_the_columns_cross(reg) -> None:
    """The raw chunk stays in the child: the parent's batches carry no data and no payload offsets."""
    path = shared("captures", "ndpi", "pcap", "443-curl.pcap")
    direct = next(iter(read_batches([path])))
    threads = threading.active_count()
    with feed.Feed(feed.file_batches([path], 1 << 20)) as f:
        batch, tags = next(iter(f))
    assert batch.data.size == 0 and (batch.payload_off == -1).all() and direct.data.size > 0
    for name in feed.COLUMNS:
        a, b = getattr(direct, name), getattr(batch, name)
        assert a.dtype == b.dtype and np.array_equal(a, b) and b.flags.writeable, name
    assert tags is not None and tags.sig.shape == (len(batch),) and tags.sig.any()
    assert threading.active_count() == threads  # no thread in the parent (the child's sender is the child's)


def test_python_api_with_two_processes(made: dict[str, Path], reg) -> None:
    """``classify`` and ``flows_as_they_end`` with ``jobs=2`` give ``jobs=1``'s rows; a generator let go
    before its end leaves no reading process behind."""
    import classifier

    path = made["day"]
    one, two = classifier.classify(path, reg, jobs=1), classifier.classify(path, reg, jobs=2)
    assert one.rows() == two.rows() and len(one) > 1000
    chunks = [[c.rows() for c in classifier.flows_as_they_end(path, reg, jobs=j)] for j in (1, 2)]
    assert chunks[0] == chunks[1] and len(chunks[0]) > 1
    gen = classifier.flows_as_they_end(path, reg, jobs=2)
    next(gen)
    kids = _children(os.getpid())
    assert kids
    gen.close()
    assert all(_gone(k) for k in kids)


def test_a_source_that_runs_until_asked_to_stop() -> None:
    """The live use: the source runs in the child until ``request_stop``; ``poll`` returns within its timeout."""
    batch = next(iter(read_batches([shared("captures", "ndpi", "pcap", "443-curl.pcap")])))

    def endless():
        while not f.stop.is_set():
            time.sleep(0.05)
            yield batch
        yield batch  # what it still held when asked

    f = feed.Feed(endless)  # bound before the fork: the child's source sees it
    with f:
        got = []
        t0 = time.monotonic()
        while len(got) < 3:
            got += f.poll(0.2)
            assert time.monotonic() - t0 < 30
        f.request_stop()
        rest = list(f)
        assert f.finished and f.poll(0.1) == [] and f.next() is None
    assert len(got) + len(rest) >= 4 and all(len(b) == len(batch) and t is not None for b, t in got + rest)
