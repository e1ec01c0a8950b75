"""The driver: plan tasks over an archive, run them (in this process or on Dask), join timelines' edges.

Each input file is one task (``task.run_task``) that writes its ended flows as parts named by the
file's identity.  A file of a timeline (a ring buffer) keeps two kinds of flows back: its *heads* (the
first flow of each key starting within one idle timeout of its first packet: it may continue the
previous file's flow) and its *tails* (alive at its last packet: they may go on in the next file).
Only their key hashes go to the driver (``task.Keys``), which matches tails of each file with heads of
the files near it (``_give``); a second, small task per file (``task.finish``, where the file's result
is) writes the edge rows nobody can continue (``<ident>.edge``) and sends back the others.  The driver
folds those in timeline order with ``Engine.join`` (the flow engine's own merge): the flows that end
are written in ``<ident>.join``; what is open after the last file is written as ended by the end of
input (``<ident>.end``) and kept as the timeline's carry, for the next run to continue.  The dataset
equals, flow for flow, what one process reading the files in order writes.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..capture.columns import CaptureStats
from ..engine import Edge, Engine, Timeouts
from ..registry.compile import CompiledRegistry
from . import state
from .aggregate import LIMIT, Aggregate
from .inputs import Input, discover, timeline_id, timelines
from .parts import PartWriter, dataset_schema
from .task import Keys, TaskResult, TaskSpec, finish, keys_of, run_task

FILE_COLUMNS = ("file_index", "payload_file_c2s", "payload_file_s2c", "evidence_file_c2s", "evidence_file_s2c")
"""Flow columns that index a run's file list (a task's file is index 0)."""


@dataclass
class Join:
    """A timeline the driver joins: its files, the first one labelled this run, the stored timeline it continues."""

    tid: str
    files: list[Input]
    first_new: int
    resume: bool


@dataclass
class Plan:
    """The tasks of one run and the timelines the driver joins."""

    specs: list[TaskSpec] = field(default_factory=list)
    joins: list[Join] = field(default_factory=list)
    skipped: int = 0  # inputs already in the dataset


@dataclass
class Outcome:
    """What a run did, for the summary and the benchmarks."""

    aggregate: Aggregate  # the whole archive (earlier runs included)
    new: Aggregate  # this run's inputs
    tasks: int
    skipped: int
    seconds: float
    task_seconds: list[float] = field(default_factory=list)
    result_bytes: list[int] = field(default_factory=list)  # pickled size of each task's result
    summary_bytes: list[int] = field(default_factory=list)  # of which its summary aggregates'
    join_seconds: float = 0.0
    label_seconds: float = 0.0  # wall time of the labelling tasks (first to last)
    finish_seconds: float = 0.0  # wall time of the edge tasks


def plan(inputs: Sequence[Input], manifest: dict[str, Any], root: Path, timeouts: Timeouts, evidence: bool,
         one_timeline: bool = False, limit: int = LIMIT) -> Plan:  # fmt: skip
    """Tasks for the inputs not in the dataset yet; timelines to join (continuing stored ones).

    A stored timeline goes on where its last file is followed by new files only (a ring buffer that
    grew, its oldest files possibly deleted since); any other change to a timeline labels its files again.
    """
    p = Plan()
    done = manifest["inputs"]
    last_of = {tl["files"][-1]: tid for tid, tl in manifest["timelines"].items()}
    for files in timelines(inputs, one_timeline):
        several = len(files) > 1 or ring_name(files[0].path)
        idents = [f.ident for f in files]
        old = [k for k, i in enumerate(idents) if i in done]
        j = old[-1] if old else -1  # the last file labelled before
        tid = last_of.get(idents[j]) if j >= 0 else None
        resume = several and tid is not None and old == list(range(j + 1))
        if not several and old:
            p.skipped += 1
            continue
        if resume and j == len(files) - 1:
            p.skipped += len(files)
            continue
        first_new = j + 1 if resume else 0
        p.skipped += first_new
        for k in range(first_new, len(files)):
            f = files[k]
            p.specs.append(TaskSpec(f.path, f.ident, str(root), timeouts, evidence, hold_heads=several and k > 0,
                                    export=several, limit=limit))  # fmt: skip
        if several:
            p.joins.append(Join(tid if resume and tid else timeline_id(files), files, first_new, resume))
    return p


def ring_name(path: str) -> bool:
    """True for a file named as a part of a dumpcap ring buffer (``prefix_NNNNN_YYYYMMDDHHMMSS.ext``)."""
    from ..flows import _DUMPCAP_RING

    return _DUMPCAP_RING.match(Path(path).name) is not None


def forget(root: Path, manifest: dict[str, Any], relabel: set[str], current: dict[str, str]) -> None:
    """Drop what earlier runs wrote for inputs labelled again (``relabel``), or changed since (another
    identity at the same path in ``current``), and for the timelines they were part of: no flow twice."""
    for ident, entry in list(manifest["inputs"].items()):
        if ident in relabel or current.get(entry["path"], ident) != ident:
            for part in entry["parts"]:
                (root / part).unlink(missing_ok=True)
            _drop_summary(root, entry.get("summary"))
            del manifest["inputs"][ident]
    for tid, tl in list(manifest["timelines"].items()):
        if not set(tl["files"]) <= set(manifest["inputs"]):
            for part in tl["join_parts"] + tl["end_parts"]:
                (root / part).unlink(missing_ok=True)
            (root / state.STATE_DIR / tl["carry"]).unlink(missing_ok=True)
            _drop_summary(root, tl.get("join_summary"))
            _drop_summary(root, tl.get("end_summary"))
            del manifest["timelines"][tid]


def _drop_summary(root: Path, fname: str | None) -> None:
    if fname is not None:
        (root / state.STATE_DIR / fname).unlink(missing_ok=True)


def _remap(edge: Edge, k: int) -> Edge:
    """An edge of a task (its file is index 0) with file indices of the timeline (file ``k``)."""
    t = edge.table.copy()
    for name in FILE_COLUMNS:
        col = getattr(t, name)
        col += np.asarray(k, dtype=col.dtype)
    return Edge(t, edge.done, edge.clock_ns)


def join_timeline(
    root: Path, registry: CompiledRegistry, timeouts: Timeouts, evidence: bool, job: Join, edges: dict[str, Edge],
    manifest: dict[str, Any], limit: int = LIMIT,
) -> Aggregate:  # fmt: skip
    """Fold the edges of a timeline's files in order; writes the joined flows; returns their aggregates."""
    schema = dataset_schema(registry)
    tid, first_new = job.tid, job.first_new
    stored = manifest["timelines"].get(tid)
    resume = job.resume and stored is not None
    new_files = job.files[first_new:]
    paths = (stored["paths"] if resume else []) + [f.path for f in new_files]
    base = len(paths) - len(new_files)  # file index of the first new file in the timeline's list
    eng = Engine(registry, timeouts, evidence=evidence)
    eng.stats = eng._agg.stats = CaptureStats(files=paths)
    if stored is not None:  # the flows the last run wrote as ended by the end of input: they go on now
        for part in stored["end_parts"] + ([] if resume else stored["join_parts"]):
            (root / part).unlink(missing_ok=True)
    if resume:
        joined = Aggregate.from_json(stored["join_aggregate"], state.load_summary(root, stored.get("join_summary")))
    else:
        joined = Aggregate.new(limit)
    parts: list[str] = list(stored["join_parts"]) if resume else []
    if resume:  # continue the flows left open by the previous run
        eng._alive, eng.clock_ns = state.load_carry(root, stored["carry"])
    new = Aggregate.new(limit)

    def write(name: str, ended: Any, into: Aggregate) -> list[str]:
        w = PartWriter(root, name, schema, registry)
        try:
            into.add(ended)
            new.add(ended)
            w.add(ended)
            return w.close()
        except BaseException:
            w.abort()
            raise

    for k, f in enumerate(new_files):
        parts += write(f"{f.ident}.join", eng.join(_remap(edges[f.ident], base + k)), joined)
    carry, clock = eng._absorb().copy(), eng.clock_ns
    end = Aggregate.new(limit)
    end_parts = write(f"{job.files[-1].ident}.end", eng.flush(), end)
    manifest["timelines"][tid] = {
        "files": (stored["files"] if resume else []) + [f.ident for f in new_files],
        "paths": paths,
        "join_parts": sorted(set(parts)),
        "end_parts": end_parts,
        "join_aggregate": joined.to_json(),
        "end_aggregate": end.to_json(),
        "join_summary": state.save_summary(root, f"{tid}.join", joined.summary),
        "end_summary": state.save_summary(root, f"{tid}.end", end.summary),
        "carry": state.save_carry(root, f"carry-{tid}.npz", carry, clock),
    }
    return new


