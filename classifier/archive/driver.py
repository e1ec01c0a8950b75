"""The driver: plan tasks over an archive, run them (in this process or on Dask), join timelines' edges.

Each input file is one task (``task.run_task``) that writes its ended flows as parts named by the
file's identity.  A file of a timeline (a ring buffer) keeps two kinds of flows back: its *heads* (the
first flow of each key starting within one idle timeout of its first packet: it may continue the
previous file's flow) and its *tails* (alive at its last packet: they may go on in the next file).
Only their key hashes go to the driver (``task.Keys``), which matches tails of each file with heads of
the files near it (``Edges``); as soon as a file's neighbours are known, a second, small task
(``task.finish``, where the file's result is) writes the edge rows nobody can continue (``<ident>.edge``)
and sends back the others.  The driver folds those in timeline order as they come (``TimelineJoin``,
with ``Engine.join``, the flow engine's own merge), while other files are labelled: the flows that end
are written in ``<ident>.join``; what is open after the last file is written as ended by the end of
input (``<ident>.end``) and kept as the timeline's carry, for the next run to continue.  The dataset
equals, flow for flow, what one process reading the files in order writes.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..capture.columns import CaptureStats
from ..engine import Edge, Ended, Engine, Timeouts
from ..registry.compile import CompiledRegistry
from . import state
from .aggregate import LIMIT, Aggregate
from .inputs import Input, discover, timeline_id, timelines
from .parts import PartWriter, dataset_schema
from .task import Finished, Keys, TaskResult, TaskSpec, finish, keys_of, run_task

JOIN_FILES = 16
"""Files of a timeline whose joined flows go into one part (fewer, larger parts for the driver to write)."""

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
    new: Aggregate  # this run's inputs (counters only)
    tasks: int
    skipped: int
    seconds: float
    task_seconds: list[float] = field(default_factory=list)
    task_cpu: list[float] = field(default_factory=list)  # CPU seconds of each file's tasks (label and edge)
    result_bytes: list[int] = field(default_factory=list)  # pickled size of each task's result (0: one process)
    summary_bytes: list[int] = field(default_factory=list)  # of which its summary aggregates'
    join_seconds: float = 0.0  # the driver's joins of timelines' edges (while tasks run, and the last)
    driver_seconds: float = 0.0  # the driver's own work on the tasks' results (joins included)
    label_seconds: float = 0.0  # wall time of the labelling tasks (first to last)
    finish_seconds: float = 0.0  # wall time after the last labelling task (the last edges and joins)
    end_seconds: float = 0.0  # after the last task: the cluster's close, the timelines' ends, the metadata


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


class TimelineJoin:
    """Folds the edges of a timeline's new files in order, as they come (``add``), with ``Engine.join``;
    writes the joined flows (``<ident>.join``); ``close`` writes what is open at the end (``<ident>.end``)
    and the timeline's entry in the manifest (the stored end parts it continues are dropped only then)."""

    def __init__(self, root: Path, registry: CompiledRegistry, timeouts: Timeouts, evidence: bool, job: Join,
                 manifest: dict[str, Any], limit: int = LIMIT) -> None:  # fmt: skip
        self.root, self.registry, self.job, self.manifest = root, registry, job, manifest
        self.schema = dataset_schema(registry)
        stored = self.stored = manifest["timelines"].get(job.tid)
        self.resume = job.resume and stored is not None
        self.files = job.files[job.first_new :]
        self.paths = (stored["paths"] if self.resume else []) + [f.path for f in self.files]
        self.base = len(self.paths) - len(self.files)  # file index of the first new file in the timeline's list
        self.eng = Engine(registry, timeouts, evidence=evidence)
        self.eng.stats = self.eng._agg.stats = CaptureStats(files=self.paths)
        self.joined = Aggregate.new(limit)
        if self.resume:  # continue the flows left open by the previous run
            summary = state.load_summary(root, stored.get("join_summary"))
            self.joined = Aggregate.from_json(stored["join_aggregate"], summary)
            self.eng._alive, self.eng.clock_ns = state.load_carry(root, stored["carry"])
        self.parts: list[str] = list(stored["join_parts"]) if self.resume else []
        self.end = Aggregate.new(limit)
        self.next = 0
        self.edges: dict[str, Edge] = {}
        self.held: list[Ended] = []  # joined flows not written yet
        self.seconds = 0.0

    def _write(self, name: str, ended: Any, into: Aggregate | None) -> list[str]:
        w = PartWriter(self.root, name, self.schema, self.registry)
        try:
            if into is not None:
                into.add(ended)
            w.add(ended)
            return w.close()
        except BaseException:
            w.abort()
            raise

    def add(self, ident: str, edge: Edge) -> None:
        """The edge of one new file; joins every file whose edges before it have all come.  The joined
        flows of ``JOIN_FILES`` files of the timeline (counted from its first) go into one part, named
        after the last of them (a run again over the same files writes the same parts)."""
        t0 = time.perf_counter()
        self.edges[ident] = edge
        while self.next < len(self.files) and self.files[self.next].ident in self.edges:
            f = self.files[self.next]
            ended = self.eng.join(_remap(self.edges.pop(f.ident), self.base + self.next))
            self.joined.add(ended)
            self.held.append(ended)
            self.next += 1
            if (self.base + self.next) % JOIN_FILES == 0:
                self._flush(f.ident)
        self.seconds += time.perf_counter() - t0

    def _flush(self, ident: str) -> None:
        """Write the joined flows held (part ``<ident>.join``)."""
        if self.held:
            ended = Ended.concat(self.held)
            ended.stats = self.held[-1].stats
            self.held = []
            self.parts += self._write(f"{ident}.join", ended, None)

    def close(self) -> tuple[Aggregate, Aggregate]:
        """Write the flows open after the last file and the timeline's manifest entry; (joined, end)."""
        t0 = time.perf_counter()
        assert self.next == len(self.files), "a file's edge is missing"
        root, tid, stored = self.root, self.job.tid, self.stored
        self._flush(self.files[-1].ident)
        carry, clock = self.eng._absorb().copy(), self.eng.clock_ns
        end_parts = self._write(f"{self.job.files[-1].ident}.end", self.eng.flush(), self.end)
        if stored is not None:  # the flows the last run wrote as ended by the end of input went on now
            for part in stored["end_parts"] + ([] if self.resume else stored["join_parts"]):
                if part not in end_parts and part not in self.parts:
                    (root / part).unlink(missing_ok=True)
        self.manifest["timelines"][tid] = {
            "files": (stored["files"] if self.resume else []) + [f.ident for f in self.files],
            "paths": self.paths,
            "join_parts": sorted(set(self.parts)),
            "end_parts": end_parts,
            "join_aggregate": self.joined.to_json(),
            "end_aggregate": self.end.to_json(),
            "join_summary": state.save_summary(root, f"{tid}.join", self.joined.summary),
            "end_summary": state.save_summary(root, f"{tid}.end", self.end.summary),
            "carry": state.save_carry(root, f"carry-{tid}.npz", carry, clock),
        }
        self.seconds += time.perf_counter() - t0
        return self.joined, self.end


