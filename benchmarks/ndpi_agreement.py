"""How often portclass's payload evidence names the protocol nDPI names, on nDPI's own test corpus.

For every capture of ``../shared/captures/ndpi/pcap`` with a ``result/NAME.out`` (what
``ndpiReader`` printed: one line per flow, ``TCP a:p <-> b:q [proto: 91.26/TLS.ntop]...``),
portclass analyzes the capture and flows are joined.

The join: transport and unordered endpoints ``(proto, {(addr, port), (addr, port)})``, and
only keys that occur exactly once on each side (nDPI's flow rules differ from ours: it
decapsulates some tunnels, splits and times out differently; a key seen twice on either
side is ambiguous and left out).  Of the joined flows, only those nDPI classified by deep
packet inspection (``[Confidence: DPI]``, also ``DPI (partial)``/``DPI (cache)``...) are
compared: a protocol nDPI guessed by port or address is no reference.  nDPI's names
(master ``TLS`` and application ``ntop`` of ``TLS.ntop``) are mapped to portclass's protocols
through the ``ndpi`` names of the protocol table (``classifier.evidence.table``); a flow
agrees when portclass's protocol, or the protocol it rides in (``over``), is one nDPI names.

Figures printed (the issue's targets in brackets):

1. nonstd: joined flows carrying nDPI's risk "Known Proto on Non Std Port" whose server port
   the registry does not allow for nDPI's protocol (the port has registered names and none
   carries the protocol as portclass maps it; an nDPI protocol portclass has no record for
   is carried by no name): share where portclass says ``mismatch`` [>= 90 %];
2. flags: of portclass's ``mismatch`` verdicts on joined DPI flows, the share where nDPI's
   DPI names a different protocol [<= 1 %];
3. precision per protocol both name: of the joined DPI flows portclass names P, the share
   nDPI names P too [>= 98 %];
4. coverage: of all joined DPI-classified flows, the share whose protocol portclass names;
5. applications: of the joined DPI flows where portclass names an application (``network.application``:
   a carried protocol such as Elasticsearch over HTTP, or a TLS server name of
   ``classifier.evidence.apps``) and nDPI names one (``ntop`` of ``TLS.ntop``), the share where
   they agree; and of the flows nDPI names with an application portclass has a record for, the
   share portclass names.

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

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PORTCLASS_SHARED", ROOT.parent / "shared"))
NDPI = SHARED / "captures" / "ndpi"
REGISTRY = SHARED / "registry" / "service-names-port-numbers.xml"
NONSTD_RISK = "Known Proto on Non Std Port"

_LINE = re.compile(
    r"^\s+\d+\s+(?P<t>TCP|UDP|SCTP)\s+(?P<a>\S+)\s+(?:<->|->)\s+(?P<b>\S+)\s.*?\[proto: [\d.]+/(?P<p>[^\]]+)\]"
    r"(?:.*?\[Confidence: (?P<c>[^\]]+)\])?"
)
_PROTO = {"TCP": 6, "UDP": 17, "SCTP": 132}


def _endpoint(text: str) -> tuple[str, int]:
    """'1.2.3.4:5' or '[2001:db8::1]:5' -> (address, port)."""
    addr, _, port = text.rpartition(":")
    return addr.strip("[]"), int(port)


@dataclass(frozen=True)
class NdpiFlow:
    """One flow line of ndpiReader's output."""

    key: tuple
    master: str  # TLS of TLS.ntop
    app: str  # ntop of TLS.ntop ("" when there is none)
    confidence: str
    nonstd: bool  # the "Known Proto on Non Std Port" risk