class Runner:
    """Runs the tasks in this process (``cluster.DaskRunner`` runs them on Dask): label, then finish."""

    def __init__(self, blob: bytes, sha: str) -> None:
        self.blob, self.sha = blob, sha
        self.results: dict[str, TaskResult] = {}

    def label(self, specs: list[TaskSpec]) -> Iterator[Keys]:
        """Label each file; yields the small summaries as tasks finish (the edges stay with the runner)."""
        for s in specs:
            r = run_task(s, self.blob, self.sha)
            if r.edge is not None:
                self.results[s.ident] = r
            yield keys_of(r)

    def finish(self, specs: dict[str, TaskSpec], give: dict[str, tuple[np.ndarray, np.ndarray]]
               ) -> dict[str, tuple[Edge, list[str], Aggregate, int]]:  # fmt: skip
        """Per file of a timeline: write the edge rows nobody continues, return the others (and their size)."""
        out = {}
        for ident, (hk, tk) in give.items():
            edge, parts, agg = finish(self.results.pop(ident), specs[ident], self.blob, self.sha, hk, tk)
            out[ident] = (edge, parts, agg, len(pickle.dumps(edge)))
        return out

    def close(self) -> None:
        """Nothing to release in this process."""


def _dask_runner(spec: str, blob: bytes, sha: str) -> Runner:
    from .cluster import DaskRunner

    return DaskRunner(spec, blob, sha)  # type: ignore[return-value]


