"""The rolling terminal view: one screen redrawn in place, nothing scrolls away.

Top to bottom: the registry's warning (verbatim), one status line (interfaces, backend, elapsed
time, packets and rate, drops, flows, label lag), the services the server ports claim, and the
newest flagged flows (with tshark's protocol beside the port's label when the backend is pyshark).
Tables are cut to the terminal's height.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
from rich import box
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..pipeline import Analysis
from ..registry.model import TRANSPORTS
from ..report.addr import format_addresses
from ..report.rows import flag_strings
from ..report.summary import services
from ..report.terminal import PORTCLASS_NOTE, human_bytes, notice_text, services_table
from .engine import Snapshot

_SEV_STYLE = {6: "bold red", 5: "bold red", 4: "red", 3: "yellow", 2: "cyan", 1: "dim"}
_STATUS_STYLE = {"assigned": "green", "reserved": "yellow", "unassigned": "red", "dynamic": "cyan", "unknown": "dim"}


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def status_line(snap: Snapshot) -> Text:
    """Interfaces, backend, elapsed, packets/rate, drops, flows, lag — one line."""
    a = snap.analysis
    o = snap.options
    flagged = int(np.count_nonzero(a.labels.severity)) + snap.running.flagged
    if snap.drops is None:
        drops = Text("drops: at stop" if not snap.drops_live else "drops: ?", style="dim")
    else:
        drops = Text(f"drops: {snap.drops:,}", style="bold red" if snap.drops else "green")
    lag = snap.lag.label[-1] if snap.lag.label else None
    worst = max(getattr(snap.lag.label, "peak", None) or 0, max(snap.lag.label)) if snap.lag.label else None
    t = Text()
    t.append(f"live on {', '.join(o.interfaces)}", style="bold")
    t.append(f" ({snap.backend}{'; filter: ' + o.bpf if o.bpf else ''})  ")
    t.append(f"{_clock(snap.elapsed_s)}  ")
    t.append(f"{snap.packets:,} packets ")
    t.append(f"({snap.rate_pps:,.0f}/s)", style="bold")
    t.append("  ")
    t.append_text(drops)
    t.append(f"  {snap.running.flows + len(a.flows):,} flows ({len(a.flows):,} alive), ")
    t.append(f"{flagged:,} flagged", style="bold red" if flagged else "")
    if lag is not None and worst is not None:
        t.append(f"  label lag {lag * 1000:,.0f} ms (max {worst * 1000:,.0f} ms)", style="dim")
    return t


def _services_table(snap: Snapshot, rows: int) -> Table:
    svc = services(snap.analysis)
    title = f"Services claimed by server port, flows alive now ({len(svc)})"
    return services_table(snap.analysis, rows, title=title, service_rows=svc)


def _flagged_rows(snap: Snapshot) -> tuple[Analysis, np.ndarray, int]:
    """The newest ended flagged flows the session kept and the alive ones: (analysis, rows newest first, total)."""
    a = snap.analysis
    if snap.recent is not None and len(snap.recent.flows):
        from ..engine import Ended

        r = snap.recent
        both = Ended.concat(
            [Ended(r.flows, r.labels, np.zeros(len(r.flows), np.int32), np.zeros(len(r.flows), np.uint8)),
             Ended(a.flows, a.labels, np.zeros(len(a.flows), np.int32), np.zeros(len(a.flows), np.uint8))]
        )  # fmt: skip
        a = dataclasses.replace(a, flows=both.flows, labels=both.labels, part=None)
    flagged = np.flatnonzero(a.labels.severity > 0)
    order = flagged[np.argsort(-a.flows.last_ts_ns[flagged], kind="stable")]
    return a, order, snap.running.flagged + int(np.count_nonzero(snap.analysis.labels.severity))


def _flagged_table(snap: Snapshot, rows: int) -> Table:
    a, order, total = _flagged_rows(snap)
    order = order[:rows]
    fl, lab = a.flows, a.labels
    tbl = Table(title=f"Newest flagged flows ({len(order)} of {total:,})", box=box.SIMPLE, title_justify="left")
    cols = ["last seen", "flags", "client → server", "service (registry)"]
    if snap.protocols is not None:
        cols.append("tshark says")
    cols += ["packets", "bytes"]
    for c in cols:
        tbl.add_column(c, justify="right" if c in ("packets", "bytes") else "left", no_wrap=c != "client → server")
    if not order.size:
        return tbl
    cip = format_addresses(fl.client_hi[order], fl.client_lo[order])
    sip = format_addresses(fl.server_hi[order], fl.server_lo[order])
    flags = flag_strings(lab.flags[order])
    names = a.registry.service_names
    for k, i in enumerate(order.tolist()):
        t = int(lab.transport[i])
        tname = TRANSPORTS[t] if t >= 0 else str(int(fl.proto[i]))
        v6 = fl.ip_version[i] == 6
        c = f"[{cip[k]}]:{fl.client_port[i]}" if v6 else f"{cip[k]}:{fl.client_port[i]}"
        s = f"[{sip[k]}]:{fl.server_port[i]}/{tname}" if v6 else f"{sip[k]}:{fl.server_port[i]}/{tname}"
        sid = int(lab.service[i])
        when = dt.datetime.fromtimestamp(int(fl.last_ts_ns[i]) / 1e9).strftime("%H:%M:%S")
        row = [
            when,
            Text(", ".join(flags[k]), style=_SEV_STYLE.get(int(lab.severity[i]), "")),
            f"{c} → {s}",
            str(names[sid]) if sid >= 0 else "—",
        ]
        if snap.protocols is not None:
            names = a.labels.tshark_protocol
            row.append((names[i] if names is not None else None) or "—")
        row += [f"{int(fl.packets_c2s[i] + fl.packets_s2c[i]):,}", human_bytes(int(fl.bytes_c2s[i] + fl.bytes_s2c[i]))]
        tbl.add_row(*row)
    return tbl


def render(snap: Snapshot, height: int = 40) -> RenderableType:
    """The whole view for one snapshot, cut to ``height`` lines of terminal.

    >>> from rich.console import Console  # doctest: +SKIP
    >>> Console().print(render(session.snapshot()))  # doctest: +SKIP
    """
    notice = Text(notice_text(snap.analysis), style="bold")
    notice.append(f"\n{PORTCLASS_NOTE}", style="italic")
    warning = Panel(notice, title="[bold red]IANA registry notice[/]", border_style="red", box=box.HEAVY)
    # warning ~7 lines, status 1, two table frames ~5 lines each
    room = max(height - 20, 4)
    n_svc = max(2, room // 3)
    n_flag = max(2, room - n_svc)
    footer = Text("Ctrl-C stops the capture and prints the summary", style="dim")
    return Group(warning, status_line(snap), _services_table(snap, n_svc), _flagged_table(snap, n_flag), footer)


class LiveView:
    """A rich ``Live`` display redrawn at each snapshot (on the alternate screen: nothing scrolls).

    >>> with LiveView(Console(stderr=True)) as view:  # doctest: +SKIP
    ...     result = session.run(on_refresh=view.update)
    """

    def __init__(self, console: Console) -> None:
        from rich.live import Live

        self.console = console
        self.live = Live(
            console=console,
            auto_refresh=False,
            screen=True,
            transient=True,
            vertical_overflow="crop",
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def __enter__(self) -> LiveView:
        self.live.__enter__()
        self.live.update(Text("starting the capture…"), refresh=True)
        return self

    def update(self, snap: Snapshot) -> None:
        """Redraw with ``snap``."""
        self.live.update(render(snap, self.console.height), refresh=True)

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(*exc)  # type: ignore[arg-type]
