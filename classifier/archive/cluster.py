"""Running the archive's tasks on Dask: an existing scheduler (``tcp://HOST:8786``) or a local cluster.

The compiled registry is sent once to every worker (``scatter(broadcast=True)``) with the sha256 of its
bytes, which each task checks before labelling (``task.registry_from``).  Task keys name the file
(``portclass-<file name>-<identity>``) so the dashboard shows which file each task reads.  A task whose
worker dies is run again by the scheduler (and ``retries`` covers errors): its parts have fixed names
and are written atomically, so a re-run replaces them whole.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

from .task import Finished, Keys, TaskSpec, finish, keys_of, run_task

RETRIES = 3
TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
"""Dask's nannies set ``MALLOC_TRIM_THRESHOLD_`` in their workers' environment (to give memory back
sooner), which turns off glibc's dynamic mmap threshold: every NumPy array above 128 kB is then mapped
afresh and faulted in page by page, and a task takes up to twice the CPU it takes in one process.  The
workers ``--dask local`` starts keep malloc's defaults (a cluster's own workers: its own config); nor do
they run Dask's sampling profiler (a stack walk every 10 ms that takes the GIL from the task)."""


def _fork() -> dict[str, str]:
    """Start ``--dask local`` workers by forking this process on Linux: they inherit its imports and
    start in a fraction of a second, where a fresh interpreter takes seconds on a loaded machine."""
    return {"distributed.worker.multiprocessing-method": "fork"} if sys.platform == "linux" else {}


def dask_setup(worker: Any) -> None:
    """Preload of ``--dask local`` workers: a session of their own, as a worker started as a service has,
    and the modules a task runs imported.

    Linux's autogroup shares the CPU between sessions: workers left in the session of the command that
    started them would share one session's share on a machine other processes load.
    """
    with contextlib.suppress(OSError):  # already a session leader
        os.setsid()
    preload()


def preload() -> None:
    """Import what a task runs while the worker starts, not in its first task (a worker's own start-up)."""
    import pyarrow.parquet  # noqa: F401

    from ..evidence import match, verdict  # noqa: F401
    from ..report import parquet  # noqa: F401
    from . import parts, task  # noqa: F401


def parse(spec: str) -> tuple[str, int | None]:
    """``local[:N]`` -> ("local", N or None); ``tcp://host:port`` (any Dask address) -> (address, None)."""
    if spec == "local" or spec.startswith("local:"):
        _, _, n = spec.partition(":")
        if n and (not n.isdigit() or int(n) < 1):
            raise ValueError(f"--dask local:N needs a number of workers above 0, not {n!r}")
        return "local", int(n) if n else None
    if "://" not in spec:
        raise ValueError(f"--dask takes tcp://HOST:PORT or local[:N], not {spec!r}")
    return spec, None


class DaskRunner:
    """``driver.Runner`` on a Dask cluster: task results (with their edges) stay on the workers."""

    def __init__(self, spec: str, blob: bytes, sha: str) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ValueError("--dask needs Dask: pip install 'portclass[cluster]'") from None
        address, n = parse(spec)
        self.cluster = None
        logging.getLogger("distributed").setLevel(logging.ERROR)  # a loaded machine's heartbeat notes
        if address == "local":
            import dask

            preload()  # forked workers inherit the modules
            with dask.config.set({TRIM: None, "distributed.worker.profile.enabled": False, **_fork()}):
                self.cluster = LocalCluster(n_workers=n or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                                            dashboard_address=":0", silence_logs=logging.ERROR,
                                            preload=[__name__])  # fmt: skip  (dask_setup: own sessions)
            self.client = Client(self.cluster)
        else:
            try:
                self.client = Client(address, timeout="20s")
            except OSError as exc:
                raise ValueError(f"cannot reach the Dask scheduler at {address} ({exc})") from None
        self.dashboard = self.client.dashboard_link
        self.sha = sha
        self.reg = self.client.scatter(blob, broadcast=True, hash=False)
        self.futures: dict[str, Any] = {}  # labelling tasks' results (files of timelines) not finished yet
        self.spent: dict[str, Any] = {}  # ... and those being finished
        from distributed import as_completed

        self.done = as_completed()

    def label(self, specs: list[TaskSpec]) -> None:
        """Submit one task per file (in order); ``events`` yields their ``Keys`` as they end."""
        for s in specs:
            name = os.path.basename(s.path).replace(" ", "_")
            fut = self.client.submit(run_task, s, self.reg, self.sha, key=f"portclass-{name}-{s.ident}",
                                     retries=RETRIES, pure=False)  # fmt: skip
            if s.export:
                self.futures[s.ident] = fut
            self.done.add(self.client.submit(keys_of, fut, key=f"portclass-keys-{s.ident}", retries=RETRIES))

    def finish(self, spec: TaskSpec, head_keys: Any, tail_keys: Any) -> None:
        """A file's edge task, where its result is (before files not labelled yet: its result goes)."""
        fut = self.futures.pop(spec.ident)
        self.done.add(self.client.submit(finish, fut, spec, self.reg, self.sha, head_keys, tail_keys,
                                         key=f"portclass-edge-{spec.ident}", retries=RETRIES, priority=1))  # fmt: skip
        self.spent[spec.ident] = fut

    def events(self) -> Iterator[Keys | Finished]:
        """Results as tasks end, until none is left (the caller may submit more in between).  Of the
        results ready at once, files' keys come first: the edge tasks they make ready go out before the
        driver joins and merges the finished edges (a driver behind does not hold the workers back)."""
        for batch in self.done.batches():
            for fut in sorted(batch, key=lambda f: str(f.key).startswith("portclass-edge-")):
                res = fut.result()
                fut.release()
                if isinstance(res, Finished):  # the labelling task's result is no longer needed
                    self.spent.pop(res.ident).release()
                yield res

    def close(self) -> None:
        """Disconnect (and stop the local cluster)."""
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
