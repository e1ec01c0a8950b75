"""Zeek conn.log (TSV, the ``LogAscii`` writer's layout) with portclass's labels as extra fields.

Layout as Zeek writes it: ``#separator \\x09``, ``#set_separator``, ``#empty_field``, ``#unset_field``,
``#path conn``, ``#open``, then ``#fields``/``#types``, one line per flow, ``#close``. The registry's
warning, portclass's note and the registry's provenance are ``#portclass_*`` header lines before
``#fields`` (Zeek-aware readers skip or keep unknown ``#`` lines there).

Zeek's conn.log fields, and what portclass puts in them:

==================  ===========================================================================
ts                  first packet (microseconds, as Zeek)
uid                 ``C`` + 17 base62 characters hashed from the flow key and its first and last
                    packet times: stable across runs and formats, not Zeek's random uid
id.orig_*           portclass's client (``id.resp_*``: its server, see ``portclass_server_rule``)
proto               tcp, udp; ``unknown_transport`` for SCTP and DCCP (Zeek's enum has neither;
                    ``ip_proto`` says which)
service             the protocol portclass's payload evidence saw (``network.protocol``), in
                    Zeek's analyzer names (``ZEEK_SERVICE``: ``ssl`` for TLS); unset where nothing
                    was recognised or payloads were not inspected. Zeek's ``service`` is what its
                    dynamic protocol detection confirmed in the traffic, never the port's
                    registered name (that is ``portclass_service``), so the two can differ: SSH
                    on 443/tcp is ``service`` ssh, ``portclass_service`` https
duration            first to last packet when > 0, else unset (as Zeek); Zeek stops at the last
                    productive TCP packet, so portclass's can be a little longer
orig_bytes,         payload bytes as Zeek counts them: TCP from sequence numbers (acknowledged bytes
resp_bytes          the capture missed count), UDP the payload sum; unset when duration is 0 (Zeek)
conn_state          Zeek's, all 13 states, from Zeek's endpoint state machine (``classifier.conn``)
local_orig,         **unset**, as Zeek leaves them without ``Site::local_nets``
local_resp
missed_bytes        sequence span minus payload seen (holes), TCP; 0 otherwise
history             Zeek's letters (upper case: originator), see ``classifier.conn``
orig_pkts,          packets each way (exact)
resp_pkts
orig_ip_bytes,      IP total lengths each way (as Zeek); frame bytes are ``portclass_orig_wire_bytes``
resp_ip_bytes
tunnel_parents      **unset**: tunnels are decoded through, not logged as connections
ip_proto            IP protocol number
community_id        Community ID v1, seed 0 (as Zeek's community-id policy script)
==================  ===========================================================================

Extra fields: ``portclass_service`` (primary registry name of the server port), ``portclass_aliases``,
``portclass_description``, ``portclass_status``, ``portclass_flags`` (a set), ``portclass_severity``,
``portclass_server_rule``, ``portclass_transport``, ``portclass_orig_wire_bytes``,
``portclass_resp_wire_bytes``, and from the payload evidence ``portclass_verdict`` (consistent,
mismatch, unregistered, unverified), ``portclass_protocol`` (portclass's own protocol name, as the
JSON output's ``network.protocol``) and ``portclass_server_name`` (the TLS server name the client
sent, as ``tls.client.server_name``; escaped like every value, it comes from packets),
``portclass_file`` (the capture file the flow came from, ``log.file.path``), and what the flow said
(``ZEEK_SAID``: HTTP method, host, URI and user agent, DNS query and type, SSH software both ways,
server greeting), named after the fields of Zeek's own http, dns and ssh logs.

Values are escaped as Zeek does (``\\xHH`` for backslash, control characters, the separator, a set
element's set separator, and the first character of a value equal to ``-`` or ``(empty)``), and
``#`` too, so that readers using ``#`` as a comment character (``pandas.read_csv(comment="#")``)
cannot cut a line.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..evidence.table import ZEEK_SERVICE as _ZEEK_NAMES
from ..output import emit
from ..pipeline import Analysis
from .rows import coded, flow_arrays, text_array
from .terminal import PORTCLASS_NOTE, notice_text

SEPARATOR = "\t"
SET_SEPARATOR = ","
EMPTY_FIELD = "(empty)"
UNSET_FIELD = "-"

ZEEK_SAID: dict[str, str] = {
    "portclass_http_method": "http.request.method",
    "portclass_http_host": "url.domain",
    "portclass_http_uri": "url.original",
    "portclass_user_agent": "user_agent.original",
    "portclass_dns_query": "dns.question.name",
    "portclass_dns_qtype_name": "dns.question.type",
    "portclass_ssh_client": "portclass.ssh.client_software",
    "portclass_ssh_server": "portclass.ssh.server_software",
    "portclass_greeting": "portclass.server_greeting",
    "portclass_ja4": "portclass.tls.client.ja4",
    "portclass_alpn": "portclass.tls.client.alpn",
    "portclass_application": "network.application",
}
"""What each flow said (``classifier.evidence.verdict.SAID_COLUMNS``), named after the fields of Zeek's
http.log (method, host, uri, user_agent), dns.log (query, qtype_name) and ssh.log (client, server)."""

FIELDS: tuple[tuple[str, str], ...] = (
    ("ts", "time"),
    ("uid", "string"),
    ("id.orig_h", "addr"),
    ("id.orig_p", "port"),
    ("id.resp_h", "addr"),
    ("id.resp_p", "port"),
    ("proto", "enum"),
    ("service", "string"),
    ("duration", "interval"),
    ("orig_bytes", "count"),
    ("resp_bytes", "count"),
    ("conn_state", "string"),
    ("local_orig", "bool"),
    ("local_resp", "bool"),
    ("missed_bytes", "count"),
    ("history", "string"),
    ("orig_pkts", "count"),
    ("orig_ip_bytes", "count"),
    ("resp_pkts", "count"),
    ("resp_ip_bytes", "count"),
    ("tunnel_parents", "set[string]"),
    ("ip_proto", "count"),
    ("community_id", "string"),
    ("portclass_service", "string"),
    ("portclass_aliases", "set[string]"),
    ("portclass_description", "string"),
    ("portclass_status", "string"),
    ("portclass_flags", "set[string]"),
    ("portclass_severity", "count"),
    ("portclass_server_rule", "string"),
    ("portclass_transport", "string"),
    ("portclass_orig_wire_bytes", "count"),
    ("portclass_resp_wire_bytes", "count"),
    *((name, "string") for name in ZEEK_SAID),
    ("portclass_verdict", "string"),
    ("portclass_protocol", "string"),
    ("portclass_server_name", "string"),
    ("portclass_file", "string"),
)
"""(name, Zeek type) of every column, in order: Zeek's conn.log fields, then portclass's."""

NEVER_SET: tuple[str, ...] = (
    "local_orig",
    "local_resp",
    "tunnel_parents",
)
"""conn.log fields portclass cannot compute and always leaves unset (see the module docstring)."""

ZEEK_SERVICE: dict[str, str] = _ZEEK_NAMES
"""portclass protocol (``network.protocol``) -> conn.log ``service`` value, from the protocol table.

