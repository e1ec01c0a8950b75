"""Machine formats: JSON Lines, one JSON document, CSV. The registry's warning travels with each.

- ``jsonl``: the first line is a notice document (``event.dataset: portclass.notice``) carrying the
  registry's warning and provenance, its ``@timestamp`` the capture's first packet; every flow line
  carries ``portclass.label_basis``. Every document has ``ecs.version``; absent values are left out
  (never null: what a SIEM expects); per-capture names (IP protocol names...) are values, never keys.
- ``json``: one document with ``notice``, ``registry``, ``totals`` and ``flows``; in each flow, as in
  ``jsonl``, a field without a value is left out (never null).  A run read into running aggregates
  (the command line's ``-f json``) keeps at most ``--max-flows`` flows: the worst ones, by start time;
  when that bound leaves flows out, ``flows_shown`` says how many of how many (``jsonl`` has them all).
- ``csv``: ``#`` comment lines with the warning and provenance, then a header with ECS column names
  (read with ``pandas.read_csv(path, comment="#")``): the same columns as the Parquet output.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .. import interrupt
from ..atomic import atomic_file
from ..filters import selection_of, whole_totals
from ..interrupt import partial_fields, partial_note
from ..output import emit
from ..pipeline import Analysis
from .rows import ECS_VERSION, LABEL_BASIS, iso_times, rows, table_columns
from .summary import flow_count, worst_view
from .terminal import PORTCLASS_NOTE, notice_text


def _meta(a: Analysis) -> dict[str, Any]:
    prov = asdict(a.registry.provenance)
    prov.pop("extra", None)
    prov["notice"] = None
    return {"source_files": a.inputs, "registry": prov, "line": a.registry.provenance.line(), **partial_fields(a)}


_FIELD_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def field_safe(value: Any) -> Any:
    """``value`` with nulls and empty objects left out, every mapping whose keys are not field names a list.

    Per-capture names (``no_ports`` by IP protocol name, skipped link types) become
    ``[{"name": ..., "count": ...}]``, so every key of a document is a valid field name.

    >>> field_safe({"a": None, "no_ports": {"IP proto 170": 3}})
    {'no_ports': [{'name': 'IP proto 170', 'count': 3}]}
    """
    if isinstance(value, dict):
        if value and not all(_FIELD_NAME.match(str(k)) for k in value):
            return [{"name": str(k), "count": field_safe(v)} for k, v in value.items() if v is not None]
        return {k: field_safe(v) for k, v in value.items() if v is not None and v != {}}
    if isinstance(value, list):
        return [field_safe(v) for v in value if v is not None]
    return value


def notice_timestamp(a: Analysis) -> str:
    """The notice document's ``@timestamp``: the capture's first packet (the wall clock when it has no flows)."""
    whole = getattr(a, "whole", None) or a
    running = getattr(whole, "running", None)
    if running is not None and running.first_ts_ns is not None:
        return str(iso_times(np.array([running.first_ts_ns], dtype=np.int64))[0])
    if whole.aggregates is not None and whole.aggregates.first_ts_ns is not None:
        return str(iso_times(np.array([whole.aggregates.first_ts_ns], dtype=np.int64))[0])
    if len(whole.flows):
        return str(iso_times(whole.flows.first_ts_ns.min(keepdims=True))[0])
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


def flows_shown(a: Analysis, shown: int) -> dict[str, Any]:
    """``{"flows_shown": ...}`` saying how many flows a bounded list left out, or nothing when none."""
    total = flow_count(a)
    if shown >= total:
        return {}
    return {
        "flows_shown": {
            "flows": shown,
            "of": total,
            "left_out": total - shown,
            "which": f"the {shown:,} worst of {total:,} flows (flagged first, then most bytes), by start time; "
            "--format jsonl, csv, zeek or parquet write every flow",
        }
    }


def _json_text(value: Any) -> bytes:
    """``value`` as compact JSON text (orjson: UTF-8, keys as written, nulls kept where given)."""
    import orjson

    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)


def json_parts(a: Analysis, rows_per_part: int = 2048) -> Iterator[str]:
    """The ``json`` document in parts, ``rows_per_part`` flows at a time (never every flow's dict at once).

    Compact text (``orjson.dumps(doc)``) with each flow on a line of its own: the flows are the JSON Lines
    documents (``rows(a, omit_nulls=True)``) as the JSON Lines writer serializes them, column by column,
    so the document costs about what the JSON Lines of its flows cost (JSON text holds no raw newline:
    removing the newlines gives exactly ``orjson.dumps(doc)``)."""
    from ..filters import take_labels
    from .rows import table_arrays
    from .serialize import jsonl_body, pyarrow_for_writers

    shown = worst_view(a)
    doc = {
        "notice": notice_text(a),
        "portclass_note": PORTCLASS_NOTE,
        "label_basis": LABEL_BASIS,
        **_meta(a),
        "totals": whole_totals(a),
        **flows_shown(a, len(shown.flows)),
        "flows": [],
    }
    head, _, tail = _json_text(doc).decode().rpartition('"flows":[]')
    yield head + '"flows":['
    n = len(shown.flows)
    if n:
        pyarrow_for_writers()  # no pandas import for nothing
    by_start = np.argsort(shown.flows.first_ts_ns, kind="stable")  # the order ``rows`` gives
    for lo in range(0, n, rows_per_part):
        idx = by_start[lo : lo + rows_per_part]
        part = None if shown.part is None else shown.part[idx]
        sub = dataclasses.replace(shown, flows=shown.flows.take(idx), labels=take_labels(shown.labels, idx), part=part)
        lines = bytes(jsonl_body(table_arrays(sub))).rstrip(b"\n").replace(b"\n", b",\n")
        yield ("\n" if lo == 0 else ",\n") + lines.decode()
    yield ("\n]" if n else "]") + tail + "\n"


def render(a: Analysis, fmt: str) -> str:
    """The report as text in ``fmt`` (jsonl, json or csv)."""
    notice = notice_text(a)
    if fmt == "jsonl":
        head = {
            "@timestamp": notice_timestamp(a),
            "ecs": {"version": ECS_VERSION},
            "event": {"kind": "state", "dataset": "portclass.notice"},
            "message": f"{notice} -- {PORTCLASS_NOTE}",
            "portclass": field_safe(
                {"notice": notice, "label_basis": LABEL_BASIS, **_meta(a), "totals": whole_totals(a)}
            ),
        }
        lines = [json.dumps(head, ensure_ascii=False)]
        lines += [json.dumps(r, ensure_ascii=False) for r in rows(a, omit_nulls=True)]
        return "\n".join(lines) + "\n"
    if fmt == "json":
        return "".join(json_parts(a))
    if fmt == "csv":
        cols = table_columns(a)
        buf = io.StringIO()
        buf.write(f"# NOTICE (IANA registry): {notice}\n")
        buf.write(f"# {PORTCLASS_NOTE}\n")
        buf.write(f"# {a.registry.provenance.line()}\n")
        sel = selection_of(a)
        if sel is not None:
            buf.write(f"# {sel.line()}\n")
        if partial_note(a):
            buf.write(f"# {partial_note(a)}\n")
        w = csv.writer(buf, lineterminator="\n")
        keys = list(cols)
        if a.tshark and "portclass.tshark_protocol" not in cols:  # the head of a streamed run: no flow here
            at = keys.index("portclass.label_basis")
            keys[at:at] = ["portclass.tshark_protocol", "portclass.tshark_agreement"]
            cols = {k: cols.get(k, []) for k in keys}
        w.writerow(keys)
        for values in zip(*(cols[k] for k in keys), strict=True):
            w.writerow([";".join(v) if isinstance(v, list) else ("" if v is None else v) for v in values])
        return buf.getvalue()
    raise ValueError(f"unknown format {fmt!r}")


def write(a: Analysis, fmt: str, out: str | Path | None, **_: object) -> None:
    """Write the report to ``out`` atomically (or stdout); ``json`` part by part."""
    if fmt != "json":
        emit(render(a, fmt), out)
    elif out is None or str(out) == "-":
        for part in json_parts(a):
            sys.stdout.write(part)
        sys.stdout.flush()
        interrupt.ending()
    else:
        with atomic_file(Path(out), then=interrupt.ending) as fh:
            for part in json_parts(a):
                fh.write(part.encode())
