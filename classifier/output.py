"""Writing machine formats (json, jsonl, csv) to stdout or atomically to a file."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterable
from pathlib import Path

from . import interrupt
from .atomic import atomic_write


def emit(data: str | bytes, out: str | Path | None) -> None:
    """Write a report (text, or bytes for binary formats) to ``out`` atomically, or to stdout for None/'-'.

    The report is the run's last output: once it is out, a signal no longer changes the exit code
    (``interrupt.ending``; only on the command line).
    """
    if out is None or str(out) == "-":
        if isinstance(data, bytes):
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            sys.stdout.write(data)
            sys.stdout.flush()
        interrupt.ending()
    else:
        atomic_write(Path(out), data if isinstance(data, bytes) else data.encode(), then=interrupt.ending)


def render_rows(rows: Iterable[dict], fmt: str, columns: list[str] | None = None) -> str:
    """Render dict rows as json (one array), jsonl (one object per line) or csv."""
    rows = list(rows)
    if fmt == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if fmt == "csv":
        buf = io.StringIO()
        cols = columns or (list(rows[0].keys()) if rows else [])
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: (";".join(v) if isinstance(v, list) else v) for k, v in r.items()})
        return buf.getvalue()
    raise ValueError(f"unknown format {fmt!r}")
