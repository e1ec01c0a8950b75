"""Streaming machine writers: JSON Lines, CSV, Zeek conn.log and Parquet written as flows end.

The engine (``classifier.engine``) hands out flows as they end; each chunk is serialized at once,
column by column, with the same row builders as the whole-run writers (``report.rows``), and no flow
stays in memory after it is written.  Flows appear in *end order*: chunk after chunk as the engine
lets them go, by start time within one chunk.  The head of a report (the JSON Lines notice, the CSV
``#`` lines, Zeek's header) carries whole-run totals, known only at the end: the body goes to a
spool file first and is copied behind the head when the input is done (a file report stays whole
or untouched).  Parquet writes one row group per chunk and its key/value metadata at the end.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..capture.columns import CaptureStats
from ..engine import Ended
from ..pipeline import Analysis
from ..registry.compile import STATUS_NAMES
from ..registry.model import TRANSPORTS
from .summary import Totals, totals_of

STREAMED: tuple[str, ...] = ("jsonl", "csv", "zeek", "parquet")
"""Formats written as flows end."""


@dataclass
class Running:
    """The whole-run totals a report head needs, kept as sums over ended flows (not the flows)."""

    flows: int = 0
    by_transport: np.ndarray = field(default_factory=lambda: np.zeros(len(TRANSPORTS) + 1, dtype=np.int64))
    by_status: np.ndarray = field(default_factory=lambda: np.zeros(len(STATUS_NAMES), dtype=np.int64))
    packets: int = 0
    bytes: int = 0
    first_ts_ns: int | None = None
    last_ts_ns: int | None = None
    flagged: int = 0

    def add(self, e: Ended) -> None:
        """Count one chunk of ended flows."""
        n = len(e)
        if not n:
            return
        fl, lab = e.flows, e.labels
        self.flows += n
        self.by_transport += np.bincount(lab.transport.astype(np.int64) + 1, minlength=len(TRANSPORTS) + 1)
        self.by_status += np.bincount(lab.status, minlength=len(STATUS_NAMES))
        self.packets += int(fl.packets_c2s.sum(dtype=np.int64) + fl.packets_s2c.sum(dtype=np.int64))
        self.bytes += int(fl.bytes_c2s.sum(dtype=np.int64) + fl.bytes_s2c.sum(dtype=np.int64))
        lo, hi = int(fl.first_ts_ns.min()), int(fl.last_ts_ns.max())
        self.first_ts_ns = lo if self.first_ts_ns is None else min(lo, self.first_ts_ns)
        self.last_ts_ns = hi if self.last_ts_ns is None else max(hi, self.last_ts_ns)
        self.flagged += int(np.count_nonzero(lab.severity))

    def totals(self, a: Analysis) -> Totals:
        """``summary.totals`` of the whole run, from the sums and the capture counters."""
        return totals_of(
            a,
            flows=self.flows,
            by_transport=self.by_transport,
            by_status=self.by_status,
            flow_packets=self.packets,
            flow_bytes=self.bytes,
            first_ts_ns=self.first_ts_ns,
            last_ts_ns=self.last_ts_ns,
            flagged=self.flagged,
        )


def _chunk(e: Ended, a: Analysis) -> Analysis:
    """One chunk of ended flows as an analysis the row builders take."""
    return Analysis(
        flows=e.flows,
        labels=e.labels,
        stats=e.stats if e.stats is not None else CaptureStats(),
        registry=a.registry,
        idle_timeout_s=a.idle_timeout_s,
        inputs=a.inputs,
        payload_inspected=a.payload_inspected,
        part=e.part,
    )


class _Body:
    """Serializes chunks of flows into the spool (text formats) or the file (Parquet)."""

    def __init__(self, fmt: str, sink: BinaryIO) -> None:
        self.fmt, self.sink = fmt, sink
        self.parquet: Any = None
        self.pandas = b""

    def add(self, c: Analysis, rows: int = 16384) -> None:
        """Write the flows of ``c``, ``rows`` at a time (the row builders hold Python objects per value)."""
        n = len(c.flows)
        if n > rows:
            from ..filters import take_labels

            for lo in range(0, n, rows):
                idx = np.arange(lo, min(n, lo + rows))
                part = None if c.part is None else c.part[idx]
                self._add(dataclasses.replace(c, flows=c.flows.take(idx), labels=take_labels(c.labels, idx), part=part))
        elif n:
            self._add(c)

    def _add(self, c: Analysis) -> None:
        if self.fmt == "jsonl":
            from .rows import _EVENT, ECS_VERSION, LABEL_BASIS, flow_columns

            cols: dict[str, Any] = dict(flow_columns(c))
            consts = {**{f"event.{k}": v for k, v in _EVENT.items()}, "portclass.label_basis": LABEL_BASIS}
            consts["ecs.version"] = ECS_VERSION
            self.sink.write(jsonl_documents(cols, consts))
        elif self.fmt == "csv":
            from .rows import table_columns

            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerows(
                zip(*map(_csv_cells, table_columns(c).values()), strict=True)
            )
            self.sink.write(buf.getvalue().encode())
        elif self.fmt == "zeek":
            from .zeek import body_lines

            self.sink.write(("\n".join(body_lines(c)) + "\n").encode())
        elif self.fmt == "parquet":
            import pyarrow.parquet as pq

            from .parquet import _pandas_metadata, arrow_table

            table = arrow_table(c, with_metadata=False)
            if self.parquet is None:
                self.pandas = _pandas_metadata(table)  # stored with the run's metadata at the end
                self.parquet = pq.ParquetWriter(self.sink, table.schema, compression="zstd", store_schema=False)
            self.parquet.write_table(table.cast(self.parquet.schema))


_SEP = "\x01"  # stands for a comma until a document is whole: JSON text never holds a raw control character


_PLAIN_TEXT = frozenset(
    {"@timestamp", "event.start", "event.end", "source.ip", "destination.ip", "network.community_id"}
)
"""Columns whose text never needs JSON escaping (ISO times, addresses, base64): quoted as they are."""


def _json_column(values: list[Any], plain: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(JSON text of each value, value present) for one column, rendering each distinct value once."""
    import orjson

    n = len(values)
    kinds = set(map(type, values))
    if list in kinds:  # set-like columns: few distinct lists
        memo: dict[tuple, str] = {}
        out = np.empty(n, dtype=object)
        out[:] = [
            None if v is None else memo.get(tuple(v)) or memo.setdefault(tuple(v), orjson.dumps(v).decode())
            for v in values
        ]
        valid = out != None  # noqa: E711
        return np.where(valid, out, ""), valid
    arr = np.empty(n, dtype=object)
    arr[:] = values
    kinds.discard(type(None))
    valid = arr != None  # noqa: E711 (elementwise)
    present = arr[valid] if len(kinds) and not valid.all() else arr
    text = np.empty(n, dtype=object)
    if kinds == {int}:
        text[valid] = present.astype(np.int64).astype(str).astype(object)
    elif kinds == {str} and plain:
        text[valid] = '"' + present + '"'
    elif kinds == {str}:
        uniq, inv = np.unique(present.astype(str), return_inverse=True)
        rendered = np.array([orjson.dumps(str(u)).decode() for u in uniq.tolist()] or [""], dtype=object)
        text[valid] = rendered[inv.reshape(-1)]
    elif kinds:  # anything else (bool, float, mixed): orjson value by value
        text[valid] = [orjson.dumps(v).decode() for v in present.tolist()]
    return np.where(valid, text, ""), valid


