"""``portclass archive`` on a real Dask cluster (``dask scheduler`` and two ``dask worker`` processes on
127.0.0.1): the dataset equals the one-process archive and ``portclass -f parquet`` over the same files
in order, flow for flow; a worker SIGKILLed mid-run loses and doubles nothing; a second run adds only
the new files' flows.  Inputs: captures of ../shared/captures/ndpi and a day capture made by
../shared/bench/make_day_pcap.py cut by editcap into a ring buffer (dumpcap's naming)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from tests.shared import shared

pytestmark = [pytest.mark.slow, pytest.mark.network]

NDPI = ["443-curl.pcap", "amqp.pcap", "dropbox.pcap", "anydesk.pcapng", "dns_exfiltration.pcap"]
BIN = Path(sys.executable).parent
CHUNK_DEPENDENT = {"portclass.missed_bytes"}
"""Zeek's missed bytes count gaps that depend on where the reader cut chunks (``conn.CHUNK_DEPENDENT``)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def cluster(workers: int = 2) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """A scheduler and ``workers`` worker processes (no nanny: the process is the worker), killed after."""
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", f"127.0.0.1:{_free_port()}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]  # fmt: skip
    try:
        for _ in range(workers):
            procs.append(subprocess.Popen([str(BIN / "dask"), "worker", addr, "--nthreads", "1", "--no-nanny",
                                           "--host", "127.0.0.1", "--no-dashboard"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
        from distributed import Client

        with Client(addr, timeout="60s") as c:
            c.wait_for_workers(workers, timeout=120)
        yield addr, procs[1:]
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)


def _portclass(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "portclass"), *args], capture_output=True, text=True, env=env, timeout=900)


@pytest.fixture(scope="module")
def archive_dir(tmp_path_factory) -> Path:
    """A directory of ndpi captures and a 2-hour day capture cut into a ring buffer of 10-minute files."""
    root = tmp_path_factory.mktemp("archive")
    caps = root / "captures"
    (caps / "ring").mkdir(parents=True)
    for name in NDPI:
        shutil.copy(shared("captures", "ndpi", "pcap", name), caps / name)
    day = root / "day.pcap"
    subprocess.run([sys.executable, str(shared("bench", "make_day_pcap.py")), "--packets", "200000", "--hours", "2",
                    str(day)], check=True, capture_output=True)  # fmt: skip
    subprocess.run(["editcap", "-i", "600", str(day), str(caps / "ring" / "day.pcap")], check=True)
    return caps


@pytest.fixture()
def env(xml_path, user_dirs) -> dict[str, str]:
    return {**os.environ, "PORTCLASS_REGISTRY": str(xml_path)}


def rows(table) -> list[tuple]:
    """Every flow as a tuple of its columns' text, sorted (the dataset's order is per part)."""
    cols = sorted(c for c in table.column_names if c not in ("date", "hour") and c not in CHUNK_DEPENDENT)
    d = table.select(cols).to_pydict()
    hist = cols.index("portclass.history")
    out = []
    for i in range(table.num_rows):
        r = [str(d[c][i]) for c in cols]
        # retransmission (T) and gap (G) letters of Zeek's history depend on where chunks were cut
        r[hist] = "".join(ch for ch in r[hist] if ch not in "TtGg")
        out.append(tuple(r))
    return sorted(out)


def dataset(path: Path):
    return ds.dataset(path, format="parquet", partitioning="hive").to_table()