class Runner:
    """Runs the tasks in this process (``cluster.DaskRunner`` runs them on Dask): the labelling tasks in
    order and, before the next one, the edges the driver asked to finish (the same work as on Dask)."""

    def __init__(self, blob: bytes, sha: str) -> None:
        self.blob, self.sha = blob, sha
        self.results: dict[str, TaskResult] = {}
        self._todo: deque[TaskSpec] = deque()
        self._fin: deque[tuple[TaskSpec, np.ndarray, np.ndarray]] = deque()

    def label(self, specs: list[TaskSpec]) -> None:
        """Label each file (its edge stays with the runner); ``events`` yields its ``Keys``."""
        self._todo.extend(specs)

    def finish(self, spec: TaskSpec, head_keys: np.ndarray, tail_keys: np.ndarray) -> None:
        """Finish a labelled file's edge (``task.finish``); ``events`` yields its ``Finished``."""
        self._fin.append((spec, head_keys, tail_keys))

    def events(self) -> Iterator[Keys | Finished]:
        """Results as tasks end, until no task is left (the caller may ask for more in between)."""
        while self._fin or self._todo:
            if self._fin:
                spec, hk, tk = self._fin.popleft()
                yield finish(self.results.pop(spec.ident), spec, self.blob, self.sha, hk, tk, sizes=False)
                continue
            s = self._todo.popleft()
            r = run_task(s, self.blob, self.sha)
            if r.edge is not None:
                self.results[s.ident] = r
            yield keys_of(r, sizes=False)

    def close(self) -> None:
        """Nothing to release in this process."""


