"""The analyst's terminal summary (rich): the registry's warning first, then what the ports claim.

Order: the registry's own warning in its own words; the provenance of the registry; capture totals
(packets, flows, time span, what was skipped or malformed); services by server port with flows,
packets and bytes; the port-status breakdown; payload-evidence verdicts; flagged flows, worst first
(service mismatches first, with the protocol the payload shows) -- or, after a filter, the flows it
kept, worst first; after ``--dissect tshark``, where Wireshark's dissectors and portclass's evidence
disagree. A narrow terminal leaves whole columns out of the flows table and says which; first-seen
times carry their date only when the capture spans days (the time span line always does).
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import numpy as np
from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..flows import SERVER_RULES, file_groups
from ..interrupt import partial_note
from ..output import emit
from ..pipeline import Analysis, worst_first
from ..registry.model import TRANSPORTS
from .addr import format_addresses
from .rows import flag_strings
from .summary import (
    SCAN_MIN_ATTEMPTS,
    SCAN_MIN_TARGETS,
    ServiceRow,
    flow_count,
    flow_outcomes,
    outcome_counts,
    scanners,
    services,
    totals,
    verdict_counts,
    worst_view,
)

FALLBACK_NOTICE = (
    "ASSIGNMENT OF A PORT NUMBER DOES NOT IN ANY WAY IMPLY AN ENDORSEMENT OF AN APPLICATION OR PRODUCT, "
    "AND THE FACT THAT NETWORK TRAFFIC IS FLOWING TO OR FROM A REGISTERED PORT DOES NOT MEAN THAT IT IS "
    '"GOOD" TRAFFIC, NOR THAT IT NECESSARILY CORRESPONDS TO THE ASSIGNED SERVICE. FIREWALL AND SYSTEM '
    "ADMINISTRATORS SHOULD CHOOSE HOW TO CONFIGURE THEIR SYSTEMS BASED ON THEIR KNOWLEDGE OF THE TRAFFIC "
    "IN QUESTION, NOT WHETHER THERE IS A PORT NUMBER REGISTERED OR NOT."
)
"""The IANA registry's note (RFC 6335 registry), used when the source in use does not carry it."""
PORTCLASS_NOTE = (
    "portclass labels flows by port number only: a label says what the IANA registry assigns to the "
    "server port, not what the traffic is. Its verdicts compare that label with the protocol the first "
    "payload bytes of each flow show (a table of signatures): they can show traffic the port is not "
    "registered for, never that a flow is harmless, and they cannot see inside encrypted payloads past "
    "the handshake nor name protocols without a signature (those flows stay unverified)."
)
_STATUS_STYLE = {"assigned": "green", "reserved": "yellow", "unassigned": "red", "dynamic": "cyan", "unknown": "dim"}
_SEV_STYLE = {6: "bold red", 5: "bold red", 4: "red", 3: "yellow", 2: "cyan", 1: "dim"}


def notice_text(a: Analysis) -> str:
    """The registry's warning, from the source where it has it (else the registry's known wording)."""
    return a.registry.provenance.notice or FALLBACK_NOTICE