def _give(job: Join, keys: dict[str, Keys], manifest: dict[str, Any], root: Path, timeouts: Timeouts
          ) -> dict[str, tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """Per new file of a timeline: (head keys, tail keys) whose rows may join another file's flows.

    Files j < k are *near* when k = j + 1 or k's first packet comes within one idle timeout of j's last:
    only then can a flow alive at the end of j go on at the start of k.  Heads of k whose key is a tail of
    a near earlier file go to the driver, and tails of j whose key is a head of a near later file, and
    every tail of the files near the timeline's end (the carry a next run continues).
    """
    idle = timeouts.batch_idle_ns
    files = job.files[job.first_new :]
    ks = [keys[f.ident] for f in files]
    heads = [k.heads for k in ks]
    tails = [k.tails for k in ks]
    firsts = [k.first_ns for k in ks]
    clocks = [k.clock_ns for k in ks]
    stored = manifest["timelines"].get(job.tid) if job.resume else None
    if stored is not None:  # the flows the last run left open act as a file before the first new one
        carry, clock = state.load_carry(root, stored["carry"])
        heads, tails = [np.zeros(0, np.uint64)] + heads, [np.unique(carry.key_hash)] + tails
        firsts, clocks = [None] + firsts, [clock] + clocks
    n = len(heads)
    want_h = [[] for _ in range(n)]
    want_t = [[] for _ in range(n)]
    for j in range(n):  # a loop over files
        for k in range(j + 1, n):
            near = k == j + 1 or idle == 0 or (
                firsts[k] is not None and clocks[j] is not None and firsts[k] - clocks[j] <= idle
            )
            if not near:
                break
            want_h[k].append(tails[j])
            want_t[j].append(heads[k])
    for j in range(n):  # flows alive at the timeline's end all go to the driver: a next run may continue them
        if j == n - 1 or idle == 0 or (clocks[j] is not None and clocks[-1] is not None
                                       and clocks[-1] - clocks[j] <= idle):  # fmt: skip
            want_t[j].append(tails[j])
    off = n - len(files)
    out = {}
    for i, f in enumerate(files):
        h = np.intersect1d(heads[i + off], np.concatenate(want_h[i + off] or [np.zeros(0, np.uint64)]))
        t = np.intersect1d(tails[i + off], np.concatenate(want_t[i + off] or [np.zeros(0, np.uint64)]))
        out[f.ident] = (h, t)
    return out


def run(
    paths: Sequence[str],
    out: str | Path,
    registry: CompiledRegistry,
    *,
    timeouts: Timeouts | None = None,
    evidence: bool = True,
    dask: str | None = None,
    one_timeline: bool = False,
    progress: Callable[[Keys], None] | None = None,
    limit: int = LIMIT,
) -> Outcome:
    """Label every capture under ``paths`` into the dataset ``out`` (see the module docstring)."""
    import hashlib

    from ..registry import cache

    t0 = time.perf_counter()
    timeouts = timeouts or Timeouts()
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    manifest = state.load_manifest(root)
    sha_reg = registry.provenance.sha256
    if manifest.get("registry_sha256") not in (None, sha_reg):
        raise ValueError(
            f"{root}: labelled with registry sha256 {manifest['registry_sha256'][:16]}, not this one "
            f"({sha_reg[:16]}): label into a new dataset"
        )
    inputs = discover(paths)
    p = plan(inputs, manifest, root, timeouts, evidence, one_timeline, limit)
    forget(root, manifest, {s.ident for s in p.specs}, {i.path: i.ident for i in inputs})
    blob = b"".join(cache.dumps(registry))
    sha = hashlib.sha256(blob).hexdigest()
    runner = Runner(blob, sha) if dask is None else _dask_runner(dask, blob, sha)
    new = Aggregate.new(limit)
    oc = Outcome(Aggregate.new(limit), new, len(p.specs), p.skipped, 0.0)
    keys: dict[str, Keys] = {}
    pos: dict[str, int] = {}
    specs = {s.ident: s for s in p.specs}
    edges: dict[str, Edge] = {}
    t_label = time.perf_counter()
    try:
        for k in runner.label(p.specs):  # as tasks finish
            if specs[k.ident].export:  # a file of a timeline: its edge is joined later
                keys[k.ident] = k
            pos[k.ident] = len(pos)
            new.merge(k.aggregate)
            oc.task_seconds.append(k.seconds)
            oc.result_bytes.append(len(pickle.dumps(k)))
            oc.summary_bytes.append(len(pickle.dumps(k.aggregate.summary)))
            if k.clock_ns is None:  # a file of its own: done
                summary = state.save_summary(root, k.ident, k.aggregate.summary)
                manifest["inputs"][k.ident] = {"path": specs[k.ident].path, "parts": k.parts,
                                               "aggregate": k.aggregate.to_json(), "summary": summary}  # fmt: skip
            if progress is not None:
                progress(k)
        tf = time.perf_counter()
        oc.label_seconds = tf - t_label
        give = {}
        for job in p.joins:
            give.update(_give(job, keys, manifest, root, timeouts))
        for ident, (edge, parts, agg, nbytes) in runner.finish(specs, give).items():
            k = keys[ident]
            edges[ident] = edge
            oc.result_bytes[pos[ident]] += nbytes
            new.merge(agg)
            k.aggregate.merge(agg)
            manifest["inputs"][ident] = {"path": specs[ident].path, "parts": sorted(k.parts + parts),
                                         "aggregate": k.aggregate.to_json(),
                                         "summary": state.save_summary(root, ident, k.aggregate.summary)}  # fmt: skip
        oc.finish_seconds = time.perf_counter() - tf
    except BaseException:
        state.save_manifest(root, manifest)  # the inputs done so far: running again goes on from there
        raise
    finally:
        runner.close()
    for tmp in root.glob("date=*/hour=*/.*.tmp"):  # left by a worker killed while writing (readers skip them)
        tmp.unlink(missing_ok=True)
    tj = time.perf_counter()
    for job in p.joins:
        new.merge(join_timeline(root, registry, timeouts, evidence, job, edges, manifest, limit))
    oc.join_seconds = time.perf_counter() - tj
    manifest.update(format=state.FORMAT, registry_sha256=sha_reg)
    whole = _whole(manifest, root, limit)
    manifest["archive"] = whole.to_json()
    _write_common_metadata(root, registry, manifest, timeouts, whole)
    state.save_manifest(root, manifest)
    oc.aggregate = whole
    oc.seconds = time.perf_counter() - t0
    return oc


def _whole(manifest: dict[str, Any], root: Path, limit: int = LIMIT) -> Aggregate:
    """The whole archive's aggregates: every input's, and every timeline's joined and end flows (their
    summaries from the state directory; a dataset of an older portclass has none: its totals only).
    Its worst flows are the ``limit`` worst, or fewer if an earlier run kept fewer per input."""
    agg = Aggregate.new(limit)
    entries = sorted(manifest["inputs"].values(), key=lambda e: e["path"])
    files = [f for e in entries for f in e["aggregate"]["stats"]["files"]]  # the merged counters' file list
    index = {f: i for i, f in reversed(list(enumerate(files)))}

    def one(d: dict[str, Any], key: str, paths: list[str]) -> Aggregate:
        part = Aggregate.from_json(d[f"{key}aggregate"], state.load_summary(root, d.get(f"{key}summary")))
        _reindex(part.summary, [index.get(p, 0) for p in paths])
        return part

    fewest = limit
    for d, key, paths in [(e, "", e["aggregate"]["stats"]["files"]) for e in entries] + [
        (tl, k, tl["paths"]) for tl in manifest["timelines"].values() for k in ("join_", "end_")
    ]:  # one part loaded at a time
        part = one(d, key, paths)
        fewest = min(fewest, part.summary.worst.limit)
        agg.merge(part)
    w = agg.summary.worst  # exact only up to the fewest worst flows any part kept (an earlier run's choice)
    if fewest < w.limit:
        w.limit = fewest
        if w.kept is not None:
            w._keep([w.kept], [w.seq])
    in_timelines = {f for tl in manifest["timelines"].values() for f in tl["files"]}
    apart = len(manifest["inputs"]) - len(in_timelines) + len(manifest["timelines"])
    agg.summary.key_group_any = agg.summary.key_group_any or apart > 1  # files apart, as one process keeps them
    return agg


def _reindex(summary: Any, to: list[int]) -> None:
    """Point the kept flows' file columns (indices into ``to``'s source list) at the archive's file list."""
    kept = summary.worst.kept
    if kept is None or not to:
        return
    m = np.asarray(to, dtype=np.int64)
    for name in FILE_COLUMNS:
        col = getattr(kept.flows, name)
        ok = col < m.size
        col[ok] = m[col[ok].astype(np.int64)]


def analysis_of(agg: Aggregate, registry: CompiledRegistry, timeouts: Timeouts, inputs: list[str],
                evidence: bool = True) -> Any:  # fmt: skip
    """An ``Analysis`` without flows whose totals, tables and worst flows are the archive's: what
    ``report.write`` renders (terminal, json, html) as for one capture, and the dataset's metadata."""
    from ..engine import Ended
    from ..pipeline import Analysis
    from ..report.aggregates import with_aggregates

    e = Ended.empty()
    a = Analysis(e.flows, e.labels, agg.stats, registry, idle_timeout_s=timeouts.idle_s, inputs=inputs, part=e.part,
                 payload_inspected=evidence)  # fmt: skip
    if agg.summary.flows == agg.running.flows:  # else inputs labelled by a portclass that kept no summary
        return with_aggregates(a, agg.summary)
    a.running = agg.running.totals(a)  # type: ignore[attr-defined]
    return a


def _write_common_metadata(
    root: Path, registry: CompiledRegistry, manifest: dict[str, Any], timeouts: Timeouts, whole: Aggregate
) -> None:
    """``_common_metadata``: the dataset's schema with the registry's warning and provenance (atomic)."""
    import pyarrow.parquet as pq

    from ..report.parquet import metadata

    a = analysis_of(whole, registry, timeouts, sorted(i["path"] for i in manifest["inputs"].values()))
    schema = dataset_schema(registry).with_metadata(metadata(a))
    tmp = root / f"._common_metadata.{time.time_ns()}.tmp"
    pq.write_metadata(schema, tmp)
    tmp.replace(root / "_common_metadata")
