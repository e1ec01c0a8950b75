"""Flow rows with Elastic Common Schema field names, built column-wise from an ``Analysis``.

Client fields go to ``source.*`` and server fields to ``destination.*``; portclass's own
labels live under ``portclass.*``. Strings are built once per distinct value (addresses,
services), so the cost grows with hosts and services more than with flows.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..capture.columns import TRANSPORT_OF_PROTO
from ..flows import SERVER_RULES
from ..label import flag_list
from ..pipeline import Analysis
from ..registry.compile import STATUS_NAMES
from ..registry.model import TRANSPORTS
from .addr import unique_address_array

ECS_VERSION = "9.4.0"
"""The ECS version the documents follow (``ecs.version``); tests check the fields against its field list."""

LABEL_BASIS = "server port number in the IANA registry (not the traffic's content)"
"""What a portclass label rests on; travels with every flow in machine formats."""

_TRANSPORT_NAME = np.array([str(p) for p in range(256)], dtype=object)
"""IP protocol number -> ``network.transport`` (the registry's name where it has ports, else the number)."""
for _p, _t in TRANSPORT_OF_PROTO.items():
    _TRANSPORT_NAME[_p] = TRANSPORTS[_t]
_TRANSPORT_NAMES = tuple(_TRANSPORT_NAME.tolist())
_IANA_NUMBERS = tuple(str(p) for p in range(256))


def iso_times(ts_ns: np.ndarray) -> np.ndarray:
    """ISO 8601 UTC timestamps with microseconds, vectorized."""
    return np.char.add(np.datetime_as_string(np.asarray(ts_ns, dtype="datetime64[ns]"), unit="us"), "Z")


def iso_text(ts_ns: np.ndarray) -> np.ndarray:
    """``iso_times`` as an (n, 27) ASCII byte matrix, by integer arithmetic (each calendar day formatted once).

    Nanoseconds in int64 span the years 1677-2262, so the date is always ten characters.
    """
    us = np.asarray(ts_ns, dtype=np.int64) // 1000
    day, rem = np.divmod(us, 86_400_000_000)
    days, inv = np.unique(day, return_inverse=True)
    dates = np.datetime_as_string(days.astype("datetime64[D]"))
    out = np.empty((len(us), 27), dtype=np.uint8)
    if not len(us):
        return out
    out[:, :10] = dates.astype("S10").view(np.uint8).reshape(-1, 10)[inv.reshape(-1)]
    sec, micro = np.divmod(rem, 1_000_000)
    digit = np.uint8(ord("0"))
    for col, value, width in ((11, sec // 3600, 2), (14, sec // 60 % 60, 2), (17, sec % 60, 2), (20, micro, 6)):
        for k in range(width):
            out[:, col + width - 1 - k] = (value // 10**k % 10).astype(np.uint8) + digit
    out[:, 10], out[:, 13], out[:, 16], out[:, 19], out[:, 26] = ord("T"), ord(":"), ord(":"), ord("."), ord("Z")
    return out


def text_array(mat: np.ndarray) -> Any:
    """A pyarrow string array over the rows of a fixed-width ASCII byte matrix (no Python string per row)."""
    import pyarrow as pa

    n, w = mat.shape
    offsets = np.arange(0, (n + 1) * w, w, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(mat)))


def coded(indices: np.ndarray, values: list[Any], kind: Any = None) -> Any:
    """A dictionary-encoded pyarrow column: ``values[indices[i]]`` per row (negative index: null)."""
    import pyarrow as pa

    idx = np.asarray(indices).astype(np.int32, copy=False)
    if isinstance(values, pa.Array):
        dictionary = values
    elif isinstance(values, tuple) and kind is None:  # a fixed table (protocol names ...): built once
        dictionary = _fixed_dictionary(values)
    else:
        dictionary = pa.array(values, type=kind if kind is not None else pa.string())
    mask = idx < 0
    return pa.DictionaryArray.from_arrays(pa.array(idx, mask=mask if mask.any() else None), dictionary)


@functools.lru_cache(maxsize=64)
def _fixed_dictionary(values: tuple[str | None, ...]) -> Any:
    import pyarrow as pa

    return pa.array(values, pa.string())


def counts(x: np.ndarray, unset: np.ndarray | None = None) -> Any:
    """An int64 pyarrow column (null where ``unset``), straight from NumPy."""
    import pyarrow as pa

    return pa.array(np.asarray(x, dtype=np.int64), mask=unset if unset is not None and unset.any() else None)


def flag_codes(flags: np.ndarray) -> tuple[np.ndarray, list[list[str]]]:
    """(index per flow, flag names per distinct bit set, worst first)."""
    uniq, inv = np.unique(flags, return_inverse=True)
    return inv.reshape(-1), [flag_list(int(u)) for u in uniq]


def flag_strings(flags: np.ndarray) -> list[list[str]]:
    """Flag names per flow (worst first), computed once per distinct bit set."""
    inv, names = flag_codes(flags)
    return [names[i] for i in inv]


def service_codes(a: Analysis) -> tuple[np.ndarray, list[str | None], list[str | None], list[list[str]]]:
    """Per flow an index into (primary service name, description, alias names) of the server port's records."""
    reg = a.registry
    fl, lab = a.flows, a.labels
    key = lab.transport.astype(np.int64) * 65536 + fl.server_port
    uniq, inv = np.unique(key, return_inverse=True)
    # the chunks of one run ask for the same ports again: remembered with the registry
    memo: dict[int, tuple[str | None, str | None, list[str]]] = reg.__dict__.setdefault("_service_memo", {})
    for k in uniq.tolist():
        if k not in memo:
            memo[k] = _service_of(reg, k)
    got = [memo[k] for k in uniq.tolist()]
    return inv.reshape(-1), [g[0] for g in got], [g[1] for g in got], [g[2] for g in got]


def _service_of(reg: Any, key: int) -> tuple[str | None, str | None, list[str]]:
    """(primary name, description, alias names) on transport * 65536 + port (transport < 0: none)."""
    t, port = divmod(key, 65536)
    if t < 0:
        return None, None, []
    recs = reg.names_on(TRANSPORTS[t], port)
    prim = next((r for r in recs if not r.alias_of), recs[0] if recs else None)
    return (prim.name or None) if prim else None, prim.description if prim else None, [
        r.name for r in recs if r is not prim and r.name
    ]


def service_columns(a: Analysis) -> tuple[list[str | None], list[str | None], list[list[str]]]:
    """Primary service name, description and alias names per flow, from the server port's records."""
    inv, names, descs, aliases = service_codes(a)
    return [names[i] for i in inv], [descs[i] for i in inv], [aliases[i] for i in inv]


def flow_columns(a: Analysis, order: np.ndarray | None = None) -> dict[str, list[Any]]:
    """Flat ECS-named columns (``source.ip`` ...) for every flow, in ``order`` (default: by start time),
    as Python lists (``flow_arrays`` has them as Arrow columns)."""
    return {k: pylist(v) for k, v in flow_arrays(a, order).items()}


def pylist(arr: Any) -> list[Any]:
    """A pyarrow column as a Python list (None for null), dictionaries decoded through NumPy (faster than
    ``to_pylist``; the rows of one distinct value share its object)."""
    import pyarrow as pa

    if pa.types.is_dictionary(arr.type):
        values = np.empty(len(arr.dictionary) + 1, dtype=object)  # the last one: None, for null indices
        for i, v in enumerate(arr.dictionary.to_pylist()):
            values[i] = v
        return values[arr.indices.fill_null(-1).to_numpy()].tolist()
    if pa.types.is_integer(arr.type) and arr.null_count:
        out = arr.fill_null(0).to_numpy().astype(object)
        out[arr.is_null().to_numpy(zero_copy_only=False)] = None
        return out.tolist()
    if pa.types.is_integer(arr.type) or pa.types.is_string(arr.type):
        return arr.to_numpy(zero_copy_only=False).tolist()
    return arr.to_pylist()


def flow_arrays(a: Analysis, order: np.ndarray | None = None) -> dict[str, Any]:
    """Flat ECS-named columns for every flow, in ``order`` (default: by start time), as pyarrow arrays:
    numbers straight from NumPy, text dictionary-encoded (each distinct value built once) or fixed-width."""
    import pyarrow as pa

    fl, lab = a.flows, a.labels
    n = len(fl)
    if order is None:
        order = np.argsort(fl.first_ts_ns, kind="stable")
    cip, cinv = unique_address_array(fl.client_hi, fl.client_lo)
    sip, sinv = unique_address_array(fl.server_hi, fl.server_lo)
    sinv_, names, descs, aliases = service_codes(a)
    finv, fnames = flag_codes(lab.flags)
    start = text_array(iso_text(fl.first_ts_ns))
    strings = pa.list_(pa.string())
    from ..community_id import community_id_text

    part = getattr(a, "part", None)
    files = list(a.stats.files) or [None]
    cols: dict[str, Any] = {
        "@timestamp": start,
        "event.start": start,
        "event.end": text_array(iso_text(fl.last_ts_ns)),
        "event.duration": counts(fl.last_ts_ns - fl.first_ts_ns),
        "source.ip": coded(cinv, cip),
        "source.port": counts(fl.client_port),
        "source.packets": counts(fl.packets_c2s),
        "source.bytes": counts(fl.bytes_c2s),
        "destination.ip": coded(sinv, sip),
        "destination.port": counts(fl.server_port),
        "destination.packets": counts(fl.packets_s2c),
        "destination.bytes": counts(fl.bytes_s2c),
        "network.transport": coded(fl.proto, _TRANSPORT_NAMES),
        "network.type": coded(fl.ip_version == 6, ("ipv4", "ipv6")),
        "network.iana_number": coded(fl.proto, _IANA_NUMBERS),
        "network.packets": counts(fl.packets_c2s.astype(np.int64) + fl.packets_s2c),
        "network.bytes": counts(fl.bytes_c2s.astype(np.int64) + fl.bytes_s2c),
        "network.community_id": text_array(community_id_text(fl)),
        "portclass.service": coded(np.where(np.equal(names, None)[sinv_], -1, sinv_), names),
        "portclass.description": coded(np.where(np.equal(descs, None)[sinv_], -1, sinv_), descs),
        "portclass.aliases": coded(sinv_, aliases, strings),
        "portclass.status": coded(lab.status, tuple(STATUS_NAMES)),
        "portclass.flags": coded(finv, fnames, strings),
        "portclass.severity": counts(lab.severity),
        "portclass.server_rule": coded(fl.server_rule, tuple(SERVER_RULES)),
        # the k-th part of a flow the active timeout cut (classifier.engine), absent for a whole flow
        "portclass.flow_part": counts(part, part <= 0) if part is not None and part.any() else pa.nulls(n, pa.int64()),
        # the capture file each flow came from (its first packet's)
        "log.file.path": coded(np.minimum(fl.file_index, len(files) - 1), files),
    }
    # what happened to the connection, as Zeek's conn.log says it (classifier.conn)
    from ..conn import conn_fields

    conn = conn_fields(fl)
    for key, name in CONN_COLUMNS.items():
        v = conn[name]
        if v.dtype == object:
            cols[key] = _arrow_of(np.where(v == "", None, v))
        else:
            cols[key] = counts(v, v < 0)
    # payload evidence: observed protocol, verdict against the registry, where it was seen, SNI
    from ..evidence.verdict import Coded, flow_evidence_columns

    for key, values in flow_evidence_columns(fl, lab, a.registry, list(a.stats.files)).items():
        if isinstance(values, Coded):
            cols[key] = coded(values.indices, values.values)
        elif isinstance(values, np.ndarray):
            cols[key] = counts(values, values < 0)
        else:
            cols[key] = _arrow_of(values)
    if n and not np.array_equal(order, np.arange(n)):
        taker = pa.array(np.asarray(order, dtype=np.int64))
        cols = {k: v.take(taker) for k, v in cols.items()}
    return cols


def _arrow_of(values: Any) -> Any:
    """A column given as a list or NumPy array as pyarrow (strings dictionary-encoded)."""
    import pyarrow as pa

    if not isinstance(values, pa.Array):
        values = pa.array(values, from_pandas=False)
    return values.dictionary_encode() if pa.types.is_string(values.type) else values


CONN_COLUMNS = {
    "portclass.conn_state": "conn_state",
    "portclass.history": "history",
    "portclass.orig_bytes": "orig_bytes",
    "portclass.resp_bytes": "resp_bytes",
    "portclass.orig_ip_bytes": "orig_ip_bytes",
    "portclass.resp_ip_bytes": "resp_ip_bytes",
    "portclass.missed_bytes": "missed_bytes",
}
"""ECS-side column -> Zeek conn.log field of the same value (``classifier.conn.conn_fields``)."""


def table_arrays(a: Analysis, order: np.ndarray | None = None) -> dict[str, Any]:
    """The flat columns of the CSV, Parquet and JSON Lines outputs (one set for all): ``flow_arrays`` plus
    the fields every document carries with one value (``event.kind`` ..., ``portclass.label_basis``,
    ``ecs.version``, given as that value), in the Parquet file's column order."""
    out: dict[str, Any] = {}
    for key, values in flow_arrays(a, order).items():
        out[key] = values
        if key == "event.duration":
            for k, v in _EVENT.items():
                out[f"event.{k}"] = v
    out["portclass.label_basis"] = LABEL_BASIS
    out["ecs.version"] = ECS_VERSION
    return out


def table_columns(a: Analysis, order: np.ndarray | None = None) -> dict[str, list[Any]]:
    """``table_arrays`` as Python lists (constants repeated on every row)."""
    n = len(a.flows)
    return {k: [v] * n if isinstance(v, str | list) else pylist(v) for k, v in table_arrays(a, order).items()}


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """Turn dotted ECS keys into nested objects, as ECS documents are written."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if key.startswith("@"):
            out[key] = value
            continue
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def rows(a: Analysis, order: np.ndarray | None = None, omit_nulls: bool = False) -> list[dict[str, Any]]:
    """Nested ECS documents, one per flow (the nesting paths are worked out once, not per flow).

    Every document says its ``ecs.version``. ``omit_nulls`` leaves a field without a value out (as
    Beats and Elastic do, the JSON Lines output) instead of writing it as None.
    """
    cols = flow_columns(a, order)
    paths = [[k] if k.startswith("@") else k.split(".") for k in cols]
    out = []
    for values in zip(*cols.values(), strict=True):
        doc: dict[str, Any] = {}
        for path, value in zip(paths, values, strict=True):
            if value is None and omit_nulls:
                continue
            node = doc
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = value
        doc["event"].update(_EVENT)
        doc["portclass"]["label_basis"] = LABEL_BASIS
        doc["ecs"] = {"version": ECS_VERSION}
        out.append(doc)
    return out


_EVENT = {"kind": "event", "category": ["network"], "type": ["connection"], "dataset": "portclass.flow"}