def human_bytes(n: float) -> str:
    """1234567 -> '1.2 MB'."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _ts(ns: int | None) -> str:
    if ns is None:
        return "-"
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _warning_panel(a: Analysis) -> Panel:
    src = "" if a.registry.provenance.notice else " (wording of the IANA registry; not in this source)"
    body = Text(notice_text(a), style="bold")
    body.append(f"\n\n{PORTCLASS_NOTE}", style="italic")
    return Panel(body, title=f"[bold red]IANA registry notice{src}[/]", border_style="red", box=box.HEAVY)


def _totals_block(a: Analysis) -> Group:
    from ..filters import selection_of

    t = totals(getattr(a, "whole", None) or a)  # a filter narrows the tables below, not the capture
    span = ""  # both ends always carry their date (a capture may span days)
    if t.first_ts_ns is not None:
        dur = (t.last_ts_ns - t.first_ts_ns) / 1e9
        span = f"{_ts(t.first_ts_ns)} → {_ts(t.last_ts_ns)} ({dur:,.3f} s)"
    by_t = ", ".join(f"{k} {v:,}" for k, v in t.flows_by_transport.items())
    lines = [
        Text.from_markup(
            f"[bold]Capture[/]  {t.packets:,} packets in {t.files} file(s) of {human_bytes(t.bytes)}; {span}"
        ),
        Text.from_markup(
            f"[bold]Flows[/]    {t.flows:,} ({by_t or 'none'}) carrying {t.flow_packets:,} packets, "
            f"{human_bytes(t.flow_bytes)}; [bold]{t.flagged_flows:,} flagged[/]; idle timeout "
            f"{'off' if not t.idle_timeout_s else f'{t.idle_timeout_s:g} s'}"
        ),
    ]
    files = list(a.stats.files)
    if len(files) > 1:
        groups = file_groups(files, merge=False)
        apart = "flows of different files kept apart" + (
            " (ring-buffer parts joined)" if np.unique(groups).size < len(files) else ""
        )
        agg = a.aggregates
        if (agg.flows and not agg.key_group_any) if agg is not None else (len(a.flows) and not a.flows.key_group.any()):
            apart = "flows joined across files (--merge-files)"
        shown = ", ".join(Path(f).name for f in files[:8]) + (f" and {len(files) - 8} more" if len(files) > 8 else "")
        lines.append(Text(f"Files    {shown}; {apart}"))
    elif files:
        lines.append(Text(f"File     {files[0]}"))
    other = [f"{k} {v:,}" for k, v in t.no_ports.items()]
    if t.non_ip:
        other.append(f"non-IP {t.non_ip:,}")
    if other:
        lines.append(Text(f"Without ports (not in flows): {', '.join(other)}"))
    problems = []
    if t.malformed:
        problems.append(f"malformed {t.malformed:,}")
    if t.truncated:
        problems.append(f"truncated {t.truncated:,}")
    if t.fragments_unattributed:
        problems.append(f"IP fragments not attributed to a flow {t.fragments_unattributed:,}")
    for k, v in t.skipped_linktype.items():
        problems.append(f"skipped link type {k}: {v:,}")
    if problems:
        lines.append(Text(f"Not decoded: {'; '.join(problems)}", style="yellow"))
    for w in t.warnings[:10]:
        lines.append(Text(f"warning: {w}", style="yellow"))
    if len(t.warnings) > 10:
        lines.append(Text(f"... and {len(t.warnings) - 10} more warnings", style="yellow"))
    sel = selection_of(a)
    if sel is not None:
        lines.append(Text(f"Shown below: {sel.line()}", style="bold yellow"))
    if partial_note(a):
        lines.append(Text(str(partial_note(a)), style="red"))
    return Group(*lines)


def services_table(
    a: Analysis, top: int, title: str | None = None, service_rows: list[ServiceRow] | None = None
) -> Table:
    """Services claimed by server port, most flows first: the summary's table (also the live view's)."""
    rows = services(a) if service_rows is None else service_rows
    total_b = sum(r.bytes for r in rows) or 1
    title = title or f"Services claimed by server port (top {min(top, len(rows))} of {len(rows)})"
    tbl = Table(title=title, box=box.SIMPLE)
    for col, just in [
        ("service (registry)", "left"),
        ("port", "right"),
        ("status", "left"),
        ("flows", "right"),
        ("packets", "right"),
        ("bytes", "right"),
        ("% bytes", "right"),
    ]:
        tbl.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in rows[:top]:
        style = _STATUS_STYLE.get(r.status, "")
        tbl.add_row(
            r.service or "—",
            f"{r.port}/{r.transport}",
            Text(r.status, style=style),
            f"{r.flows:,}",
            f"{r.packets:,}",
            human_bytes(r.bytes),
            f"{100 * r.bytes / total_b:.1f}",
        )
    return tbl


def outcome_line(a: Analysis, codes: np.ndarray) -> Text:
    """Connections answered, and attempts (rejected, no reply) counted apart."""
    c = outcome_counts(a, codes)
    out = Text.from_markup(f"[bold]Outcome[/]  answered {c['answered']:,}; ")
    out.append(
        f"attempts {c['rejected'] + c['no reply']:,} (rejected {c['rejected']:,}, no reply {c['no reply']:,})",
        style="yellow" if c["rejected"] + c["no reply"] else "",
    )
    out.append(f"; other {c['other']:,} (mid-stream, one-way, not TCP/UDP)")
    return out


def _services_note(a: Analysis, codes: np.ndarray) -> Text:
    c = outcome_counts(a, codes)
    return Text(
        f"Services list answered and other flows; {c['rejected'] + c['no reply']:,} unanswered attempts "
        "counted apart (Outcome above, Scanners below)",
        style="dim",
    )


def scanners_table(a: Analysis, top: int, codes: np.ndarray | None = None) -> Table | None:
    """Sources of many unanswered or rejected attempts across ports or hosts (None when there is none)."""
    rows = scanners(a, codes)
    if not rows:
        return None
    note = a.aggregates.scanners_note() if a.aggregates is not None else None
    tbl = Table(
        title=f"Scanners: sources of {SCAN_MIN_ATTEMPTS}+ unanswered attempts to {SCAN_MIN_TARGETS}+ ports or hosts",
        caption=note,
        box=box.SIMPLE,
    )
    for col, just in [
        ("source", "left"),
        ("attempts", "right"),
        ("rejected", "right"),
        ("no reply", "right"),
        ("ports", "right"),
        ("hosts", "right"),
        ("answered", "right"),
    ]:
        tbl.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in rows[:top]:
        tbl.add_row(
            Text(r.source, style="bold red"),
            f"{r.attempts:,}",
            f"{r.rejected:,}",
            f"{r.no_reply:,}",
            f"{r.ports:,}",
            f"{r.hosts:,}",
            f"{r.answered:,}",
        )
    return tbl


def _status_line(a: Analysis) -> Text:
    t = totals(a)
    out = Text("Server port status: ")
    for i, (k, v) in enumerate(t.flows_by_status.items()):
        if i:
            out.append(", ")
        out.append(f"{k} {v:,}", style=_STATUS_STYLE.get(k, ""))
    return out


FLOW_COLUMNS = ("flags", "client → server", "service", "payload", "packets", "bytes", "first seen", "server by")
"""The flows tables' columns, left to right."""
NARROW_DROPS = ("server by", "first seen", "payload", "packets", "bytes")
"""The columns a narrow terminal leaves out, first to last (the flags, endpoints and service always stay)."""
_ENDPOINTS_MAX = 27  # "255.255.255.255:65535/sctp" and its arrow; longer (IPv6) ends fold