def parse_ndpi(path: Path) -> list[NdpiFlow]:
    """The flow lines of an ndpiReader result file.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.out"
    >>> line = "\\t1\\tTCP 192.0.2.1:5 <-> 198.51.100.2:443 [proto: 91.26/TLS.ntop][IP: 26/ntop][Confidence: DPI]"
    >>> _ = p.write_text(line + "\\n")
    >>> parse_ndpi(p)
    [NdpiFlow(key=(6, ('192.0.2.1', 5), ('198.51.100.2', 443)), master='TLS', app='ntop', confidence='DPI', \
nonstd=False)]
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
        master, _, app = m["p"].partition(".")
        key = (_PROTO[m["t"]], *sorted((a, b)))
        out.append(NdpiFlow(key, master, app, m["c"] or "", NONSTD_RISK in line))
    return out


def ndpi_names() -> dict[str, set[str]]:
    """nDPI protocol name -> portclass protocols that name the same traffic, from the protocol table."""
    from classifier.evidence.table import PROTOCOLS

    out: dict[str, set[str]] = defaultdict(set)
    for p in PROTOCOLS:
        for n in p.ndpi:
            out[n].add(p.name)
    return dict(out)


def _family(proto: str | None) -> set[str]:
    """A protocol and the ones it rides in (``over``)."""
    from classifier.evidence.table import PROTOCOLS

    over = {p.name: p.over for p in PROTOCOLS}
    out: set[str] = set()
    while proto and proto not in out:
        out.add(proto)
        proto = over.get(proto)
    return out


def app_names() -> dict[str, set[str]]:
    """portclass application (``network.application``) -> the nDPI names that name the same service."""
    from classifier.evidence.apps import APPS
    from classifier.evidence.table import PROTOCOLS

    out = {a.name: set(a.ndpi) for a in APPS}
    out.update({p.name: set(p.ndpi) for p in PROTOCOLS if p.over})
    return out


def _count_app(res: Result, app_ndpi: dict[str, set[str]], mine: str | None, theirs: str) -> None:
    """Count one joined DPI flow for the application figures."""
    known = set().union(*app_ndpi.values())
    if theirs in known:
        res.app_known += 1
        res.app_found += mine is not None and theirs in app_ndpi.get(mine, set())
    if mine is not None and theirs:
        res.app_named += 1
        if theirs in app_ndpi.get(mine, set()):
            res.app_agree += 1
        else:
            res.app_wrong[(mine, theirs)] += 1


@dataclass
class Row:
    """Counts for one protocol (joined, DPI-classified flows)."""

    ndpi: int = 0  # nDPI names this protocol
    same: int = 0  # ... and portclass too
    other: int = 0  # ... portclass names another protocol
    unverified: int = 0  # ... portclass recognised nothing
    portclass: int = 0  # portclass names this protocol
    precise: int = 0  # ... and nDPI names it too
    others: Counter = field(default_factory=Counter)  # what portclass said instead
    wrong: Counter = field(default_factory=Counter)  # where portclass names it: what nDPI said


@dataclass
class Result:
    """The whole comparison."""

    rows: dict[str, Row] = field(default_factory=lambda: defaultdict(Row))
    joined: int = 0  # joined flows
    guessed: int = 0  # ... nDPI only guessed (port, address)
    dpi: int = 0  # ... nDPI classified by DPI
    dpi_named: int = 0  # ... and portclass names the same protocol
    unknown_to_portclass: Counter = field(default_factory=Counter)  # nDPI DPI names without a table record
    nonstd: int = 0  # "Known Proto on Non Std Port" joined flows
    nonstd_allowed: int = 0  # ... the registry allows (port unregistered, or a name carries it)
    nonstd_mismatch: int = 0  # ... not allowed, and portclass says mismatch
    nonstd_missed: Counter = field(default_factory=Counter)  # not allowed, no mismatch: (nDPI name, verdict)
    flagged: int = 0  # portclass mismatch on joined DPI flows
    flagged_other: int = 0  # ... nDPI names a different protocol
    flagged_other_list: list = field(default_factory=list)
    app_named: int = 0  # portclass names an application and nDPI names one
    app_agree: int = 0  # ... the same
    app_wrong: Counter = field(default_factory=Counter)  # (portclass app, nDPI app) where they differ
    app_known: int = 0  # nDPI names an application portclass has a record for
    app_found: int = 0  # ... and portclass names it


def compare(pcap_dir: Path = NDPI / "pcap", result_dir: Path = NDPI / "result") -> Result:
    """Run portclass on every capture with an nDPI result and count agreement (see the module docstring)."""
    from classifier.evidence.match import PROTOCOL_CODE
    from classifier.evidence.verdict import V_MISMATCH, VERDICTS, applications, carried, carrier_index, protocol_names
    from classifier.pipeline import analyze
    from classifier.registry.compile import NPORTS
    from classifier.registry.sources import compile_file
    from classifier.report.addr import format_addresses

    reg = compile_file(REGISTRY, use_cache=False)
    idx = carrier_index(reg)
    to_pc = ndpi_names()
    app_ndpi = app_names()
    res = Result()
    for out in sorted(result_dir.glob("*.out")):
        pcap = pcap_dir / out.name[: -len(".out")]
        if not pcap.exists():
            continue
        theirs = parse_ndpi(out)
        tcount = Counter(f.key for f in theirs)
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
        apps = applications(lab.protocol, fl.server_name)
        for f in theirs:
            hits = mine.get(f.key, [])
            if tcount[f.key] != 1 or len(hits) != 1:
                continue
            res.joined += 1
            i = hits[0]
            p_mine = names[i]
            fam = _family(p_mine)
            theirs_pc = set().union(*(to_pc.get(n, set()) for n in (f.master, f.app)))
            verdict = int(lab.verdict[i])
            t = int(lab.transport[i])
            if f.nonstd and t >= 0:
                res.nonstd += 1
                k = t * NPORTS + int(fl.server_port[i])
                allowed = not idx.named[k] or any(
                    carried(idx, k, PROTOCOL_CODE[p], later=True) for p in theirs_pc | fam if p in theirs_pc
                )
                if allowed:
                    res.nonstd_allowed += 1
                elif verdict == V_MISMATCH:
                    res.nonstd_mismatch += 1
                else:
                    res.nonstd_missed[(f.master, VERDICTS[verdict], p_mine)] += 1
            if not f.confidence.startswith("DPI"):
                res.guessed += 1
                continue
            res.dpi += 1
            _count_app(res, app_ndpi, apps[i], f.app)
            agree = bool(fam & theirs_pc)
            res.dpi_named += agree
            if not theirs_pc:
                res.unknown_to_portclass[f.master] += 1
            if p_mine is not None:
                r = res.rows[p_mine]
                r.portclass += 1
                r.precise += agree
                if not agree:
                    r.wrong[f"{f.master}.{f.app}" if f.app else f.master] += 1
                if verdict == V_MISMATCH:
                    res.flagged += 1
                    if not agree:
                        res.flagged_other += 1
                        res.flagged_other_list.append((pcap.name, f.key, p_mine, f.master, f.app))
            for p in theirs_pc:
                r = res.rows[p]
                r.ndpi += 1
                if p in fam:
                    r.same += 1
                elif p_mine is None:
                    r.unverified += 1
                else:
                    r.other += 1
                    r.others[p_mine] += 1
    return res


def pct(a: int, b: int) -> str:
    """a/b as a percentage ('-' when b is 0)."""
    return f"{100 * a / b:5.1f}" if b else "    -"


def table(res: Result) -> str:
    """The per-protocol comparison as a text table, most common protocol first."""
    head = f"{'protocol':<14} {'nDPI':>5} {'agree':>5} {'%':>5} {'other':>5} {'none':>5} {'pc':>5} {'prec%':>5}  notes"
    lines = [head, "-" * len(head)]
    for name, r in sorted(res.rows.items(), key=lambda kv: (-kv[1].ndpi, -kv[1].portclass, kv[0])):
        notes = ", ".join(f"{k} {v}" for k, v in r.others.most_common(3))
        if r.wrong:
            notes += (" | " if notes else "") + "nDPI said: " + ", ".join(f"{k} {v}" for k, v in r.wrong.most_common(3))
        lines.append(
            f"{name:<14} {r.ndpi:>5} {r.same:>5} {pct(r.same, r.ndpi)} {r.other:>5} {r.unverified:>5} "
            f"{r.portclass:>5} {pct(r.precise, r.portclass)}  {notes}"
        )
    return "\n".join(lines)


def summary(res: Result) -> str:
    """The four headline figures with their denominators."""
    bad = sorted(k for k, r in res.rows.items() if r.portclass and 100 * r.precise < 98 * r.portclass)
    ns = res.nonstd - res.nonstd_allowed
    out = [
        f"joined flows: {res.joined} ({res.dpi} classified by nDPI's DPI, {res.guessed} only guessed)",
        f"1. '{NONSTD_RISK}': {res.nonstd} joined, {res.nonstd_allowed} allowed by the registry; of the other "
        f"{ns}, portclass says mismatch on {res.nonstd_mismatch} ({pct(res.nonstd_mismatch, ns).strip()} %)",
        "   missed (nDPI name, verdict, portclass protocol): "
        + ", ".join(f"{k} {v}" for k, v in res.nonstd_missed.most_common(12)),
        f"2. mismatch flags on joined DPI flows: {res.flagged}; nDPI names a different protocol on "
        f"{res.flagged_other} ({pct(res.flagged_other, res.flagged).strip()} %)",
        f"3. protocols below 98 % precision: {', '.join(bad) or 'none'}",
        f"4. nDPI DPI-classified flows whose protocol portclass names: {res.dpi_named}/{res.dpi} "
        f"({pct(res.dpi_named, res.dpi).strip()} %)",
        "   most frequent nDPI protocols portclass has no record for: "
        + ", ".join(f"{k} {v}" for k, v in res.unknown_to_portclass.most_common(15)),
        f"5. applications both name: {res.app_named}, the same {res.app_agree} "
        f"({pct(res.app_agree, res.app_named).strip()} %); nDPI names one portclass has a record for: "
        f"{res.app_known}, portclass names it {res.app_found} ({pct(res.app_found, res.app_known).strip()} %)",
        "   differing (portclass, nDPI): " + ", ".join(f"{a}/{b} {v}" for (a, b), v in res.app_wrong.most_common(8)),
    ]
    return "\n".join(out)


def main() -> None:
    """Print the agreement table and the headline figures (or JSON)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pcap", type=Path, default=NDPI / "pcap")
    ap.add_argument("--result", type=Path, default=NDPI / "result")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    res = compare(args.pcap, args.result)
    if args.json:
        rows = {k: {**vars(v), "others": dict(v.others), "wrong": dict(v.wrong)} for k, v in res.rows.items()}
        print(json.dumps({"rows": rows, "summary": summary(res).splitlines()}, indent=1))
        return
    print(table(res))
    print()
    print(summary(res))
    for x in res.flagged_other_list[:20]:
        print("   flagged, nDPI differs:", x)


if __name__ == "__main__":
    main()