Zeek writes the lower-cased names of the analyzers that confirmed a protocol (``Analyzer::name``),
so TLS is ``ssl`` and Elasticsearch (over HTTP) is ``http``; protocols Zeek has no analyzer for
(SSDP, NetBIOS, STUN, ...) keep portclass's name (``classifier.evidence.table.Protocol.zeek``).
"""

_ZEEK_PROTO = {6: "tcp", 17: "udp"}
_ZEEK_PROTO_NAMES = [_ZEEK_PROTO.get(p, "unknown_transport") for p in range(256)]
_B62 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
_ESCAPED = {chr(c) for c in range(0x20)} | {"\x7f", "\\", "#"}
_NEEDS_ESCAPE = r"[\x00-\x1f\x7f\\#]|^$|^-$|^\(empty\)$"
"""Text that ``escape`` changes (outside sets) matches this."""


def escape(value: str, in_set: bool = False) -> str:
    """A string value as Zeek's ASCII writer renders it (``(empty)`` for ``""``).

    >>> escape("a\\tb"), escape("-"), escape(""), escape("x,y", in_set=True)
    ('a\\\\x09b', '\\\\x2d', '(empty)', 'x\\\\x2cy')
    """
    if value == "":
        return EMPTY_FIELD
    if any(ch in _ESCAPED for ch in value) or (in_set and SET_SEPARATOR in value):
        value = "".join(
            f"\\x{ord(ch):02x}" if ch in _ESCAPED or (in_set and ch == SET_SEPARATOR) else ch for ch in value
        )
    if value in (UNSET_FIELD, EMPTY_FIELD):
        value = f"\\x{ord(value[0]):02x}{value[1:]}"
    return value


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer (wrapping uint64 arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _base62(x: np.ndarray, digits: int) -> np.ndarray:
    """Fixed-width base62 text of uint64 values, as an (n, digits) uint8 matrix."""
    out = np.empty((x.shape[0], digits), dtype=np.uint8)
    for i in range(digits - 1, -1, -1):
        out[:, i] = _B62[(x % np.uint64(62)).astype(np.intp)]
        x = x // np.uint64(62)
    return out


def uid_text(a: Analysis, order: np.ndarray) -> np.ndarray:
    """Zeek-style connection uids (``C`` + 17 base62 characters, 96 bits) from flow key and times, as an
    (n, 18) ASCII byte matrix.

    Deterministic: the same flow gets the same uid in every run and whatever the filter.
    """
    fl = a.flows
    with np.errstate(over="ignore"):
        first = fl.first_ts_ns[order].astype(np.uint64)
        last = fl.last_ts_ns[order].astype(np.uint64)
        h1 = _mix(fl.key_hash[order] ^ _mix(first))
        h2 = _mix(h1 ^ _mix(last + np.uint64(0x9E3779B97F4A7C15))) & np.uint64(0xFFFF_FFFF)
    n = len(order)
    text = np.empty((n, 18), dtype=np.uint8)
    text[:, 0] = ord("C")
    text[:, 1:12] = _base62(h1, 11)
    text[:, 12:] = _base62(h2, 6)
    return text


def render(a: Analysis) -> str:
    """The conn.log as text."""
    lines = header(a)
    lines.append(f"#close{SEPARATOR}{_stamp()}")
    return "\n".join(lines[:-1]) + "\n" + body(a).decode() + lines[-1] + "\n"


def body(a: Analysis) -> bytes:
    """One conn.log line per flow, by start time (no header), built column by column (``report.serialize``)."""
    from .serialize import Lines, int_values, per_value

    fl = a.flows
    n = len(fl)
    if not n:
        return b""
    order = np.argsort(fl.first_ts_ns, kind="stable")
    ecs = flow_arrays(a, order)
    dur_ns = (fl.last_ts_ns - fl.first_ts_ns)[order]
    proto = fl.proto[order]
    out = Lines(n)

    def strings(arr: object) -> Callable[[], None]:
        return lambda: out.text(per_value(arr, escape, safe=_NEEDS_ESCAPE, spread=False), UNSET_FIELD)

    def sets(arr: object) -> Callable[[], None]:
        return lambda: out.text(per_value(arr, _set_text, spread=False), UNSET_FIELD)

    def counts(x: np.ndarray | object) -> Callable[[], None]:
        if isinstance(x, np.ndarray):
            return lambda: out.num(x)
        v, valid = int_values(x)
        return lambda: out.num(v, None if valid is True else np.asarray(valid), UNSET_FIELD)

    def given(arr: object, mapping: dict[str, str]) -> Callable[[], None]:
        render = per_value(arr, lambda v: escape(mapping.get(v, v)), spread=False)
        return lambda: out.text(render, UNSET_FIELD)

    def text(arr: object) -> Callable[[], None]:
        return lambda: out.text(arr)

    cells: dict[str, Callable[[], None]] = {
        "ts": text(_seconds_text(fl.first_ts_ns[order])),
        "uid": text(text_array(uid_text(a, order))),
        "id.orig_h": strings(ecs["source.ip"]),
        "id.orig_p": counts(fl.client_port[order]),
        "id.resp_h": strings(ecs["destination.ip"]),
        "id.resp_p": counts(fl.server_port[order]),
        "proto": text(per_value(coded(proto, _ZEEK_PROTO_NAMES), str, spread=False)),
        "duration": text(_seconds_text(dur_ns, unset=dur_ns <= 0)),
        "conn_state": strings(ecs["portclass.conn_state"]),
        "history": strings(ecs["portclass.history"]),
        "orig_bytes": counts(ecs["portclass.orig_bytes"]),
        "resp_bytes": counts(ecs["portclass.resp_bytes"]),
        "missed_bytes": counts(ecs["portclass.missed_bytes"]),
        "orig_ip_bytes": counts(ecs["portclass.orig_ip_bytes"]),
        "resp_ip_bytes": counts(ecs["portclass.resp_ip_bytes"]),
        "orig_pkts": counts(fl.packets_c2s[order]),
        "resp_pkts": counts(fl.packets_s2c[order]),
        "ip_proto": counts(proto),
        "community_id": text(ecs["network.community_id"]),  # base64: nothing to escape, never empty
        "portclass_service": strings(ecs["portclass.service"]),
        "portclass_aliases": sets(ecs["portclass.aliases"]),
        "portclass_description": strings(ecs["portclass.description"]),
        "portclass_status": strings(ecs["portclass.status"]),
        "portclass_flags": sets(ecs["portclass.flags"]),
        "portclass_severity": counts(a.labels.severity[order]),
        "portclass_server_rule": strings(ecs["portclass.server_rule"]),
        "portclass_transport": strings(ecs["network.transport"]),
        "portclass_orig_wire_bytes": counts(fl.bytes_c2s[order]),
        "portclass_resp_wire_bytes": counts(fl.bytes_s2c[order]),
        "service": given(ecs["network.protocol"], ZEEK_SERVICE),
        "portclass_verdict": strings(ecs["portclass.verdict"]),
        "portclass_protocol": strings(ecs["network.protocol"]),
        "portclass_server_name": strings(ecs["tls.client.server_name"]),
        **{z: strings(ecs[e]) for z, e in ZEEK_SAID.items()},
        "portclass_file": strings(ecs["log.file.path"]),
    }
    for name in NEVER_SET:
        cells[name] = functools.partial(out.lit, UNSET_FIELD)
    for i, (name, _) in enumerate(FIELDS):
        if i:
            out.lit(SEPARATOR)
        cells[name]()
    out.lit("\n")
    return bytes(out.data())


def _set_text(v: list[str]) -> str:
    return SET_SEPARATOR.join(escape(x, in_set=True) for x in v) if v else EMPTY_FIELD


def _seconds_text(ns: np.ndarray, unset: np.ndarray | None = None) -> object:
    """``_seconds`` as a pyarrow string column (``-`` where ``unset``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    us = (np.asarray(ns, dtype=np.int64) + 500) // 1000
    sec, frac = np.divmod(us, 1_000_000)
    text = pc.binary_join_element_wise(
        pc.cast(pa.array(sec), "string"), pc.utf8_lpad(pc.cast(pa.array(frac), "string"), 6, "0"), "."
    )
    if unset is not None and unset.any():
        text = pc.if_else(pa.array(unset), UNSET_FIELD, text)
    return text


def _stamp() -> str:
    """Wall-clock time as Zeek's ``#open``/``#close`` lines write it (local time)."""
    return time.strftime("%Y-%m-%d-%H-%M-%S", time.localtime())


def _header_value(text: str) -> str:
    return "".join(f"\\x{ord(ch):02x}" if ord(ch) < 0x20 or ch == "\\" else ch for ch in text)


def header(a: Analysis) -> list[str]:
    """The ``#`` lines before the first flow: Zeek's, then portclass's notice lines, then fields and types."""
    from ..filters import selection_of
    from ..interrupt import partial_note

    sep = SEPARATOR
    lines = [
        "#separator " + "".join(f"\\x{ord(ch):02x}" for ch in SEPARATOR),
        f"#set_separator{sep}{SET_SEPARATOR}",
        f"#empty_field{sep}{EMPTY_FIELD}",
        f"#unset_field{sep}{UNSET_FIELD}",
        f"#path{sep}conn",
        f"#open{sep}{_stamp()}",
        f"#portclass_notice{sep}{_header_value(notice_text(a))}",
        f"#portclass_note{sep}{_header_value(PORTCLASS_NOTE)}",
        f"#portclass_registry{sep}{_header_value(a.registry.provenance.line())}",
        f"#portclass_unset{sep}{','.join(NEVER_SET)} (not computed by portclass; see its docs)",
    ]
    sel = selection_of(a)
    if sel is not None:
        lines.append(f"#portclass_filter{sep}{_header_value(sel.line())}")
    if partial_note(a):
        lines.append(f"#portclass_partial{sep}{_header_value(partial_note(a) or '')}")
    lines.append(f"#fields{sep}" + sep.join(name for name, _ in FIELDS))
    lines.append(f"#types{sep}" + sep.join(t for _, t in FIELDS))
    return lines


def write(a: Analysis, fmt: str, out: str | Path | None, **_: object) -> None:
    """Write the conn.log to ``out`` atomically (or stdout)."""
    emit(render(a), out)
