"""Final reports of a live capture: the normal report writers, plus the capture's description.

JSON Lines, JSON and CSV get the capture's description (backend, interfaces, filter, why it
stopped, drops, label lag) as ``portclass.live`` in the notice line / ``live`` in the document /
a ``#`` line.  tshark's per-flow protocol name (pyshark backend) needs nothing here: the engine
sets ``labels.tshark_protocol`` and the shared writers carry it as ``portclass.tshark_protocol``.
Other formats are written unchanged.  Files are written by the shared writers (atomically, or in
place for a device or FIFO).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..output import emit
from ..report import write as write_report
from .engine import LiveResult

TSHARK_FIELD = "portclass.tshark_protocol"
LIVE_FIELD = "portclass.live"


def render(result: LiveResult, fmt: str) -> str:
    """The jsonl/json/csv report of ``result`` with the live capture's description."""
    from ..report.machine import render as render_machine

    text = render_machine(result.analysis, fmt)
    meta = result.meta()
    if fmt == "jsonl":
        lines = text.splitlines()
        if lines:
            head = json.loads(lines[0])
            head.setdefault("portclass", {})["live"] = meta
            lines[0] = json.dumps(head, ensure_ascii=False)
        return "\n".join(lines) + "\n"
    if fmt == "json":
        doc = json.loads(text)
        doc["live"] = meta
        return json.dumps(doc, ensure_ascii=False, indent=1) + "\n"
    if fmt == "csv":
        comments, body = [], []
        for line in text.splitlines(keepends=True):
            (comments if line.startswith("#") and not body else body).append(line)
        comments.append(f"# live capture: {json.dumps(meta, ensure_ascii=False)}\n")
        return "".join(comments + body)
    raise ValueError(f"not a machine format: {fmt!r}")


def write(result: LiveResult, fmt: str, out: str | Path | None, **options: Any) -> None:
    """Write the final report of a live capture in ``fmt`` to ``out`` (None or '-': stdout).

    >>> write(result, "jsonl", "flows.jsonl")  # doctest: +SKIP
    """
    if fmt in ("jsonl", "json", "csv"):
        emit(render(result, fmt), out)
    else:
        write_report(result.analysis, fmt, out, **options)
