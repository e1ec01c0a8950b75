"""The writer process: a streaming machine writer's columns and text made in a forked process of its own.

Building a chunk's output columns (``report.rows.flow_arrays``: Community IDs, addresses, evidence
and said strings, Zeek's connection fields) and serializing them costs about as much CPU as the
engine's analysis, and much of it holds the GIL, so a thread gains little.  ``WriterProcess`` forks
a child that owns the body (``report.stream._Body``): the engine's process sends each chunk of ended,
labelled flows as NumPy columns through a pipe (``classifier.feed``'s messages: pickled, arrays out of
band) and goes on; the child writes the body into the spool the parent opened before the fork, in
the order the chunks came (end order), so the bytes are those one process writes.  With the reading
process (``classifier.feed``) the run then has three stages on the CPUs instead of two.

The pipe bounds what is in flight (a full pipe makes ``put`` wait).  The child ignores SIGINT and
SIGTERM: the parent decides (a signal while reading still gets the report of what was read, written
whole); the parent's exit, or ``close``, ends the child.  A writing error in the child (a full disk)
comes back as the exception and is raised in the parent at its next ``put`` or at ``finish``; a child
that dies (killed, out of memory) is one line naming the output, exit 70.  Either way the spool is an
anonymous file: the output stays as it was.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import select
import signal
import threading
import traceback
from collections.abc import Iterator
from typing import Any, BinaryIO

import numpy as np

from ..engine import Ended
from ..errors import PortclassError
from ..feed import _recv, _send, child_gone, child_setup, fork_child, pipe
from ..pipeline import Analysis

_CHUNK, _END, _DONE, _ERROR = "chunk", "end", "done", "error"
AHEAD = 1
"""Pieces received and waiting while the child writes one (a slice of flows each, see ``WriterProcess.put``
and ``_receiver``): one, not two, for the same speed."""


class WriterProcess:
    """The body of one streamed report (format ``fmt``, into ``sink``) written by a forked child process.

    ``base`` is the run's analysis without flows (registry, inputs: what every chunk shares, see
    ``stream._chunk``); ``name`` is the output named in an error.  ``put`` each chunk, then ``finish``
    (Parquet: with the run's key/value metadata); ``close`` (always) ends the child wherever it is.
    """

    def __init__(self, fmt: str, sink: BinaryIO, base: Analysis, name: str | None) -> None:
        self.name = name
        self.chunks = 0
        sink.flush()
        r_in, self._w = pipe()
        self._r, w_out = os.pipe()
        try:
            self._proc: Any = fork_child(_child, (r_in, w_out, self._w, self._r, fmt, sink, base), "portclass-writer")
        except BaseException:
            os.close(self._w)
            os.close(self._r)
            raise
        finally:
            os.close(r_in)
            os.close(w_out)

    def __enter__(self) -> WriterProcess:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def put(self, e: Ended) -> None:
        """Send one chunk of ended flows to be written (waits while the pipe is full), in pieces of the
        writer's slices (``stream.SLICE_ROWS``, the same cuts as ``_Body.add``: the same bytes, Parquet's
        row groups too): the child then holds a slice in hand and one waiting, not whole chunks."""
        for piece in _pieces(e):
            if select.select([self._r], [], [], 0)[0]:  # the child said something before the end: its error
                self._reply()
            try:
                _send(self._w, (_CHUNK, piece))
            except BrokenPipeError:
                self._reply()
                raise
        self.chunks += 1

    def finish(self, parquet_meta: dict[str, str] | None = None) -> bool:
        """Wait until every chunk is written (Parquet: the file closed with ``parquet_meta``); True when the
        child opened a Parquet writer (it had flows to write). Raises the child's writing error."""
        try:
            _send(self._w, (_END, parquet_meta))
        except BrokenPipeError:
            pass  # the child ended early: its reply says why
        return bool(self._reply())

    def _reply(self) -> Any:
        """The child's final word: ``done`` (its value returned), its error (raised), or its death (raised)."""
        try:
            msg: Any = _recv(self._r)
        except EOFError:
            msg = None
        if msg is None:
            raise child_gone(
                self._proc, f"the writing process ended unexpectedly ({{how}}) after {self.chunks} chunks", self.name
            )
        if msg[0] == _ERROR:
            if isinstance(msg[1], OSError) and self.name is not None and not msg[1].filename:
                msg[1].filename = self.name  # the spool beside the output: named by the output
            raise msg[1]
        return msg[1]

    def close(self) -> None:
        """End the child if it still runs (nothing it wrote is kept: the spool is the parent's to drop)."""
        for fd in (self._w, self._r):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._w = self._r = -1
        p, self._proc = self._proc, None
        if p is None:
            return
        if p.exitcode is None:
            p.join(0.05)
        if p.exitcode is None:
            with contextlib.suppress(OSError):
                p.kill()  # it ignores SIGTERM (the parent decides); what it was writing is dropped
        p.join()


def _pieces(e: Ended) -> Iterator[Ended]:
    """``e`` cut as ``stream._Body._slices`` cuts a chunk (``SLICE_ROWS`` flows from its start)."""
    from ..filters import take_labels
    from .stream import SLICE_ROWS

    n = len(e)
    if n <= SLICE_ROWS:
        yield e
        return
    for lo in range(0, n, SLICE_ROWS):
        idx = np.arange(lo, min(n, lo + SLICE_ROWS))
        yield Ended(e.flows.take(idx), take_labels(e.labels, idx), e.part[idx], e.reason[idx], e.stats)


def _child(r: int, w: int, parent_w: int, parent_r: int, fmt: str, sink: BinaryIO, base: Analysis) -> None:
    """The child: write each chunk received, then close the body and reply ``done`` (or the error)."""
    from .stream import _Body, _chunk

    child_setup("portclass-write", term=signal.SIG_IGN)
    os.close(parent_w)  # the parent's ends: its exit is then the end of this pipe
    os.close(parent_r)
    inbox: queue.Queue[Any] = queue.Queue(AHEAD)
    threading.Thread(target=_receiver, args=(r, inbox), daemon=True).start()
    try:
        body = _Body(fmt, sink)
        while True:
            msg: Any = inbox.get()
            if msg is None:  # the parent is gone
                os._exit(0)
            if msg[0] == _END:
                break
            body.add(_chunk(msg[1], base))
            del msg
        opened = body.close(msg[1])
        sink.flush()
        reply: tuple[Any, ...] = (_DONE, opened)
    except BaseException as exc:  # noqa: BLE001 - every error goes to the parent, to be raised there
        if not isinstance(exc, PortclassError | OSError):
            exc.add_note("in the writing process:\n" + "".join(traceback.format_exception(exc)))
        try:
            pickle.dumps(exc)
        except Exception:  # noqa: BLE001 - an exception that does not pickle: its text
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        reply = (_ERROR, exc)
    with contextlib.suppress(OSError):
        _send(w, reply)


def _receiver(r: int, inbox: queue.Queue[Any]) -> None:
    """The child's reader: messages from the pipe into ``inbox`` (``AHEAD`` at most waiting), so that the
    parent can hand over the next chunk while the child still writes one; None once the parent is gone."""
    while True:
        try:
            msg = _recv(r)
        except (EOFError, OSError):  # cut in the middle of a message: the parent died
            msg = None
        inbox.put(msg)
        if msg is None or msg[0] != _CHUNK:
            return
