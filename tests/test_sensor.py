"""The sensor: ``portclass live -o FILE`` appends flows as they end, ``-o DIR --rotate`` rotates the files.

First the flow log on its own (``classifier.report.rotate``, flows of the repository's sample capture,
a clock the test moves), then real captures with the scapy backend on the loopback interface: traffic
to 127.0.0.1 only, filtered by a BPF on the test's own ports, every run stopped within seconds.  The
packets the files' flows carry are compared with the sensor's counters and with tshark on the pcapng
the sensor also wrote.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from classifier.errors import PortclassError
from classifier.report.rotate import FlowLog, parse_interval
from tests.conftest import ROOT
from tests.shared import shared

FORMATS = ("jsonl", "csv", "zeek", "parquet")
NAME = re.compile(r"^conn\.(\d{4}(?:-\d\d){5})_(\d{4}(?:-\d\d){5})(?:-\d+)?\.(jsonl|csv|log|parquet)$")


# ---- reading the files back ------------------------------------------------------------------


def read_flows(path: Path, fmt: str) -> list[tuple[str, str, int, int]]:
    """(community id, start, part, packets) of every flow in a *whole* file; fails on a cut file."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        t = pq.read_table(path)  # raises on a file without its footer
        assert "notice" in (pq.read_metadata(path).metadata or {}).get(b"notice", b"notice").decode()
        if not t.num_rows:
            return []
        d = t.to_pydict()
        part = d.get("portclass.flow_part") or [None] * t.num_rows
        return [
            (c, str(s), int(p or 0), int(n))
            for c, s, p, n in zip(d["network.community_id"], d["event.start"], part, d["network.packets"], strict=True)
        ]
    text = path.read_text()
    assert text.endswith("\n"), f"{path.name}: cut in the middle of a line"
    lines = text.splitlines()
    if fmt == "jsonl":
        docs = [json.loads(x) for x in lines]
        assert docs[0]["event"]["dataset"] == "portclass.notice" and "NOR THAT" in docs[0]["message"]
        assert docs[-1]["event"]["dataset"] == "portclass.close", f"{path.name}: no closing line"
        flows = docs[1:-1]
        out = [
            (d["network"]["community_id"], d["event"]["start"], int(d["portclass"].get("flow_part") or 0),
             int(d["network"]["packets"]))
            for d in flows
        ]  # fmt: skip
        assert docs[-1]["portclass"]["live"]["file"]["flows"] == len(out)
        return out
    if fmt == "csv":
        assert lines[0].startswith("# NOTICE (IANA registry)") and lines[-1].startswith(("# close: ", "# partial"))
        rows = list(csv.DictReader(x for x in lines if not x.startswith("#")))
        return [
            (r["network.community_id"], r["event.start"], int(r["portclass.flow_part"] or 0), int(r["network.packets"]))
            for r in rows
        ]
    assert fmt == "zeek"
    assert lines[0].startswith("#separator") and lines[-1].startswith("#close\t"), f"{path.name}: not closed"
    fields = next(x for x in lines if x.startswith("#fields")).split("\t")[1:]
    out = []
    for x in lines:
        if x.startswith("#"):
            continue
        r = dict(zip(fields, x.split("\t"), strict=True))
        out.append((r["community_id"], r["ts"], 0, int(r["orig_pkts"]) + int(r["resp_pkts"])))
    return out


# ---- the flow log alone ----------------------------------------------------------------------


def test_parse_interval():
    assert [parse_interval(x) for x in ("1h", "10m", "30s", "1d", "90", "1.5h")] == [3600, 600, 30, 86400, 90, 5400]
    for bad in ("", "h", "-1s", "0", "1w", "1h30"):
        with pytest.raises(ValueError):
            parse_interval(bad)


