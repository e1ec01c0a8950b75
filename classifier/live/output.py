"""Final reports of a live capture: the normal report writers, plus what only a live capture has.

JSON Lines, JSON and CSV get the capture's description (backend, interfaces, filter, why it
stopped, drops, label lag) as ``portclass.live`` in the notice line / ``live`` in the document /
a ``#`` line, and with the pyshark backend ``portclass.tshark_protocol`` per flow (Wireshark's
name for the flow's highest protocol: a second opinion beside the port's label) where the shared
writers do not already carry it from ``labels.tshark_protocol``.  The rendered report is amended
(rows matched by their 5-tuple and start), so the shared writers stay as they are; other formats
are written unchanged.  Files are replaced atomically.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..output import emit
from ..report import write as write_report
from ..report.addr import format_addresses
from ..report.rows import iso_times
from .engine import LiveResult

TSHARK_FIELD = "portclass.tshark_protocol"
LIVE_FIELD = "portclass.live"
_PROTO = {6: "tcp", 17: "udp", 132: "sctp", 33: "dccp"}


def _keys(result: LiveResult) -> dict[tuple, str | None]:
    """(source.ip, source.port, destination.ip, destination.port, transport, event.start) -> tshark's name."""
    fl = result.analysis.flows
    assert result.protocols is not None
    cip = format_addresses(fl.client_hi, fl.client_lo)
    sip = format_addresses(fl.server_hi, fl.server_lo)
    start = iso_times(fl.first_ts_ns).tolist()
    out: dict[tuple, str | None] = {}
    for i, name in enumerate(result.protocols):
        p = int(fl.proto[i])
        key = (
            str(cip[i]),
            int(fl.client_port[i]),
            str(sip[i]),
            int(fl.server_port[i]),
            _PROTO.get(p, str(p)),
            start[i],
        )
        out[key] = name
    return out


def _doc_key(doc: dict[str, Any]) -> tuple:
    s, d, n = doc.get("source", {}), doc.get("destination", {}), doc.get("network", {})
    return (
        s.get("ip"),
        s.get("port"),
        d.get("ip"),
        d.get("port"),
        n.get("transport"),
        doc.get("event", {}).get("start"),
    )


def render(result: LiveResult, fmt: str) -> str:
    """The jsonl/json/csv report of ``result`` with the live capture's fields."""
    from ..report.machine import render as render_machine

    text = render_machine(result.analysis, fmt)
    meta = result.meta()
    names = _keys(result) if result.protocols is not None else None
    if fmt == "jsonl":
        lines = text.splitlines()
        out = []
        for k, line in enumerate(lines):
            doc = json.loads(line)
            if k == 0:
                doc.setdefault("portclass", {})["live"] = meta
            elif names is not None:
                pc = doc.setdefault("portclass", {})
                if pc.get("tshark_protocol") is None:
                    pc["tshark_protocol"] = names.get(_doc_key(doc))
            out.append(json.dumps(doc, ensure_ascii=False))
        return "\n".join(out) + "\n"
    if fmt == "json":
        doc = json.loads(text)
        doc["live"] = meta
        if names is not None:
            for f in doc.get("flows", []):
                pc = f.setdefault("portclass", {})
                if pc.get("tshark_protocol") is None:
                    pc["tshark_protocol"] = names.get(_doc_key(f))
        return json.dumps(doc, ensure_ascii=False, indent=1) + "\n"
    if fmt == "csv":
        comments, body = [], []
        for line in text.splitlines(keepends=True):
            (comments if line.startswith("#") and not body else body).append(line)
        comments.append(f"# live capture: {json.dumps(meta, ensure_ascii=False)}\n")
        if names is None or body[:1] and TSHARK_FIELD in next(csv.reader(io.StringIO(body[0]))):
            return "".join(comments + body)
        rows = list(csv.reader(io.StringIO("".join(body))))
        header = rows[0]
        ix = {c: header.index(c) for c in header}
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header + [TSHARK_FIELD])
        for r in rows[1:]:
            key = (
                r[ix["source.ip"]],
                int(r[ix["source.port"]]),
                r[ix["destination.ip"]],
                int(r[ix["destination.port"]]),
                r[ix["network.transport"]],
                r[ix["event.start"]],
            )
            w.writerow(r + [names.get(key) or ""])
        return "".join(comments) + buf.getvalue()
    raise ValueError(f"not a machine format: {fmt!r}")


def is_special(out: str | Path | None) -> bool:
    """True for an existing target that is not a regular file (/dev/null, a FIFO): written in place,
    since an atomic rename would replace the device node itself."""
    if out is None or str(out) == "-":
        return False
    p = Path(out)
    return p.exists() and not p.is_file()


def write(result: LiveResult, fmt: str, out: str | Path | None, **options: Any) -> None:
    """Write the final report of a live capture in ``fmt`` to ``out`` (None or '-': stdout), atomically.

    >>> write(result, "jsonl", "flows.jsonl")  # doctest: +SKIP
    """
    if is_special(out):
        assert out is not None
        with tempfile.TemporaryDirectory(prefix="portclass-") as d:
            tmp = Path(d) / f"report.{fmt}"
            write(result, fmt, tmp, **options)
            with open(tmp, "rb") as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
        return
    if fmt in ("jsonl", "json", "csv"):
        emit(render(result, fmt), out)
    else:
        write_report(result.analysis, fmt, out, **options)
