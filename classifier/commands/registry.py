"""``portclass registry ...``: inspect, dump, tabulate, import, update and diff the IANA registry."""

from __future__ import annotations

import argparse
import re
import sys

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..errors import PortclassError, RegistryError
from ..output import emit, render_rows
from ..registry import sources
from ..registry.compile import (
    NPORTS,
    STATUS_NAMES,
    CompiledRegistry,
    flag_names,
    transport_index,
)
from ..registry.diff import diff_registries
from ..registry.download import DEADLINE
from ..registry.model import TRANSPORTS, Record

_PORT_RE = re.compile(r"^(\d{1,5})(?:/(tcp|udp|sctp|dccp))?$", re.I)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``registry`` command group."""
    from ..cli import common_options

    common = common_options()
    p = sub.add_parser("registry", parents=[common], help="inspect, import, update and diff the IANA port registry")
    rs = p.add_subparsers(dest="registry_cmd", required=True, metavar="COMMAND")

    def fmt(sp: argparse.ArgumentParser, choices: tuple[str, ...], default: str = "table") -> None:
        sp.add_argument("--format", choices=choices, default=default, help=f"output format (default {default})")

    sp = rs.add_parser("info", parents=[common], help="source, edition, sha256, counts per transport and status")
    fmt(sp, ("table", "json"))
    sp = rs.add_parser(
        "show", parents=[common], help="what the registry says of ports (80, 42000/tcp) or service names"
    )
    sp.add_argument("items", nargs="+", metavar="PORT[/TRANSPORT]|NAME")
    fmt(sp, ("table", "json", "jsonl"))
    sp = rs.add_parser("dump", parents=[common], help="the parsed records of a registry file")
    sp.add_argument("file")
    fmt(sp, ("jsonl", "json", "csv"), "jsonl")
    sp = rs.add_parser("table", parents=[common], help="all 65536 ports of a transport: port,status,service,flags")
    sp.add_argument("--transport", "-t", default="tcp", choices=TRANSPORTS)
    fmt(sp, ("csv", "jsonl", "json"), "csv")
    sp = rs.add_parser("import", parents=[common], help="validate, compile and make a registry file the default")
    sp.add_argument("file")
    sp = rs.add_parser(
        "update", parents=[common], help="download the registry from IANA, verify it, make it the default"
    )
    sp.add_argument("--url", default=sources.IANA_XML_URL, help="where to download from (default: IANA's XML)")
    sp.add_argument(
        "--timeout",
        type=_seconds,
        default=DEADLINE,
        metavar="SECONDS",
        help=f"overall deadline for the download (default {DEADLINE:g})",
    )
    sp = rs.add_parser("diff", parents=[common], help="what changed between two registry editions")
    sp.add_argument("old")
    sp.add_argument("new")
    fmt(sp, ("table", "json", "jsonl", "csv"))


def _seconds(text: str) -> float:
    """A positive, finite number of seconds (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    """Dispatch a ``registry`` sub-command."""
    return {
        "info": cmd_info,
        "show": cmd_show,
        "dump": cmd_dump,
        "table": cmd_table,
        "import": cmd_import,
        "update": cmd_update,
        "diff": cmd_diff,
    }[args.registry_cmd](args)


def _console() -> Console:
    return Console(highlight=False, soft_wrap=False)


def info_dict(reg: CompiledRegistry) -> dict:
    """Provenance and counts, as ``registry info --format json`` prints them."""
    p = reg.provenance
    return {
        "source": p.source,
        "format": p.format,
        "edition": p.edition,
        "edition_kind": p.edition_kind,
        "sha256": p.sha256,
        "full": p.full,
        "records": p.records,
        "notice": p.notice,
        "partial_reason": p.partial_reason,
        "skipped": p.skipped,
        "skipped_example": p.skipped_example,
        "counts": reg.counts(),
    }


def cmd_info(args: argparse.Namespace) -> int:
    """``registry info``."""
    reg = sources.load_registry(args.registry)
    d = info_dict(reg)
    if args.format == "json":
        emit(_json(d), None)
        return 0
    con = _console()
    con.print(f"[bold]source[/]   {escape(d['source'])}")
    part = "full registry" if d["full"] else f"PARTIAL ({d['partial_reason'] or 'assigned names only'})"
    con.print(f"[bold]format[/]   {escape(d['format'])}, {escape(part)}")
    ed = escape(d["edition"] or "unknown")
    con.print(
        f"[bold]edition[/]  {ed}" + (" (file date, not the registry's own)" if d["edition_kind"] == "file-date" else "")
    )
    con.print(f"[bold]sha256[/]   {d['sha256']}")
    con.print(f"[bold]records[/]  {d['records']}")
    if d["skipped"]:
        con.print(
            f"[bold]skipped[/]  [yellow]{d['skipped']} malformed records[/], e.g. {escape(d['skipped_example'] or '')}"
        )
    if not d["full"]:
        con.print(f"[yellow]{sources.PARTIAL_NOTICE}[/]")
    t = Table("transport", *STATUS_NAMES[:4], "unknown", "unauthorized-use-known")
    for tr, row in d["counts"].items():
        t.add_row(tr, *(str(row.get(s, 0)) for s in (*STATUS_NAMES[:4], "unknown", "unauthorized-use-known")))
    con.print(t)
    return 0


def _json(obj: object) -> str:
    import json

    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def port_entry(reg: CompiledRegistry, port: int, transport: str) -> dict:
    """Everything the registry says of one (port, transport)."""
    t = transport_index(transport)
    status = STATUS_NAMES[int(reg.status[t, port])]
    flags = flag_names(int(reg.flags[t, port]))
    recs = reg.names_on(transport, port)
    primary = next((r for r in recs if not r.alias_of), recs[0] if recs else None)
    unauth = sorted({r.unauthorized for r in reg.records if r.unauthorized and _covers(r, port, transport)})
    return {
        "port": port,
        "transport": transport,
        "status": status,
        "flags": flags,
        "service": (primary.name or primary.description) if primary else None,
        "description": primary.description if primary else None,
        "names": [r.name for r in recs if r.name and not r.alias_of],
        "aliases": [{"name": r.name, "alias_of": r.alias_of, "historic": r.historic} for r in recs if r.alias_of],
        "records": [_brief(r) for r in recs] or [_brief(r) for r in reg.records if _covers(r, port, transport)],
        "unauthorized": unauth,
    }


def _covers(r: Record, port: int, transport: str) -> bool:
    return (
        r.port_low is not None
        and r.port_low <= port <= (r.port_high if r.port_high is not None else r.port_low)
        and transport in r.transports
    )


def _brief(r: Record) -> dict:
    keep = ("port_low", "port_high", "transport", "unauthorized")
    return {k: v for k, v in r.to_dict().items() if k in keep or v not in ("", None, False)}


def _entries(reg: CompiledRegistry, item: str) -> list[dict]:
    m = _PORT_RE.match(item.strip())
    if m:
        port = int(m.group(1))
        if port >= NPORTS:
            raise PortclassError(f"port {port} out of range 0-65535")
        if m.group(2):
            return [port_entry(reg, port, m.group(2).lower())]
        out = [port_entry(reg, port, tr) for tr in TRANSPORTS]
        return [e for e in out if e["transport"] in ("tcp", "udp") or e["status"] == "assigned"]
    name = item.strip().lower()
    recs = [r for r in reg.records if r.name and r.name.lower() == name]
    if not recs:
        raise PortclassError(f"no service named {item!r} in the registry ({reg.provenance.source})")
    return [{"name": r.name, **_brief(r)} for r in recs]


def cmd_show(args: argparse.Namespace) -> int:
    """``registry show PORT[/TRANSPORT] | NAME ...``."""
    reg = sources.load_registry(args.registry)
    entries = [e for item in args.items for e in _entries(reg, item)]
    if args.format in ("json", "jsonl"):
        emit(render_rows(entries, args.format), None)
        return 0
    con = _console()
    con.print(f"[dim]{escape(reg.provenance.line())}[/]")
    for e in entries:
        if "status" in e:
            style = {"assigned": "green", "reserved": "yellow", "unassigned": "red", "dynamic": "cyan"}.get(
                e["status"], "white"
            )
            head = f"[bold]{e['port']}/{e['transport']}[/]  [{style}]{e['status']}[/]"
            if e["service"]:
                head += f"  [bold]{escape(e['service'])}[/] — {escape(e['description'] or '')}"
            con.print(head)
            if e["flags"]:
                con.print(f"    flags: {', '.join(e['flags'])}")
            others = [n for n in e["names"] if n != e["service"]]
            if others:
                con.print(f"    also: {', '.join(others)}", markup=False)
            for a in e["aliases"]:
                hist = ", historic" if a["historic"] else ""
                con.print(f"    alias: {a['name']} (alias of {a['alias_of']}{hist})", markup=False)
            for u in e["unauthorized"]:
                con.print(f"    [red]unauthorized use:[/] {escape(u)}")
            for r in e["records"]:
                if r.get("notes"):
                    con.print(f"    note ({r.get('name') or r.get('description')}): {r['notes']}", markup=False)
        else:
            port = ""
            if e.get("port_low") is not None:
                port = str(e["port_low"]) + (f"-{e['port_high']}" if e["port_high"] != e["port_low"] else "")
                port += "/" + (e.get("transport") or "tcp+udp")
            desc = escape(e.get("description", ""))
            con.print(f"[bold]{escape(e['name'])}[/]  {port or '(no port: service name only)'}  {desc}")
            for k in ("alias_of", "unauthorized", "notes", "assignee", "references"):
                if e.get(k):
                    con.print(f"    {k}: {e[k]}", markup=False)
    return 0


def cmd_dump(args: argparse.Namespace) -> int:
    """``registry dump FILE``: parsed records, one JSON object each (or json/csv)."""
    from pathlib import Path

    from ..registry.parse import file_date, parse_bytes

    path = Path(args.file)
    data = sources._read(path)
    result = parse_bytes(data, str(path), file_date(path))
    rows = [{**r.to_dict(), "name": r.name} for r in result.records]
    emit(render_rows(rows, args.format, list(Record().to_dict().keys())), None)
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    """``registry table``: every port of one transport with status, primary service and flags."""
    reg = sources.load_registry(args.registry)
    t = transport_index(args.transport)
    names = reg.service_names
    svc = reg.service[t]
    rows = [
        {
            "port": p,
            "status": STATUS_NAMES[int(reg.status[t, p])],
            "service": str(names[svc[p]]) if svc[p] >= 0 else "",
            "flags": ";".join(flag_names(int(reg.flags[t, p]))),
        }
        for p in range(NPORTS)
    ]
    emit(render_rows(rows, args.format, ["port", "status", "service", "flags"]), None)
    return 0


def _done(reg: CompiledRegistry, verb: str) -> None:
    p = reg.provenance
    notes = f", {p.skipped} malformed records skipped (e.g. {p.skipped_example})" if p.skipped else ""
    notes += f", PARTIAL: {p.partial_reason}" if p.partial_reason else ""
    kind = " (file date)" if p.edition_kind == "file-date" else ""
    print(
        f"{verb} {p.source}: {p.format}, edition {p.edition or 'unknown'}{kind}, {p.records} records{notes},"
        f" sha256 {p.sha256[:12]};"
        f" now the default registry ({sources.current_path()})"
    )


def cmd_import(args: argparse.Namespace) -> int:
    """``registry import FILE``."""
    reg = sources.import_file(args.file)
    _done(reg, "imported")
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    """``registry update``: download with a progress bar, verify, install atomically."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    show = sys.stderr.isatty()
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(stderr=True),
        disable=not show,
    ) as prog:
        task = prog.add_task("downloading registry", total=None)

        def progress(done: int, total: int | None) -> None:
            prog.update(task, completed=done, total=total)

        try:
            reg = sources.update(args.url, progress, deadline=args.timeout)
        except RegistryError as exc:
            raise RegistryError(f"{exc}; the previous registry is kept") from None
    _done(reg, "updated from")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    """``registry diff OLD NEW``."""
    old = sources.compile_file(args.old)
    new = sources.compile_file(args.new)
    d = diff_registries(old, new)
    if args.format in ("json",):
        emit(
            _json(
                {
                    "old": info_dict(old) | {"counts": None},
                    "new": info_dict(new) | {"counts": None},
                    "summary": d.summary(),
                    "port_changes": [c.to_dict() for c in d.port_changes],
                    "names_added": d.names_added,
                    "names_removed": d.names_removed,
                }
            ),
            None,
        )
        return 0
    if args.format in ("jsonl", "csv"):
        rows = [c.to_dict() for c in d.port_changes]
        rows += [
            {"transport": "", "port_low": "", "port_high": "", "change": "name-added", "old": "", "new": n}
            for n in d.names_added
        ]
        rows += [
            {"transport": "", "port_low": "", "port_high": "", "change": "name-removed", "old": n, "new": ""}
            for n in d.names_removed
        ]
        emit(render_rows(rows, args.format, ["transport", "port_low", "port_high", "change", "old", "new"]), None)
        return 0
    con = _console()
    con.print(f"old: {old.provenance.line()}", markup=False)
    con.print(f"new: {new.provenance.line()}", markup=False)
    t = Table("port", "transport", "change", "old", "new")
    for c in d.port_changes:
        port = str(c.port_low) if c.port_low == c.port_high else f"{c.port_low}-{c.port_high}"
        t.add_row(port, c.transport, c.change, escape(c.old), escape(c.new))
    con.print(t)
    con.print("summary: " + ", ".join(f"{k} {v}" for k, v in d.summary().items()))
    if d.names_added:
        con.print("service names added: " + ", ".join(d.names_added), markup=False)
    if d.names_removed:
        con.print("service names removed: " + ", ".join(d.names_removed), markup=False)
    return 0
