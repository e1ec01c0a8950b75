"""Capture backends: where live packets come from, each handing ``PacketBatch`` columns to the engine.

- ``dumpcap``: Wireshark's capture engine writes pcapng to a pipe (``dumpcap -n -w -``); the pipe is
  read without blocking and the complete blocks of up to ``batch_bytes`` (16 MiB) or ``batch_interval``
  (0.5 s), whichever comes first, become one batch (``PcapngStream``): few large batches, since each
  pays the evidence scan's and the flow stage's fixed costs.
  Fast (C all the way to the pipe), exact kernel timestamps, drop counts when it stops.
- ``scapy``: ``AsyncSniffer`` on Linux packet sockets with the BPF filter attached in the kernel; each
  frame is kept as bytes + timestamp (no scapy dissection) and batched (``FrameBatcher``).  Pure
  Python, so slower; kernel drop counts are read from the sockets while it runs.
- ``pyshark``: tshark's ``LiveCapture`` (dumpcap into tshark, JSON with raw bytes); besides the bytes
  it gives Wireshark's name for every packet's highest protocol, kept per flow as a second opinion.

Every backend has the same life cycle: ``start()`` returns once the capture is running (or raises
``LiveError`` with the fix), ``poll(timeout)`` returns the batches ready, ``stop()`` asks the capture
to end, ``drain()`` returns everything captured before that, ``counters()`` the drop counts.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import fcntl
import logging
import os
import re
import select
import signal
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any, BinaryIO

from ..capture.columns import PacketBatch
from ..evidence.tshark import epoch_ns
from . import BACKENDS
from .checks import (
    LiveError,
    check_interfaces,
    exec_refused,
    find_program,
    is_loopback,
    kernel_filter,
    linktype_of,
    permission_error,
)
from .stream import FrameBatcher, InterfaceCounters, PcapngStream, PcapngWriter

F_SETPIPE_SZ = 1031
TRANSPORT_NAMES = frozenset({"tcp", "udp", "sctp", "dccp"})


@dataclass
class LiveBatch:
    """One batch of packets and, from pyshark, tshark's protocol name per packet (``pkt_index`` order);
    from a backend run in a child process (``child``), the batch's evidence tags (made there)."""

    batch: PacketBatch
    protocols: list[str | None] | None = None
    tags: Any = None  # ``flows.PacketTags`` of ``evidence.match.scan``, or None: the engine scans


class Backend:
    """The interface every capture backend implements (see the module docstring)."""

    name = "?"
    linger_s = 0.0
    """How long to keep reading after a stop is asked, so packets the kernel already holds are not lost."""

    def __init__(
        self,
        interfaces: list[str],
        bpf: str | None = None,
        *,
        count: int | None = None,
        file_name: str = "live",
        tee: BinaryIO | None = None,
        batch_interval: float = 0.5,
        batch_bytes: int = 16 << 20,
        buffer_mib: int = 64,
    ) -> None:
        self.interfaces = list(interfaces)
        self.bpf = bpf or None
        self.count = count
        self.file_name = file_name
        self.tee = tee
        self.batch_interval = batch_interval
        self.batch_bytes = batch_bytes
        self.buffer_mib = buffer_mib
        self.error: str | None = None  # why the capture ended on its own, if it failed

    def start(self, timeout: float = 20.0) -> None:  # pragma: no cover - interface
        """Start capturing; return once packets are being captured."""
        raise NotImplementedError

    def poll(self, timeout: float) -> list[LiveBatch]:  # pragma: no cover - interface
        """Wait up to ``timeout`` seconds for packets; the batches that are ready."""
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover - interface
        """Ask the capture to end (it keeps what it already captured)."""
        raise NotImplementedError

    def drain(self, timeout: float = 10.0) -> list[LiveBatch]:  # pragma: no cover - interface
        """After ``stop``: every remaining batch, once the capture has ended."""
        raise NotImplementedError

    @property
    def finished(self) -> bool:  # pragma: no cover - interface
        """True when the capture ended by itself (packet count reached, or it failed)."""
        raise NotImplementedError

    @property
    def packets(self) -> int:  # pragma: no cover - interface
        """Packets read so far."""
        raise NotImplementedError

    def counters(self) -> dict[int, InterfaceCounters]:
        """Per interface index: packets received and dropped, as far as the capture reports them."""
        return {}

    @property
    def drops_live(self) -> bool:
        """True when ``counters`` is current while capturing (else known only once stopped)."""
        return False

    def close(self) -> None:
        """Release everything (kill what is still running); safe to call twice."""