def _dask_runner(spec: str, blob: bytes, sha: str) -> Runner:
    from .cluster import DaskRunner

    return DaskRunner(spec, blob, sha)  # type: ignore[return-value]


class Edges:
    """A timeline's new files as their keys come: which files' edges can be finished now.

    Files j < k are *near* when k = j + 1 or k's first packet comes within one idle timeout of j's last:
    only then can a flow alive at the end of j go on at the start of k.  Heads of k whose key is a tail of
    a near earlier file go to the driver, and tails of j whose key is a head of a near later file, and
    every tail of the files near the timeline's end (the carry a next run continues).  File j is ready
    once the files up to it are known and, after it, the near ones and one that is not near, with a
    last packet more than one idle timeout after j's (times go forward: j is not near the timeline's
    end), or every file of the timeline.  Ready files are handed out in order.
    """

    def __init__(self, job: Join, manifest: dict[str, Any], root: Path, timeouts: Timeouts) -> None:
        self.idle = timeouts.batch_idle_ns
        self.idents = [f.ident for f in job.files[job.first_new :]]
        self.pos = {ident: i for i, ident in enumerate(self.idents)}
        self.heads: list[np.ndarray] = []
        self.tails: list[np.ndarray] = []
        self.firsts: list[int | None] = []
        self.clocks: list[int | None] = []
        stored = manifest["timelines"].get(job.tid) if job.resume else None
        if stored is not None:  # the flows the last run left open act as a file before the first new one
            carry, clock = state.load_carry(root, stored["carry"])
            self.heads, self.tails = [np.zeros(0, np.uint64)], [np.unique(carry.key_hash)]
            self.firsts, self.clocks = [None], [clock]
        self.off = len(self.heads)
        self.n = self.off + len(self.idents)
        self.pending: dict[int, Keys] = {}
        self.given = 0  # new files handed out by ``add``

    def add(self, k: Keys) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Note a file's keys; (ident, head keys, tail keys) of each file ready now."""
        self.pending[self.pos[k.ident]] = k
        while len(self.heads) - self.off in self.pending:
            got = self.pending.pop(len(self.heads) - self.off)
            self.heads.append(got.heads)
            self.tails.append(got.tails)
            self.firsts.append(got.first_ns)
            self.clocks.append(got.clock_ns)
        out = []
        while self.given < len(self.idents):
            ht = self._want(self.off + self.given)
            if ht is None:
                break
            out.append((self.idents[self.given], *ht))
            self.given += 1
        return out

    def _near(self, i: int, k: int) -> bool:
        f, c = self.firsts[k], self.clocks[i]
        return k == i + 1 or self.idle == 0 or (f is not None and c is not None and f - c <= self.idle)

    def _want(self, j: int) -> tuple[np.ndarray, np.ndarray] | None:
        """File j's (head keys, tail keys) whose rows go to the driver; None while undecided."""
        m, idle, clocks = len(self.heads), self.idle, self.clocks
        if j >= m:
            return None
        want_t, broke = [], False
        for k in range(j + 1, m):  # loops over files
            if not self._near(j, k):
                broke = True
                break
            want_t.append(self.heads[k])
        if m == self.n:
            if j == self.n - 1 or idle == 0 or (clocks[j] is not None and clocks[-1] is not None
                                               and clocks[-1] - clocks[j] <= idle):  # fmt: skip
                want_t.append(self.tails[j])
        elif not broke or idle == 0:
            return None
        elif clocks[j] is not None and not any(c is not None and c - clocks[j] > idle for c in clocks[j + 1 :]):
            return None  # the timeline's end may still come within one idle timeout of j
        want_h = []
        for i in range(j - 1, -1, -1):
            if idle == 0 or all(self._near(i, k) for k in range(i + 1, j + 1)):
                want_h.append(self.tails[i])
            else:
                break
        z = np.zeros(0, np.uint64)
        h = np.intersect1d(self.heads[j], np.concatenate(want_h or [z]))
        t = np.intersect1d(self.tails[j], np.concatenate(want_t or [z]))
        return h, t


