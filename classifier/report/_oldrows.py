"""Flow rows with Elastic Common Schema field names, built column-wise from an ``Analysis``.

Client fields go to ``source.*`` and server fields to ``destination.*``; portclass's own
labels live under ``portclass.*``. Strings are built once per distinct value (addresses,
services), so the cost grows with hosts and services more than with flows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..capture.columns import TRANSPORT_OF_PROTO
from ..flows import SERVER_RULES, FlowTable
from ..label import flag_list
from ..pipeline import Analysis
from ..registry.compile import STATUS_NAMES
from ..registry.model import TRANSPORTS
from ._oldaddr import format_addresses

ECS_VERSION = "9.4.0"
"""The ECS version the documents follow (``ecs.version``); tests check the fields against its field list."""

LABEL_BASIS = "server port number in the IANA registry (not the traffic's content)"
"""What a portclass label rests on; travels with every flow in machine formats."""

_TRANSPORT_NAME = np.array([str(p) for p in range(256)], dtype=object)
"""IP protocol number -> ``network.transport`` (the registry's name where it has ports, else the number)."""
for _p, _t in TRANSPORT_OF_PROTO.items():
    _TRANSPORT_NAME[_p] = TRANSPORTS[_t]


def iso_times(ts_ns: np.ndarray) -> np.ndarray:
    """ISO 8601 UTC timestamps with microseconds, vectorized."""
    return np.char.add(np.datetime_as_string(np.asarray(ts_ns, dtype="datetime64[ns]"), unit="us"), "Z")


def flag_strings(flags: np.ndarray) -> list[list[str]]:
    """Flag names per flow (worst first), computed once per distinct bit set."""
    uniq, inv = np.unique(flags, return_inverse=True)
    names = [flag_list(int(u)) for u in uniq]
    return [names[i] for i in inv.reshape(-1)]


def service_columns(a: Analysis) -> tuple[list[str | None], list[str | None], list[list[str]]]:
    """Primary service name, description and alias names per flow, from the server port's records."""
    reg = a.registry
    fl, lab = a.flows, a.labels
    key = lab.transport.astype(np.int64) * 65536 + fl.server_port
    uniq, inv = np.unique(key, return_inverse=True)
    names: list[str | None] = []
    descs: list[str | None] = []
    aliases: list[list[str]] = []
    for k in uniq.tolist():
        t, port = divmod(k, 65536)
        if t < 0:
            names.append(None)
            descs.append(None)
            aliases.append([])
            continue
        recs = reg.names_on(TRANSPORTS[t], port)
        prim = next((r for r in recs if not r.alias_of), recs[0] if recs else None)
        names.append((prim.name or None) if prim else None)
        descs.append(prim.description if prim else None)
        aliases.append([r.name for r in recs if r is not prim and r.name])
    inv = inv.reshape(-1)
    return [names[i] for i in inv], [descs[i] for i in inv], [aliases[i] for i in inv]


def flow_columns(a: Analysis, order: np.ndarray | None = None) -> dict[str, list[Any]]:
    """Flat ECS-named columns (``source.ip`` ...) for every flow, in ``order`` (default: by start time)."""
    fl, lab = a.flows, a.labels
    n = len(fl)
    if order is None:
        order = np.argsort(fl.first_ts_ns, kind="stable")
    client_ip = format_addresses(fl.client_hi, fl.client_lo)
    server_ip = format_addresses(fl.server_hi, fl.server_lo)
    svc, desc, aliases = service_columns(a)
    flags = flag_strings(lab.flags)
    start = iso_times(fl.first_ts_ns)
    end = iso_times(fl.last_ts_ns)
    try:
        from ..community_id import community_id

        cid = community_id(fl)
    except ImportError:  # pragma: no cover
        cid = [None] * n
    rules = np.array(SERVER_RULES, dtype=object)[fl.server_rule]
    statuses = np.array(STATUS_NAMES, dtype=object)[lab.status]
    transport = _TRANSPORT_NAME[fl.proto]
    o = order.tolist()

    def col(x: Any) -> list[Any]:
        if isinstance(x, np.ndarray):
            return x[order].tolist()
        return [x[i] for i in o]

    cols = {
        "@timestamp": col(start),
        "event.start": col(start),
        "event.end": col(end),
        "event.duration": col((fl.last_ts_ns - fl.first_ts_ns).astype(np.int64)),
        "source.ip": col(client_ip),
        "source.port": col(fl.client_port.astype(np.int64)),
        "source.packets": col(fl.packets_c2s.astype(np.int64)),
        "source.bytes": col(fl.bytes_c2s.astype(np.int64)),
        "destination.ip": col(server_ip),
        "destination.port": col(fl.server_port.astype(np.int64)),
        "destination.packets": col(fl.packets_s2c.astype(np.int64)),
        "destination.bytes": col(fl.bytes_s2c.astype(np.int64)),
        "network.transport": col(transport),
        "network.type": col(np.where(fl.ip_version == 6, "ipv6", "ipv4")),
        "network.iana_number": col(fl.proto.astype(np.int64).astype(str)),
        "network.packets": col(fl.packets_c2s.astype(np.int64) + fl.packets_s2c),
        "network.bytes": col(fl.bytes_c2s.astype(np.int64) + fl.bytes_s2c),
        "network.community_id": col(cid),
        "portclass.service": col(svc),
        "portclass.description": col(desc),
        "portclass.aliases": col(aliases),
        "portclass.status": col(statuses),
        "portclass.flags": col(flags),
        "portclass.severity": col(lab.severity.astype(np.int64)),
        "portclass.server_rule": col(rules),
    }
    # the k-th part of a flow the active timeout cut (classifier.engine), absent for a whole flow
    part = getattr(a, "part", None)
    cols["portclass.flow_part"] = [None] * n if part is None or not part.any() else col(
        np.where(part > 0, part.astype(np.int64).astype(object), None)
    )
    # the capture file each flow came from (its first packet's)
    files = np.array(list(a.stats.files) or [None], dtype=object)
    cols["log.file.path"] = col(files[np.minimum(fl.file_index, files.size - 1)])
    # what happened to the connection, as Zeek's conn.log says it (classifier.conn)
    for key, values in conn_columns(fl).items():
        cols[key] = col(values)
    # payload evidence: observed protocol, verdict against the registry, where it was seen, SNI
    from ..evidence.verdict import flow_evidence_columns

    for key, values in flow_evidence_columns(fl, lab, a.registry, list(a.stats.files)).items():
        cols[key] = col(values)
    return cols


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


def conn_columns(fl: FlowTable) -> dict[str, np.ndarray]:
    """Zeek's connection fields per flow (object arrays; None where Zeek leaves a field unset)."""
    from ..conn import conn_fields

    f = conn_fields(fl)
    out: dict[str, np.ndarray] = {}
    for key, name in CONN_COLUMNS.items():
        v = f[name]
        if v.dtype == object:
            v = np.where(v == "", None, v)
        else:
            v = np.where(v < 0, None, v.astype(object))
        out[key] = v
    return out


def table_columns(a: Analysis, order: np.ndarray | None = None) -> dict[str, list[Any]]:
    """The flat columns of the CSV and Parquet outputs (one set for both): ``flow_columns`` plus the
    fields every JSON document carries with one value (``event.kind`` ..., ``portclass.label_basis``,
    ``ecs.version``), in the Parquet file's column order."""
    cols = flow_columns(a, order)
    n = len(a.flows)
    out: dict[str, list[Any]] = {}
    for key, values in cols.items():
        out[key] = values
        if key == "event.duration":
            for k, v in _EVENT.items():
                out[f"event.{k}"] = [v] * n
    out["portclass.label_basis"] = [LABEL_BASIS] * n
    out["ecs.version"] = [ECS_VERSION] * n
    return out


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