def spans_days(first_ns: int | None, last_ns: int | None) -> bool:
    """Whether a capture's packets fall on more than one UTC day (its times then need their date)."""
    if first_ns is None or last_ns is None:
        return False
    return _ts(first_ns)[:10] != _ts(last_ns)[:10]


def _flow_cells(a: Analysis, sel: np.ndarray, dated: bool) -> dict[str, list]:
    """Every flows-table column's cells for the flows ``sel`` (first seen without its date unless ``dated``)."""
    lab, fl = a.labels, a.flows
    cip = format_addresses(fl.client_hi[sel], fl.client_lo[sel])
    sip = format_addresses(fl.server_hi[sel], fl.server_lo[sel])
    flags = flag_strings(lab.flags[sel])
    names = a.registry.service_names
    cells: dict[str, list] = {c: [] for c in FLOW_COLUMNS}
    cells["payload"] = _payload_cells(a, sel)
    for k, i in enumerate(sel.tolist()):
        t = int(lab.transport[i])
        tname = TRANSPORTS[t] if t >= 0 else str(int(fl.proto[i]))
        sid = int(lab.service[i])
        v6 = fl.ip_version[i] == 6
        c = f"[{cip[k]}]:{fl.client_port[i]}" if v6 else f"{cip[k]}:{fl.client_port[i]}"
        s = f"[{sip[k]}]:{fl.server_port[i]}/{tname}" if v6 else f"{sip[k]}:{fl.server_port[i]}/{tname}"
        ts = _ts(int(fl.first_ts_ns[i]))
        cells["flags"].append(Text(", ".join(flags[k]) or "—", style=_SEV_STYLE.get(int(lab.severity[i]), "")))
        cells["client → server"].append(f"{c} → {s}")
        cells["service"].append(str(names[sid]) if sid >= 0 else "—")
        cells["packets"].append(f"{int(fl.packets_c2s[i]) + int(fl.packets_s2c[i]):,}")
        cells["bytes"].append(human_bytes(int(fl.bytes_c2s[i]) + int(fl.bytes_s2c[i])))
        cells["first seen"].append(ts if dated else ts[11:])
        cells["server by"].append(SERVER_RULES[int(fl.server_rule[i])])
    return cells


