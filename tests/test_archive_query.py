"""The README's queries over an archive dataset (DuckDB, pyarrow, pandas) give the flows the dataset
holds, and one-line errors for bad archive arguments."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from classifier.archive import run
from classifier.archive.inputs import Input, timelines
from classifier.cli import main
from classifier.engine import Timeouts
from tests.shared import shared


@pytest.fixture(scope="module")
def flows(tmp_path_factory, reg) -> Path:
    """A dataset from two ndpi captures and a small day capture cut into a ring of 10-minute files."""
    root = tmp_path_factory.mktemp("query")
    caps = root / "caps"
    (caps / "ring").mkdir(parents=True)
    for name in ("443-curl.pcap", "amqp.pcap"):
        shutil.copy(shared("captures", "ndpi", "pcap", name), caps / name)
    day = root / "day.pcap"
    subprocess.run([sys.executable, str(shared("bench", "make_day_pcap.py")), "--packets", "30000", "--hours", "1",
                    str(day)], check=True, capture_output=True)  # fmt: skip
    subprocess.run(["editcap", "-i", "600", str(day), str(caps / "ring" / "day.pcap")], check=True)
    out = root / "flows"
    oc = run([str(caps)], out, reg, timeouts=Timeouts())
    assert oc.tasks == 2 + len(list((caps / "ring").iterdir())) and oc.aggregate.running.flows > 1000
    return out


def test_duckdb_queries(flows):
    duckdb = pytest.importorskip("duckdb")
    got = duckdb.sql(f"""SELECT date, hour, "portclass.service" AS service, count(*) AS flows
        FROM read_parquet('{flows}/*/*/*.parquet', hive_partitioning = true)
        WHERE date = '2026-01-01' AND hour = 0 GROUP BY ALL ORDER BY flows DESC""").fetchall()
    t = ds.dataset(flows, format="parquet", partitioning="hive").to_table(
        filter=(ds.field("date") == "2026-01-01") & (ds.field("hour") == 0)
    )
    assert sum(r[3] for r in got) == t.num_rows > 1000
    svc = t.column("portclass.service").to_pylist()
    assert {r[2]: r[3] for r in got} == {s: svc.count(s) for s in set(svc)}
    ((notice,),) = duckdb.sql(
        f"SELECT value FROM parquet_kv_metadata('{flows}/_common_metadata') WHERE key = 'portclass.notice'"
    ).fetchall()
    assert b"DOES NOT IN ANY WAY IMPLY AN ENDORSEMENT" in notice


def test_pyarrow_and_pandas_queries(flows):
    import pandas as pd

    d = ds.dataset(flows, format="parquet", partitioning="hive")
    whole = d.to_table()
    ssh = d.to_table(filter=(ds.field("date") == "2026-01-01") & (ds.field("destination.port") == 22))
    assert 0 < ssh.num_rows < whole.num_rows
    assert set(ssh.column("destination.port").to_pylist()) == {22}
    df = pd.read_parquet(flows, filters=[("date", "=", "2026-01-01"), ("hour", "=", 0)])
    assert len(df) == d.to_table(filter=(ds.field("date") == "2026-01-01") & (ds.field("hour") == 0)).num_rows
    meta = pq.read_schema(flows / "_common_metadata").metadata
    assert b"DOES NOT IN ANY WAY IMPLY" in meta[b"portclass.notice"]
    # the flows of the ndpi captures are in their own years' partitions
    assert {p.name for p in flows.iterdir() if p.name.startswith("date=")} > {"date=2026-01-01"}


def test_ring_naming_makes_one_timeline(tmp_path):
    names = ["x_00001_20260101000000.pcapng", "x_00002_20260101001500.pcapng", "dump.pcap", "dump.pcap1",
             "other.pcap"]  # fmt: skip
    groups = timelines([Input(str(tmp_path / n), 1, 1) for n in names])
    assert [[Path(i.path).name for i in g] for g in groups] == [names[:2], names[2:4], names[4:]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dask", "foo"], "--dask takes tcp://HOST:PORT or local[:N], not 'foo'"),
        (["--dask", "local:0"], "--dask local:N needs a number of workers above 0"),
    ],
)
def test_bad_arguments_one_line(tmp_path, capsys, xml_path, args, message):
    cap = shared("captures", "ndpi", "pcap", "amqp.pcap")
    code = main(["archive", str(cap), "-o", str(tmp_path / "out"), "--registry", str(xml_path), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_timeline_option_joins_files_named_anyhow(flows, tmp_path, reg):
    """``--timeline``: the ring's files under names no ring rule knows give the same flows once joined."""
    ring = sorted((flows.parent / "caps" / "ring").iterdir())
    named = tmp_path / "named"
    named.mkdir()
    for i, f in enumerate(ring):  # names sort backwards: the order comes from the first packets
        shutil.copy2(f, named / f"cap-{len(ring) - i:02d}.pcap")
    apart = run([str(named)], tmp_path / "apart", reg)
    joined = run([str(named)], tmp_path / "joined", reg, one_timeline=True)
    ref = ds.dataset(flows, format="parquet", partitioning="hive").to_table()
    ref = ref.filter(ds.field("date") == "2026-01-01")
    cols = [c for c in ref.column_names if c not in ("log.file.path", "portclass.evidence.file", "date", "hour",
                                                     "portclass.missed_bytes", "portclass.history")]  # fmt: skip
    got = ds.dataset(tmp_path / "joined", format="parquet", partitioning="hive").to_table()

    def rows(t):
        d = t.select(cols).to_pydict()
        return sorted(tuple(str(d[c][i]) for c in cols) for i in range(t.num_rows))

    assert joined.aggregate.running.flows == ref.num_rows < apart.aggregate.running.flows
    assert rows(got) == rows(ref)


