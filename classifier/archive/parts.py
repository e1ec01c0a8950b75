"""Parquet parts of the dataset: flows partitioned hive-style by start hour, each part written atomically.

Layout: ``DATASET/date=YYYY-MM-DD/hour=HH/<name>.parquet`` (UTC, by the flow's start).  A part is
written under a temporary name starting with ``.`` (readers skip it) and renamed when whole; its name
is fixed by what it holds (the input's identity), so a retried task replaces it with the same flows:
no flow is ever written twice nor half.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from ..capture.columns import CaptureStats
from ..engine import Ended
from ..pipeline import Analysis
from ..registry.compile import CompiledRegistry

HOUR_NS = 3600 * 1_000_000_000

_SCHEMAS: dict[int, tuple[CompiledRegistry, Any]] = {}
"""Schemas made in this process, by their registry (making one costs tens of ms): the driver's and the
one its tasks decoded."""


def dataset_schema(registry: CompiledRegistry) -> Any:
    """The Parquet schema of every part (the flat ECS columns of ``report.parquet``), no metadata."""
    from ..report.parquet import arrow_table

    if id(registry) not in _SCHEMAS:
        empty = Ended.empty()
        a = Analysis(empty.flows, empty.labels, CaptureStats(), registry, part=empty.part)
        if len(_SCHEMAS) > 1:
            _SCHEMAS.clear()
        _SCHEMAS[id(registry)] = (registry, arrow_table(a, with_metadata=False).schema)  # it keeps its id
    return _SCHEMAS[id(registry)][1]


def partition_of(hour: int) -> str:
    """``date=YYYY-MM-DD/hour=HH`` of an hour number since the epoch."""
    d = np.datetime64(int(hour) * 3600, "s").astype("datetime64[h]")
    text = str(d)  # YYYY-MM-DDTHH
    return f"date={text[:10]}/hour={text[11:13]}"


class PartWriter:
    """Writes chunks of ended flows into ``<partition>/<name>.parquet``, one file per hour touched."""

    def __init__(self, root: str | Path, name: str, schema: Any, registry: CompiledRegistry) -> None:
        self.root, self.name, self.schema, self.registry = Path(root), name, schema, registry
        self._open: dict[int, tuple[Any, Path, Path]] = {}  # hour -> (writer, temp path, final path)
        self.rows = 0

    def add(self, e: Ended) -> None:
        """Write one chunk of ended flows (labelled, oriented, as the engine hands them out)."""
        import pyarrow.parquet as pq

        from ..filters import take_labels
        from ..report.parquet import arrow_table

        if not len(e):
            return
        hours = e.flows.first_ts_ns // HOUR_NS
        for h in np.unique(hours).tolist():  # a loop over hours
            idx = np.flatnonzero(hours == h)
            stats = e.stats if e.stats is not None else CaptureStats()
            a = Analysis(e.flows.take(idx), take_labels(e.labels, idx), stats, self.registry, part=e.part[idx])
            table = arrow_table(a, with_metadata=False).cast(self.schema)
            if h not in self._open:
                final = self.root / partition_of(h) / f"{self.name}.parquet"
                final.parent.mkdir(parents=True, exist_ok=True)
                tmp = final.parent / f".{final.name}.{uuid.uuid4().hex}.tmp"
                self._open[h] = (pq.ParquetWriter(tmp, self.schema, compression="zstd"), tmp, final)
            self._open[h][0].write_table(table)
            self.rows += len(idx)

    def close(self) -> list[str]:
        """Close every file and rename it into place; the parts' paths relative to the root."""
        done = []
        for writer, tmp, final in self._open.values():
            writer.close()
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, final)
            done.append(str(final.relative_to(self.root)))
        self._open = {}
        return sorted(done)

    def abort(self) -> None:
        """Drop the temporary files (the run failed): nothing of this part appears."""
        for writer, tmp, _ in self._open.values():
            try:
                writer.close()
            finally:
                tmp.unlink(missing_ok=True)
        self._open = {}