def _plain(cell: Text | str) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def _needed(col: str, cells: list) -> int:
    """The width ``col`` needs to stay readable: flags wrap between flags, endpoints at the arrow (folding
    only past IPv4), what a flow said (the payload cell's second line) wraps between words."""
    lines = [ln for c in cells for ln in _plain(c).split("\n")]
    if col == "flags":
        return max([len(col), 23, *(len(w) + 1 for ln in lines for w in ln.split(", "))])
    if col == "client → server":
        return max([22, *(min(len(p) + 2, _ENDPOINTS_MAX) for ln in lines for p in ln.split(" → "))])
    if col == "payload":  # the protocol whole; what the flow said up to 24 wide, wrapping past that
        parts = [(k, ln) for c in cells for k, ln in enumerate(_plain(c).split("\n"))]
        return max([len(col), 20, *(len(ln) if k == 0 else min(len(ln), 24) for k, ln in parts)])
    return max([len(col), *(len(ln) for ln in lines)])


def flows_table(a: Analysis, order: np.ndarray, title: str, top: int, width: int) -> tuple[Table, Text | None]:
    """The flows ``order[:top]`` as a table fitting ``width``, and a note naming the columns it left out.

    A narrow terminal drops whole columns (``NARROW_DROPS`` order) rather than wrapping every cell into
    an unreadable column of fragments; the note says which and how wide a terminal shows them all.
    """
    sel = order[:top]
    t = totals(getattr(a, "whole", None) or a)
    cells = _flow_cells(a, sel, spans_days(t.first_ts_ns, t.last_ts_ns))
    need = {c: _needed(c, cells[c]) + 3 for c in FLOW_COLUMNS}  # padding and the column gap
    cols = list(FLOW_COLUMNS)
    full = sum(need.values()) + 1
    dropped = []
    for col in NARROW_DROPS:
        if sum(need[c] for c in cols) + 1 <= width:
            break
        cols.remove(col)
        dropped.append(col)
    tbl = Table(title=title, box=box.SIMPLE)
    for col in cols:
        tbl.add_column(
            col,
            justify="right" if col in ("packets", "bytes") else "left",
            no_wrap=col not in ("client → server", "flags", "payload"),
            overflow="fold",
            ratio=1 if col == "client → server" else None,
            min_width=need[col] - 3 if col in ("client → server", "flags", "payload") else None,
        )
    for k in range(len(sel)):
        tbl.add_row(*(cells[c][k] for c in cols))
    note = None
    if dropped:
        note = Text(
            f"narrow terminal ({width} columns): columns {', '.join(reversed(dropped))} left out; "
            f"widen to {full} columns to see them",
            style="yellow",
        )
    return tbl, note


def _flagged_table(a: Analysis, top: int, width: int) -> tuple[Table, Text | None]:
    """The worst flagged flows (of the run's worst flows kept, ``summary.worst_view``), saying of how many."""
    v = worst_view(a)
    order = worst_first(v)
    order = order[v.labels.severity[order] > 0]
    title = f"Flagged flows, worst first (top {min(top, len(order))} of {totals(a).flagged_flows})"
    return flows_table(v, order, title, top, width)


def _kept_table(a: Analysis, top: int, width: int) -> tuple[Table, Text | None]:
    """A filtered run's kept flows, worst first (flagged or not), saying how many ``top`` left out."""
    from ..filters import selection_of

    v = worst_view(a)
    order = worst_first(v)
    total = flow_count(a)
    shown = min(top, len(order))
    left = f"; {total - shown:,} more left out (--top)" if total > shown else ""
    sel = selection_of(a)
    what = sel.line() if sel is not None else "kept flows"
    title = f"Flows kept by the {what}, worst first (top {shown} of {total}{left})"
    return flows_table(v, order, title, top, width)


_VERDICT_STYLE = {"consistent": "green", "mismatch": "bold red", "unregistered": "yellow", "unverified": "dim"}


def _payload_cells(a: Analysis, rows: np.ndarray) -> list[Text]:
    """The observed protocol of each flow in ``rows``, styled by its verdict ('—' when none)."""
    from ..evidence.verdict import VERDICTS, protocol_names, said_summary

    lab = a.labels
    shown = protocol_names(lab.protocol[rows], display=True)
    said = said_summary(a.flows, rows)  # what the flow said: SNI, HTTP request, DNS question, banners
    out = []
    for k, i in enumerate(rows.tolist()):
        v = VERDICTS[int(lab.verdict[i])]
        cell = Text(shown[k] or "—", style=_VERDICT_STYLE.get(v, ""))
        if said[k]:
            cell.append("\n" + said[k].decode("utf-8", errors="replace")[:60], style="dim")
        out.append(cell)
    return out