@pytest.fixture(scope="module")
def sample_chunks(reg):
    """The sample capture's flows in four chunks of ended flows, and the run's analysis."""
    from classifier.engine import Ended
    from classifier.pipeline import analyze

    got: list[Ended] = []
    a = analyze([ROOT / "captures" / "sample.pcap"], reg, on_ended=got.append)
    whole = Ended.concat([g for g in got if len(g)])
    n = len(whole)
    cuts = np.array_split(np.arange(n), 4)
    from classifier.filters import take_labels

    chunks = [Ended(whole.flows.take(i), take_labels(whole.labels, i), whole.part[i], whole.reason[i]) for i in cuts]
    return chunks, a, n


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize("fmt", FORMATS)
def test_rotation_makes_whole_files_named_by_their_span(fmt, sample_chunks, tmp_path):
    chunks, a, n = sample_chunks
    clock = Clock(1_795_000_000.0)  # 2026-11-18 11:06:40 UTC, a multiple of 10 s
    log = FlowLog(fmt, tmp_path / "logs", a, rotate_s=10, meta=lambda: {"sensor": "test"}, clock=clock)
    log.open()
    current = tmp_path / "logs" / f"conn.{ {'zeek': 'log'}.get(fmt, fmt)}"
    for c in chunks:
        log.write(c)
        if fmt != "parquet":  # a reader following the current file: whole lines only, flows as they end
            assert current.read_text().endswith("\n")
        clock.t += 6
        if log.due():
            log.rotate()
    log.close()
    files = sorted((tmp_path / "logs").iterdir())
    assert [f.name for f in files] == sorted(p.name for p in log.finished)  # nothing else: no temporary file
    assert len(files) == 3  # 0-10 s: 2 chunks; 10-20 s: 2; 20-24 s: none (a file even when empty)
    spans = [NAME.match(f.name).groups()[:2] for f in files]
    assert spans[0] == ("2026-11-18-11-06-40", "2026-11-18-11-06-52")  # opened, closed (UTC): rotated at 12 s
    assert all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1))
    flows = [read_flows(f, fmt) for f in files]
    assert [len(x) for x in flows] == [len(chunks[0]) + len(chunks[1]), len(chunks[2]) + len(chunks[3]), 0]
    total = sum(int(c.flows.packets_c2s.sum()) + int(c.flows.packets_s2c.sum()) for c in chunks)
    assert sum(p for f in flows for *_, p in f) == total == log.running.packets
    assert log.running.flows == n == 19


def test_a_full_device_is_one_error_naming_the_file(sample_chunks):
    chunks, a, _ = sample_chunks
    log = FlowLog("jsonl", "/dev/full", a)
    with pytest.raises(PortclassError) as err:
        log.open()
        log.write(chunks[0])
    assert str(err.value).startswith("/dev/full: cannot write the flow log (No space left on device)")
    log.abandon()


def test_a_removed_directory_is_an_error_not_a_silent_loss(sample_chunks, tmp_path):
    chunks, a, _ = sample_chunks
    log = FlowLog("csv", tmp_path / "d", a, rotate_s=3600)
    log.open()
    log.write(chunks[0])
    shutil.rmtree(tmp_path / "d")
    with pytest.raises(PortclassError) as err:
        log.write(chunks[1])
    assert str(err.value).startswith(f"{tmp_path / 'd' / 'conn.csv'}: cannot write the flow log")
    log.abandon()


# ---- live captures ---------------------------------------------------------------------------


def _can_capture() -> str | None:
    try:
        import scapy  # noqa: F401
    except ImportError:
        return "scapy not installed"
    from classifier.live.checks import can_capture

    return None if can_capture() else "this Python may not capture (needs root or CAP_NET_RAW)"


live = pytest.mark.skipif(_can_capture() is not None, reason=str(_can_capture()))
PORT = 39_871  # the test's UDP and TCP ports on 127.0.0.1 (a BPF keeps other loopback traffic out)
BPF = f"port {PORT} or port {PORT + 1}"


