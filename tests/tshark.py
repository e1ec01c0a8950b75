"""Independent reference figures from Wireshark's tshark: conversation tables and per-packet fields."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

_ROW = re.compile(
    r"^(?P<a>\S+)\s+<->\s+(?P<b>\S+)\s+"
    r"(?P<f1>\d+)\s+(?P<b1>[\d,]+ (?:bytes|kB|MB|GB))\s+"
    r"(?P<f2>\d+)\s+(?P<b2>[\d,]+ (?:bytes|kB|MB|GB))\s+"
    r"(?P<ft>\d+)\s+(?P<bt>[\d,]+ (?:bytes|kB|MB|GB))"
)
_UNIT = {"bytes": 1, "kB": 1000, "MB": 1000**2, "GB": 1000**3}


def need_tshark() -> str:
    """Path of tshark, or skip (CI installs it, so there it never skips)."""
    path = shutil.which("tshark")
    if path is None:
        pytest.skip("tshark not installed")
    return path


def split_endpoint(ep: str) -> tuple[str, int]:
    """'192.0.2.1:80' or '2001:db8::1:80' -> (address, port)."""
    addr, _, port = ep.rpartition(":")
    return addr, int(port)


def parse_size(text: str) -> tuple[int, int]:
    """'8779 bytes' -> (8779, 1); '170 kB' -> (170000, 1000): the value and its rounding unit."""
    num, unit = text.split()
    return int(num.replace(",", "")) * _UNIT[unit], _UNIT[unit]


def conversations(path: Path) -> dict[tuple[str, frozenset], dict]:
    """tshark -z conv,tcp -z conv,udp: per (transport, {endpoint A, endpoint B}) frames and bytes each way.

    Rows of one endpoint pair (tshark splits TCP conversations by stream) are summed.
    """
    out = subprocess.run(
        [need_tshark(), "-n", "-q", "-r", str(path), "-z", "conv,tcp", "-z", "conv,udp"],
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    conv: dict[tuple[str, frozenset], dict] = {}
    transport = None
    for line in out.splitlines():
        if line.startswith("TCP Conversations"):
            transport = "tcp"
        elif line.startswith("UDP Conversations"):
            transport = "udp"
        m = _ROW.match(line.strip())
        if not m or transport is None:
            continue
        a, b = split_endpoint(m["a"]), split_endpoint(m["b"])
        key = (transport, frozenset([a, b]))
        # "<-" counts frames going to A (sent by B); "->" frames sent by A.
        to_a, unit1 = parse_size(m["b1"])
        from_a, unit2 = parse_size(m["b2"])
        row = conv.setdefault(key, {"frames": {a: 0, b: 0}, "bytes": {a: 0, b: 0}, "unit": {a: 1, b: 1}, "rows": 0})
        row["frames"][b] += int(m["f1"])
        row["frames"][a] += int(m["f2"])
        row["bytes"][b] += to_a
        row["bytes"][a] += from_a
        row["unit"][b] = max(row["unit"][b], unit1)
        row["unit"][a] = max(row["unit"][a], unit2)
        row["rows"] += 1
    return conv


def exact_bytes(path: Path) -> dict[tuple[str, frozenset], dict]:
    """Exact frames and frame bytes per (transport, endpoint pair, sender) from tshark's per-packet fields.

    The innermost addresses and ports count (as in tshark's conversation tables, which follow tunnels).
    """
    fields = [
        "ip.src",
        "ipv6.src",
        "ip.dst",
        "ipv6.dst",
        "tcp.srcport",
        "tcp.dstport",
        "udp.srcport",
        "udp.dstport",
        "frame.len",
        "frame.protocols",
    ]
    cmd = [need_tshark(), "-n", "-r", str(path), "-T", "fields", "-E", "separator=|", "-E", "occurrence=l"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout
    agg: dict[tuple[str, frozenset], dict] = defaultdict(
        lambda: {"frames": defaultdict(int), "bytes": defaultdict(int)}
    )
    for line in out.splitlines():
        s4, s6, d4, d6, tsp, tdp, usp, udp_, flen, protos = line.split("|")
        if ":icmp" in protos:
            continue  # an ICMP error quotes the offending packet's headers; it is not part of that flow
        src, dst = s6 or s4, d6 or d4
        if tsp and tdp:
            t, sp, dp = "tcp", tsp, tdp
        elif usp and udp_:
            t, sp, dp = "udp", usp, udp_
        else:
            continue
        a, b = (src, int(sp)), (dst, int(dp))
        key = (t, frozenset([a, b]))
        agg[key]["frames"][a] += 1
        agg[key]["bytes"][a] += int(flen)
    return agg