def test_dask_cluster_equals_one_process_and_plain_parquet(archive_dir, tmp_path, env):
    one, on_dask, plain = tmp_path / "one", tmp_path / "dask", tmp_path / "plain.parquet"
    r = _portclass("archive", str(archive_dir), "-o", str(one), "--no-progress", env=env)
    assert r.returncode == 0, r.stderr
    terminal = " ".join(r.stdout.split())
    r = _portclass("-f", "parquet", "-o", str(plain), str(archive_dir), env=env)
    assert r.returncode == 0, r.stderr
    r = _portclass("-f", "json", "--max-flows", "300", "-o", str(tmp_path / "plain.json"), str(archive_dir), env=env)
    assert r.returncode == 0, r.stderr
    with cluster(2) as (addr, _):
        r = _portclass("archive", str(archive_dir), "-o", str(on_dask), "--dask", addr, "--no-progress", "-f", "json",
                       "--max-flows", "300", "--report", str(tmp_path / "dask.json"), env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    # the whole archive's summary, merged from the tasks' aggregates, is `portclass -f json`'s over the files
    summary, ref = (json.loads((tmp_path / n).read_text()) for n in ("dask.json", "plain.json"))
    assert summary["totals"]["flows"] > 10_000 and len(summary["flows"]) == 300
    assert summary == ref
    # the terminal summary too: the warning, services, outcomes and the worst flows of the whole archive
    assert "ASSIGNMENT OF A PORT NUMBER DOES NOT IN ANY WAY IMPLY AN ENDORSEMENT" in terminal
    assert f"Flows {summary['totals']['flows']:,} " in terminal and "Services claimed by server port" in terminal
    assert "Flagged flows, worst first" in terminal and "the summary covers the whole archive" in terminal
    a, b, p = dataset(one), dataset(on_dask), pq.read_table(plain)
    assert a.num_rows == b.num_rows == p.num_rows > 10_000
    assert rows(a) == rows(b)  # the cluster writes what one process writes
    assert rows(a) == rows(p)  # and what `portclass -f parquet` writes reading the files in order
    # a flow crossing the ring buffer's files is one flow: its packets come from two files
    ring = [str(f) for f in sorted((archive_dir / "ring").iterdir())]
    assert len(ring) == 12
    first = a.filter(ds.field("log.file.path") == ring[0]).column("event.end").to_pylist()
    assert max(first) > dt.datetime(2026, 1, 1, 0, 10, tzinfo=dt.UTC)  # it started in file 0, ended after it
    # partitions by start hour, the registry's warning and provenance in _common_metadata
    parts = sorted(p.relative_to(on_dask).parts[:2] for p in on_dask.rglob("*.parquet"))
    assert ("date=2026-01-01", "hour=00") in parts and ("date=2026-01-01", "hour=01") in parts
    meta = pq.read_schema(on_dask / "_common_metadata").metadata
    assert b"DOES NOT IN ANY WAY IMPLY" in meta[b"portclass.notice"]
    reg = json.loads(meta[b"portclass.registry"])
    assert len(reg["sha256"]) == 64 and meta[b"portclass.version"]
    totals = json.loads(meta[b"portclass.totals"])
    assert totals["flows"] == a.num_rows and totals["files"] == len(NDPI) + 12
    assert totals["flow_packets"] == sum(a.column("network.packets").to_pylist())


def test_worker_killed_midway_loses_and_doubles_nothing(archive_dir, tmp_path, env):
    many = tmp_path / "many"
    many.mkdir()
    # a finer ring (2,000 packets a file, 100 files): tasks still run when the worker dies
    subprocess.run(["editcap", "-c", "2000", str(archive_dir.parent / "day.pcap"), str(many / "ring.pcap")],
                   check=True)  # fmt: skip
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert _portclass("archive", str(many), "-o", str(ref), "--no-progress", env=env).returncode == 0
    with cluster(2) as (addr, workers):
        cmd = [str(BIN / "portclass"), "archive", str(many), "-o", str(out), "--dask", addr, "--no-progress"]
        run = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while len(list(out.rglob("*.parquet"))) < 10 and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.05)
        assert run.poll() is None, "the run ended before the worker could be killed"
        workers[0].send_signal(signal.SIGKILL)
        assert workers[0].wait(timeout=30) == -signal.SIGKILL
        stdout, stderr = run.communicate(timeout=600)
    assert run.returncode == 0, stderr
    assert "100 file(s) labelled this run" in " ".join(stdout.split())
    a, b = dataset(ref), dataset(out)
    assert a.num_rows == b.num_rows
    assert rows(a) == rows(b)
    assert not list(out.rglob(".*.tmp"))


def test_second_run_adds_only_the_new_files(archive_dir, tmp_path, env):
    src = tmp_path / "src"
    (src / "ring").mkdir(parents=True)
    ring = sorted((archive_dir / "ring").iterdir())
    for f in ring[:6]:
        shutil.copy2(f, src / "ring" / f.name)
    shutil.copy2(archive_dir / NDPI[0], src / NDPI[0])
    out = tmp_path / "out"
    r = _portclass("archive", str(src), "-o", str(out), "--no-progress", env=env)
    assert r.returncode == 0, r.stderr
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")}
    # the ring buffer went on: its next file, and a new capture beside it
    shutil.copy2(ring[6], src / "ring" / ring[6].name)
    shutil.copy2(archive_dir / NDPI[1], src / NDPI[1])
    with cluster(2) as (addr, _):
        r = _portclass("archive", str(src), "-o", str(out), "--dask", addr, "--no-progress", env=env)
    assert r.returncode == 0, r.stderr
    assert "2 file(s) labelled this run, 7 already" in " ".join(r.stdout.split())
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")}
    rewritten = {p for p in before if after.get(p) != before[p]}
    # only the ring's end part (flows open at its end, which now go on) was replaced
    assert rewritten and all(p.name.endswith(".end.parquet") for p in rewritten)
    # and the dataset is what one run over all the files writes
    fresh = tmp_path / "fresh"
    assert _portclass("archive", str(src), "-o", str(fresh), "--no-progress", env=env).returncode == 0
    assert rows(dataset(out)) == rows(dataset(fresh))
    r = _portclass("archive", str(src), "-o", str(out), "--no-progress", "-f", "json", "--max-flows", "100",
                   "--report", str(tmp_path / "summary.json"), env=env)  # fmt: skip
    assert "0 file(s) labelled this run, 9 already" in " ".join(r.stderr.split())
    # its summary covers the whole archive (the state kept by the earlier runs), as `portclass -f json` does
    # (its worst flows: the 20 the terminal runs kept per input, the most it can know exactly)
    assert "(worst flows: 20, the most an earlier run kept per input)" in " ".join(r.stderr.split())
    r = _portclass("-f", "json", "--max-flows", "20", "-o", str(tmp_path / "ref.json"), str(src), env=env)
    assert r.returncode == 0, r.stderr
    summary, ref = (json.loads((tmp_path / n).read_text()) for n in ("summary.json", "ref.json"))
    assert summary["totals"]["files"] == 9 and len(summary["flows"]) == 20 and summary == ref
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")} == after
    # the ring rotates: its oldest file is deleted as the next one comes; the dataset keeps both
    (src / "ring" / ring[0].name).unlink()
    shutil.copy2(ring[7], src / "ring" / ring[7].name)
    r = _portclass("archive", str(src), "-o", str(out), "--no-progress", env=env)
    assert "1 file(s) labelled this run, 8 already" in " ".join(r.stdout.split()), r.stderr
    shutil.copy2(ring[0], src / "ring" / ring[0].name)
    shutil.rmtree(fresh)
    assert _portclass("archive", str(src), "-o", str(fresh), "--no-progress", env=env).returncode == 0
    assert rows(dataset(out)) == rows(dataset(fresh))
