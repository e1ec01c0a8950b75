"""How often portclass's payload evidence names the protocol nDPI names, on nDPI's own test corpus.

For every capture of ``../shared/captures/ndpi/pcap`` with a ``result/NAME.out`` (what
``ndpiReader`` printed: one line per flow, ``TCP a:p <-> b:q [proto: 91.26/TLS.ntop]...``),
portclass analyzes the capture, and flows are joined by transport and unordered endpoints
(keys that occur once on each side only: nDPI's flow rules differ from ours, e.g. it
decapsulates some tunnels).  nDPI's master protocol (``TLS`` of ``TLS.ntop``) is mapped to
portclass's protocol names where both name the same thing (``NDPI_TO_PORTCLASS``); flows
with other nDPI protocols are counted but not compared.

Printed per protocol: flows nDPI names it (joined), how many portclass names the same
(agreement), names otherwise, or leaves unverified; portclass's precision (of the joined
flows portclass names P, how many nDPI names P too); and, for flows nDPI names P on a
server port the registry gives names none of which carries P ("non-standard port"), how
many portclass flags ``service-mismatch``.

    python benchmarks/ndpi_agreement.py [--pcap DIR] [--result DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PORTCLASS_SHARED", ROOT.parent / "shared"))
NDPI = SHARED / "captures" / "ndpi"
REGISTRY = SHARED / "registry" / "service-names-port-numbers.xml"

NDPI_TO_PORTCLASS: dict[str, str] = {
    "TLS": "tls",
    "SMTPS": "tls",
    "IMAPS": "tls",
    "POPS": "tls",
    "FTPS": "tls",
    "HTTP": "http",
    "HTTP_Proxy": "http",
    "HTTP_Connect": "http",
    "DNS": "dns",
    "AVASTSecureDNS": "dns",  # DNS messages to Avast's resolvers on 443/udp
    "MDNS": "dns",
    "LLMNR": "dns",
    "SSH": "ssh",
    "SMTP": "smtp",
    "FTP_CONTROL": "ftp",
    "POP3": "pop3",
    "IMAP": "imap",
    "QUIC": "quic",
    "SMBv1": "smb",
    "SMBv23": "smb",
    "RDP": "rdp",
    "MQTT": "mqtt",
    "Modbus": "modbus",
    "NTP": "ntp",
    "SNMP": "snmp",
    "SIP": "sip",
    "BitTorrent": "bittorrent",
    "SSDP": "ssdp",
    "NetBIOS": "netbios",
}
"""nDPI master protocol -> portclass protocol (where they mean the same traffic)."""

_LINE = re.compile(
    r"^\s+\d+\s+(?P<t>TCP|UDP|SCTP)\s+(?P<a>\S+)\s+(?:<->|->)\s+(?P<b>\S+)\s.*?\[proto: [\d.]+/(?P<p>[^\]]+)\]"
    r"(?:.*?\[Confidence: (?P<c>[^\]]+)\])?"
)
_PROTO = {"TCP": 6, "UDP": 17, "SCTP": 132}


def _endpoint(text: str) -> tuple[str, int]:
    """'1.2.3.4:5' or '[2001:db8::1]:5' -> (address, port)."""
    addr, _, port = text.rpartition(":")
    return addr.strip("[]"), int(port)


def parse_ndpi(path: Path) -> list[tuple[tuple, str, str]]:
    """(flow key, nDPI master protocol, confidence) per flow line of an ndpiReader result file.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.out"
    >>> line = "\\t1\\tTCP 192.0.2.1:5 <-> 198.51.100.2:443 [proto: 91.26/TLS.ntop][IP: 26/ntop][Confidence: DPI]"
    >>> _ = p.write_text(line + "\\n")
    >>> parse_ndpi(p)
    [((6, ('192.0.2.1', 5), ('198.51.100.2', 443)), 'TLS', 'DPI')]
    """
    out = []
    for line in path.read_text(errors="replace").splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        try:
            a, b = _endpoint(m["a"]), _endpoint(m["b"])
        except ValueError:
            continue
        master = m["p"].split(".", 1)[0]
        out.append(((_PROTO[m["t"]], *sorted((a, b))), master, m["c"] or ""))
    return out


@dataclass
class Row:
    """Counts for one protocol."""

    ndpi: int = 0  # joined flows nDPI names this protocol
    same: int = 0  # ... and portclass too
    other: int = 0  # ... portclass names another protocol
    unverified: int = 0  # ... portclass recognised nothing
    portclass: int = 0  # joined flows portclass names this protocol (any nDPI protocol)
    precise: int = 0  # ... and nDPI names it too
    nonstd: int = 0  # nDPI names it on a registered port none of whose names carries it
    nonstd_mismatch: int = 0  # ... and portclass says mismatch
    unregistered: int = 0  # nDPI names it on a port without registered names
    unregistered_seen: int = 0  # ... and portclass says unregistered
    flagged: int = 0  # joined flows portclass flags service-mismatch, naming this protocol
    flagged_confirmed: int = 0  # ... where nDPI names the same protocol
    others: Counter = field(default_factory=Counter)  # what portclass said instead

    def pct(self, a: int, b: int) -> str:
        """a/b as a percentage ('-' when b is 0)."""
        return f"{100 * a / b:5.1f}" if b else "    -"


GUESSED = [0]
"""Joined flows skipped because nDPI only guessed their protocol (by port or address)."""


def compare(pcap_dir: Path = NDPI / "pcap", result_dir: Path = NDPI / "result") -> dict[str, Row]:
    """Run portclass on every capture with an nDPI result and count agreement per protocol."""
    from classifier.evidence.match import PROTOCOL_CODE
    from classifier.evidence.verdict import (
        V_MISMATCH,
        V_UNREGISTERED,
        carrier_index,
        protocol_names,
    )
    from classifier.pipeline import analyze
    from classifier.registry.compile import NPORTS
    from classifier.registry.sources import compile_file
    from classifier.report.addr import format_addresses

    reg = compile_file(REGISTRY, use_cache=False)
    idx = carrier_index(reg)
    rows: dict[str, Row] = defaultdict(Row)
    for out in sorted(result_dir.glob("*.out")):
        pcap = pcap_dir / out.name[: -len(".out")]
        if not pcap.exists():
            continue
        theirs = parse_ndpi(out)
        tcount = Counter(k for k, _, _ in theirs)
        try:
            a = analyze([pcap], reg)
        except Exception:  # noqa: BLE001 - an unreadable capture joins nothing
            continue
        fl, lab = a.flows, a.labels
        cip = format_addresses(fl.client_hi, fl.client_lo)
        sip = format_addresses(fl.server_hi, fl.server_lo)
        mine: dict[tuple, list[int]] = defaultdict(list)
        for i in range(len(fl)):
            k = (int(fl.proto[i]), *sorted(((cip[i], int(fl.client_port[i])), (sip[i], int(fl.server_port[i])))))
            mine[k].append(i)
        names = protocol_names(lab.protocol)
        for key, master, confidence in theirs:
            hits = mine.get(key, [])
            if tcount[key] != 1 or len(hits) != 1:
                continue
            if not confidence.startswith("DPI"):
                GUESSED[0] += 1  # nDPI matched by port or address: not payload evidence
                continue
            i = hits[0]
            p_mine = names[i]
            p_theirs = NDPI_TO_PORTCLASS.get(master)
            if p_mine is not None:
                rows[p_mine].portclass += 1
                rows[p_mine].precise += int(p_mine == p_theirs)
                if lab.verdict[i] == V_MISMATCH:
                    rows[p_mine].flagged += 1
                    rows[p_mine].flagged_confirmed += int(p_mine == p_theirs)
            if p_theirs is None:
                continue
            r = rows[p_theirs]
            r.ndpi += 1
            if p_mine == p_theirs:
                r.same += 1
            elif p_mine is None:
                r.unverified += 1
            else:
                r.other += 1
                r.others[p_mine] += 1
            t = int(lab.transport[i])
            if t < 0:
                continue
            k = t * NPORTS + int(fl.server_port[i])
            bit = 1 << PROTOCOL_CODE[p_theirs]
            if idx.named[k] and not (int(idx.carries[k]) & bit) and not (int(idx.after_plaintext[k]) & bit):
                r.nonstd += 1
                r.nonstd_mismatch += int(lab.verdict[i] == V_MISMATCH)
            elif not idx.named[k]:
                r.unregistered += 1
                r.unregistered_seen += int(lab.verdict[i] == V_UNREGISTERED)
    return dict(rows)


def total(rows: dict[str, Row]) -> Row:
    """The rows added up."""
    t = Row()
    for r in rows.values():
        for f in (
            "ndpi",
            "same",
            "other",
            "unverified",
            "portclass",
            "precise",
            "nonstd",
            "nonstd_mismatch",
            "flagged",
            "flagged_confirmed",
        ):
            setattr(t, f, getattr(t, f) + getattr(r, f))
        t.unregistered += r.unregistered
        t.unregistered_seen += r.unregistered_seen
    return t


def table(rows: dict[str, Row]) -> str:
    """The comparison as a text table, most common protocol first."""
    head = (
        f"{'protocol':<11} {'nDPI':>5} {'agree':>5} {'%':>5} {'other':>5} {'none':>5} "
        f"{'pc':>5} {'prec%':>5} {'nonstd':>6} {'mism':>5} {'%':>5}  portclass said instead"
    )
    lines = [head, "-" * len(head)]
    order = sorted(rows.items(), key=lambda kv: (-kv[1].ndpi, -kv[1].portclass, kv[0]))
    for name, r in order + [("ALL", total(rows))]:
        lines.append(
            f"{name:<11} {r.ndpi:>5} {r.same:>5} {r.pct(r.same, r.ndpi)} {r.other:>5} {r.unverified:>5} "
            f"{r.portclass:>5} {r.pct(r.precise, r.portclass)} {r.nonstd:>6} {r.nonstd_mismatch:>5} "
            f"{r.pct(r.nonstd_mismatch, r.nonstd)}  {', '.join(f'{k} {v}' for k, v in r.others.most_common(4))}"
        )
    return "\n".join(lines)


def main() -> None:
    """Print the agreement table (or JSON)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pcap", type=Path, default=NDPI / "pcap")
    ap.add_argument("--result", type=Path, default=NDPI / "result")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    GUESSED[0] = 0
    rows = compare(args.pcap, args.result)
    if args.json:
        print(json.dumps({k: {**vars(v), "others": dict(v.others)} for k, v in rows.items()}, indent=1))
        return
    print(table(rows))
    t = total(rows)
    print(f"\n(not compared: {GUESSED[0]} joined flows whose protocol nDPI only guessed by port or address)")
    print(
        f"service-mismatch flags on joined flows: {t.flagged}, nDPI names the same protocol on "
        f"{t.flagged_confirmed} ({t.pct(t.flagged_confirmed, t.flagged).strip()} %); known protocol on a port "
        f"without registered names: {t.unregistered}, portclass says unregistered on {t.unregistered_seen}"
    )
    print(
        "\nnDPI: joined flows nDPI names the protocol; agree/other/none: portclass names the same / another / "
        "nothing;\npc: flows portclass names it, prec%: of those, nDPI agrees; nonstd: nDPI names it on a "
        "registered port\nnone of whose names carries it, mism: portclass flags service-mismatch there."
    )
    _ = np  # numpy is imported for the pipeline's sake


if __name__ == "__main__":
    main()