def jsonl_documents(cols: dict[str, list[Any]], consts: dict[str, Any], rows_per_slice: int = 4096) -> bytes:
    """JSON Lines of nested ECS documents from flat dotted columns, absent values left out, column by column.

    ``consts`` are fields every document carries with one value (appended to their object).  The same
    documents as ``report.rows.rows(omit_nulls=True)``, built without a dict per flow.
    """
    import orjson

    n = len(next(iter(cols.values()))) if cols else 0
    out = []
    for lo in range(0, n, rows_per_slice):
        tree: dict[str, Any] = {}
        for key, values in {**cols, **dict.fromkeys(consts)}.items():
            path = [key] if key.startswith("@") else key.split(".")
            node = tree
            for part in path[:-1]:
                node = node.setdefault(part, {})
            if key in consts:
                value = orjson.dumps(consts[key]).decode()
                node[path[-1]] = (_SEP + orjson.dumps(path[-1]).decode() + ":" + value, True)
            else:
                text, valid = _json_column(values[lo : lo + rows_per_slice], key in _PLAIN_TEXT)
                node[path[-1]] = (np.where(valid, _SEP + orjson.dumps(path[-1]).decode() + ":" + text, ""), valid)

        def build(node: dict[str, Any]) -> tuple[Any, Any]:
            text: Any = ""
            valid: Any = False
            for name, child in node.items():
                if isinstance(child, dict):
                    ctext, cvalid = build(child)
                    key = orjson.dumps(name).decode()
                    ctext = np.where(cvalid, _SEP + key + ":{" + ctext + "}", "")
                else:
                    ctext, cvalid = child
                text = text + ctext
                valid = valid | cvalid
            return text, valid

        docs, _ = build(tree)
        text = "\n".join(("{" + docs + "}").tolist()) + "\n"
        out.append(text.replace("{" + _SEP, "{").replace(_SEP, ",").encode())
    return b"".join(out)


