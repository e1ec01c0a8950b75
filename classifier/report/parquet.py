"""Parquet report: one row per flow with the flat ECS column names of the CSV output, typed.

Why flat dotted columns (``destination.port``) rather than nested ECS structs: ``pandas.read_parquet``
turns a struct column into one Python dict per cell (slow, and every field access needs
``.str[...]``), while flat columns come back as ordinary typed columns; DuckDB reads flat columns as
well (quote the dotted names: ``SELECT "destination.port" FROM 'flows.parquet'``). The schema is also
the one of the CSV output and of ``classifier.classify(...).to_pandas()``, so code moves between them.
The on-disk layout is the same either way (Parquet stores each leaf as its own column).

Types: times are ``timestamp[us, UTC]`` (the JSON output's ISO strings have microseconds too; Spark
and older readers reject nanosecond timestamps), ``event.duration`` int64 nanoseconds (as ECS and the
JSON), ports int32, counters int64,
``portclass.severity`` int8, flags and aliases ``list<string>``. The payload evidence columns are
typed explicitly too, so a file where no flow had evidence has the same schema as one where all
did: ``network.protocol``, ``portclass.verdict``, ``portclass.verdict_note``,
``portclass.evidence.signature``, ``portclass.evidence.direction``, ``portclass.evidence.file`` (the
capture file's path, as the JSON) and ``tls.client.server_name`` are strings, null where the JSON
has null; ``portclass.evidence.packet`` (the packet's number in that file, from 1) is a nullable
int64; after ``--dissect tshark``, ``portclass.tshark_protocol`` and ``portclass.tshark_agreement``
are strings. Constant ECS fields of the JSON documents (``event.kind`` ..., ``ecs.version``) and
``portclass.label_basis`` are columns too, so every field of the JSON output is here; the CSV has
the same columns (``rows.table_arrays``). Integer columns that can be null (``NULLABLE_INTEGERS``)
read back in pandas as ``Int64``, not float64 (the file carries pandas metadata saying so).

The registry's warning travels in the file's key/value metadata (``portclass.notice``, with the
provenance, source files, totals and any filter), readable with ``pyarrow.parquet.read_schema(path)
.metadata`` or DuckDB's ``parquet_kv_metadata('flows.parquet')``.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import PortclassError
from ..evidence.verdict import SAID_COLUMNS
from ..output import emit
from ..pipeline import Analysis
from .rows import LABEL_BASIS, table_arrays
from .terminal import PORTCLASS_NOTE, notice_text

EVENT_CONSTANTS: dict[str, Any] = {
    "event.kind": "event",
    "event.category": ["network"],
    "event.type": ["connection"],
    "event.dataset": "portclass.flow",
}
"""ECS fields every flow document of the JSON output carries with the same value."""

META_PREFIX = "portclass."
"""Prefix of the key/value metadata keys this writer sets."""


def _types() -> dict[str, Any]:
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    strings = pa.list_(pa.string())
    return {
        "@timestamp": ts,
        "event.start": ts,
        "event.end": ts,
        "event.duration": pa.int64(),
        "event.kind": pa.string(),
        "event.category": strings,
        "event.type": strings,
        "event.dataset": pa.string(),
        "source.ip": pa.string(),
        "source.port": pa.int32(),
        "source.packets": pa.int64(),
        "source.bytes": pa.int64(),
        "destination.ip": pa.string(),
        "destination.port": pa.int32(),
        "destination.packets": pa.int64(),
        "destination.bytes": pa.int64(),
        "network.transport": pa.string(),
        "network.type": pa.string(),
        "network.iana_number": pa.string(),
        "network.packets": pa.int64(),
        "network.bytes": pa.int64(),
        "network.community_id": pa.string(),
        "portclass.service": pa.string(),
        "portclass.description": pa.string(),
        "portclass.aliases": strings,
        "portclass.status": pa.string(),
        "portclass.flags": strings,
        "portclass.severity": pa.int8(),
        "portclass.server_rule": pa.string(),
        "portclass.flow_part": pa.int64(),
        "log.file.path": pa.string(),
        "portclass.conn_state": pa.string(),
        "portclass.history": pa.string(),
        "portclass.orig_bytes": pa.int64(),
        "portclass.resp_bytes": pa.int64(),
        "portclass.orig_ip_bytes": pa.int64(),
        "portclass.resp_ip_bytes": pa.int64(),
        "portclass.missed_bytes": pa.int64(),
        "portclass.label_basis": pa.string(),
        "ecs.version": pa.string(),
        # payload evidence (classifier.evidence.verdict.flow_evidence_columns)
        "network.protocol": pa.string(),
        "network.application": pa.string(),
        "portclass.verdict": pa.string(),
        "portclass.verdict_note": pa.string(),
        "portclass.evidence.signature": pa.string(),
        "portclass.evidence.direction": pa.string(),
        "portclass.evidence.file": pa.string(),
        "portclass.evidence.packet": pa.int64(),
        "tls.client.server_name": pa.string(),
        **{k: pa.string() for k in SAID_COLUMNS},
        "portclass.tshark_protocol": pa.string(),
        "portclass.tshark_agreement": pa.string(),
    }


RAW_COLUMNS: dict[str, str] = {
    "raw.first_ts_ns": "first packet time, ns since the epoch (exact)",
    "raw.last_ts_ns": "last packet time, ns since the epoch (exact)",
    "raw.ip_version": "4 or 6",
    "raw.proto": "IP protocol number",
    "raw.tcp_flags_c2s": "OR of the TCP flags the client sent (FIN=1 SYN=2 RST=4 PSH=8 ACK=16)",
    "raw.tcp_flags_s2c": "OR of the TCP flags the server sent",
    "raw.flag_bits": "portclass flags as a bit set (classifier.label.F_*)",
    "raw.key_hash": "64-bit hash of the flow's canonical key (flows of one key share it)",
}
"""Extra columns of ``arrow_table(raw=True)`` (the Python API's tables), with their meaning."""


def _raw_arrays(a: Analysis, order: np.ndarray) -> dict[str, np.ndarray]:
    fl, lab = a.flows, a.labels
    return {
        "raw.first_ts_ns": fl.first_ts_ns[order],
        "raw.last_ts_ns": fl.last_ts_ns[order],
        "raw.ip_version": fl.ip_version[order],
        "raw.proto": fl.proto[order],
        "raw.tcp_flags_c2s": fl.tcp_flags_c2s[order],
        "raw.tcp_flags_s2c": fl.tcp_flags_s2c[order],
        "raw.flag_bits": lab.flags[order],
        "raw.key_hash": fl.key_hash[order],
    }


NULLABLE_INTEGERS = (
    "portclass.flow_part",
    "portclass.evidence.packet",
    "portclass.orig_bytes",
    "portclass.resp_bytes",
    "portclass.orig_ip_bytes",
    "portclass.resp_ip_bytes",
    "portclass.missed_bytes",
)
"""Integer columns that can be null: pandas reads them as ``Int64`` (not float64), by the file's pandas metadata."""


def _pandas_metadata(table: Any) -> bytes:
    """The ``pandas`` schema metadata naming the nullable integer columns' dtype (``Int64``), nothing else."""
    cols = [
        {"name": c, "field_name": c, "pandas_type": "int64", "numpy_type": "Int64", "metadata": None}
        for c in NULLABLE_INTEGERS
        if c in table.column_names
    ]
    meta = {"index_columns": [], "column_indexes": [], "columns": cols, "creator": {"library": "portclass"}}
    return json.dumps(meta).encode()


def metadata(a: Analysis) -> dict[str, str]:
    """File-level key/value metadata: the registry's warning, provenance, inputs, totals, filter."""
    from ..filters import selection_of, whole_totals
    from ..interrupt import partial_fields

    prov = asdict(a.registry.provenance)
    prov.pop("extra", None)
    meta: dict[str, Any] = {
        "notice": notice_text(a),
        "notice_source": "registry" if a.registry.provenance.notice else "portclass (registry wording; not in source)",
        "note": PORTCLASS_NOTE,
        "label_basis": LABEL_BASIS,
        "registry": json.dumps(prov, ensure_ascii=False),
        "registry_line": a.registry.provenance.line(),
        "source_files": json.dumps(a.inputs, ensure_ascii=False),
        "totals": json.dumps(whole_totals(a), ensure_ascii=False),
        "schema": "ECS field names, flat (one column per dotted name)",
        "version": __version__,
        "created": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        **{k: json.dumps(v) for k, v in partial_fields(a).items()},
    }
    sel = selection_of(a)
    if sel is not None:
        meta["selection"] = json.dumps(sel.to_dict(), ensure_ascii=False)
    return {META_PREFIX + k: str(v) for k, v in meta.items()}


def arrow_table(
    a: Analysis, *, raw: bool = False, with_metadata: bool = True, cols: dict[str, Any] | None = None
) -> Any:
    """The flows as a ``pyarrow.Table`` with ECS column names (sorted by start time).

    ``raw`` adds ``RAW_COLUMNS`` (exact nanosecond times, TCP flags, flag bits, key hash); ``cols``
    are ``table_arrays(a)`` when the caller has them already.

    >>> arrow_table(analysis).column("destination.port").to_pylist()  # doctest: +SKIP
    [80, 42000, 53]
    """
    import pyarrow as pa

    fl = a.flows
    n = len(fl)
    order = np.argsort(fl.first_ts_ns, kind="stable")
    if cols is None:
        cols = table_arrays(a, order)
    types = _types()
    arrays: dict[str, Any] = {}
    times = {"@timestamp": fl.first_ts_ns, "event.start": fl.first_ts_ns, "event.end": fl.last_ts_ns}
    for name, values in cols.items():
        if name in times:
            # microseconds, truncated as the JSON output's ISO strings (exact ns: raw.*_ts_ns)
            arrays[name] = pa.array(times[name][order].astype(np.int64) // 1000, type=types[name])
        elif isinstance(values, str | list):  # the same on every row
            arrays[name] = pa.array([values] * n, type=types.get(name))
        else:
            if pa.types.is_dictionary(values.type):
                values = values.dictionary.take(values.indices)
            # a column added to flow_arrays later keeps the type it was built with
            arrays[name] = values.cast(types[name]) if name in types else values
    if raw:
        for name, arr in _raw_arrays(a, order).items():
            arrays[name] = pa.array(arr)
    table = pa.table(arrays)
    if with_metadata:
        table = table.replace_schema_metadata({**metadata(a), b"pandas": _pandas_metadata(table)})
    return table


def render(a: Analysis) -> bytes:
    """The Parquet file as bytes (zstd-compressed)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(arrow_table(a), sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def check_output(out: str | Path | None) -> None:
    """Refuse, with one line, to write Parquet nowhere or to a terminal."""
    if out is None:
        raise PortclassError("--format parquet writes a binary file: give -o FILE (or -o - for a pipe)")
    if str(out) == "-" and sys.stdout.isatty():
        raise PortclassError("refusing to write binary Parquet to a terminal: give -o FILE")


def write(a: Analysis, fmt: str, out: str | Path | None, **_: object) -> None:
    """Write the Parquet file to ``out`` atomically (temporary file + rename), or to a pipe for ``-``."""
    check_output(out)
    emit(render(a), out)