# ---- dumpcap --------------------------------------------------------------------------------

_DROPS_RE = re.compile(
    r"Packets received/dropped on interface '(?P<desc>[^']*)': (?P<recv>\d+)/(?P<drop>\d+)"
    r"(?: \(pcap:(?P<pcap>\d+)/dumpcap:(?P<dumpcap>\d+)/flushed:(?P<flushed>\d+)(?:/ps_ifdrop:(?P<ifdrop>\d+))?\))?"
)


def parse_dumpcap_drops(lines: list[str], interfaces: list[str]) -> dict[int, InterfaceCounters]:
    """Drop counts from dumpcap's closing lines, matched to the ``-i`` order of ``interfaces``.

    >>> line = "Packets received/dropped on interface 'Loopback: lo': 5/1 (pcap:1/dumpcap:0/flushed:0/ps_ifdrop:0)"
    >>> parse_dumpcap_drops([line], ["lo"])[0].dropped
    1
    """
    out: dict[int, InterfaceCounters] = {}
    for line in lines:
        m = _DROPS_RE.search(line)
        if not m:
            continue
        name = m["desc"].rsplit(": ", 1)[-1]
        idx = interfaces.index(name) if name in interfaces else len(out)
        dropped = int(m["drop"])
        if m["pcap"] is not None:
            dropped = int(m["pcap"]) + int(m["dumpcap"]) + int(m["flushed"])
        out[idx] = InterfaceCounters(
            name=interfaces[idx] if idx < len(interfaces) else name,
            received=int(m["recv"]),
            dropped=dropped,
            if_dropped=int(m["ifdrop"]) if m["ifdrop"] is not None else None,
        )
    return out


def dumpcap_error(lines: list[str], interfaces: list[str], program: str = "dumpcap") -> LiveError:
    """The one-line ``LiveError`` for dumpcap's complaint on stderr (permission, device, filter...)."""
    text = "\n".join(lines)
    if "permission" in text.lower() or "Operation not permitted" in text:
        return permission_error(f"on {', '.join(interfaces)} with {program}")
    if "no device named" in text or "No such device" in text:
        with contextlib.suppress(LiveError):
            check_interfaces(interfaces)
        m = re.search(r'no device named "([^"]*)"', text)
        name = m.group(1) if m else ", ".join(interfaces)
        from .checks import list_interfaces

        return LiveError(f"no interface named {name!r}; interfaces here: {', '.join(list_interfaces())}")
    if "Invalid capture filter" in text:
        m = re.search(r"\((.*)\)\.", text)
        return LiveError(f"invalid capture filter: {m.group(1) if m else text.strip()}")
    useful = [ln.strip() for ln in lines if ln.strip() and not ln.startswith(("Capturing on", "File:"))]
    return LiveError(f"{program} failed: {' '.join(useful[:3]) or 'exited without a message'}")


def dumpcap_interface_args(interfaces: list[str], bpf: str | None, buffer_mib: int | None = None) -> list[str]:
    """``-i IF [-f FILTER] [-B MIB]`` for each interface.

    (No ``inbound`` on loopback here, unlike the scapy backend: libpcap filters again in user
    space, where that test does not hold, and would drop every packet.)

    >>> dumpcap_interface_args(["lo"], "udp")
    ['-i', 'lo', '-f', 'udp']
    """
    args: list[str] = []
    for iface in interfaces:
        args += ["-i", iface]
        if bpf:
            args += ["-f", bpf]
        if buffer_mib:
            args += ["-B", str(buffer_mib)]
    return args


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """preexec_fn: the child gets SIGTERM when portclass dies (no orphaned capture)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class _StderrLines(threading.Thread):
    """Collects a child's stderr lines (so it never blocks on a full pipe)."""

    def __init__(self, stream: Any, sink: list[str]) -> None:
        super().__init__(daemon=True, name="portclass-stderr")
        self.stream, self.sink = stream, sink

    def run(self) -> None:
        for raw in iter(self.stream.readline, b""):
            self.sink.append(raw.decode(errors="replace").rstrip())