def _evidence_line(a: Analysis) -> Text:
    """Verdict counts: how many flows the payload confirms or contradicts."""
    counts = verdict_counts(a)
    if counts is None:
        return Text("Payload evidence: not inspected (--dissect none): labels rest on port numbers only", style="dim")
    out = Text("Payload evidence: ")
    for i, (name, n) in enumerate(counts.items()):
        if i:
            out.append(", ")
        out.append(f"{name} {n:,}", style=_VERDICT_STYLE.get(name, ""))
    out.append(" (unverified: no payload, or nothing recognised)", style="dim")
    return out


def _tshark_table(a: Analysis, top: int) -> Table | None:
    """Where tshark's dissectors and portclass's evidence disagree (only after --dissect tshark)."""
    from ..evidence.tshark import agreement
    from ..evidence.verdict import protocol_names
    from .aggregates import DISAGREEMENTS as kinds

    agg = a.aggregates
    whole = agg.agreement_counts() if agg is not None else None  # counted as flows ended
    if whole is not None:
        a = agg.disagreements_view(a)  # the worst disagreements kept
    lab, fl = a.labels, a.flows
    ts = lab.tshark_protocol
    if whole is None and (ts is None or all(x is None for x in ts.tolist())):
        return None
    agree = agreement(lab) if len(fl) else np.zeros(0, dtype=object)
    counts = {k: int(np.count_nonzero(agree == k)) for k in ("agree",) + kinds}
    if whole is not None:
        counts = {k: whole[k] for k in counts}
    order = worst_first(a)
    order = order[np.isin(agree[order], kinds)]
    sel = order[:top]
    head = ", ".join(f"{k} {v:,}" for k, v in counts.items())
    tbl = Table(title=f"portclass vs tshark ({head}; top {len(sel)} disagreements)", box=box.SIMPLE)
    for col in ("client → server", "service (registry)", "portclass", "tshark", "how"):
        tbl.add_column(col, overflow="fold")
    if not sel.size:
        return tbl
    cip = format_addresses(fl.client_hi[sel], fl.client_lo[sel])
    sip = format_addresses(fl.server_hi[sel], fl.server_lo[sel])
    mine = protocol_names(lab.protocol[sel], display=True)
    names = a.registry.service_names
    for k, i in enumerate(sel.tolist()):
        sid = int(lab.service[i])
        tbl.add_row(
            f"{cip[k]}:{fl.client_port[i]} → {sip[k]}:{fl.server_port[i]}",
            str(names[sid]) if sid >= 0 else "—",
            mine[k] or "—",
            str(ts[i] or "—"),
            str(agree[i]),
        )
    return tbl


def render(a: Analysis, console: Console, top: int = 20) -> None:
    """Print the summary to ``console``."""
    console.print(_warning_panel(a))
    prov = a.registry.provenance
    console.print(Text(prov.line(), style="dim"))
    if not prov.full:
        from ..registry.sources import PARTIAL_NOTICE

        console.print(Text(PARTIAL_NOTICE, style="yellow"))
    console.print(_totals_block(a))
    codes = flow_outcomes(a)
    console.print(outcome_line(a, codes))
    console.print(services_table(a, top))
    console.print(_services_note(a, codes))
    scan = scanners_table(a, top, codes)
    if scan is not None:
        console.print(scan)
    console.print(_status_line(a))
    console.print(_evidence_line(a))
    from ..filters import selection_of

    table, note = (_kept_table if selection_of(a) is not None else _flagged_table)(a, top, console.width)
    console.print(table)
    if note is not None:
        console.print(note)
    tshark = _tshark_table(a, top)
    if tshark is not None:
        console.print(tshark)


def write(a: Analysis, fmt: str, out: str | Path | None, top: int = 20, **_: object) -> None:
    """Print to the terminal, or write plain text to ``out`` atomically."""
    if out is None or str(out) == "-":
        con = Console(highlight=False)
        if not con.is_terminal:
            con = Console(highlight=False, width=_text_width())
        render(a, con, top)
        return
    buf = io.StringIO()
    render(a, Console(file=buf, width=_text_width(), highlight=False, color_system=None), top)
    emit(buf.getvalue(), out)


def _text_width() -> int:
    """Width of the summary written to a file or pipe: ``COLUMNS`` when set (40 or more), else 160."""
    import os

    value = os.environ.get("COLUMNS", "")
    return int(value) if value.isdigit() and int(value) >= 40 else 160
