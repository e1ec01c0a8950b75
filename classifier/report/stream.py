"""Streaming machine writers: JSON Lines, CSV, Zeek conn.log and Parquet written as flows end.

The engine (``classifier.engine``) hands out flows as they end; each chunk is serialized at once,
column by column, with the same row builders as the whole-run writers (``report.rows``), and no flow
stays in memory after it is written.  Flows appear in *end order*: chunk after chunk as the engine
lets them go, by start time within one chunk.  The head of a report (the JSON Lines notice, the CSV
``#`` lines, Zeek's header) carries whole-run totals, known only at the end: the body goes to a
spool file first and is copied behind the head when the input is done (a file report stays whole
or untouched).  Parquet writes one row group per chunk and its key/value metadata at the end.
Where the reading runs in a process of its own (``classifier.feed``), the body is written by a third
one (``report.writer``), to the same bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .. import interrupt
from ..capture.columns import CaptureStats
from ..engine import Ended
from ..pipeline import Analysis
from .aggregates import Totaling

STREAMED: tuple[str, ...] = ("jsonl", "csv", "zeek", "parquet")
"""Formats written as flows end."""
TEXT_ROWS = 2048
"""Rows whose JSON Lines or CSV text is built at once (columns are built ``SLICE_ROWS`` rows at a time)."""
SLICE_ROWS = 8192
"""Flows serialized at once (``_Body.add``; Parquet: one row group), and sent at once to the writing process."""


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
        from .serialize import pyarrow_for_writers

        pyarrow_for_writers()

    def close(self, meta: dict[str, str] | None) -> bool:
        """End the body: a Parquet file gets the run's key/value ``meta`` and its footer. True when a
        Parquet writer was opened (there were flows)."""
        if self.parquet is None:
            return False
        self.parquet.add_key_value_metadata({**(meta or {}), "pandas": self.pandas.decode()})
        self.parquet.close()
        return True

    def add(self, c: Analysis, rows: int = SLICE_ROWS) -> None:
        """Write the flows of ``c``, ``rows`` at a time (bounds the text held at once)."""
        for piece in self._slices(c, rows):
            self._add(piece)

    @staticmethod
    def _slices(c: Analysis, rows: int) -> Iterator[Analysis]:
        n = len(c.flows)
        if n > rows:
            from ..filters import take_labels

            for lo in range(0, n, rows):
                idx = np.arange(lo, min(n, lo + rows))
                part = None if c.part is None else c.part[idx]
                yield dataclasses.replace(c, flows=c.flows.take(idx), labels=take_labels(c.labels, idx), part=part)
        elif n:
            yield c

    def _add(self, c: Analysis) -> None:
        """Serialize one slice column by column (``report.serialize``; Parquet: one row group)."""
        if self.fmt == "zeek":
            from .zeek import body

            self.sink.write(body(c))
            return
        from .rows import table_arrays

        cols = table_arrays(c)
        if self.fmt in ("jsonl", "csv"):
            from .serialize import csv_parts, jsonl_parts

            parts = jsonl_parts if self.fmt == "jsonl" else csv_parts
            for text in parts(cols, TEXT_ROWS):  # the lines of a few thousand rows at a time (the peak's share)
                self.sink.write(text)
        elif self.fmt == "parquet":
            import pyarrow.parquet as pq

            from .parquet import _pandas_metadata, arrow_table

            table = arrow_table(c, with_metadata=False, cols=cols)
            if self.parquet is None:
                self.pandas = _pandas_metadata(table)  # stored with the run's metadata at the end
                self.parquet = pq.ParquetWriter(self.sink, table.schema, compression="zstd", store_schema=False)
            self.parquet.write_table(table.cast(self.parquet.schema))


@contextlib.contextmanager
def _named(name: str | None) -> Iterator[None]:
    """An error writing the spool beside the output (a full disk) named by the output, as one line says it."""
    try:
        yield
    except OSError as exc:
        if name is not None and not exc.filename:
            exc.filename = name
        raise


def writer_process(paths: list[str], jobs: int | None) -> bool:
    """Whether the body is written by a process of its own (``report.writer``): where the reading runs in
    a second one too (``feed.two_processes``: two CPUs or more and a large input, or ``--jobs`` 2 or
    more); ``--jobs 1`` keeps the whole run in one process."""
    from ..feed import two_processes

    return two_processes(paths, jobs)


def analyze_streamed(
    paths: list[str], registry: Any, fmt: str, out: str | Path | None, analyze: Any = None, **kw: Any
) -> Analysis:
    """Analyze captures writing ``fmt`` as flows end; returns the run's analysis (no flows, its totals).

    ``kw`` goes to ``analyze`` (default ``pipeline.analyze``).  ``out`` None or ``-`` is stdout.
    """
    if analyze is None:
        from ..pipeline import analyze

    to_file = out is not None and str(out) != "-"
    running = Totaling()
    if fmt == "parquet":
        from .parquet import check_output

        check_output(out)
    base = Analysis(
        flows=Ended.empty().flows,
        labels=Ended.empty().labels,
        stats=CaptureStats(),
        registry=registry,
        idle_timeout_s=float(kw.get("idle_timeout_s", 300.0)),
        inputs=[str(p) for p in paths],
        payload_inspected=bool(kw.get("evidence", True)),
    )
    name = str(out) if to_file else None
    with contextlib.ExitStack() as stack:
        # a spool beside the output: the file itself is written whole at the end (atomic_file); a
        # signal while reading stops at a batch boundary, never inside a chunk being written
        sink: BinaryIO = stack.enter_context(tempfile.TemporaryFile(dir=Path(out).parent if to_file else None))
        body: _Body | None = None
        proc = None
        if writer_process(paths, kw.get("jobs")):
            from .writer import WriterProcess

            # forked before this process starts pyarrow's threads (the reading process comes after)
            proc = stack.enter_context(WriterProcess(fmt, sink, base, name))
        else:
            body = _Body(fmt, sink)

        def on_ended(e: Ended) -> None:
            running.add(e)
            if proc is not None:
                proc.put(e)
            else:
                with _named(name):
                    body.add(_chunk(e, base))  # type: ignore[union-attr]

        a = analyze(paths, registry, on_ended=on_ended, **kw)
        if len(a.flows):  # an analyze that did not stream (tests stand one in): its flows as one chunk
            n = len(a.flows)
            on_ended(Ended(a.flows, a.labels, np.zeros(n, np.int32), np.zeros(n, np.uint8), a.stats))
        a.running = running.totals(a)  # type: ignore[attr-defined]
        meta = None
        if fmt == "parquet":
            from .parquet import metadata

            meta = metadata(a)
        head, tail = _head(a, fmt), _tail(fmt)
        with _named(name):
            if proc is not None:
                opened = proc.finish(meta)  # every chunk written (or the error that stopped the writing)
                sink.seek(0, os.SEEK_END)
            else:
                opened = body.close(meta)  # type: ignore[union-attr]
            if fmt == "parquet":
                head = tail = b""
                if not opened:  # no flow at all: the whole-run writer's empty file
                    from .parquet import render

                    sink.write(render(a))
            sink.flush()
        sink.seek(0)
        if not getattr(a, "interrupted", False):
            interrupt.check()  # a signal after the reading: no report, the output stays as it was
        if to_file:
            from ..atomic import atomic_file

            # once renamed, the report is out: a late signal changes neither the exit code nor the message
            with atomic_file(out, then=interrupt.ending) as fh:  # type: ignore[arg-type]
                fh.write(head)
                _copy(sink, fh)
                fh.write(tail)
        else:
            dst = sys.stdout.buffer
            dst.write(head)
            _copy(sink, dst)
            dst.write(tail)
            dst.flush()
            interrupt.ending()
    return a


def _copy(src: BinaryIO, dst: Any) -> None:
    """The rest of ``src`` onto ``dst``, in the kernel where it can (``copy_file_range``: no pass through Python)."""
    dst.flush()
    pos = src.tell()
    try:
        fd_in, fd_out = src.fileno(), dst.fileno()
        size = os.fstat(fd_in).st_size
        while pos < size:
            n = os.copy_file_range(fd_in, fd_out, size - pos, pos)
            if n <= 0:
                break
            pos += n
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass  # not two plain files here: the rest goes through Python
    src.seek(pos)
    shutil.copyfileobj(src, dst, 1 << 20)


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