class DumpcapBackend(Backend):
    """``dumpcap -n -q -w - -i IF -f BPF``: pcapng on a pipe, parsed as it arrives.

    >>> b = DumpcapBackend(["lo"], "udp port 53")  # doctest: +SKIP
    >>> b.start(); batches = b.poll(0.5); b.stop(); rest = b.drain()  # doctest: +SKIP
    """

    name = "dumpcap"
    linger_s = 0.3  # > dumpcap's 250 ms TPACKET_V3 block timeout: the kernel's last block gets read

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr_lines: list[str] = []
        self.stream = PcapngStream(self.batch_bytes, file_name=self.file_name, tee=self.tee)
        self.stream.max_packets = self.count
        self.eof = False
        self._last_take = time.monotonic()
        self.command: list[str] = []

    def command_line(self, exe: str = "dumpcap") -> list[str]:
        """The dumpcap command (filter, kernel buffer and count apply to every interface)."""
        cmd = [exe, "-n", "-q", "-w", "-"] + dumpcap_interface_args(self.interfaces, self.bpf, self.buffer_mib)
        if self.count:
            cmd += ["-c", str(self.count)]
        if len(self.interfaces) > 1:
            cmd.append("-t")  # one thread per interface
        return cmd

    def start(self, timeout: float = 20.0) -> None:
        """Run dumpcap and wait for its pcapng header (written once the interfaces are open)."""
        exe = find_program("dumpcap")
        self.command = self.command_line(exe)
        try:
            self.proc = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
                start_new_session=True,  # Ctrl-C reaches portclass only; it stops dumpcap in order
                preexec_fn=_die_with_parent,
            )
        except PermissionError as exc:
            raise exec_refused(exc, self.interfaces, "dumpcap") from None
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.fd = self.proc.stdout.fileno()
        for size in (64 << 20, 16 << 20, 1 << 20):
            try:
                fcntl.fcntl(self.fd, F_SETPIPE_SZ, size)
                break
            except OSError:
                continue
        os.set_blocking(self.fd, False)
        self._err_thread = _StderrLines(self.proc.stderr, self.stderr_lines)
        self._err_thread.start()
        deadline = time.monotonic() + timeout
        while self.stream.pending < 12 and not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise LiveError(f"dumpcap did not start capturing within {timeout:g} s")
            select.select([self.fd], [], [], min(left, 0.1))
            self._read()
        if self.stream.pending < 12:
            self.proc.wait()
            self._err_thread.join(2)
            raise dumpcap_error(self.stderr_lines, self.interfaces)

    def _read(self) -> None:
        """Read what the pipe holds, until a batch's worth (``batch_bytes``) is buffered."""
        if self.eof:
            return
        while self.stream.pending < self.batch_bytes:
            n = self.stream.readinto(self.fd)
            if n < 0:
                return
            if n == 0:
                self.eof = True
                return

    def poll(self, timeout: float) -> list[LiveBatch]:
        """Read the pipe for up to ``timeout`` s; a batch every ``batch_interval`` s or ``batch_bytes``."""
        if not self.eof:
            wait = timeout
            if self.stream.pending:
                wait = min(wait, max(self._last_take + self.batch_interval - time.monotonic(), 0.0))
            r, _, _ = select.select([self.fd], [], [], max(wait, 0.0))
            if r:
                self._read()
        now = time.monotonic()
        due = now - self._last_take >= self.batch_interval
        if self.stream.pending and (self.eof or due or self.stream.pending >= self.batch_bytes):
            self._last_take = now
            b = self.stream.take()
            if b is not None:
                return [LiveBatch(b)]
        return []

    def stop(self) -> None:
        """SIGINT to dumpcap: it stops, writes its statistics blocks and closes the pipe."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)

    def drain(self, timeout: float = 10.0) -> list[LiveBatch]:
        """Read the pipe to its end (dumpcap gone), then one last batch."""
        out: list[LiveBatch] = []
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                self.error = f"dumpcap did not stop within {timeout:g} s; killed"
                break
            select.select([self.fd], [], [], min(left, 0.1))
            self._read()
            if self.stream.pending >= self.batch_bytes:
                b = self.stream.take()
                if b is not None:
                    out.append(LiveBatch(b))
        b = self.stream.take()
        if b is not None:
            out.append(LiveBatch(b))
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=max(deadline - time.monotonic(), 1.0))
            self._err_thread.join(2)
            rc = self.proc.returncode
            if rc not in (0, None, -signal.SIGINT) and self.error is None and not self._stopped_ok():
                self.error = str(dumpcap_error(self.stderr_lines, self.interfaces))
        return out

    def _stopped_ok(self) -> bool:
        return any(_DROPS_RE.search(ln) for ln in self.stderr_lines)

    @property
    def finished(self) -> bool:
        """dumpcap closed the pipe (``--count`` reached, or it failed)."""
        if self.eof and self.error is None and self.proc is not None:
            rc = self.proc.poll()
            if rc not in (None, 0) and not self._stopped_ok():
                self._err_thread.join(1)
                self.error = str(dumpcap_error(self.stderr_lines, self.interfaces))
        return self.eof

    @property
    def packets(self) -> int:
        """Packets parsed so far."""
        return self.stream.state.packets

    def counters(self) -> dict[int, InterfaceCounters]:
        """dumpcap's closing 'Packets received/dropped' lines, else its statistics blocks."""
        out = parse_dumpcap_drops(self.stderr_lines, self.interfaces)
        for i, opts in self.stream.state.isb.items():
            if i not in out:
                c = InterfaceCounters(self.interfaces[i] if i < len(self.interfaces) else str(i))
                c.merge_isb(opts)
                out[i] = c
        return out

    def close(self) -> None:
        """Kill dumpcap if it still runs."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        if self.proc is not None and self.proc.stdout is not None:
            with contextlib.suppress(OSError):
                self.proc.stdout.close()


# ---- frames handed over one by one (scapy, pyshark) ------------------------------------------


class _FrameBackend(Backend):
    """Common part of the backends whose packets arrive one by one from another thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.linktypes = [linktype_of(i) for i in self.interfaces]
        self.batcher = FrameBatcher(self.linktypes, self.file_name)
        self.batcher.max_packets = self.count
        self.queue: collections.deque[tuple[bytes, int, int, int, str | None]] = collections.deque()
        self.wakeup = threading.Event()
        self._last_take = time.monotonic()
        self.writer = (
            PcapngWriter(self.tee, list(zip(self.interfaces, self.linktypes, strict=True))) if self.tee else None
        )
        self.ended = threading.Event()  # the capture thread has finished

    def drain(self, timeout: float = 10.0) -> list[LiveBatch]:
        """Everything still queued, as batches."""
        out: list[LiveBatch] = []
        while self.queue and not self.count_reached:
            out += self._take()
        return out

    def _take(self) -> list[LiveBatch]:
        q, fb = self.queue, self.batcher
        room = None if self.count is None else self.count - fb.state.packets - len(fb)
        for _ in range(len(q)):  # what is queued now; later frames wait for the next batch
            if room is not None and room <= 0:
                break
            data, ts, iface, wire, tag = q.popleft()
            fb.add(data, ts, iface, wire, tag)
            if self.writer is not None:
                self.writer.write(data, ts, iface, wire)
            if room is not None:
                room -= 1
        if self.count is not None and fb.state.packets + len(fb) >= self.count:
            q.clear()
        got = fb.take()
        self._last_take = time.monotonic()
        if got is None:
            return []
        batch, tags = got
        return [LiveBatch(batch, tags if any(t is not None for t in tags) else None)]

    def poll(self, timeout: float) -> list[LiveBatch]:
        """Wait for frames; a batch every ``batch_interval`` s (or sooner when many are queued)."""
        wait = min(timeout, max(self._last_take + self.batch_interval - time.monotonic(), 0.0))
        if wait > 0 and len(self.queue) < 50_000:
            self.wakeup.wait(wait)
        self.wakeup.clear()
        if self.queue and (time.monotonic() - self._last_take >= self.batch_interval or len(self.queue) >= 50_000):
            return self._take()
        if not self.queue and time.monotonic() - self._last_take >= self.batch_interval:
            self._last_take = time.monotonic()
        return []

    def _push(self, data: bytes, ts_ns: int, iface: int, wire: int, tag: str | None = None) -> None:
        self.queue.append((data, ts_ns, iface, wire, tag))
        if len(self.queue) >= 50_000:
            self.wakeup.set()

    @property
    def packets(self) -> int:
        """Packets taken into batches so far."""
        return self.batcher.state.packets

    @property
    def count_reached(self) -> bool:
        return self.count is not None and self.batcher.state.packets >= self.count