class Whole:
    """The whole archive's aggregates: every input's, merged in the order of their paths as they come
    (earlier runs' from their stored summaries), then every timeline's joined and end flows.  A dataset
    of an older portclass has no stored summaries: its totals only.  Its worst flows are the ``limit``
    worst, or fewer if an earlier run kept fewer per input."""

    def __init__(self, root: Path, manifest: dict[str, Any], new: dict[str, str], limit: int = LIMIT) -> None:
        self.root, self.manifest = root, manifest
        old = [(e["path"], ident) for ident, e in manifest["inputs"].items() if ident not in new]
        self.order = sorted(old + [(path, ident) for ident, path in new.items()])
        self.new = set(new)
        self.ready: dict[str, Aggregate] = {}
        self.at = 0
        self.agg = Aggregate.new(limit)
        self.limit = self.fewest = limit
        self.index: dict[str, int] = {}
        self.nfiles = 0

    def add(self, ident: str | None, aggregate: Aggregate | None) -> None:
        """One new input's whole aggregates: merged once every input before it (by path) is."""
        if ident is not None and aggregate is not None:
            self.ready[ident] = aggregate
        while self.at < len(self.order):
            ident = self.order[self.at][1]
            if ident in self.new:
                if ident not in self.ready:
                    return
                part = self.ready.pop(ident)
            else:
                e = self.manifest["inputs"][ident]
                part = Aggregate.from_json(e["aggregate"], state.load_summary(self.root, e.get("summary")))
            for f in part.stats.files:
                self.index.setdefault(f, self.nfiles)
                self.nfiles += 1
            self._merge(part, part.stats.files)
            self.at += 1

    def _merge(self, part: Aggregate, paths: list[str]) -> None:
        _reindex(part.summary, [self.index.get(p, 0) for p in paths])
        self.fewest = min(self.fewest, part.summary.worst.limit)
        self.agg.merge(part)

    def close(self, timelines: dict[str, tuple[Aggregate, Aggregate]]) -> Aggregate:
        """Merge the timelines' parts (``timelines``: those joined this run; the others are loaded)."""
        self.add(None, None)  # earlier runs' inputs after the last new one
        assert self.at == len(self.order), "an input's aggregates are missing"
        for tid, tl in self.manifest["timelines"].items():
            mine = timelines.get(tid)
            for i, key in enumerate(("join_", "end_")):
                part = mine[i] if mine is not None else Aggregate.from_json(
                    tl[f"{key}aggregate"], state.load_summary(self.root, tl.get(f"{key}summary")))  # fmt: skip
                self._merge(part, tl["paths"])
        agg = self.agg
        w = agg.summary.worst  # exact only up to the fewest worst flows any part kept (an earlier run's choice)
        if self.fewest < w.limit:
            w.limit = self.fewest
            if w.kept is not None:
                w._keep([w.kept], [w.seq])
        m = self.manifest
        in_timelines = {f for tl in m["timelines"].values() for f in tl["files"]}
        apart = len(m["inputs"]) - len(in_timelines) + len(m["timelines"])
        agg.summary.key_group_any = agg.summary.key_group_any or apart > 1  # files apart, as one process keeps them
        return agg


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
    blob = registry.cache_bytes or b"".join(cache.dumps(registry))  # a cached registry: its file's bytes
    sha = hashlib.sha256(blob).hexdigest()
    runner = Runner(blob, sha) if dask is None else _dask_runner(dask, blob, sha)
    new = Aggregate.new(limit)  # this run's counters
    oc = Outcome(Aggregate.new(limit), new, len(p.specs), p.skipped, 0.0)
    specs = {s.ident: s for s in p.specs}
    whole = Whole(root, manifest, {s.ident: s.path for s in p.specs}, limit)
    edges: dict[str, Edges] = {}  # by file: its timeline's files as their keys come
    joins: dict[str, TimelineJoin] = {}  # ... and the timeline's join
    tls = [(Edges(job, manifest, root, timeouts),
            TimelineJoin(root, registry, timeouts, evidence, job, manifest, limit)) for job in p.joins]  # fmt: skip
    for job, (e, j) in zip(p.joins, tls, strict=True):
        for f in job.files[job.first_new :]:
            edges[f.ident], joins[f.ident] = e, j
    keys: dict[str, Keys] = {}
    later: dict[str, dict[str, Any]] = {}  # manifest entries of timelines' files: written with their timeline
    pos: dict[str, int] = {}
    labelled = 0
    t_label = time.perf_counter()
    try:
        runner.label(p.specs)
        for ev in runner.events():  # as tasks end
            t_ev = time.perf_counter()
            if isinstance(ev, Keys):
                labelled += 1
                if labelled == len(p.specs):
                    oc.label_seconds = time.perf_counter() - t_label
                pos[ev.ident] = len(pos)
                oc.task_seconds.append(ev.seconds)
                oc.task_cpu.append(ev.cpu)
                oc.result_bytes.append(ev.nbytes)
                oc.summary_bytes.append(ev.summary_bytes)
                if ev.clock_ns is None:  # a file of its own: done
                    new.merge(ev.aggregate, summary=False)
                    manifest["inputs"][ev.ident] = {"path": specs[ev.ident].path, "parts": ev.parts,
                                                    "aggregate": ev.aggregate.to_json(),
                                                    "summary": ev.summary}  # fmt: skip
                    whole.add(ev.ident, ev.aggregate)
                else:  # a file of a timeline: its edge is finished once its neighbours' keys are known
                    keys[ev.ident] = ev
                    for ident, hk, tk in edges[ev.ident].add(ev):
                        runner.finish(specs[ident], hk, tk)
                if progress is not None:
                    progress(ev)
            else:  # a file of a timeline finished: join its edge in timeline order
                k = keys.pop(ev.ident)
                oc.result_bytes[pos[ev.ident]] += ev.nbytes
                oc.task_cpu[pos[ev.ident]] += ev.cpu
                oc.summary_bytes[pos[ev.ident]] += ev.summary_bytes
                new.merge(ev.aggregate, summary=False)
                later[ev.ident] = {"path": specs[ev.ident].path, "parts": sorted(k.parts + ev.parts),
                                   "aggregate": ev.aggregate.to_json(), "summary": ev.summary}  # fmt: skip
                whole.add(ev.ident, ev.aggregate)
                joins[ev.ident].add(ev.ident, ev.edge)
            oc.driver_seconds += time.perf_counter() - t_ev
        t_events = time.perf_counter()
        oc.finish_seconds = t_events - t_label - oc.label_seconds
    except BaseException:
        state.save_manifest(root, manifest)  # the inputs done so far: running again goes on from there
        raise
    finally:
        runner.close()
    for tmp in root.glob("date=*/hour=*/.*.tmp"):  # left by a worker killed while writing (readers skip them)
        tmp.unlink(missing_ok=True)
    manifest["inputs"].update(later)
    timelines = {}
    t_end = time.perf_counter()
    for _, tj in tls:
        timelines[tj.job.tid] = tj.close()
        oc.join_seconds += tj.seconds
    manifest.update(format=state.FORMAT, registry_sha256=sha_reg)
    agg = whole.close(timelines)
    manifest["archive"] = agg.to_json()
    _write_common_metadata(root, registry, manifest, timeouts, agg)
    state.save_manifest(root, manifest)
    oc.driver_seconds += time.perf_counter() - t_end
    oc.aggregate = agg
    oc.end_seconds = time.perf_counter() - t_events
    oc.seconds = time.perf_counter() - t0
    return oc


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
