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
    """tshark's field rows of one capture file."""
    exe = shutil.which("tshark")
    if exe is None:
        raise PortclassError("--dissect tshark needs tshark (Debian: apt-get install tshark)")
    cmd = [exe, "-r", path, "-n", "-T", "fields", "-E", "separator=/t", "-E", "occurrence=l"]
    for f in FIELDS:
        cmd += ["-e", f]
    res = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    if res.returncode not in (0, 2):  # 2: the file ends in a cut record, the rest was read
        last = (res.stderr.strip().splitlines() or [f"exit status {res.returncode}"])[-1]
        raise PortclassError(f"tshark failed: {last}", path=path)
    return [line.split("\t") for line in res.stdout.splitlines()]


def epoch_ns(epoch: str) -> int:
    """'1704067200.001000000' -> nanoseconds, exactly."""
    sec, _, frac = epoch.partition(".")
    return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])


def dissect(files: Sequence[str], flows: FlowTable) -> np.ndarray:
    """Wireshark's protocol per flow (object array, "" where no frame of the flow was matched).

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
            if len(row) < len(FIELDS):
                continue
            ts, s4, d4, s6, d6, tsp, tdp, usp, udp_, ssp, sdp, col, stack = row[: len(FIELDS)]
            if ":icmp" in stack:
                continue  # ICMP errors quote another packet's ports
            src, dst = (s6, d6) if s6 else (s4, d4)
            if tsp:
                proto, sp, dp = 6, tsp, tdp
            elif usp:
                proto, sp, dp = 17, usp, udp_
            elif ssp:
                proto, sp, dp = 132, ssp, sdp
            else:
                continue
            try:
                key = (proto, *sorted(((src, int(sp)), (dst, int(dp)))))
            except ValueError:
                continue
            hit = starts.get(key)
            if hit is None:
                continue
            t = epoch_ns(ts)
            j = bisect_right(hit[0], t) - 1
            fi = hit[1][max(j, 0)]
            name = normalise(col)
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