# ---- scapy ----------------------------------------------------------------------------------

SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_OUTGOING = 4
SO_RCVBUFFORCE = 33


class _Frame:
    """What the scapy socket returns instead of a dissected Packet: bytes, time, interface index."""

    __slots__ = ("data", "time", "iface", "sniffed_on")

    def __init__(self, data: bytes, ts: float, iface: int) -> None:
        self.data, self.time, self.iface, self.sniffed_on = data, ts, iface, None


def _frame_socket_class() -> type:
    """A scapy ``L2ListenSocket`` that skips dissection (and loopback's outgoing copies, as libpcap does)."""
    from scapy.arch.linux import L2ListenSocket, get_last_packet_timestamp
    from scapy.data import MTU

    class FrameSocket(L2ListenSocket):  # type: ignore[misc, valid-type]
        def __init__(self, iface: str, bpf: str | None, index: int, rcvbuf: int) -> None:
            super().__init__(iface=iface, filter=kernel_filter(iface, bpf), promisc=False)
            # the socket took every packet (in a tiny buffer) until scapy attached the filter: reading the
            # kernel's counters resets them, so drops and packets count only what passed the filter
            self.statistics()
            self.index = index
            self.loopback = is_loopback(iface)
            for opt in (SO_RCVBUFFORCE, socket.SO_RCVBUF):
                try:
                    self.ins.setsockopt(socket.SOL_SOCKET, opt, rcvbuf)
                    break
                except OSError:
                    continue

        def recv(self, x: int = MTU, **_: Any) -> _Frame | None:
            data, sa_ll, ts = self._recv_raw(self.ins, x)
            if not data or (self.loopback and sa_ll[2] == PACKET_OUTGOING):
                return None
            if ts is None:
                ts = get_last_packet_timestamp(self.ins)
            return _Frame(data, ts, self.index)

        def statistics(self) -> tuple[int, int]:
            """Kernel counters since the last call (reading resets them): packets, drops."""
            raw = self.ins.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
            return struct.unpack("II", raw)

    return FrameSocket


