"""Second opinion: ask Wireshark's dissectors (tshark) which protocol each flow carries.

One ``tshark -r FILE -T fields`` run per capture file prints, per frame, its time,
addresses, ports, Protocol column and protocol stack; frames are joined to flows by
their unordered 5-tuple and time (the flow of that key that had started by then), and a
flow's protocol is the first application-level Protocol column among its frames
(normalised: ``TLSv1.3`` -> ``tls``, ``SSHv2`` -> ``ssh``, ``SMB2`` -> ``smb``), or its
transport when tshark named nothing above it.  Slow by nature (tshark dissects every
frame); the pipeline runs it only for ``--dissect tshark``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import PortclassError
from ..flows import FlowTable
from ..label import Labels
from ..report.addr import format_addresses
from .table import BY_NAME, WIRESHARK_ALIASES
from .verdict import protocol_names

FIELDS = (
    "frame.time_epoch",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "tcp.srcport",
    "tcp.dstport",
    "udp.srcport",
    "udp.dstport",
    "sctp.srcport",
    "sctp.dstport",
    "_ws.col.Protocol",
    "frame.protocols",
)
"""The fields asked of tshark, in column order."""
_TRANSPORT_ONLY = {"tcp", "udp", "sctp", "ipv4", "ipv6", "ip", "data", ""}
_ALIASES = WIRESHARK_ALIASES
"""tshark protocol (normalised) -> portclass protocol name, where they are the same thing (from the table)."""
AGREEMENT = ("agree", "differ", "tshark-only", "portclass-only", "neither", "unknown")
"""Categories of ``agreement``: both name the same protocol; both name protocols, different ones;
only tshark names one portclass knows; only portclass names one; neither; tshark did not see the flow."""


def normalise(col: str) -> str:
    """tshark's Protocol column as a lower-case protocol name without version (``TLSv1.2`` -> ``tls``).

    >>> [normalise(x) for x in ("TLSv1.3", "SSHv2", "HTTP/JSON", "SMB2", "Modbus/TCP", "SSLv3")]
    ['tls', 'ssh', 'http', 'smb2', 'modbus/tcp', 'ssl']
    """
    x = col.strip().lower()
    if x.startswith("modbus/tcp"):
        return "modbus/tcp"
    x = x.split("/", 1)[0]
    x = re.sub(r"v\d+(\.\d+)*$", "", x)  # TLSv1.2, SSHv2, SNMPv3
    return x


def _run(path: str) -> list[list[str]]:
    """tshark's field rows of one capture file (the whole-run join's; the stream reads them as they come)."""
    res = subprocess.run(_command(path), capture_output=True, text=True, errors="replace")
    if res.returncode not in (0, 2):  # 2: the file ends in a cut record, the rest was read
        last = (res.stderr.strip().splitlines() or [f"exit status {res.returncode}"])[-1]
        raise PortclassError(f"tshark failed: {last}", path=path)
    return [line.split("\t") for line in res.stdout.splitlines()]


def epoch_ns(epoch: str) -> int:
    """'1704067200.001000000' -> nanoseconds, exactly."""
    sec, _, frac = epoch.partition(".")
    return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])


def _command(path: str) -> list[str]:
    """tshark's command line for the fields of one capture file (``FIELDS``, tab-separated)."""
    exe = shutil.which("tshark")
    if exe is None:
        raise PortclassError("--dissect tshark needs tshark (Debian: apt-get install tshark)")
    cmd = [exe, "-r", path, "-n", "-T", "fields", "-E", "separator=/t", "-E", "occurrence=l"]
    for f in FIELDS:
        cmd += ["-e", f]
    return cmd


def _frame(row: list[str]) -> tuple[tuple, int, str, int] | None:
    """(flow key, time ns, normalised Protocol column, IP protocol) of one tshark row, None without ports."""
    if len(row) < len(FIELDS):
        return None
    ts, s4, d4, s6, d6, tsp, tdp, usp, udp_, ssp, sdp, col, stack = row[: len(FIELDS)]
    if ":icmp" in stack:
        return None  # ICMP errors quote another packet's ports
    src, dst = (s6, d6) if s6 else (s4, d4)
    if tsp:
        proto, sp, dp = 6, tsp, tdp
    elif usp:
        proto, sp, dp = 17, usp, udp_
    elif ssp:
        proto, sp, dp = 132, ssp, sdp
    else:
        return None
    try:
        return (proto, *sorted(((src, int(sp)), (dst, int(dp))))), epoch_ns(ts), normalise(col), proto
    except ValueError:
        return None


