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

from ..capture.columns import CaptureStats
from ..engine import Ended
from ..feed import cpus
from ..pipeline import Analysis
from .aggregates import Totaling

STREAMED: tuple[str, ...] = ("jsonl", "csv", "zeek", "parquet")
"""Formats written as flows end."""
TEXT_ROWS = 2048
"""Rows whose JSON Lines or CSV text is built at once (columns are built 8192 rows at a time)."""


Running = Totaling
"""The whole-run totals a report head needs, kept as sums over ended flows (``aggregates.Totaling``)."""


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

    def add(self, c: Analysis, rows: int = 8192) -> None:
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
            from .serialize import csv_body, is_const, jsonl_body

            text = jsonl_body if self.fmt == "jsonl" else csv_body
            n = len(c.flows)
            for lo in range(0, n, TEXT_ROWS):  # the text of a few thousand rows at a time (the peak's share)
                part = {k: v if is_const(v) else v.slice(lo, TEXT_ROWS) for k, v in cols.items()}
                self.sink.write(text(part))
        elif self.fmt == "parquet":
            import pyarrow.parquet as pq

            from .parquet import _pandas_metadata, arrow_table

            table = arrow_table(c, with_metadata=False, cols=cols)
            if self.parquet is None:
                self.pandas = _pandas_metadata(table)  # stored with the run's metadata at the end
                self.parquet = pq.ParquetWriter(self.sink, table.schema, compression="zstd", store_schema=False)
            self.parquet.write_table(table.cast(self.parquet.schema))


class _Behind:
    """Serializes chunks in a thread of its own while the engine reads on: Arrow's kernels, NumPy and the
    file writes release the GIL, so on a second core writing overlaps analysis instead of adding to it.

    Chunks are written in the order given (end order); ``put`` waits while ``depth`` chunks are in the
    writer's hands, which bounds the memory held (depth 1: the chunk being written and the next one).
    An error while writing (a full disk) is raised in the caller's thread at its next ``put`` or at
    ``close``; signals stay with the main thread (``classifier.interrupt``).
    """

    def __init__(self, body: _Body, depth: int = 1) -> None:
        import queue
        import threading

        self.body = body
        self.error: BaseException | None = None
        self.abandoned = False
        self._queue: queue.SimpleQueue[Analysis | None] = queue.SimpleQueue()
        self._free = threading.Semaphore(depth)
        self._thread = threading.Thread(target=self._run, name="portclass-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            c = self._queue.get()
            if c is None:
                return
            if self.error is None and not self.abandoned:
                try:
                    self.body.add(c)
                except BaseException as exc:  # handed to the caller's thread
                    self.error = exc
            del c  # not held while waiting for the next one
            self._free.release()

    def put(self, c: Analysis) -> None:
        """Hand one chunk to the writer (waits while ``depth`` chunks are in its hands)."""
        self._raise()
        self._free.acquire()
        self._raise()
        self._queue.put(c)

    def close(self, abandon: bool = False) -> None:
        """Wait until every chunk handed is written (``abandon``: dropped), then raise any writing error."""
        self.abandoned = self.abandoned or abandon
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if not abandon:
            self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error


WRITER_THREAD = "PORTCLASS_WRITER_THREAD"
"""Environment variable: ``1`` writes the body in a thread of its own (``_Behind``) where two CPUs are free."""


def _threaded() -> bool:
    """Whether to write behind the reading: off by default, as measured on a busy 2-core machine (no
    wall-time gain, about 20 MiB more at the peak); ``PORTCLASS_WRITER_THREAD=1`` turns it on for a
    quiet machine's benchmark, never on one CPU (no overlap to gain, only memory to lose)."""
    return os.environ.get(WRITER_THREAD) == "1" and cpus() > 1


def _one_arena() -> None:
    """Let glibc's malloc serve every thread from one arena (``M_ARENA_MAX`` 1), as it does a single thread.

    The writer thread frees what the reading thread allocates and the other way round; with an arena
    per thread each keeps the other's freed blocks, about 20 MiB more resident at the peak for no
    measurable speed (Arrow's system pool and NumPy allocate through malloc). Elsewhere: nothing.
    """
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError, TypeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if hasattr(libc, "gnu_get_libc_version"):
            libc.mallopt(-8, 1)  # M_ARENA_MAX


def analyze_streamed(
    paths: list[str], registry: Any, fmt: str, out: str | Path | None, analyze: Any = None, **kw: Any
) -> Analysis:
    """Analyze captures writing ``fmt`` as flows end; returns the run's analysis (no flows, its totals).

    ``kw`` goes to ``analyze`` (default ``pipeline.analyze``).  ``out`` None or ``-`` is stdout.
    """
    if analyze is None:
        from ..pipeline import analyze

    to_file = out is not None and str(out) != "-"
    _one_arena()  # before pyarrow's threads start (``_Behind``)
    running = Running()
    if fmt == "parquet":
        from .parquet import check_output

        check_output(out)
    with contextlib.ExitStack() as stack:
        # a spool beside the output: the file itself is written whole at the end (atomic_file); a
        # signal while reading stops at a batch boundary, never inside a chunk being written
        sink: BinaryIO = stack.enter_context(tempfile.TemporaryFile(dir=Path(out).parent if to_file else None))
        body = _Body(fmt, sink)
        behind = _Behind(body) if _threaded() else None
        if behind is not None:
            stack.callback(behind.close, abandon=True)  # on an error: the writer stops (a no-op after close)
        holder: dict[str, Analysis] = {}

        def on_ended(e: Ended) -> None:
            running.add(e)
            if behind is None:
                body.add(_chunk(e, holder["a"]))
            else:
                behind.put(_chunk(e, holder["a"]))

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
        if behind is not None:
            behind.close()  # every chunk written (or the error that stopped the writing)
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
                _copy(sink, fh)
                fh.write(tail)
        else:
            dst = sys.stdout.buffer
            dst.write(head)
            _copy(sink, dst)
            dst.write(tail)
            dst.flush()
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