def import_scapy() -> None:
    """Import scapy's sniffer, or ``LiveError`` saying how to install it."""
    try:
        import scapy.sendrecv  # noqa: F401
        from scapy.arch.linux import L2ListenSocket  # noqa: F401
    except ImportError as exc:
        raise LiveError(
            f"scapy is not installed ({exc}): apt-get install python3-scapy, or pip install scapy "
            "(or use --backend dumpcap)"
        ) from None


class ScapyBackend(_FrameBackend):
    """scapy ``AsyncSniffer`` on packet sockets with the BPF filter attached; frames batched for the decoder.

    >>> b = ScapyBackend(["lo"], "udp port 53")  # doctest: +SKIP
    >>> b.start(); batches = b.poll(0.5); b.stop(); rest = b.drain()  # doctest: +SKIP
    """

    name = "scapy"
    linger_s = 0.05

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sockets: list[Any] = []
        self.sniffer: Any = None
        self._counts = [InterfaceCounters(i, received=0, dropped=0) for i in self.interfaces]
        self._lock = threading.Lock()

    def start(self, timeout: float = 20.0) -> None:
        """Open one socket per interface (filter attached) and start the sniffer thread."""
        import_scapy()
        from scapy.error import Scapy_Exception
        from scapy.sendrecv import AsyncSniffer

        cls = _frame_socket_class()
        # scapy warns that it cannot guess a dissector for loopback: portclass does not use its dissectors
        logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
        try:
            for i, iface in enumerate(self.interfaces):
                self.sockets.append(cls(iface, self.bpf, i, self.buffer_mib << 20))
        except PermissionError:
            self.close()
            raise permission_error(
                f"on {', '.join(self.interfaces)} with scapy (in this Python process)",
                "run portclass as root, or `sudo setcap cap_net_raw,cap_net_admin=eip "
                "$(readlink -f $(which python3))`, or use --backend dumpcap",
            ) from None
        except (OSError, Scapy_Exception) as exc:
            self.close()
            raise LiveError(f"scapy could not open the capture: {exc}") from None
        started = threading.Event()

        def on_frame(f: _Frame) -> None:
            self._push(f.data, int(round(f.time * 1e9)), f.iface, len(f.data))

        self.sniffer = AsyncSniffer(
            opened_socket={s: s.iface for s in self.sockets},
            prn=on_frame,
            store=False,
            started_callback=started.set,
        )
        self.sniffer.start()
        if not started.wait(timeout):
            self.close()
            raise LiveError(f"scapy's sniffer did not start within {timeout:g} s")

    def _poll_statistics(self) -> None:
        with self._lock:
            for s, c in zip(self.sockets, self._counts, strict=True):
                with contextlib.suppress(OSError):
                    packets, drops = s.statistics()
                    c.received = (c.received or 0) + packets
                    c.dropped = (c.dropped or 0) + drops

    def counters(self) -> dict[int, InterfaceCounters]:
        """Kernel counters of the packet sockets (packets that passed the filter, and drops)."""
        if not self.ended.is_set():
            self._poll_statistics()
        return dict(enumerate(self._counts))

    @property
    def drops_live(self) -> bool:
        """The sockets' counters are read while capturing."""
        return True

    def stop(self) -> None:
        """Let the sniffer read what the sockets still hold, then stop it."""
        if self.sniffer is None or not self.sniffer.running:
            return
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            ready, _, _ = select.select([s.ins for s in self.sockets], [], [], 0)
            if not ready:
                break
            time.sleep(0.01)
        self._poll_statistics()
        with contextlib.suppress(Exception):
            self.sniffer.stop(join=True)
        self.ended.set()

    @property
    def finished(self) -> bool:
        """The sniffer thread ended by itself, or ``--count`` packets were taken."""
        if self.count_reached:
            return True
        if self.sniffer is not None and not self.sniffer.running and not self.ended.is_set():
            self.error = f"scapy's sniffer stopped: {getattr(self.sniffer, 'exception', None) or 'socket closed'}"
            self.ended.set()
            return True
        return False

    def close(self) -> None:
        """Stop the sniffer and close the sockets."""
        if self.sniffer is not None and self.sniffer.running:
            with contextlib.suppress(Exception):
                self.sniffer.stop(join=True)
        for s in self.sockets:
            with contextlib.suppress(Exception):
                s.close()
        self.ended.set()