_TRANSPORT_NAME = {6: "tcp", 17: "udp", 132: "sctp"}


class TsharkStream:
    """tshark's protocol per flow, joined to flows *as they end* (``--dissect tshark`` of a streamed run).

    One tshark process at a time reads the capture files in the reader's order, and its rows are read in
    step with the packets the engine has read (``advance``: as many frames as records), so what is held is
    the frames of flows still alive, and of those only *runs*: consecutive frames of one flow key with one
    Protocol column, as ``[first time, last time, name]``.  ``names`` gives a chunk of ended flows the
    name ``dissect`` gives (the first application-level name among a flow's frames, else its transport),
    then drops the runs that ended with them; ``peak_runs`` counts the most runs ever held.
    """

    def __init__(self, files: Sequence[str]) -> None:
        self.files = [str(f) for f in files]
        if self.files:
            _command(self.files[0])  # no tshark: the error now, before reading
        self.frames = 0
        self.runs: dict[tuple, list[list]] = {}
        self.held = self.peak_runs = 0
        self.warnings: list[str] = []
        self._next = 0
        self._proc: subprocess.Popen | None = None
        self._err: Any = None

    def advance(self, frames: int | None = None) -> None:
        """Read rows until ``frames`` frames have been read in all (None: every frame of every file)."""
        while frames is None or self.frames < frames:
            line = self._line()
            if line is None:
                return
            self.frames += 1
            f = _frame(line.rstrip("\n").split("\t"))
            if f is None:
                continue
            key, t, name, _proto = f
            runs = self.runs.setdefault(key, [])
            if runs and runs[-1][2] == name:
                last = runs[-1]
                last[0], last[1] = min(last[0], t), max(last[1], t)
            else:
                runs.append([t, t, name])
                self.held += 1
                self.peak_runs = max(self.peak_runs, self.held)

    def names(self, flows: FlowTable) -> np.ndarray:
        """tshark's name per flow of a chunk that ended ("" where no frame matched); their runs dropped."""
        n = len(flows)
        out = np.full(n, "", dtype=object)
        if not n:
            return out
        cip = format_addresses(flows.client_hi, flows.client_lo).tolist()
        sip = format_addresses(flows.server_hi, flows.server_lo).tolist()
        cols = zip(
            flows.proto.tolist(), cip, flows.client_port.tolist(), sip, flows.server_port.tolist(),
            flows.first_ts_ns.tolist(), flows.last_ts_ns.tolist(), strict=True,
        )  # fmt: skip
        for i, (p, a, ap, b, bp, t0, t1) in enumerate(cols):
            key = (p, *sorted(((a, ap), (b, bp))))
            runs = self.runs.get(key)
            if not runs:
                continue
            mine = [r for r in runs if r[0] <= t1 and r[1] >= t0]
            app = next((r[2] for r in mine if r[2] not in _TRANSPORT_ONLY), None)
            out[i] = app if app is not None else _TRANSPORT_NAME.get(p, "") if mine else ""
            rest = [r for r in runs if r[1] > t1]  # frames after this flow's end: a later flow's
            self.held -= len(runs) - len(rest)
            if rest:
                self.runs[key] = rest
            else:
                del self.runs[key]
        return out

    def _line(self) -> str | None:
        while True:
            if self._proc is None:
                if self._next >= len(self.files):
                    return None
                import tempfile

                self._err = tempfile.TemporaryFile(mode="w+")
                cmd = _command(self.files[self._next])
                pipe = subprocess.PIPE
                self._proc = subprocess.Popen(cmd, stdout=pipe, stderr=self._err, text=True, errors="replace")
                self._next += 1
            assert self._proc.stdout is not None
            line = self._proc.stdout.readline()
            if line:
                return line
            self._done()

    def _done(self) -> None:
        """The current file's tshark has ended: a failure is a warning (the flows keep no name from it)."""
        proc, path = self._proc, self.files[self._next - 1]
        assert proc is not None
        code = proc.wait()
        self._err.seek(0)
        last = (self._err.read().strip().splitlines() or [f"exit status {code}"])[-1]
        self._err.close()
        self._proc = None
        if code not in (0, 2):  # 2: the file ends in a cut record, the rest was read
            self.warnings.append(f"{path}: tshark failed: {last}")

    def close(self) -> None:
        """Stop a tshark still running (an interrupted or failed run)."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._err.close()
            self._proc = None


def dissect(files: Sequence[str], flows: FlowTable) -> np.ndarray:
    """Wireshark's protocol per flow (object array, "" where no frame of the flow was matched), joined over
    the whole run: the reference the streamed join (``TsharkStream``) is tested against.

    >>> dissect(["captures/sample.pcap"], a.flows)[:2]  # doctest: +SKIP
    array(['http', 'tls'], dtype=object)
    """
    n = len(flows)
    out = np.full(n, "", dtype=object)
    if n == 0:
        return out
    cip = format_addresses(flows.client_hi, flows.client_lo)
    sip = format_addresses(flows.server_hi, flows.server_lo)
    index: dict[tuple, list[tuple[int, int]]] = {}
    for i, (p, a, ap, b, bp, t0) in enumerate(
        zip(
            flows.proto.tolist(),
            cip.tolist(),
            flows.client_port.tolist(),
            sip.tolist(),
            flows.server_port.tolist(),
            flows.first_ts_ns.tolist(),
            strict=True,
        )
    ):
        key = (p, *sorted(((a, ap), (b, bp))))
        index.setdefault(key, []).append((t0, i))
    starts: dict[tuple, tuple[list[int], list[int]]] = {}
    for k, v in index.items():
        v.sort()
        starts[k] = ([t for t, _ in v], [i for _, i in v])
    transport_of: dict[int, str] = {}
    for path in files:
        for row in _run(str(path)):
            frame = _frame(row)
            if frame is None:
                continue
            key, t, name, proto = frame
            hit = starts.get(key)
            if hit is None:
                continue
            j = bisect_right(hit[0], t) - 1
            fi = hit[1][max(j, 0)]
            if name in _TRANSPORT_ONLY:
                transport_of.setdefault(fi, {6: "tcp", 17: "udp", 132: "sctp"}[proto])
                continue
            if not out[fi]:
                out[fi] = name
    for fi, tname in transport_of.items():
        if not out[fi]:
            out[fi] = tname
    return out


def as_portclass(names: np.ndarray) -> np.ndarray:
    """tshark's names mapped to portclass protocol names where they mean the same (else None)."""
    return np.array([_ALIASES.get(x) if isinstance(x, str) else None for x in names.tolist()], dtype=object)


def _root(name: str | None) -> str | None:
    """The protocol a protocol rides in, outermost (Elasticsearch -> http: what Wireshark names)."""
    while name is not None and BY_NAME[name].over is not None:
        name = BY_NAME[name].over
    return name


def agreement(labels: Labels) -> np.ndarray:
    """Per flow, how tshark's protocol and portclass's evidence relate (``AGREEMENT`` names)."""
    assert labels.tshark_protocol is not None and labels.protocol is not None
    ts = labels.tshark_protocol
    mine = np.array([_root(x) for x in protocol_names(labels.protocol).tolist()], dtype=object)
    theirs = as_portclass(ts)
    out = np.full(len(ts), "neither", dtype=object)
    has_m = np.array([x is not None for x in mine.tolist()], dtype=bool)
    has_t = np.array([x is not None for x in theirs.tolist()], dtype=bool)
    same = has_m & has_t & (mine == theirs)
    out[has_m & ~has_t] = "portclass-only"
    out[~has_m & has_t] = "tshark-only"
    out[has_m & has_t & ~same] = "differ"
    out[same] = "agree"
    out[np.array([x in (None, "") for x in ts.tolist()], dtype=bool)] = "unknown"
    return out
