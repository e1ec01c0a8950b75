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
import signal
import sys
from collections.abc import Iterator
from typing import Any

from .. import interrupt
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


def _local_cluster(n: int) -> Any:
    """A ``distributed.LocalCluster`` of ``n`` single-threaded worker processes, as ``--dask local`` wants them."""
    import dask
    from distributed import LocalCluster

    with dask.config.set({TRIM: None, "distributed.worker.profile.enabled": False, **_fork()}):
        return LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                            silence_logs=logging.ERROR, preload=[__name__])  # fmt: skip  (dask_setup: own sessions)


def _hold(conn: Any, n: int) -> None:
    """The holder process: start the local cluster, send its address, keep it until told (or until the
    command's end of the pipe closes: the command died), then stop it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the command too; it decides
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, interrupt.SIGNALS)
    with contextlib.suppress(OSError):
        os.setsid()  # a CPU share of its own (Linux's autogroup), as a scheduler started as a service has
    logging.getLogger("distributed").setLevel(logging.ERROR)
    try:
        cluster = _local_cluster(n)
    except BaseException as exc:  # noqa: BLE001 - told to the command, which raises it as one line
        conn.send((None, f"{type(exc).__name__}: {exc}"))
        return
    try:
        conn.send((cluster.scheduler_address, None))
        with contextlib.suppress(EOFError, OSError):
            conn.recv()
    finally:
        with contextlib.suppress(Exception):
            cluster.close(timeout=20)


class LocalHolder:
    """``--dask local[:N]``: the scheduler and its worker processes held by a forked process of their own.

    A ``LocalCluster`` made in the command's process runs its scheduler in a thread there, where it competes
    for the GIL with the driver's own work (joining edges, merging summaries): on 2 cores the driver's work
    took twice its one-process wall time.  Forked, the workers still inherit the command's imports.
    """

    def __init__(self, n: int) -> None:
        import multiprocessing

        preload()  # the holder and the workers it forks inherit the modules
        ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
        self._conn, theirs = ctx.Pipe()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        self._proc = ctx.Process(target=_hold, args=(theirs, n), name="portclass-dask")  # not a daemon: it forks
        with interrupt.deferred():  # SIGINT/SIGTERM held back until the holder has set its own handling
            self._proc.start()
        theirs.close()
        try:
            address, error = self._conn.recv()
        except EOFError:
            address, error = None, f"exit status {self._proc.exitcode}"
        if address is None:
            self.close()
            raise ValueError(f"cannot start the local Dask cluster ({error})")
        self.address: str = address

    def close(self) -> None:
        """Tell the holder to stop the cluster, and wait for it (killed if it does not stop)."""
        with contextlib.suppress(OSError):
            self._conn.send("close")
        self._conn.close()
        self._proc.join(30)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)


class DaskRunner:
    """``driver.Runner`` on a Dask cluster: task results (with their edges) stay on the workers."""

    def __init__(self, spec: str, blob: bytes, sha: str) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise ValueError("--dask needs Dask: pip install 'portclass[cluster]'") from None
        address, n = parse(spec)
        self.cluster = None
        logging.getLogger("distributed").setLevel(logging.ERROR)  # a loaded machine's heartbeat notes
        if address == "local":
            self.cluster = LocalHolder(n or os.cpu_count() or 1)
            self.client = Client(self.cluster.address, timeout="60s")
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