# ---- pyshark --------------------------------------------------------------------------------


def tshark_protocol(protocols: str) -> str:
    """Wireshark's name for a packet's protocol from its ``frame.protocols`` chain: the first above the transport.

    Above the innermost TCP/UDP/SCTP/DCCP header (body dissectors such as ``data-text-lines``
    below HTTP are not the protocol); the transport itself when nothing is above it.

    >>> tshark_protocol("eth:ethertype:ip:tcp:http:data-text-lines")
    'http'
    >>> tshark_protocol("eth:ethertype:ip:tcp")
    'tcp'
    """
    names = protocols.split(":")
    for i in range(len(names) - 1, -1, -1):
        if names[i] in TRANSPORT_NAMES:
            return names[i + 1] if i + 1 < len(names) else names[i]
    return names[-1] if names else ""


def import_pyshark() -> None:
    """Import pyshark and find tshark/dumpcap, or ``LiveError`` saying what to install."""
    try:
        import pyshark  # noqa: F401
    except ImportError as exc:
        raise LiveError(f"pyshark is not installed ({exc}): pip install pyshark (or use --backend dumpcap)") from None
    find_program("tshark")
    find_program("dumpcap")


def _capture_class() -> type:
    """pyshark's ``LiveCapture`` whose processes report to the backend and close their pipe ends.

    pyshark keeps the dumpcap -> tshark pipe open in this process, so tshark would never see the
    end of the capture; here both ends are closed once the children have them, dumpcap runs in its
    own session (Ctrl-C reaches portclass, which stops it in order) and its stderr is kept.
    """
    import asyncio

    import pyshark
    from pyshark.capture.capture import Capture, TSharkCrashException

    class TsharkLiveCapture(pyshark.LiveCapture):  # type: ignore[misc, valid-type]
        backend: PysharkBackend

        async def _get_tshark_process(self, packet_count: int | None = None, stdin: Any = None) -> Any:
            read, write = os.pipe()
            params = [find_program("dumpcap"), "-q"]
            params += dumpcap_interface_args(self.interfaces, self.bpf_filter)
            params += ["-w", "-"]
            try:
                dumpcap = await asyncio.create_subprocess_exec(
                    *params, stdout=write, stderr=subprocess.PIPE, start_new_session=True
                )
            except PermissionError as exc:
                os.close(read)
                raise exec_refused(exc, self.interfaces, "dumpcap") from None
            finally:
                os.close(write)
            self.backend.dumpcap_pid = dumpcap.pid
            self._stderr_handling_tasks.append(asyncio.ensure_future(self._keep_stderr(dumpcap.stderr, "dumpcap")))
            self._created_new_process(params, dumpcap, process_name="Dumpcap")
            try:
                return await Capture._get_tshark_process(self, packet_count=packet_count, stdin=read)
            finally:
                os.close(read)

        async def _keep_stderr(self, stderr: Any, who: str) -> None:
            while True:
                line = await stderr.readline()
                if not line:
                    break
                self.backend.on_stderr(who, line.decode(errors="replace").rstrip())

        async def _handle_process_stderr_forever(self, stderr: Any) -> None:
            await self._keep_stderr(stderr, "tshark")

        async def _cleanup_subprocess(self, process: Any) -> None:
            # let asyncio see the exit first: pyshark's kill() would reap the process behind
            # asyncio's back (returncode 255, "TShark seems to have crashed")
            with contextlib.suppress(asyncio.TimeoutError, ProcessLookupError):
                await asyncio.wait_for(process.wait(), 3)
            try:
                await super()._cleanup_subprocess(process)
            except TSharkCrashException as exc:
                if not self.backend._stopping:
                    self.backend.error = str(exc).splitlines()[0]

    return TsharkLiveCapture


