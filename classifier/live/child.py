"""A capture backend run in a child process: reading, decoding and the evidence scan beside the engine.

A busy sensor spends about half its time reading dumpcap's pipe, decoding and scanning payloads,
and the other half in the engine's flow stage and passes.  ``ChildBackend`` runs the first half
in a forked child through ``classifier.feed.Feed`` (as a file run does): the child starts the
wrapped backend (dumpcap), polls it and ships each batch's columns and evidence tags; this process
only builds flows.  While the engine is busy with a pass, the child goes on reading, so dumpcap's
pipe and the kernel's buffer drain on the other CPU.

The child's own state (started, the capture program's drop counters, its error) comes back on a
small pipe of its own: once started and once at the end, after the last batch.  With
``--write-pcap`` the child writes the file (inherited, flushed before its end) and this process
closes it whole, or drops it, as without a child.  A stop (``stop``)
asks the child to linger for the wrapped backend's ``linger_s``, stop it and send what it still
holds; SIGTERM to the child does the same (a service manager signals the whole group).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

from ..capture.columns import PacketBatch
from ..feed import Feed, cpus
from .backends import Backend, LiveBatch
from .checks import LiveError
from .stream import InterfaceCounters

POLL_S = 0.1
"""The child's longest wait on the wrapped backend before it looks at the stop request again."""


def use_child(backend: Backend) -> bool:
    """Whether ``backend`` runs in a child: dumpcap, two CPUs or more, and ``fork``."""
    return backend.name == "dumpcap" and cpus() >= 2 and hasattr(os, "fork")


class ChildBackend(Backend):
    """``inner`` (not started) run in a forked child; batches arrive here with their evidence tags.

    >>> b = ChildBackend(DumpcapBackend(["lo"], "udp port 53"))  # doctest: +SKIP
    >>> b.start(); items = b.poll(0.5); b.stop(); rest = b.drain()  # doctest: +SKIP
    """

    linger_s = 0.0  # the child lingers (``inner.linger_s``) once asked to stop

    def __init__(self, inner: Backend, evidence: bool = True) -> None:
        super().__init__(inner.interfaces, inner.bpf, count=inner.count, file_name=inner.file_name)
        self.inner = inner
        self.name = inner.name
        self.evidence = evidence
        self.feed = Feed(self._source, evidence=evidence, name=inner.file_name)
        self._state_r: Any = None
        self._state_w: Any = None
        self._packets = 0
        self._counters: dict[int, InterfaceCounters] = {}
        self._stopping = False
        self._pending: list[tuple[PacketBatch, Any]] = []  # batches that came while waiting for the start

    # ---- this process ----------------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> None:
        """Fork the child, which starts the wrapped backend; return once it captures (or raise its error)."""
        self._state_r, self._state_w = multiprocessing.get_context("fork").Pipe(duplex=False)
        try:
            self.feed.start()
        finally:
            self._state_w.close()  # the child's copy stays: its end of file is the child's end
        deadline = time.monotonic() + timeout + 5.0
        while not self._state_r.poll(0.0):
            if time.monotonic() > deadline:
                self.close()
                raise LiveError(f"{self.name} did not start capturing within {timeout:g} s")
            self._pending += self.feed.poll(0.05)  # raises the child's error (dumpcap refused, no interface...)
            if self.feed.finished and not self._state_r.poll(0.0):
                raise LiveError(f"{self.name} ended before capturing")
        self._take_state()

    def _take_state(self) -> None:
        """Read the child's state messages waiting on its pipe."""
        with contextlib.suppress(EOFError, OSError):
            while self._state_r.poll(0.0):
                msg = self._state_r.recv()
                self._counters = msg.get("counters", self._counters)
                if msg.get("error"):
                    self.error = msg["error"]

    def _items(self, items: list[tuple[PacketBatch, Any]]) -> list[LiveBatch]:
        out = []
        for batch, tags in items:
            self._packets += batch.stats.packets
            out.append(LiveBatch(batch, tags=tags))
        return out

    def poll(self, timeout: float) -> list[LiveBatch]:
        """The batches the child sent within ``timeout`` s (and whatever else is waiting)."""
        got = self._items(self._pending) + self._items(self.feed.poll(timeout))
        self._pending = []
        if self.feed.finished:
            self._take_state()
        return got

    def stop(self) -> None:
        """Ask the child to stop the capture (it lingers first, then sends what it still holds)."""
        self._stopping = True
        self.feed.request_stop()

    def drain(self, timeout: float = 10.0) -> list[LiveBatch]:
        """After ``stop``: every batch until the child's end, then its final counters."""
        out: list[LiveBatch] = []
        deadline = time.monotonic() + timeout + self.inner.linger_s
        while not self.feed.finished:
            if time.monotonic() > deadline:
                self.error = self.error or f"{self.name} did not stop within {timeout:g} s; killed"
                break
            out += self._items(self.feed.poll(0.1))
        if self._state_r is not None and self._state_r.poll(2.0):
            self._take_state()
        return out

    @property
    def finished(self) -> bool:
        """The capture ended by itself (``--count`` reached, or it failed)."""
        return self.feed.finished and not self._stopping

    @property
    def packets(self) -> int:
        """Packets received so far (with ports or not)."""
        return self._packets

    def counters(self) -> dict[int, InterfaceCounters]:
        """The capture program's counters, as the child last sent them (its drop counts at the end)."""
        if self._state_r is not None:
            self._take_state()
        return self._counters

    def close(self) -> None:
        """End the child (which stops the capture program) and close the state pipe."""
        self.feed.close()
        if self._state_r is not None:
            self._state_r.close()
            self._state_r = None

    # ---- the child -------------------------------------------------------------------------
    def _send_state(self, **msg: Any) -> None:
        with contextlib.suppress(OSError):
            self._state_w.send(msg)

    def _source(self) -> Iterator[PacketBatch]:
        """In the child: start the capture, batches until asked to stop, a linger, the rest, the counters."""
        inner, stop = self.inner, self.feed.stop
        self._state_r.close()
        term: list[int] = []
        signal.signal(signal.SIGTERM, lambda signum, _f: term.append(signum))  # stop in order, as asked
        try:
            inner.start()
            self._send_state(started=True)
            while not term and not (stop is not None and stop.is_set()) and not inner.finished:
                for lb in inner.poll(POLL_S):
                    yield lb.batch
            if not inner.finished:
                linger_end = time.monotonic() + inner.linger_s
                while time.monotonic() < linger_end and not inner.finished:
                    for lb in inner.poll(max(linger_end - time.monotonic(), 0.0)):
                        yield lb.batch
            inner.stop()
            for lb in inner.drain():
                yield lb.batch
            self._send_state(counters=inner.counters(), error=inner.error)
        finally:
            inner.close()
            if inner.tee is not None:  # ``--write-pcap``: the child writes it (this process renames it at the end)
                inner.tee.flush()


__all__ = ["ChildBackend", "use_child"]
