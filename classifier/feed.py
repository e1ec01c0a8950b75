"""The feed: packet batches with their evidence tags, made in a second process while this one runs the engine.

A file run has two halves of about the same cost: reading, decoding and the payload-evidence scan
(``capture.reader``, ``evidence.match.scan``), and the engine's flow stage, expiry and labels
(``classifier.engine``).  ``Feed`` runs the first half in a child process (forked: it starts at once,
every module already loaded) and ships each batch's columns and tags back through a pipe, pickled
(protocol 5) with their arrays out of band, read straight into fresh arrays.  The chunk's raw bytes
stay in the child: after the scan nothing reads them (the flow stage reads the columns, the verdicts
and said columns the tags).  The engine gets the same batches and tags in the same order, so the
results are those of one process, byte for byte.  Given the engine's ``flow_stage()``, the child also
builds the flow tables of pools of packets while the parent lags behind (``SHARE``), the very tables the
engine would build from those packets, so the flow stage's work goes to whichever process has time.

Signals: the child ignores SIGINT (the parent decides when reading stops, ``classifier.interrupt``)
and dies quietly of SIGTERM; the parent ends it when it leaves the ``Feed`` (SIGTERM, then SIGKILL)
and a child whose parent is gone dies at its next write (a broken pipe).  An exception in the child
is raised again in the parent; a child that dies (killed, out of memory) is a one-line error.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import pickle
import queue
import select
import signal
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from . import interrupt
from .capture.columns import PacketBatch
from .errors import EXIT_INTERNAL, PortclassError
from .flows import FlowStage, PacketTags, Pooled, group_lut, pool_flows

Item = tuple[PacketBatch, PacketTags | Pooled | None]
"""A batch and its evidence tags (None when payloads are not inspected); or, where the child built a
pool's flow table (``share``), an empty batch with the pool's counters and the ``Pooled`` table."""

MIN_BYTES = 32 << 20
"""Inputs smaller than this are read in one process by default (two 16 MiB chunks: below, nothing overlaps)."""

COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(PacketBatch) if f.name not in ("data", "payload_off", "stats"))
"""The batch columns shipped to the engine: all but the raw bytes and the offsets into them."""

AHEAD = 4
"""Batches the child may have read ahead of the parent (each about 4 MB of columns for a 16 MiB chunk)."""

_HEAD = struct.Struct("<QQ")  # bytes of the pickle, number of out-of-band buffers
_ALIGN = 64
_PIPE_BYTES = 1 << 20
_END, _BATCH, _POOL, _ERROR = "end", "batch", "pool", "error"

SHARE = "auto"
"""Which pools' flow tables the child builds (with a ``FlowStage``): "auto" those that close while the
parent lags (``AHEAD - 1`` messages or more wait for it), "all", or "none" (tests force either)."""


def cpus() -> int:
    """CPUs this process may run on."""
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def input_bytes(paths: Sequence[str | os.PathLike[str]]) -> int:
    """Bytes of the inputs on disk (directories walked); a pipe or device counts as large."""
    total = 0
    for p in paths:
        path = Path(p)
        try:
            if path.is_dir():
                total += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            elif path.is_file():
                total += path.stat().st_size
            elif path.exists():
                return 1 << 62  # a FIFO or a device: no size known, likely a long stream
        except OSError:
            continue  # reading it reports the problem
    return total


def two_processes(paths: Sequence[str | os.PathLike[str]], jobs: int | None) -> bool:
    """Whether a file run reads in a child process: ``jobs`` >= 2 asks for it, 1 forbids it; by
    default (None) where the machine has two CPUs or more and the input is ``MIN_BYTES`` or more."""
    if not hasattr(os, "fork"):
        return False
    if jobs is not None:
        return jobs >= 2
    return cpus() >= 2 and input_bytes(paths) >= MIN_BYTES


def scanned(batches: Iterable[PacketBatch], evidence: bool = True) -> Iterator[Item]:
    """Each batch with its evidence tags (``evidence.match.scan``; None without ``evidence``)."""
    scan = None
    if evidence:
        from .evidence.match import scan
    for batch in batches:
        yield batch, scan(batch) if scan is not None and len(batch) else None


def file_batches(
    paths: Sequence[str | os.PathLike[str]], chunk_bytes: int, errors: str = "raise"
) -> Callable[[], Iterator[PacketBatch]]:
    """A source for ``Feed`` / ``batches``: the batches of capture files (``capture.reader.read_batches``)."""
    from .capture.reader import read_batches

    names = [str(p) for p in paths]
    return lambda: read_batches(names, chunk_bytes, errors=errors)


@contextlib.contextmanager
def batches(
    source: Callable[[], Iterable[PacketBatch]],
    *,
    evidence: bool = True,
    child: bool = False,
    name: str = "",
    flows: FlowStage | None = None,
) -> Iterator[Iterator[Item]]:
    """The batches of ``source()`` with their tags; made in a child process (``Feed``, ``name``, ``flows``)
    when ``child``.

    >>> with batches(file_batches(["a.pcap"], 16 << 20), child=True) as items:  # doctest: +SKIP
    ...     for batch, tags in items:
    ...         ended = list(engine.add(batch, tags))
    """
    if not child:
        yield scanned(source(), evidence)
        return
    with Feed(source, evidence=evidence, name=name, flows=flows) as feed:
        yield iter(feed)


class Feed:
    """``source()``'s batches and their tags, made by a forked child process (see the module docstring).

    ``source`` is called in the child (a closure is fine: the child is forked); ``name`` is named in
    the error when the child dies (the file being read is named instead once one is known).
    Iterate once (or ``next``/``poll``); leaving the ``with`` block (or ``close``) ends the child
    wherever it is.  A source that never ends by itself (a live capture, opened in the child: start
    the Feed before any thread of this process) watches ``feed.stop`` and ends once it is set
    (``request_stop``); ``poll(timeout)`` lets the caller's loop do other work in between.
    With ``flows`` (the engine's ``flow_stage()``) the child also builds the flow tables of some pools
    of packets (``SHARE``), so that the two processes share the flow stage's work: the engine gets
    exactly the tables it would have built itself.
    """

    def __init__(
        self,
        source: Callable[[], Iterable[PacketBatch]],
        *,
        evidence: bool = True,
        name: str = "",
        flows: FlowStage | None = None,
    ) -> None:
        self.source = source
        self.evidence = evidence
        self.flows = flows
        self.name = name
        self.current = name  # the last file a batch listed
        self.batches = 0
        self.finished = False  # the source's end (or its error) has arrived
        self.stop: Any = None
        """Set by ``request_stop``; a source that runs until asked (a live capture) checks it in the child."""
        with contextlib.suppress(OSError, ImportError):  # no POSIX semaphores here: no stop requests
            self.stop = multiprocessing.get_context("fork").Event()
        self._proc: Any = None
        self._fd = -1

    def __enter__(self) -> Feed:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def start(self) -> None:
        """Fork the child (stdout and stderr flushed first, so it never writes their buffers again)."""
        if self.evidence:
            import classifier.evidence.match  # noqa: F401 - loaded once here, not in every child
        r, w = pipe()
        try:
            self._proc = fork_child(_child, (w, r, self.source, self.evidence, self.flows), "portclass-feed")
        except BaseException:
            os.close(r)
            raise
        finally:
            os.close(w)
        self._fd = r

    def __iter__(self) -> Iterator[Item]:
        while (item := self.next()) is not None:
            yield item

    def next(self) -> Item | None:
        """The next batch and its tags, waiting for it; None once the source has ended (``finished``)."""
        if self.finished:
            return None
        try:
            msg = _recv(self._fd)
        except _Cut:
            msg = None
        if msg is None:
            raise self._gone()
        if msg[0] == _END:
            self.finished = True
            return None
        if msg[0] == _ERROR:
            self.finished = True
            raise msg[1]
        cols, stats, tags = msg[1], msg[2], msg[3]
        if stats.files:
            self.current = stats.files[-1]
        self.batches += 1
        if msg[0] == _POOL:
            from .capture.reader import empty_batch

            return empty_batch(stats), tags
        n = cols["ts_ns"].shape[0]
        empty = np.zeros(0, dtype=np.uint8)
        return PacketBatch(**cols, payload_off=np.full(n, -1, dtype=np.int64), data=empty, stats=stats), tags

    def poll(self, timeout: float) -> list[Item]:
        """What arrives within ``timeout`` s, and whatever else is waiting then (a loop that must also
        do other work, as a live capture's); [] on a timeout or once the source has ended (``finished``)."""
        out: list[Item] = []
        wait = max(timeout, 0.0)
        while not self.finished and select.select([self._fd], [], [], wait)[0]:
            item = self.next()
            if item is not None:
                out.append(item)
            wait = 0.0
        return out

    def request_stop(self) -> None:
        """Ask a source that watches ``stop`` to end (it then sends what it still holds, and its end)."""
        if self.stop is not None:
            self.stop.set()

    def close(self) -> None:
        """End the child (if it still runs) and wait for it."""
        if self._fd >= 0:
            os.close(self._fd)  # a child still writing gets a broken pipe
            self._fd = -1
        p = self._proc
        if p is None:
            return
        if p.exitcode is None:
            with contextlib.suppress(OSError):
                p.terminate()
            p.join(2.0)
            if p.exitcode is None:
                with contextlib.suppress(OSError):
                    p.kill()
                p.join()
        self._proc = None

    def _gone(self) -> BaseException:
        """The error for a child that died without saying why (killed); SIGINT/SIGTERM: an interruption."""
        return child_gone(self._proc, f"the reading process ended unexpectedly ({{how}}) after {self.batches} batches",
                          self.current or None)  # fmt: skip


def pipe() -> tuple[int, int]:
    """(read end, write end) of a pipe with a large buffer where the system allows (fewer, larger reads)."""
    r, w = os.pipe()
    with contextlib.suppress(AttributeError, OSError):
        import fcntl

        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    return r, w


def fork_child(target: Callable[..., None], args: tuple[Any, ...], name: str) -> Any:
    """Start ``target(*args)`` in a forked daemon process (``classifier.feed``'s reader, ``report.writer``):
    stdout and stderr flushed first, so the child never writes their buffers again, and SIGINT/SIGTERM
    held back until the child has set its own handling (``child_setup``)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    proc = multiprocessing.get_context("fork").Process(target=target, args=args, daemon=True, name=name)
    with interrupt.deferred():
        proc.start()
    return proc


def child_setup(name: str, term: Any = signal.SIG_DFL) -> None:
    """First steps of a forked helper: its ``name`` as the process's name (``ps``, ``/proc/PID/comm``), a
    session of its own (Linux's autogroup scheduler then gives it a CPU share of its own), the parent's
    objects frozen (a collection would copy every page of them), SIGINT ignored (Ctrl-C reaches the
    parent too; it decides), SIGTERM set to ``term``."""
    with contextlib.suppress(OSError):
        os.setsid()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL(None).prctl(15, name.encode()[:15] + b"\0", 0, 0, 0)  # PR_SET_NAME
    gc.freeze()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, term)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, interrupt.SIGNALS)
    _end_with_parent(signal.SIGKILL if term == signal.SIG_IGN else signal.SIGTERM)
    sys.stdout = sys.stderr = None  # type: ignore[assignment] # never flush the parent's buffered output again


def _end_with_parent(sig: int) -> None:
    """Have the kernel send ``sig`` to this helper when its parent dies (Linux's PR_SET_PDEATHSIG): a
    helper in a session of its own that waits on a source which stays quiet (a live filter that matches
    nothing) would otherwise outlive a parent killed outright; and end now if the parent is already gone."""
    parent = multiprocessing.parent_process()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL(None).prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG
    if parent is not None and os.getppid() != parent.pid:
        os._exit(0)


def child_gone(proc: Any, message: str, path: str | None) -> BaseException:
    """The error for a helper process that died without saying why: ``message`` with ``{how}`` filled in
    (killed by which signal, or its exit status), exit 70; after SIGINT/SIGTERM to the whole process
    group, once this process's handler has run, an interruption instead."""
    proc.join(5.0)
    code = proc.exitcode
    if code is not None and -code in (signal.SIGINT, signal.SIGTERM):
        deadline = time.monotonic() + 0.5
        while interrupt.received is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if interrupt.received is not None:
            return interrupt.Interrupted(interrupt.received)
    how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit status {code}"
    return PortclassError(message.format(how=how), path=path, exit_code=EXIT_INTERNAL)


def _child(
    w: int, r: int, source: Callable[[], Iterable[PacketBatch]], evidence: bool, flows: FlowStage | None
) -> None:
    """The child: read, decode and scan, and send each batch (then ``end``, or the error) to the parent.

    A thread writes to the pipe, ``AHEAD`` messages behind at most, so that reading goes on while the
    parent is busy with a batch that costs it more than the others (a pass of the engine's flow stage).
    """
    child_setup("portclass-feed")
    os.close(r)
    out: queue.Queue[tuple] = queue.Queue(AHEAD)
    sender = threading.Thread(target=_sender, args=(w, out), daemon=True)
    sender.start()
    try:
        items = scanned(source(), evidence)
        for msg in _messages(items) if flows is None else _pooling(items, flows, out):
            out.put(msg)
            del msg
        out.put((_END,))
    except BaseException as exc:  # noqa: BLE001 - every error goes to the parent, to be raised there
        if not isinstance(exc, PortclassError):
            exc.add_note("in the reading process:\n" + "".join(traceback.format_exception(exc)))
        try:
            pickle.dumps(exc)
        except Exception:  # noqa: BLE001 - an exception that does not pickle: its text
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        out.put((_ERROR, exc))
    sender.join()


def _messages(items: Iterable[Item]) -> Iterator[tuple]:
    """A batch message per batch: its columns (not the raw bytes), counters and tags."""
    for batch, tags in items:
        yield _BATCH, {name: getattr(batch, name) for name in COLUMNS}, batch.stats, tags


def _pooling(items: Iterable[Item], stage: FlowStage, out: queue.Queue[tuple]) -> Iterator[tuple]:
    """Messages of batches pooled as the engine's ``FlowAggregator`` pools them: when a pool closes,
    either its flow table (``SHARE``; the parent lags) or its batches, one message each."""
    from .capture.columns import CaptureStats

    seen = CaptureStats()  # every batch's counters so far: the files, for the flow key's file groups
    pool: list[Item] = []
    pooled = 0
    for batch, tags in items:
        seen.merge(batch.stats)
        empty = np.zeros(0, dtype=np.uint8)  # the raw chunk is let go: neither the flows nor a message need it
        pool.append((PacketBatch(**{c: getattr(batch, c) for c in COLUMNS}, payload_off=batch.payload_off, data=empty,
                                 stats=batch.stats), tags))  # fmt: skip
        pooled += len(batch)
        if pooled < stage.min_packets:
            continue
        if SHARE == "all" or (SHARE == "auto" and out.qsize() >= AHEAD - 1):
            yield _pooled(pool, seen, stage)
        else:
            yield from _messages(pool)
        pool, pooled = [], 0
        del batch, tags
    yield from _messages(pool)  # the last pool: the engine builds it when it flushes


def _pooled(pool: list[Item], seen: Any, stage: FlowStage) -> tuple:
    """The message of a closed pool: its flow table (``pool_flows``) in place of its batches."""
    from .capture.columns import CaptureStats

    full = [(b, t) for b, t in pool if len(b)]
    table = pool_flows([b for b, _ in full], [t for _, t in full], stage.idle_timeout_ns,
                       group_lut(seen.files) if stage.separate_files else None)  # fmt: skip
    stats = CaptureStats()
    for b, _ in pool:
        stats.merge(b.stats)
    packets = sum(len(b) for b, _ in full)
    return _POOL, None, stats, Pooled(table, packets, int(full[0][0].ts_ns[0]), int(full[-1][0].ts_ns[-1]))


def _sender(w: int, out: queue.Queue[tuple]) -> None:
    """The child's writer: messages from ``out`` to the pipe until the last one (``end`` or an error)."""
    while True:
        msg = out.get()
        try:
            _send(w, msg)
        except OSError:  # the parent is gone or stopped listening (a broken pipe)
            os._exit(0)
        if msg[0] not in (_BATCH, _POOL):
            os.close(w)
            return


def _send(fd: int, obj: object) -> None:
    """Write ``obj`` as one message: header, buffer sizes, pickle, then each array's bytes as they are."""
    bufs: list[pickle.PickleBuffer] = []
    head = pickle.dumps(obj, protocol=5, buffer_callback=bufs.append)
    views = [b.raw() for b in bufs]
    sizes = np.array([v.nbytes for v in views], dtype=np.uint64)
    parts = [memoryview(_HEAD.pack(len(head), len(views))), memoryview(sizes.tobytes()), memoryview(head), *views]
    parts = [p for p in parts if p.nbytes]
    while parts:
        n = os.writev(fd, parts[:1024])
        while parts and n >= parts[0].nbytes:
            n -= parts[0].nbytes
            parts.pop(0)
        if n:
            parts[0] = parts[0][n:]


def _recv(fd: int) -> object | None:
    """Read one message of ``_send`` (its arrays in one fresh, aligned allocation); None at end of file."""
    head = _read(fd, _HEAD.size, eof_ok=True)
    if head is None:
        return None
    nhead, nbuf = _HEAD.unpack(head)
    sizes = np.frombuffer(_read(fd, 8 * nbuf), dtype=np.uint64).astype(np.int64) if nbuf else np.zeros(0, np.int64)
    pick = _read(fd, nhead)
    padded = (sizes + _ALIGN - 1) // _ALIGN * _ALIGN
    offs = np.concatenate([[0], np.cumsum(padded)[:-1]]) if nbuf else sizes
    arena = np.empty(int(padded.sum()) + _ALIGN, dtype=np.uint8)
    skew = (-arena.ctypes.data) % _ALIGN
    views = [memoryview(arena[skew + o : skew + o + s]) for o, s in zip(offs.tolist(), sizes.tolist(), strict=True)]
    _read_into(fd, [v for v in views if v.nbytes])
    return pickle.loads(pick, buffers=views)


def _read(fd: int, n: int, eof_ok: bool = False) -> bytes | None:
    """Exactly ``n`` bytes (None at a clean end of file when ``eof_ok``); EOFError where a message is cut."""
    buf = bytearray(n)
    got = _read_into(fd, [memoryview(buf)], eof_ok=eof_ok)
    return None if got is None else bytes(buf)


def _read_into(fd: int, views: list[memoryview], eof_ok: bool = False) -> int | None:
    """Fill ``views`` in order from ``fd``; the bytes read, None at end of file before the first byte (``eof_ok``)."""
    total = 0
    while views:
        n = os.readv(fd, views[:1024])
        if n == 0:
            if eof_ok and total == 0:
                return None
            raise _Cut()
        total += n
        while views and n >= views[0].nbytes:
            n -= views[0].nbytes
            views.pop(0)
        if n:
            views[0] = views[0][n:]
    return total


class _Cut(EOFError):
    """The child died in the middle of a message."""