def test_worker_refuses_a_registry_whose_bytes_do_not_match(reg):
    import hashlib

    from classifier.archive import task
    from classifier.registry import cache

    blob = b"".join(cache.dumps(reg))
    sha = hashlib.sha256(blob).hexdigest()
    task._REGISTRIES.clear()
    with pytest.raises(RuntimeError, match="does not match its sha256"):
        task.registry_from(blob[:-1] + bytes([blob[-1] ^ 1]), sha)
    assert task.registry_from(blob, sha).provenance.sha256 == reg.provenance.sha256


def test_a_cached_registry_is_sent_as_its_cache_file(xml_path, tmp_path, monkeypatch):
    """A registry loaded from the cache keeps the file's bytes: the archive sends them as they are (no
    encoding again on every run), and a task decodes the same edition from them."""
    from classifier.archive import task
    from classifier.registry import cache
    from classifier.registry.sources import compile_file

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fresh = compile_file(xml_path)  # compiled, and written to the cache
    assert fresh.cache_bytes is None
    cached = compile_file(xml_path)  # read back from the cache file
    (entry,) = (tmp_path / "cache").rglob("*.pcreg")
    assert cached.cache_bytes == entry.read_bytes() == b"".join(cache.dumps(fresh))
    sent: list[bytes] = []
    decode = task.registry_from
    monkeypatch.setattr(task, "registry_from", lambda blob, sha: sent.append(blob) or decode(blob, sha))
    ring = tmp_path / "in"
    ring.mkdir()
    shutil.copy(shared("captures", "ndpi", "pcap", "amqp.pcap"), ring)
    oc = run([str(ring)], tmp_path / "out", cached)
    assert oc.aggregate.running.flows > 0 and sent and all(b is cached.cache_bytes for b in sent)
    assert cache.loads(sent[0]).provenance.sha256 == fresh.provenance.sha256


def test_local_cluster_writes_what_one_process_writes(flows, tmp_path, reg):
    """``--dask local:2``: a distributed.LocalCluster of two worker processes, the same flows."""
    caps = flows.parent / "caps"
    oc = run([str(caps)], tmp_path / "local", reg, dask="local:2")
    assert oc.tasks == 2 + len(list((caps / "ring").iterdir()))

    def rows(path):
        t = ds.dataset(path, format="parquet", partitioning="hive").to_table()
        d = t.to_pydict()
        return sorted(tuple(str(d[c][i]) for c in sorted(d)) for i in range(t.num_rows))

    assert rows(tmp_path / "local") == rows(flows)


def test_nothing_readable_is_the_runs_error(tmp_path, capsys, xml_path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"garbage, not a capture")
    code = main(["archive", str(bad), "-o", str(tmp_path / "out"), "--registry", str(xml_path)])
    err = capsys.readouterr().err
    assert code == 2 and err == f"portclass: {bad}: not a pcap or pcapng capture (it starts with 67 61 72 62)\n"