def _csv_cells(values: list[Any]) -> list[Any]:
    """One CSV column's cells: lists joined with ';', None empty (as the whole-run writer), by column."""
    if any(isinstance(v, list) for v in values):
        return [";".join(v) if isinstance(v, list) else ("" if v is None else v) for v in values]
    if None in values:
        return ["" if v is None else v for v in values]
    return values


def analyze_streamed(
    paths: list[str], registry: Any, fmt: str, out: str | Path | None, analyze: Any = None, **kw: Any
) -> Analysis:
    """Analyze captures writing ``fmt`` as flows end; returns the run's analysis (no flows, its totals).

    ``kw`` goes to ``analyze`` (default ``pipeline.analyze``).  ``out`` None or ``-`` is stdout.
    """
    if analyze is None:
        from ..pipeline import analyze

    to_file = out is not None and str(out) != "-"
    running = Running()
    if fmt == "parquet":
        from .parquet import check_output

        check_output(out)
    with contextlib.ExitStack() as stack:
        # a spool beside the output: the file itself is written whole at the end (atomic_file); a
        # signal while reading stops at a batch boundary, never inside a chunk being written
        sink: BinaryIO = stack.enter_context(tempfile.TemporaryFile(dir=Path(out).parent if to_file else None))
        body = _Body(fmt, sink)
        holder: dict[str, Analysis] = {}

        def on_ended(e: Ended) -> None:
            running.add(e)
            body.add(_chunk(e, holder["a"]))

        holder["a"] = Analysis(
            flows=Ended.empty().flows,
            labels=Ended.empty().labels,
            stats=CaptureStats(),
            registry=registry,
            idle_timeout_s=float(kw.get("idle_timeout_s", 300.0)),
            inputs=[str(p) for p in paths],
            payload_inspected=bool(kw.get("evidence", True)),
        )
        a = analyze(paths, registry, on_ended=on_ended, **kw)
        if len(a.flows):  # an analyze that did not stream (tests stand one in): its flows as one chunk
            n = len(a.flows)
            on_ended(Ended(a.flows, a.labels, np.zeros(n, np.int32), np.zeros(n, np.uint8), a.stats))
        a.running = running.totals(a)  # type: ignore[attr-defined]
        head, tail = _head(a, fmt), _tail(fmt)
        if fmt == "parquet":
            head = tail = b""
            if body.parquet is None:  # no flow at all: the whole-run writer's empty file
                from .parquet import render

                sink.write(render(a))
            else:
                from .parquet import metadata

                body.parquet.add_key_value_metadata({**metadata(a), "pandas": body.pandas.decode()})
                body.parquet.close()
        sink.flush()
        sink.seek(0)
        if to_file:
            from ..atomic import atomic_file

            with atomic_file(out) as fh:  # type: ignore[arg-type]
                fh.write(head)
                shutil.copyfileobj(sink, fh, 1 << 20)
                fh.write(tail)
        else:
            dst = sys.stdout.buffer
            dst.write(head)
            shutil.copyfileobj(sink, dst, 1 << 20)
            dst.write(tail)
            dst.flush()
    return a


def _head(a: Analysis, fmt: str) -> bytes:
    """What the whole-run writer puts before the first flow, from the run's totals."""
    if fmt == "parquet":
        return b""
    if fmt == "zeek":
        from .zeek import header

        return ("\n".join(header(a)) + "\n").encode()
    from .machine import render

    text = render(a, fmt)  # no flows: the head (and for csv the header line) only
    return text.encode()


def _tail(fmt: str) -> bytes:
    if fmt == "zeek":
        from .zeek import SEPARATOR, _stamp

        return f"#close{SEPARATOR}{_stamp()}\n".encode()
    return b""
