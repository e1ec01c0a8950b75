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
import pickle
from collections.abc import Iterator
from typing import Any

from .task import Keys, TaskResult, TaskSpec, finish, keys_of, run_task

RETRIES = 3


def dask_setup(worker: Any) -> None:
    """Preload of ``--dask local`` workers: a session of their own, as a worker started as a service has.

    Linux's autogroup shares the CPU between sessions: workers left in the session of the command that
    started them would share one session's share on a machine other processes load.
    """
    with contextlib.suppress(OSError):  # already a session leader
        os.setsid()


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
        self.futures: dict[str, Any] = {}

    def label(self, specs: list[TaskSpec]) -> Iterator[Keys]:
        """Submit one task per file; yields their summaries as they finish."""
        from distributed import as_completed

        summaries = []
        for s in specs:
            name = os.path.basename(s.path).replace(" ", "_")
            fut = self.client.submit(run_task, s, self.reg, self.sha, key=f"portclass-{name}-{s.ident}",
                                     retries=RETRIES, pure=False)  # fmt: skip
            if s.export:
                self.futures[s.ident] = fut
            summaries.append(self.client.submit(keys_of, fut, key=f"portclass-keys-{s.ident}", retries=RETRIES))
        for fut in as_completed(summaries):
            yield fut.result()
            fut.release()

    def finish(self, specs: dict[str, TaskSpec], give: dict[str, tuple[Any, Any]]) -> dict[str, tuple]:
        """The finishing tasks, where the files' results are (Dask runs them on the worker holding them)."""
        futs = {
            ident: self.client.submit(finish_sized, self.futures[ident], specs[ident], self.reg, self.sha, hk, tk,
                                      key=f"portclass-edge-{ident}", retries=RETRIES)  # fmt: skip
            for ident, (hk, tk) in give.items()
        }
        out = {ident: fut.result() for ident, fut in futs.items()}
        for fut in [*futs.values(), *self.futures.values()]:
            fut.release()
        self.futures = {}
        return out

    def close(self) -> None:
        """Disconnect (and stop the local cluster)."""
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def finish_sized(res: TaskResult, spec: TaskSpec, blob: bytes, sha: str, hk: Any, tk: Any) -> tuple:
    """``task.finish`` and the pickled size of the edge it sends back."""
    edge, parts, agg = finish(res, spec, blob, sha, hk, tk)
    return edge, parts, agg, len(pickle.dumps(edge))