class PysharkBackend(_FrameBackend):
    """pyshark ``LiveCapture`` (tshark, JSON with raw bytes): the packets plus tshark's protocol names.

    >>> b = PysharkBackend(["lo"], "tcp port 8080")  # doctest: +SKIP
    >>> b.start(); batches = b.poll(1.0); b.stop(); rest = b.drain()  # doctest: +SKIP
    >>> batches[0].protocols[:3]  # doctest: +SKIP
    ['tcp', 'tcp', 'http']
    """

    name = "pyshark"
    linger_s = 0.3

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dumpcap_pid: int | None = None
        self.stderr_lines: dict[str, list[str]] = {"dumpcap": [], "tshark": []}
        self._ready = threading.Event()
        self._failed = threading.Event()
        self.thread: threading.Thread | None = None
        self.capture: Any = None
        self.start_error: LiveError | None = None

    def on_stderr(self, who: str, line: str) -> None:
        """A line from dumpcap or tshark; tshark's 'Capturing on' means dumpcap's stream arrived."""
        self.stderr_lines[who].append(line)
        if who == "tshark" and line.startswith("Capturing on"):
            self._ready.set()

    def start(self, timeout: float = 30.0) -> None:
        """Start tshark's live capture in a thread; return once tshark reads dumpcap's stream."""
        import_pyshark()
        self.thread = threading.Thread(target=self._run, daemon=True, name="portclass-pyshark")
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self._ready.is_set():
            if self.ended.is_set() or time.monotonic() > deadline:
                lines = self.stderr_lines["dumpcap"] + self.stderr_lines["tshark"]
                self.close()
                if self.start_error is not None:
                    raise self.start_error
                if self.error and not lines:
                    raise LiveError(f"pyshark failed: {self.error}")
                if not lines and not self.ended.is_set():
                    raise LiveError(f"tshark did not start capturing within {timeout:g} s")
                raise dumpcap_error(lines, self.interfaces, "tshark")
            self._ready.wait(0.05)

    def _run(self) -> None:
        try:
            cls = _capture_class()
            cap = cls(
                interface=self.interfaces if len(self.interfaces) > 1 else self.interfaces[0],
                bpf_filter=self.bpf,
                use_json=True,
                include_raw=True,
            )
            cap.backend = self
            self.capture = cap
            for pkt in cap.sniff_continuously():
                self._on_packet(pkt)
        except LiveError as exc:  # the capture could not start (e.g. dumpcap may not be run)
            self.start_error = exc
        except Exception as exc:  # noqa: BLE001 - reported through self.error
            if not self._stopping:
                self.error = f"{type(exc).__name__}: {exc}"
        finally:
            with contextlib.suppress(Exception):
                if self.capture is not None:
                    self.capture.close()
            self.ended.set()
            self.wakeup.set()

    _stopping = False

    def _on_packet(self, pkt: Any) -> None:
        fi = pkt.frame_info
        data = pkt.get_raw_packet()
        proto = tshark_protocol(str(fi.get_field("protocols") or ""))
        ts = epoch_ns(str(fi.get_field("time_epoch")))
        iface = int(fi.get_field("interface_id") or 0)
        wire = int(fi.get_field("len") or len(data))
        self._push(data, ts, iface, wire, proto)

    def stop(self) -> None:
        """SIGTERM to pyshark's dumpcap: tshark then reads to the end of the stream and exits."""
        self._stopping = True
        if self.dumpcap_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.dumpcap_pid, signal.SIGTERM)

    def drain(self, timeout: float = 15.0) -> list[LiveBatch]:
        """Wait for tshark to finish, then every frame still queued."""
        if self.thread is not None:
            self.thread.join(timeout)
            if self.thread.is_alive():
                self.error = f"tshark did not stop within {timeout:g} s"
                self.close()
        return super().drain(timeout)

    @property
    def finished(self) -> bool:
        """tshark's output ended by itself (dumpcap failed), or ``--count`` packets were taken."""
        return self.count_reached or (self.ended.is_set() and not self._stopping)

    def counters(self) -> dict[int, InterfaceCounters]:
        """dumpcap's closing 'Packets received/dropped' lines (known once it stopped)."""
        return parse_dumpcap_drops(self.stderr_lines["dumpcap"], self.interfaces)

    def close(self) -> None:
        """Kill pyshark's processes if they still run."""
        self._stopping = True
        if self.dumpcap_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.dumpcap_pid, signal.SIGKILL)
        if self.thread is not None:
            self.thread.join(5)


# ---- choosing -------------------------------------------------------------------------------


def default_backend() -> str:
    """dumpcap where it is installed, else scapy where it imports; else ``LiveError`` naming both."""
    import shutil

    if shutil.which("dumpcap"):
        return "dumpcap"
    try:
        import_scapy()
        return "scapy"
    except LiveError:
        pass
    raise LiveError(
        "no capture program: install the Debian package wireshark-common (apt-get install tshark) for dumpcap, "
        "or python3-scapy (pip install scapy)"
    )


def make_backend(name: str, interfaces: list[str], bpf: str | None = None, **kwargs: Any) -> Backend:
    """The backend called ``name`` (one of ``BACKENDS``), not started yet.

    >>> make_backend("dumpcap", ["lo"], "udp port 53").command_line()
    ['dumpcap', '-n', '-q', '-w', '-', '-i', 'lo', '-f', 'udp port 53', '-B', '64']
    """
    classes: dict[str, type[Backend]] = {"dumpcap": DumpcapBackend, "scapy": ScapyBackend, "pyshark": PysharkBackend}
    if name not in classes:
        raise LiveError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return classes[name](interfaces, bpf, **kwargs)