class Traffic:
    """UDP datagrams from fresh sockets (each one a flow) and short TCP connections, until stopped."""

    def __init__(self, rate: float = 150.0) -> None:
        self.stop = threading.Event()
        self.sent = 0
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # another run of these tests may serve it
        self.srv.bind(("127.0.0.1", PORT + 1))
        self.srv.listen(64)
        self.srv.settimeout(0.2)
        self.rate = rate
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._serve, self._send)]

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                c, _ = self.srv.accept()
            except OSError:
                continue
            with c:
                c.settimeout(1)
                try:
                    c.sendall(c.recv(100))
                except OSError:
                    pass

    def _send(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.sendto(b"x" * (i % 50), ("127.0.0.1", PORT))
            if i % 10 == 0:
                try:
                    with socket.create_connection(("127.0.0.1", PORT + 1), timeout=2) as t:
                        t.sendall(b"hello")
                        t.recv(10)
                except OSError:
                    pass
            self.sent += 1
            time.sleep(1 / self.rate)

    def __enter__(self) -> Traffic:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(5)
        self.srv.close()


def sensor(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.Popen:
    xml = shared("registry", "service-names-port-numbers.xml")
    cmd = [*prefix, sys.executable, "-m", "classifier", "--registry", str(xml), "live", "-i", "lo"]
    cmd += ["--backend", "scapy", "--bpf", BPF, "--refresh", "0.2", "--idle-timeout", "udp=0.3,tcp=2", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def wait_started(proc: subprocess.Popen, timeout: float = 60) -> None:
    """Until the sensor says it captures (its stderr's first line)."""
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert line.startswith("portclass: capturing on"), line + proc.stderr.read()


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def tshark_count(pcap: Path) -> int:
    r = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "frame.number"], capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return len(r.stdout.split())


@live
def test_flows_reach_the_file_before_the_stop(tmp_path):
    """-o FILE: a flow is in the file a moment after it ended, as whole lines, while the capture goes on."""
    out = tmp_path / "flows.jsonl"
    proc = sensor("--duration", "60", "-f", "jsonl", "-o", str(out))
    try:
        wait_started(proc)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.sendto(b"ping", ("127.0.0.1", PORT))
            cport = u.getsockname()[1]
        seen, deadline = None, time.monotonic() + 20
        while seen is None and time.monotonic() < deadline:
            text = out.read_text() if out.exists() else ""
            assert not text or text.endswith("\n")
            docs = [json.loads(x) for x in text.splitlines()]
            seen = next((d for d in docs[1:] if d.get("source", {}).get("port") == cport), None)
            time.sleep(0.1)
        assert seen is not None, "the ended flow did not reach the file while capturing"
        assert proc.poll() is None  # still capturing
        assert seen["destination"]["port"] == PORT and seen["network"]["packets"] == 1
        assert seen["network"]["transport"] == "udp"
    finally:
        proc.send_signal(signal.SIGINT)
        rc, _, err = finish(proc)
    assert rc == 130, err
    docs = [json.loads(x) for x in out.read_text().splitlines()]
    assert docs[-1]["event"]["dataset"] == "portclass.close" and docs[-1]["portclass"]["partial"] is True


@live
@pytest.mark.parametrize("fmt", FORMATS)
def test_rotation_files_add_up_to_the_packets_captured(fmt, tmp_path):
    """--rotate 1s while traffic flows, --duration stops it: whole files, flows adding up to the packets."""
    d, pcap = tmp_path / "logs", tmp_path / "seen.pcapng"
    proc = sensor("--duration", "4", "-f", fmt, "-o", str(d), "--rotate", "1s", "--write-pcap", str(pcap))
    with Traffic():
        wait_started(proc)
        rc, _, err = finish(proc)
    assert rc == 0, err
    files = sorted(d.iterdir())
    assert all(NAME.match(f.name) for f in files), [f.name for f in files]
    assert len(files) >= 4
    flows = [x for f in files for x in read_flows(f, fmt)]
    captured = int(re.search(r"captured ([\d,]+) packets", err).group(1).replace(",", ""))
    assert captured > 100
    assert sum(p for *_, p in flows) == captured == tshark_count(pcap)
    assert len(set(flows)) == len(flows)
    assert sum(1 for x in flows if x[2] == 0) == len(flows)


def _one_run_killed(tmp_path: Path, fmt: str, delay: float) -> None:
    d, pcap = tmp_path / "logs", tmp_path / "seen.pcapng"
    proc = sensor("--duration", "60", "-f", fmt, "-o", str(d), "--rotate", "1s", "--write-pcap", str(pcap))
    with Traffic(rate=300):
        wait_started(proc)
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        rc, _, err = finish(proc)
    assert rc == 143, err
    assert "Traceback" not in err and "stopped by SIGTERM" in err
    files = sorted(d.iterdir())
    assert files and all(NAME.match(f.name) for f in files), [f.name for f in files]  # no temporary file left
    flows = [x for f in files for x in read_flows(f, fmt)]
    key = [x[:3] for x in flows]
    assert len(set(key)) == len(key), "a flow written twice"
    captured = int(re.search(r"captured ([\d,]+) packets", err).group(1).replace(",", ""))
    assert sum(p for *_, p in flows) == captured == tshark_count(pcap), "a flow lost"


@live
@pytest.mark.parametrize("fmt", FORMATS)
def test_sigterm_during_rotation_leaves_every_file_whole(fmt, tmp_path):
    """SIGTERM at random moments (two runs per format) while files rotate every second under traffic."""
    rnd = random.Random(int(os.environ.get("PORTCLASS_TEST_SEED", "12")) + FORMATS.index(fmt))
    for k in range(2):
        run_dir = tmp_path / f"run{k}"
        run_dir.mkdir()
        _one_run_killed(run_dir, fmt, 1.0 + rnd.random() * 2.5)


class _SignalledLog(FlowLog):
    """A flow log that sends this process SIGTERM (``signals`` times) in the middle of its ``at``-th rotation:
    the old file's closing line written, its rename to its span's name not yet done."""

    def __init__(self, *args, signals: int, at: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.signals, self.at, self.rotations, self.sent = signals, at, 0, False

    def rotate(self):
        self.rotations += 1
        return super().rotate()

    def _final_name(self, closed_at: float) -> Path:
        if self.rotations == self.at and not self.sent:
            self.sent = True
            for _ in range(self.signals):
                os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, in the middle of the rotation
        return super()._final_name(closed_at)


@live
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("signals", [1, 2])
def test_sigterm_inside_a_rotation(signals, fmt, reg, tmp_path, monkeypatch):
    """SIGTERM arriving while a file is being rotated (every time, not by chance): the rotation completes,
    the capture stops, every file is whole and every flow is in exactly one file (SIGTERM once); a second
    SIGTERM (a service manager's escalation) waits for the rotation and stops at once, files still whole."""
    from classifier import interrupt
    from classifier.engine import Timeouts
    from classifier.live.engine import LiveOptions, LiveSession

    monkeypatch.setattr(interrupt, "received", None)
    d, pcap = tmp_path / "logs", tmp_path / "seen.pcapng"
    opts = LiveOptions(["lo"], bpf=BPF, backend="scapy", refresh=0.2, duration=30, write_pcap=str(pcap),
                       timeouts=Timeouts.parse_idle("udp=0.3,tcp=2"))  # fmt: skip
    session = LiveSession(opts, reg, keep_flows=False)
    log = _SignalledLog(fmt, d, session.base_analysis(), rotate_s=1, meta=session.live_meta, signals=signals, at=2)
    session.log = log
    with Traffic(rate=300):
        if signals == 1:
            result = session.run()
        else:
            with pytest.raises(KeyboardInterrupt):
                session.run()
    assert log.sent and log.rotations == 2  # the capture stopped at the signalled rotation
    files = sorted(d.iterdir())
    assert [f.name for f in files if not NAME.match(f.name)] == []  # renamed, no temporary file left
    assert len(files) == 3 and [f.name for f in files] == sorted(p.name for p in log.finished)
    flows = [x for f in files for x in read_flows(f, fmt)]  # every file whole
    key = [x[:3] for x in flows]
    assert len(flows) > 20 and len(set(key)) == len(key), "a flow written twice"
    if signals == 1:
        assert result.stopped_by == "SIGTERM" and interrupt.received == signal.SIGTERM
        captured = int(result.analysis.stats.packets)
        assert sum(p for *_, p in flows) == captured == tshark_count(pcap), "a flow lost"


@live
@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare (util-linux) for a private tmpfs"
)
def test_disk_full_stops_cleanly_with_whole_files(tmp_path):
    """A 64 KiB tmpfs in the sensor's own mount namespace fills up: one line naming the file, exit 2,
    and every file on it whole (rotated ones closed, the current one cut at a line)."""
    d, copy = tmp_path / "small", tmp_path / "copy"
    d.mkdir()
    # the tmpfs exists in the sensor's mount namespace only: its files are copied out before it goes
    script = f'mount -t tmpfs -o size=64k portclass-test {d} || exit 99; "$@"; rc=$?; cp -a {d}/logs {copy}; exit $rc'
    proc = sensor("--duration", "60", "-f", "jsonl", "-o", str(d / "logs"), "--rotate", "1s",
                  prefix=("unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh"))  # fmt: skip
    with Traffic(rate=400):
        wait_started(proc)
        rc, _, err = finish(proc, timeout=90)
    assert rc == 2, err
    errors = [x for x in err.splitlines() if "cannot write the flow log" in x]
    assert len(errors) == 1 and "No space left on device" in errors[0], err
    assert re.match(rf"portclass: {re.escape(str(d / 'logs'))}/conn\.\S+: cannot write", errors[0]), errors[0]
    assert "Traceback" not in err and "stopped by error" in err
    written = sum(len(read_flows(f, "jsonl")) for f in copy.iterdir() if NAME.match(f.name))  # rotated: whole
    for f in copy.iterdir():  # the file being written when the disk filled: whole lines (maybe none), no closing line
        if not NAME.match(f.name):
            assert f.name == "conn.jsonl"
            text = f.read_text()
            assert text == "" or text.endswith("\n"), text[-200:]
            written += len([json.loads(x) for x in text.splitlines()])
    assert written > 0  # the disk filled up with flows, and they are still there to read


@live
def test_directory_removed_while_capturing_is_one_error(tmp_path):
    d = tmp_path / "logs"
    proc = sensor("--duration", "60", "-f", "zeek", "-o", str(d), "--rotate", "1s")
    with Traffic():
        wait_started(proc)
        time.sleep(1.5)
        shutil.rmtree(d)
        rc, _, err = finish(proc)
    assert rc == 2, err
    errors = [x for x in err.splitlines() if "cannot write the flow log" in x]
    assert len(errors) == 1 and errors[0].startswith(f"portclass: {d}/conn."), err
    assert "Traceback" not in err


@live
def test_dev_full_as_the_output_file(tmp_path):
    proc = sensor("--duration", "60", "-f", "csv", "-o", "/dev/full")
    wait_started(proc)
    rc, _, err = finish(proc)
    assert rc == 2, err
    assert "portclass: /dev/full: cannot write the flow log (No space left on device); the capture stopped" in err


def test_rotate_needs_a_directory_and_a_streamed_format(tmp_path):
    from tests.conftest import run_cli

    f = tmp_path / "file"
    f.write_text("x")
    for args, what in (
        (["-f", "json", "-o", str(tmp_path), "--rotate", "1h"], "--rotate writes flows as they end"),
        (["-f", "jsonl", "--rotate", "1h"], "--rotate needs -o DIR"),
        (["-f", "jsonl", "-o", str(f), "--rotate", "1h"], "not a directory"),
        (["-f", "jsonl", "-o", str(tmp_path), "--rotate", "1w"], "not a duration"),
    ):
        r = run_cli("live", "-i", "lo", *args)
        assert r.returncode == 2 and what in r.stderr and "Traceback" not in r.stderr, r.stderr


@live
def test_filters_and_fail_on_in_live(tmp_path):
    """--flagged-only writes the flagged flows only (totals count every flow); --fail-on flagged exits 1."""
    out = tmp_path / "flows.jsonl"
    proc = sensor("--duration", "3", "-f", "jsonl", "-o", str(out), "--flagged-only", "--fail-on", "flagged",
                  "--bpf", "port 3478 or port 42000")  # fmt: skip
    wait_started(proc)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.sendto(b"ping", ("127.0.0.1", 3478))  # stun: assigned, not flagged
    try:  # refused (SYN, RST) unless another test on this machine serves 42000: a flagged flow either way
        socket.create_connection(("127.0.0.1", 42000), timeout=2).close()
    except OSError:
        pass
    rc, stdout, err = finish(proc)
    assert rc == 1, err
    docs = [json.loads(x) for x in out.read_text().splitlines()][1:-1]
    assert [d["destination"]["port"] for d in docs] == [42000]
    assert "unauthorized-use-known" in docs[0]["portclass"]["flags"]
    assert "kept by the filter --flagged-only" in stdout and re.search(r"Flows\s+2 ", stdout), stdout


@live
def test_the_view_follows_the_flows_alive(reg):
    """A capture through the API: each refresh's snapshot holds the flows alive, not every flow seen."""
    from classifier.engine import Timeouts
    from classifier.live.engine import LiveOptions, LiveSession

    opts = LiveOptions(["lo"], bpf=BPF, backend="scapy", refresh=0.2, timeouts=Timeouts.parse_idle("udp=0.3"))
    session = LiveSession(opts, reg, keep_flows=False)
    snaps: list[tuple[int, int]] = []

    def ready(s: LiveSession) -> None:
        def go() -> None:
            with Traffic(rate=200):
                time.sleep(4)
            time.sleep(1)
            s.request_stop("test")

        threading.Thread(target=go, daemon=True).start()

    result = session.run(on_ready=ready, on_refresh=lambda snap: snaps.append((len(snap.analysis.flows),
                                                                              snap.running.flows)))  # fmt: skip
    assert result.running.flows >= 300  # UDP flows of one datagram each, and TCP connections
    assert len(result.analysis.flows) == 0  # nothing kept to the stop
    alive_max = max(a for a, _ in snaps)
    assert snaps[-1][1] >= 200 and alive_max < result.running.flows / 3, snaps
    assert result.engine["peak_alive"] < result.running.flows / 3


def test_a_current_file_left_by_a_killed_sensor_is_kept(sample_chunks, tmp_path):
    """The next start keeps an unclosed conn.jsonl (SIGKILL, power loss) aside instead of truncating it."""
    chunks, a, _ = sample_chunks
    d = tmp_path / "logs"
    d.mkdir()
    (d / "conn.jsonl").write_text('{"flow": 1}\n')
    os.utime(d / "conn.jsonl", (1_795_000_000, 1_795_000_000))
    log = FlowLog("jsonl", d, a, rotate_s=3600)
    log.open()
    log.write(chunks[0])
    log.close()
    assert (d / "conn.unclosed-2026-11-18-11-06-40.jsonl").read_text() == '{"flow": 1}\n'
    assert len(read_flows(log.finished[0], "jsonl")) == len(chunks[0])


_FREED_RSS = """
import sys
import numpy as np
from classifier.live.heap import hold_freed_memory

held = hold_freed_memory() if sys.argv[1] == "hold" else None
def rss():
    return next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmRSS:")) // 1024
a = np.ones(256 << 20, dtype=np.uint8)  # a pass's temporary table
peak = rss()
del a
print(held, peak, rss())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_held_for_the_next_pass():
    """With ``hold_freed_memory`` (``portclass live``) 256 MiB freed stay resident for reuse; without it glibc
    gives them back at once: the swing a sensor's samples showed at every pass."""
    runs = {}
    for mode in ("hold", "default"):
        r = subprocess.run([sys.executable, "-c", _FREED_RSS, mode], capture_output=True, text=True, cwd=ROOT,
                           timeout=60)  # fmt: skip
        assert r.returncode == 0, r.stderr
        held, peak, after = r.stdout.split()
        runs[mode] = (held, int(peak), int(after))
    held, peak, after = runs["hold"]
    assert held == "True" and peak >= 256 and after >= peak - 8
    _, peak, after = runs["default"]
    assert peak >= 256 and after <= peak - 200
