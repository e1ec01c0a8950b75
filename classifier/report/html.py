"""Self-contained HTML report for a SOC shift lead: one file, no network access when opened.

Layout, top to bottom: the IANA registry's warning as a banner, portclass's note that labels are
port-based and the registry's provenance; capture totals; charts (services by bytes and by flows,
server-port status and flags, flows over time by severity, top talkers); the payload evidence
(flows per verdict, protocols seen in payloads by verdict); then every flow in a sortable,
filterable, paginated table, flagged flows first (``worst_first``: service mismatches lead), with
the protocol each flow's payload shows, its verdict and the TLS server name where one was sent,
Zeek's conn_state (its meaning on hover) and the capture file the flow came from (full path on
hover). When every flow starts on one UTC day the first-seen cells show times, the header the date.

Charts are inline SVG built here in Python rather than a JavaScript charting library: they are
plain bars and columns, so SVG keeps a typical report at 40-100 kB (plotly's inlined bundle alone
is about 3.5 MB), renders without JavaScript, prints, and adds no dependency. The flow table is the
only scripted part: its rows travel as compact JSON (indexes into string tables) in a
``<script type="application/json">`` block and are drawn with ``textContent``, so nothing from
traffic (TLS server names come straight from packets) or the registry is ever parsed as HTML.
Every string in the markup is escaped, and a Content-Security-Policy admits only the report's own
script (by hash) and no network at all.

At most ``max_rows`` flows (worst first) are embedded, with a visible note when more exist; totals
and charts always cover every flow.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import json
import math
import string
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..conn import CONN_STATE_MEANINGS, CONN_STATES, conn_fields
from ..evidence.table import PROTOCOLS
from ..evidence.verdict import V_CONSISTENT, V_MISMATCH, V_UNREGISTERED, V_UNVERIFIED, VERDICTS, note, said_summary
from ..flows import SERVER_RULES
from ..interrupt import partial_note
from ..label import FLAG_NAMES, SEVERITY, flag_list
from ..output import emit
from ..pipeline import Analysis, worst_first
from ..registry.compile import STATUS_NAMES
from ..registry.model import TRANSPORTS
from .addr import format_addresses
from .summary import (
    SCAN_MIN_ATTEMPTS,
    SCAN_MIN_TARGETS,
    ServiceRow,
    Totals,
    flow_count,
    flow_outcomes,
    outcome_counts,
    scanners,
    services,
    totals,
    verdict_counts,
    worst_view,
)
from .terminal import PORTCLASS_NOTE, human_bytes, notice_text

DEFAULT_MAX_ROWS = 50_000
"""Flows embedded in the table by default (worst first); about 70 bytes of JSON each (3.5 MB at the cap)."""
DEFAULT_CHART_BARS = 10
"""Bars per ranking chart (services, talkers); the rest are summed into an "other" bar."""

STATUS_COLORS: dict[str, str] = {
    "assigned": "#3572b0",
    "reserved": "#d68a00",
    "unassigned": "#c62828",
    "dynamic": "#7e57c2",
    "unknown": "#90a4ae",
}
"""Colour of each server-port status in charts and table."""
_OTHER_COLOR = "#b0bec5"
_SEV_GROUPS: tuple[tuple[str, int, int, str], ...] = (
    ("high (unauthorized use known, mismatch)", 5, 6, "#b71c1c"),
    ("medium (reserved, unassigned, other transport)", 3, 4, "#ef6c00"),
    ("low (dynamic, unknown port)", 1, 2, "#9575cd"),
    ("not flagged", 0, 0, "#cfd8dc"),
)
"""Severity bands of the time chart: label, lowest and highest severity, colour."""
VERDICT_COLORS: dict[str, str] = {
    "mismatch": "#b71c1c",
    "unregistered": "#d68a00",
    "consistent": "#2e7d32",
    "unverified": "#b0bec5",
}
"""Colour of each payload-evidence verdict in charts."""
VERDICT_HELP: dict[str, str] = {
    "mismatch": "the payload is a protocol that no name registered on the server port carries",
    "unregistered": "the payload was recognised, but the server port has no registered name",
    "consistent": "the payload is a protocol that a name registered on the server port carries",
    "unverified": "no payload, or nothing in it recognised",
}
"""What each verdict means (chart tooltips and the legend under the verdict chart)."""
_VERDICT_ORDER = (V_MISMATCH, V_UNREGISTERED, V_CONSISTENT, V_UNVERIFIED)
"""Verdict codes, worst first (charts, the payload column's sort order)."""
_PROTO_NAMES = {6: "tcp", 17: "udp", 132: "sctp", 33: "dccp"}
_FLAG_SEVERITY = {name: SEVERITY[bit] for bit, name in FLAG_NAMES.items()}


def _esc(value: object) -> str:
    """Escape any value for HTML text and attribute values (quotes included)."""
    return html.escape(str(value), quote=True)


def _asset(name: str) -> str:
    """Text of a file in ``html_assets`` (installed as package data)."""
    return resources.files(__package__).joinpath("html_assets", name).read_text(encoding="utf-8")


def _json_for_script(obj: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: no ``<``, ``>`` or ``&`` can end the block."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for ch, rep in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, rep)
    return text


def _fmt_ts(ns: int | None) -> str:
    """UTC time of a nanosecond timestamp, to the millisecond: '2026-08-17 09:00:05.123'."""
    if ns is None:
        return "-"
    try:
        when = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=int(ns) // 1000)
    except OverflowError:  # beyond year 9999 (a damaged timestamp): say so rather than fail
        return f"{'+' if ns > 0 else '-'}{abs(int(ns)) // 10**9} s from 1970"
    return when.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _fmt_duration(seconds: float) -> str:
    """Human duration: '850 ms', '12.4 s', '4 min 05 s', '3 h 07 min', '2 d 04 h'."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m:02d} min"
    d, h = divmod(h, 24)
    return f"{d} d {h:02d} h"


def _transport_name(t: int, proto: int) -> str:
    return TRANSPORTS[t] if t >= 0 else _PROTO_NAMES.get(proto, str(proto))


# --------------------------------------------------------------------------- SVG charts


def _nice_step(v: float) -> int:
    """Smallest whole 1/2/5 x 10^k at or above ``v`` (a gridline step for counts)."""
    if v <= 1:
        return 1
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 5, 10):
        if m * exp >= v:
            return int(m * exp)
    return int(10 * exp)  # pragma: no cover


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def _legend(items: Sequence[tuple[str, str]]) -> str:
    """HTML legend below a chart: (label, colour) pairs."""
    spans = "".join(
        f'<span class="lg"><svg width="10" height="10" aria-hidden="true"><rect width="10" height="10" rx="2" '
        f'fill="{c}"/></svg>{_esc(label)}</span>'
        for label, c in items
    )
    return f'<div class="legend">{spans}</div>'


def _empty_chart(msg: str = "No flows") -> str:
    text = f'<text x="280" y="35" class="empty">{_esc(msg)}</text>'
    return f'<svg class="chart" viewBox="0 0 560 60" role="img">{text}</svg>'


def hbar_chart(
    bars: Sequence[tuple[str, Sequence[tuple[float, str]], str, str]],
    label: str,
    width: int = 560,
    label_w: int = 190,
) -> str:
    """Horizontal bar chart as inline SVG.

    ``bars``: (label, segments of (value, colour) stacked left to right, value text, tooltip).
    """
    if not bars:
        return _empty_chart()
    row_h, top = 24, 6
    value_w = 78
    plot_w = width - label_w - value_w - 8
    vmax = max(sum(v for v, _ in segs) for _, segs, _, _ in bars) or 1.0
    height = top + row_h * len(bars) + 4
    out = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(label)}" '
        f'preserveAspectRatio="xMinYMin meet">'
    ]
    for i, (text, segs, vtext, tip) in enumerate(bars):
        y = top + i * row_h
        out.append(f"<g><title>{_esc(tip)}</title>")
        out.append(f'<text x="{label_w - 8}" y="{y + 16}" class="bl">{_esc(_short(text, 30))}</text>')
        out.append(f'<rect x="{label_w}" y="{y + 3}" width="{plot_w}" height="{row_h - 6}" class="track"/>')
        x = float(label_w)
        for v, color in segs:
            w = plot_w * v / vmax
            if w > 0:
                out.append(
                    f'<rect x="{x:.1f}" y="{y + 3}" width="{max(w, 1.5):.1f}" height="{row_h - 6}" fill="{color}"/>'
                )
            x += w
        out.append(f'<text x="{label_w + plot_w + 8}" y="{y + 16}" class="bv">{_esc(vtext)}</text></g>')
    out.append("</svg>")
    return "".join(out)


@dataclass
class _ChartRow:
    """One bar of a services chart: a server port, or every dynamic-range port of a transport."""

    label: str
    status: str
    flows: int
    bytes: int
    tip: str


def service_chart_rows(a: Analysis, rows: list[ServiceRow]) -> list[_ChartRow]:
    """Services rows for charts: dynamic-range ports (peer-to-peer, ephemeral services) grouped per transport."""
    reg = a.registry
    out: list[_ChartRow] = []
    dynamic: dict[str, list[ServiceRow]] = {}
    for r in rows:
        if r.status == "dynamic" and not r.service:
            dynamic.setdefault(r.transport, []).append(r)
            continue
        desc = ""
        if r.transport in TRANSPORTS:
            recs = reg.names_on(r.transport, r.port)
            prim = next((x for x in recs if not x.alias_of), recs[0] if recs else None)
            desc = prim.description if prim else ""
        flags = ", ".join(n for b, n in FLAG_NAMES.items() if r.flags & b) or "no flags"
        tip = f"{r.service or '(no service name)'} on {r.port}/{r.transport}: {r.status}, {flags}"
        tip += f"\nregistry: {desc}" if desc else ""
        tip += f"\n{r.flows:,} flows, {r.packets:,} packets, {r.bytes:,} bytes"
        out.append(_ChartRow(f"{r.service or f'({r.status})'} {r.port}/{r.transport}", r.status, r.flows, r.bytes, tip))
    for transport, group in dynamic.items():
        flows, by = sum(r.flows for r in group), sum(r.bytes for r in group)
        ports = ", ".join(str(r.port) for r in group[:12]) + (", …" if len(group) > 12 else "")
        tip = f"dynamic range 49152-65535/{transport}, {len(group):,} server ports ({ports})"
        tip += f": {flows:,} flows, {by:,} bytes"
        ports_label = f"{len(group)} port{'s' if len(group) > 1 else ''}"
        out.append(_ChartRow(f"(dynamic) {ports_label}/{transport}", "dynamic", flows, by, tip))
    return out


def services_charts(a: Analysis, rows: list[ServiceRow], bars: int) -> tuple[str, str]:
    """Two SVG charts: services (server port and transport) by bytes and by flows, coloured by status."""
    crows = service_chart_rows(a, rows)
    if not crows:
        return _empty_chart(), _empty_chart()
    charts = []
    for key, fmt in (("bytes", human_bytes), ("flows", lambda v: f"{int(v):,}")):
        ranked = sorted(crows, key=lambda r, k=key: (-getattr(r, k), -r.flows, r.label))
        items = [
            (
                r.label,
                [(float(getattr(r, key)), STATUS_COLORS.get(r.status, _OTHER_COLOR))],
                fmt(getattr(r, key)),
                r.tip,
            )
            for r in ranked[:bars]
        ]
        rest = ranked[bars:]
        if rest:
            v = float(sum(getattr(r, key) for r in rest))
            items.append((f"other ({len(rest)} ports)", [(v, _OTHER_COLOR)], fmt(v), f"{len(rest)} other server ports"))
        charts.append(hbar_chart(items, f"Services by {key}"))
    return charts[0], charts[1]


def status_chart(t: Totals, a: Analysis) -> str:
    """SVG bars: flows per server-port status, then flows per flag."""
    n = max(t.flows, 1)
    items = [
        (s, [(float(v), STATUS_COLORS.get(s, _OTHER_COLOR))], f"{v:,} ({100 * v / n:.0f}%)", f"{s}: {v:,} flows")
        for s, v in sorted(t.flows_by_status.items(), key=lambda kv: -kv[1])
    ]
    agg = a.aggregates
    sev_color = {6: "#b71c1c", 5: "#b71c1c", 4: "#e65100", 3: "#ef6c00", 2: "#9575cd", 1: "#90a4ae"}
    for bit, name in FLAG_NAMES.items():
        c = int(np.count_nonzero(a.labels.flags & bit) if agg is None else agg.by_flag[bit.bit_length() - 1])
        if c:
            items.append(
                (
                    f"flag: {name}",
                    [(float(c), sev_color[SEVERITY[bit]])],
                    f"{c:,} ({100 * c / n:.0f}%)",
                    f"{name}: {c:,} flows",
                )
            )
    return hbar_chart(items, "Server port status and flags")


def talkers_chart(a: Analysis, bars: int) -> str:
    """SVG bars: hosts by bytes (as client and as server), over every flow."""
    fl = a.flows
    n = len(fl)
    if a.aggregates is not None:
        note = a.aggregates.talkers_note()
        cap = f'<p class="cap" id="pc-talkers-note">Top talkers {_esc(note)}.</p>' if note else ""
        return cap + _talker_bars(a.aggregates.talkers(bars))
    if n == 0:
        return _empty_chart()
    tot = fl.bytes_c2s.astype(np.float64) + fl.bytes_s2c
    pair = np.stack([np.concatenate([fl.client_hi, fl.server_hi]), np.concatenate([fl.client_lo, fl.server_lo])], 1)
    uniq, inv = np.unique(pair, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    as_client = np.bincount(inv[:n], weights=tot, minlength=len(uniq))
    as_server = np.bincount(inv[n:], weights=tot, minlength=len(uniq))
    fc = np.bincount(inv[:n], minlength=len(uniq))
    fs = np.bincount(inv[n:], minlength=len(uniq))
    total = as_client + as_server
    top = np.lexsort((np.arange(len(uniq)), -total))[:bars]
    return _talker_bars(
        [(int(uniq[i, 0]), int(uniq[i, 1]), int(as_client[i]), int(as_server[i]), int(fc[i]), int(fs[i])) for i in top]
    )


def _talker_bars(rows: list[tuple[int, int, int, int, int, int]]) -> str:
    """The talkers chart of rows (address hi, lo, bytes as client, as server, flows as client, as server)."""
    if not rows:
        return _empty_chart()
    names = format_addresses(
        np.array([r[0] for r in rows], dtype=np.uint64), np.array([r[1] for r in rows], dtype=np.uint64)
    )
    items = []
    for k, (_, _, as_client, as_server, fc, fs) in enumerate(rows):
        total = as_client + as_server
        tip = (
            f"{names[k]}: {total:,} bytes; as client {as_client:,} bytes in {fc:,} flows, "
            f"as server {as_server:,} bytes in {fs:,} flows"
        )
        segs = [(float(as_client), "#3572b0"), (float(as_server), "#26a69a")]
        items.append((str(names[k]), segs, human_bytes(float(total)), tip))
    return hbar_chart(items, "Top talkers by bytes")


def verdict_chart(a: Analysis) -> str:
    """SVG bars: flows per payload-evidence verdict, worst first."""
    counts = verdict_counts(a)
    if counts is None:
        return _empty_chart("Payload not inspected (--dissect none)")
    n = flow_count(a)
    if not n:
        return _empty_chart()
    items = []
    for code in _VERDICT_ORDER:
        name = VERDICTS[code]
        c = counts[name]
        items.append(
            (
                name,
                [(float(c), VERDICT_COLORS[name])],
                f"{c:,} ({100 * c / n:.0f}%)",
                f"{name}: {c:,} flows ({VERDICT_HELP[name]})",
            )
        )
    return hbar_chart(items, "Flows per payload-evidence verdict")


def protocol_chart(a: Analysis, bars: int) -> str:
    """SVG bars: protocols seen in payloads by flows, each bar split by verdict (mismatches first)."""
    if not a.payload_inspected:
        return _empty_chart("Payload not inspected (--dissect none)")
    lab = a.labels
    seen = lab.protocol > 0
    if a.aggregates is not None:
        per = a.aggregates.by_protocol.copy()
    else:
        per = np.zeros((len(PROTOCOLS) + 1, len(VERDICTS)), dtype=np.int64)
        np.add.at(per, (lab.protocol[seen].astype(np.int64), lab.verdict[seen].astype(np.int64)), 1)
    if not per.any():
        return _empty_chart("No protocol recognised in any payload")
    totals_ = per.sum(axis=1)
    codes = [int(c) for c in np.lexsort((np.arange(len(totals_)), -per[:, V_MISMATCH], -totals_)) if totals_[c]]
    items = []
    for code in codes[:bars]:
        proto = PROTOCOLS[code - 1]
        parts = [(VERDICTS[v], int(per[code, v])) for v in _VERDICT_ORDER if per[code, v]]
        tip = f"{proto.display} ({proto.name}): {int(totals_[code]):,} flows; " + ", ".join(
            f"{name} {c:,}" for name, c in parts
        )
        segs = [(float(c), VERDICT_COLORS[name]) for name, c in parts]
        items.append((proto.display, segs, f"{int(totals_[code]):,}", tip))
    rest = codes[bars:]
    if rest:
        v = int(totals_[rest].sum())
        items.append((f"other ({len(rest)})", [(float(v), _OTHER_COLOR)], f"{v:,}", f"{len(rest)} other protocols"))
    return hbar_chart(items, "Protocols seen in payloads, by verdict")


def time_bins(ts: np.ndarray, t0: int, span: int, nbins: int) -> np.ndarray:
    """Bin index (0 .. nbins-1) of int64 ns timestamps ``ts`` >= ``t0`` over ``span`` ns, for any span.

    Differences are taken in uint64 (exact for any two int64 values, the later minus the earlier)
    and divided by a whole bin width, so nothing is multiplied up to an int64 overflow.

    >>> time_bins(np.array([0, 5, 10, 2**62], dtype=np.int64), 0, 2**62, 4).tolist()
    [0, 0, 0, 3]
    """
    width = span // nbins + 1  # nbins * width > span: the last timestamp falls in the last bin
    diff = ts.view(np.uint64) - np.uint64(t0 % 2**64)
    return (diff // np.uint64(width)).astype(np.int64)


def _axis_label_cut(t0: int, t1: int) -> slice:
    """Which part of ``_fmt_ts`` an axis label shows: the time of day within a day, the date and time
    over days, the date alone over years (the year whenever it changes)."""
    first, last = _fmt_ts(t0), _fmt_ts(t1)
    if first[:10] == last[:10]:
        return slice(11, 19)  # 09:00:05
    if t1 - t0 > 180 * 86_400 * 10**9 or first[:4] != last[:4]:
        return slice(0, 10)  # 2026-08-17
    return slice(5, 16)  # 08-17 09:00


def timeline_chart(a: Analysis, width: int = 1140, height: int = 220) -> str:
    """SVG columns: flows started per time bin, stacked by severity band (flagged at the bottom).

    From a run's running aggregates past ``aggregates.TIMELINE_EXACT`` flows, the columns are whole
    multiples of the bins the aggregates counted in, and a caption says how wide those are.
    """
    fl, lab = a.flows, a.labels
    caption = ""
    if a.aggregates is not None:
        got = a.aggregates.timeline.chart_bins()
        if got is None:
            return _empty_chart()
        t0, bin_ns, counts, res = got
        nbins = counts.shape[1]
        t1 = int(a.aggregates.timeline.tmax)
        span = max(t1 - t0, 1)
        stacks = [(counts[b], color) for b, (_, _, _, color) in enumerate(_SEV_GROUPS)]
        if res:
            span = nbins * bin_ns - 1  # the axis covers the columns
            caption = (
                f'<p class="cap" id="pc-timeline-note">{int(counts.sum()):,} flow starts counted in bins of '
                f"{_esc(_fmt_duration(res / 1e9))} (too many to keep each start time): each column is a whole "
                "number of them.</p>"
            )
    elif len(fl) == 0:
        return _empty_chart()
    else:
        ts = fl.first_ts_ns.astype(np.int64)
        t0, t1 = int(ts.min()), int(ts.max())
        span = max(t1 - t0, 1)
        nbins = 60 if span > 60 * 10**9 else 30
        idx = time_bins(ts, t0, span, nbins)
        sev = lab.severity.astype(np.int64)
        stacks = []
        for _, lo, hi, color in _SEV_GROUPS:
            m = (sev >= lo) & (sev <= hi)
            stacks.append((np.bincount(idx[m], minlength=nbins), color))
        bin_ns = span // nbins + 1  # as time_bins cuts them
    totals_per_bin = sum(c for c, _ in stacks)
    ymax = 4 * _nice_step(float(totals_per_bin.max()) / 4)  # four gridlines at whole counts
    left, right, top, bottom = 48, 12, 10, 28
    pw, ph = width - left - right, height - top - bottom
    bw = pw / nbins
    out = [
        caption,
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="Flows over time by severity" '
        f'preserveAspectRatio="xMinYMin meet">'
    ]
    for k in range(5):
        v = ymax * k / 4
        y = top + ph - ph * k / 4
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" class="ay">{v:,.0f}</text>')
    cut = _axis_label_cut(t0, t1)
    flagged_per_bin = totals_per_bin - stacks[-1][0]
    for b in range(nbins):
        total = int(totals_per_bin[b])
        if not total:
            continue
        x = left + b * bw + 1
        y = top + ph
        start = _fmt_ts(t0 + b * bin_ns)
        tip = f"{start} UTC (+{_fmt_duration(bin_ns / 1e9)}): {total:,} flows, {int(flagged_per_bin[b]):,} flagged"
        out.append(f"<g><title>{_esc(tip)}</title>")
        for counts, color in stacks:
            c = int(counts[b])
            if not c:
                continue
            h = ph * c / ymax
            y -= h
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(bw - 2, 1):.1f}" height="{h:.1f}" fill="{color}"/>')
        out.append("</g>")
    ticks = 6
    for k in range(ticks + 1):
        t = t0 + span * k // ticks
        x = left + pw * k / ticks
        label = _fmt_ts(t)[cut]
        anchor = "start" if k == 0 else ("end" if k == ticks else "middle")
        out.append(f'<text x="{x:.1f}" y="{height - 8}" class="ax" text-anchor="{anchor}">{_esc(label)}</text>')
    out.append(f'<line x1="{left}" x2="{width - right}" y1="{top + ph}" y2="{top + ph}" class="axis"/>')
    out.append("</svg>")
    return "".join(out)


# --------------------------------------------------------------------------- flow table data


def table_payload(a: Analysis, max_rows: int = DEFAULT_MAX_ROWS) -> dict[str, Any]:
    """The embedded flows (worst first, at most ``max_rows``) as string tables plus integer rows.

    Row layout (``ROW_FIELDS``): severity, client host, client port, server host, server port,
    transport, service (-1 none), status, flag set, packets, bytes, first seen (microseconds after
    ``base_ms``), server rule, IPv6 (0/1), observed protocol (index into ``protocols``, -1 none),
    verdict (index into ``verdicts``), TLS server name (index into ``server_names``, -1 none),
    verdict note (index into ``notes``, -1 none), capture file (index into ``files``, -1 none) and
    Zeek's conn_state (index into ``states``). Hosts are numbered in address order and services in
    name order, so sorting by index sorts by value.
    """
    t = totals(a)
    n = t.flows
    a = worst_view(a)  # the run's worst flows, when the run kept only those (report.aggregates)
    fl, lab, reg = a.flows, a.labels, a.registry
    sel = worst_first(a)[: max(int(max_rows), 0)] if len(fl) else np.zeros(0, dtype=np.int64)
    base_ms = int(t.first_ts_ns) // 1_000_000 if n else 0  # type: ignore[arg-type]
    # hosts: one table for clients and servers, in numeric address order
    k = len(sel)
    pair = np.stack(
        [
            np.concatenate([fl.client_hi[sel], fl.server_hi[sel]]),
            np.concatenate([fl.client_lo[sel], fl.server_lo[sel]]),
        ],
        1,
    )
    if k:
        uniq, hinv = np.unique(pair, axis=0, return_inverse=True)
        hinv = hinv.reshape(-1)
        hosts = format_addresses(uniq[:, 0], uniq[:, 1]).tolist()
    else:
        hinv, hosts = np.zeros(0, dtype=np.int64), []
    # services: registry record ids -> names sorted by name (ties by id)
    sids = lab.service[sel].astype(np.int64)
    uniq_sid = np.unique(sids[sids >= 0])
    names = [str(reg.service_names[i]) for i in uniq_sid.tolist()]
    descs = [reg.records[i].description for i in uniq_sid.tolist()]
    by_name = sorted(range(len(names)), key=lambda j: (names[j].lower(), names[j], j))
    remap = np.full(len(names), -1, dtype=np.int64)
    remap[by_name] = np.arange(len(names))
    svc = np.full(k, -1, dtype=np.int64)
    if len(uniq_sid):
        svc[sids >= 0] = remap[np.searchsorted(uniq_sid, sids[sids >= 0])]
    # flag sets, transports
    uflags, finv = np.unique(lab.flags[sel], return_inverse=True)
    flag_sets = [flag_list(u) for u in uflags.tolist()]
    tkey = lab.transport[sel].astype(np.int64) * 256 + fl.proto[sel]
    utk, tinv = np.unique(tkey, return_inverse=True)
    transports = [_transport_name(int(u) // 256 if u >= 0 else -1, int(u) % 256) for u in utk.tolist()]
    off_us = (fl.first_ts_ns[sel].astype(np.int64) - base_ms * 1_000_000) // 1000
    sni_idx, server_names = _server_names(said_summary(fl, sel))  # SNI, else what the flow said
    note_idx, notes = _notes(a, sel)
    files = list(a.stats.files)
    file_idx = fl.file_index[sel].astype(np.int64)
    file_idx[file_idx >= len(files)] = -1
    state_idx = _state_index(conn_fields(fl.take(sel))["conn_state"] if k else np.zeros(0, dtype=object))
    cols = [
        lab.severity[sel].astype(np.int64),
        hinv[:k],
        fl.client_port[sel].astype(np.int64),
        hinv[k:],
        fl.server_port[sel].astype(np.int64),
        tinv.reshape(-1),
        svc,
        lab.status[sel].astype(np.int64),
        finv.reshape(-1),
        fl.packets_c2s[sel].astype(np.int64) + fl.packets_s2c[sel],
        fl.bytes_c2s[sel].astype(np.int64) + fl.bytes_s2c[sel],
        off_us,
        fl.server_rule[sel].astype(np.int64),
        (fl.ip_version[sel] == 6).astype(np.int64),
        lab.protocol[sel].astype(np.int64) - 1,
        lab.verdict[sel].astype(np.int64),
        sni_idx,
        note_idx,
        file_idx,
        state_idx,
    ]
    rows = np.stack(cols, 1).tolist() if k else []
    return {
        "base_ms": base_ms,
        "total": n,
        "flagged": t.flagged_flows,
        "hosts": hosts,
        "services": [names[j] for j in by_name],
        "descs": [descs[j] for j in by_name],
        "statuses": list(STATUS_NAMES),
        "status_colors": STATUS_COLORS,
        "flag_sets": flag_sets,
        "flag_severity": _FLAG_SEVERITY,
        "transports": transports,
        "rules": list(SERVER_RULES),
        "inspected": a.payload_inspected,
        "protocols": [[p.name, p.display] for p in PROTOCOLS],
        "verdicts": list(VERDICTS),
        "verdict_rank": [_VERDICT_ORDER.index(v) for v in range(len(VERDICTS))],
        "server_names": server_names,
        "notes": notes,
        "files": files,
        "states": list(CONN_STATES),
        "state_meanings": [CONN_STATE_MEANINGS[s] for s in CONN_STATES],
        # the day of every flow's first packet when the capture stays within one UTC day (the table
        # then shows times only, the date in the column's header); None when it spans days
        "day": _one_day(t),
        "rows": rows,
    }


ROW_FIELDS = ("sev", "client", "cport", "server", "sport", "transport", "service", "status", "flags",
              "packets", "bytes", "first_us", "rule", "v6", "protocol", "verdict", "server_name",
              "note", "file", "state")  # fmt: skip
"""Field order of each row in ``table_payload``."""


def _one_day(t: Totals) -> str | None:
    """The UTC date (YYYY-MM-DD) of the capture's flows when they all fall on that one day, else None."""
    if not t.flows or t.first_ts_ns is None or t.last_ts_ns is None:
        return None
    day = _fmt_ts(t.first_ts_ns)[:10]
    return day if _fmt_ts(t.last_ts_ns)[:10] == day else None


def _state_index(states: np.ndarray) -> np.ndarray:
    """Zeek conn_state names as indexes into ``CONN_STATES`` (-1 for none)."""
    lookup = {s: i for i, s in enumerate(CONN_STATES)}
    uniq, inv = np.unique(states.astype(str), return_inverse=True)
    codes = np.array([lookup.get(u, -1) for u in uniq.tolist()], dtype=np.int64)
    return codes[inv.reshape(-1)] if uniq.size else np.zeros(0, dtype=np.int64)


def _server_names(names: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """TLS server names (fixed-width bytes, ``b""`` none) as indexes into a table of distinct texts.

    The bytes come from packets: they are decoded leniently (invalid UTF-8 becomes U+FFFD) and only
    ever reach the page as JSON drawn with ``textContent``.
    """
    idx = np.full(len(names), -1, dtype=np.int64)
    has = np.array([bool(x) for x in names.tolist()], dtype=bool)
    if not has.any():
        return idx, []
    uniq, inv = np.unique(np.array(names[has].tolist(), dtype=bytes), return_inverse=True)
    idx[has] = inv.reshape(-1)
    return idx, [bytes(u).decode("utf-8", errors="replace") for u in uniq.tolist()]


def _notes(a: Analysis, sel: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """For mismatched and unregistered flows: both sides in one line (``verdict.note``), as table indexes."""
    fl, lab = a.flows, a.labels
    idx = np.full(len(sel), -1, dtype=np.int64)
    v = lab.verdict[sel]
    rows = np.flatnonzero((v == V_MISMATCH) | (v == V_UNREGISTERED))
    texts: list[str] = []
    seen: dict[tuple[int, int, int, int], int] = {}
    for k in rows.tolist():
        i = int(sel[k])
        key = (int(lab.transport[i]), int(fl.server_port[i]), int(lab.protocol[i]), int(lab.verdict[i]))
        if key not in seen:
            text = note(a.registry, key[3], key[2], key[0], key[1], int(fl.proto[i]))
            seen[key] = len(texts)
            texts.append(text or "")
        idx[k] = seen[key]
    return idx, texts


# --------------------------------------------------------------------------- page


def _span_text(t: Totals) -> str:
    """'2026-08-17 09:00:05 → 09:09:57 UTC' (the date again only when it changes)."""
    if t.first_ts_ns is None or t.last_ts_ns is None:
        return ""
    first, last = _fmt_ts(t.first_ts_ns)[:19], _fmt_ts(t.last_ts_ns)[:19]
    return f"{first} \u2192 {last[11:] if last[:10] == first[:10] else last} UTC"


def _totals_html(a: Analysis, t: Totals) -> str:
    span_s = (t.last_ts_ns - t.first_ts_ns) / 1e9 if t.first_ts_ns is not None and t.last_ts_ns is not None else 0.0
    by_t = ", ".join(f"{k} {v:,}" for k, v in t.flows_by_transport.items()) or "none"
    pct = f"{100 * t.flagged_flows / t.flows:.1f}% of flows" if t.flows else "no flows"
    cards = [
        (
            "Capture files",
            f"{t.files:,}",
            _short(", ".join(Path(f).name for f in a.stats.files or a.inputs), 80) or "-",
        ),
        ("Packets", f"{t.packets:,}", f"{t.flow_packets:,} in flows"),
        ("Bytes", human_bytes(t.bytes), f"{t.bytes:,} B on the wire"),
        ("Flows", f"{t.flows:,}", by_t),
        ("Flagged flows", f"{t.flagged_flows:,}", pct),
        ("Time span", _fmt_duration(span_s) if t.first_ts_ns is not None else "-", _span_text(t)),
    ]
    out = ['<div class="cards">']
    for title, value, sub in cards:
        cls = " flagged" if title == "Flagged flows" and t.flagged_flows else ""
        out.append(
            f'<div class="card{cls}"><div class="k">{_esc(title)}</div><div class="v">{_esc(value)}</div>'
            f'<div class="s" title="{_esc(sub)}">{_esc(sub)}</div></div>'
        )
    out.append("</div>")
    # what did not become flows, and what could not be decoded
    facts: list[tuple[str, str, bool]] = []
    no_ports = ", ".join(f"{k} {v:,}" for k, v in t.no_ports.items())
    facts.append(("Packets without ports (not in flows)", no_ports or "0", False))
    facts.append(("Non-IP packets", f"{t.non_ip:,}", False))
    facts.append(("Malformed", f"{t.malformed:,}", t.malformed > 0))
    facts.append(("Truncated", f"{t.truncated:,}", t.truncated > 0))
    facts.append(("IP fragments not attributed", f"{t.fragments_unattributed:,}", t.fragments_unattributed > 0))
    skipped = ", ".join(f"{k}: {v:,}" for k, v in t.skipped_linktype.items())
    facts.append(("Skipped link types", skipped or "0", bool(skipped)))
    facts.append(("Warnings", f"{len(t.warnings):,}", bool(t.warnings)))
    facts.append(("Idle timeout", "off" if not t.idle_timeout_s else f"{t.idle_timeout_s:g} s", False))
    out.append('<dl class="facts">')
    out.append(_verdict_fact(a))
    for k, v, bad in facts:
        out.append(f"<div{' class=bad' if bad else ''}><dt>{_esc(k)}</dt><dd>{_esc(v)}</dd></div>")
    out.append("</dl>")
    if t.warnings:
        shown = t.warnings[:200]
        more = (
            f"<li>\u2026 and {len(t.warnings) - 200:,} more (see stderr of the run)</li>"
            if len(t.warnings) > 200
            else ""
        )
        items = "".join(f"<li>{_esc(w)}</li>" for w in shown)
        out.append(
            f'<details class="warnings"{" open" if len(t.warnings) <= 5 else ""}><summary>{len(t.warnings):,} '
            f"capture warning(s)</summary><ul>{items}{more}</ul></details>"
        )
    out.append(_outcomes_html(a))
    files = a.stats.files or a.inputs
    if len(files) > 1:
        items = "".join(f"<li>{_esc(f)}</li>" for f in files[:500])
        out.append(f'<details class="files"><summary>{len(files):,} capture files</summary><ul>{items}</ul></details>')
    return "".join(out)


def _outcomes_html(a: Analysis) -> str:
    """Connections answered vs attempts (rejected, no reply), and the scanners table (classifier.conn)."""
    codes = flow_outcomes(a)
    c = outcome_counts(a, codes)
    attempts = c["rejected"] + c["no reply"]
    out = ['<h2 id="pc-outcomes">Connection outcomes</h2><dl class="facts">']
    for k, v, bad in (
        ("Answered connections", f"{c['answered']:,}", False),
        ("Unanswered attempts", f"{attempts:,} (rejected {c['rejected']:,}, no reply {c['no reply']:,})", attempts > 0),
        ("Other (mid-stream, one-way, not TCP/UDP)", f"{c['other']:,}", False),
    ):
        out.append(f"<div{' class=bad' if bad else ''}><dt>{_esc(k)}</dt><dd>{_esc(v)}</dd></div>")
    out.append("</dl>")
    out.append(
        f'<p class="cap">The services charts count answered and other flows; the {attempts:,} unanswered '
        "attempts are counted here, apart.</p>"
    )
    rows = scanners(a, codes)
    if rows:
        head = "".join(
            f"<th{' class=num' if i else ''}>{h}</th>"
            for i, h in enumerate(("source", "attempts", "rejected", "no reply", "ports", "hosts", "answered"))
        )
        body = "".join(
            f"<tr><td>{_esc(r.source)}</td><td class=num>{r.attempts:,}</td><td class=num>{r.rejected:,}</td>"
            f"<td class=num>{r.no_reply:,}</td><td class=num>{r.ports:,}</td><td class=num>{r.hosts:,}</td>"
            f"<td class=num>{r.answered:,}</td></tr>"
            for r in rows[:50]
        )
        note = a.aggregates.scanners_note() if a.aggregates is not None else None
        note = f" ({_esc(note)})" if note else ""
        out.append(
            f'<table class="scanners" id="pc-scanners"><caption>Scanners: sources of {SCAN_MIN_ATTEMPTS}+ '
            f"unanswered attempts to {SCAN_MIN_TARGETS}+ ports or hosts{note}</caption>"
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )
    return "".join(out)


def _verdict_fact(a: Analysis) -> str:
    """Flows per verdict, worst first, as verdict badges (the first of the capture facts)."""
    counts = verdict_counts(a)
    if counts is None:
        return '<div class="ev"><dt>Payload evidence</dt><dd class="none">not inspected (--dissect none)</dd></div>'
    badges = " ".join(
        f'<span class="vd vd-{name if counts[name] else "zero"}" title="{_esc(VERDICT_HELP[name])}">'
        f"{_esc(name.upper() if v == V_MISMATCH and counts[name] else name)} {counts[name]:,}</span>"
        for v in _VERDICT_ORDER
        for name in [VERDICTS[v]]
    )
    return f'<div class="ev"><dt>Payload evidence</dt><dd>{badges}</dd></div>'


def _verdict_help() -> str:
    """What each verdict means, worst first, as a definition list under the verdict chart."""
    items = "".join(
        f'<div><dt><svg width="10" height="10" aria-hidden="true"><rect width="10" height="10" rx="2" '
        f'fill="{VERDICT_COLORS[VERDICTS[v]]}"/></svg>{_esc(VERDICTS[v])}</dt><dd>{_esc(VERDICT_HELP[VERDICTS[v]])}</dd>'
        f"</div>"
        for v in _VERDICT_ORDER
    )
    return f'<dl class="defs">{items}</dl>'


_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("client", "Client", False),
    ("server", "Server", False),
    ("port", "Port", True),
    ("service", "Registry", False),
    ("payload", "Payload", False),
    ("status", "Status", False),
    ("flags", "Flags", False),
    ("packets", "Packets", True),
    ("bytes", "Bytes", True),
    ("state", "State", False),
    ("first", "First seen (UTC)", False),
    ("rule", "Server by", False),
    ("file", "File", False),
)
"""Flow table columns: id (``data-col``), header, numeric (right-aligned)."""


def _columns(day: str | None) -> tuple[tuple[str, str, bool], ...]:
    """``_COLUMNS``, the first-seen header carrying the capture's one ``day`` (its cells then show times only)."""
    if day is None:
        return _COLUMNS
    return tuple((c, f"First seen (UTC, {day})" if c == "first" else h, n) for c, h, n in _COLUMNS)


_COLUMN_TIPS = {
    "service": "the service the IANA registry assigns to the server port (a claim, not an observation)",
    "payload": "the protocol the flow's first payload bytes show, its verdict against the registry, "
    "and the TLS server name the client sent",
    "state": "Zeek's conn_state: what happened to the connection (each cell's tooltip says what its state means)",
    "file": "the capture file the flow came from (each cell's tooltip gives its full path)",
}


def render(
    a: Analysis,
    max_rows: int = DEFAULT_MAX_ROWS,
    chart_bars: int = DEFAULT_CHART_BARS,
    generated: dt.datetime | None = None,
) -> str:
    """The whole report as one HTML document (inline CSS, SVG, JSON and script; no external resources)."""
    t = totals(a)
    prov = a.registry.provenance
    svc_rows = services(a)
    by_bytes, by_flows = services_charts(a, svc_rows, chart_bars)
    payload = table_payload(a, max_rows)
    script = _asset("report.js")
    css = _asset("report.css")
    if "</script" in script.lower() or "</style" in css.lower():  # pragma: no cover - asset sanity
        raise ValueError("html assets must not close their own element")
    script_hash = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = (
        f"default-src 'none'; script-src 'sha256-{script_hash}'; style-src 'unsafe-inline'; img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )
    when = (generated or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M UTC")
    inputs = a.inputs or a.stats.files
    subtitle = ", ".join(Path(p).name for p in inputs[:3]) + (f" and {len(inputs) - 3} more" if len(inputs) > 3 else "")
    notice_src = "" if prov.notice else " (wording of the IANA registry; the registry source in use does not carry it)"
    partial = ""
    if not prov.full:
        from ..registry.sources import PARTIAL_NOTICE

        partial = f'<p class="partial">{_esc(PARTIAL_NOTICE)}</p>'
    pnote = partial_note(a)
    interrupted = f'<div class="alert" id="pc-partial">{_esc(pnote[:1].upper() + pnote[1:])}.</div>' if pnote else ""
    embedded = len(payload["rows"])
    cap_note = ""
    if embedded < payload["total"]:
        cap_note = (
            f'<p class="cap" id="pc-cap-note">This table holds the {embedded:,} worst-first flows '
            f"of {payload['total']:,} "
            f"(every flagged flow first); totals and charts cover all of them. For every row use "
            f"<code>--format jsonl</code> or <code>--format csv</code>.</p>"
        )
    heads = "".join(
        f'<th data-col="{cid}" class="{"num" if num else ""}" aria-sort="none"'
        + (f' title="{_esc(_COLUMN_TIPS[cid])}"' if cid in _COLUMN_TIPS else "")
        + f'><button type="button">{_esc(label)}<span class="arrow" aria-hidden="true"></span></button></th>'
        for cid, label, num in _columns(payload["day"])
    )
    fields = {
        "csp": _esc(csp),
        "version": _esc(__version__),
        "subtitle": _esc(subtitle or "capture"),
        "inputs": _esc(", ".join(inputs)),
        "generated": _esc(when),
        "notice_source": _esc(notice_src),
        "notice": _esc(notice_text(a)),
        "note": _esc(PORTCLASS_NOTE),
        "provenance": _esc(prov.line()),
        "partial": partial,
        "interrupted": interrupted,
        "totals": _totals_html(a, t),
        "services_by_bytes": by_bytes,
        "services_by_flows": by_flows,
        "status_legend": _legend([(s, STATUS_COLORS[s]) for s in STATUS_NAMES if s in t.flows_by_status]),
        "timeline": timeline_chart(a),
        "severity_legend": _legend([(label, c) for label, _, _, c in _SEV_GROUPS]),
        "status_chart": status_chart(t, a),
        "talkers": talkers_chart(a, chart_bars),
        "talkers_legend": _legend([("as client", "#3572b0"), ("as server", "#26a69a")]),
        "verdict_chart": verdict_chart(a),
        "verdict_help": _verdict_help(),
        "protocol_chart": protocol_chart(a, chart_bars),
        "verdict_legend": _legend([(VERDICTS[v], VERDICT_COLORS[VERDICTS[v]]) for v in _VERDICT_ORDER[:3]]),
        "cap_note": cap_note,
        "table_head": heads,
        "data": _json_for_script(payload),
        "css": css,
        "script": script,
    }
    # one pass: values are never scanned for placeholders themselves
    return string.Template(_asset("report.html")).substitute(fields)


def write(
    a: Analysis,
    fmt: str,
    out: str | Path | None,
    max_rows: int = DEFAULT_MAX_ROWS,
    chart_bars: int = DEFAULT_CHART_BARS,
    generated: dt.datetime | None = None,
    **_: object,
) -> None:
    """Write the HTML report to ``out`` atomically, or to stdout when ``out`` is None or '-'."""
    emit(render(a, max_rows=max_rows, chart_bars=chart_bars, generated=generated), out)
