"""Running the archive's tasks on Dask: an existing scheduler (``tcp://HOST:8786``) or a local cluster.

The compiled registry is sent once to every worker (``scatter(broadcast=True)``) with the sha256 of its
bytes, which each task checks before labelling (``task.registry_from``).  Task keys name the file
(``portclass-<file name>-<identity>``) so the dashboard shows which file each task reads.  A task whose
worker dies is run again by the scheduler (and ``retries`` covers errors): its parts have fixed names
and are written atomically, so a re-run replaces them whole.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Iterator
from typing import Any

from .task import TaskResult, TaskSpec, run_task

RETRIES = 3


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


def connect(spec: str) -> tuple[Callable[..., Iterator[tuple[TaskSpec, TaskResult, int]]], Callable[[], None]]:
    """(run, close) over a Dask client; see ``driver.executor``."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ValueError("--dask needs Dask: pip install 'portclass[cluster]'") from None
    address, n = parse(spec)
    cluster = None
    if address == "local":
        cluster = LocalCluster(
            n_workers=n or os.cpu_count() or 1, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        client = Client(cluster)
    else:
        try:
            client = Client(address, timeout="20s")
        except OSError as exc:
            raise ValueError(f"cannot reach the Dask scheduler at {address} ({exc})") from None

    def run(specs: list[TaskSpec], blob: bytes, sha: str) -> Iterator[tuple[TaskSpec, TaskResult, int]]:
        if not specs:
            return
        reg = client.scatter(blob, broadcast=True, hash=False)
        futures: dict[Any, TaskSpec] = {}
        for s in specs:
            name = os.path.basename(s.path).replace(" ", "_")
            fut = client.submit(run_task, s, reg, sha, key=f"portclass-{name}-{s.ident}", retries=RETRIES, pure=False)
            futures[fut] = s
        for fut in as_completed(futures):
            res = fut.result()
            yield futures[fut], res, len(pickle.dumps(res))
            fut.release()

    def close() -> None:
        client.close()
        if cluster is not None:
            cluster.close()

    run.dashboard = client.dashboard_link  # type: ignore[attr-defined]
    return run, close

