"""Compare each flow's observed protocol with every name the registry gives its server port.

The registry side is precomputed once per registry: a bit per protocol for each
(transport, port), set where any record on that port (primary, other names, aliases) is a
carrier of the protocol (``table.CARRIERS``).  A flow's verdict is then a gather and a bit
test:

``consistent``    the observed protocol is carried by a name on the server port;
``mismatch``      the port has registered names and none carries it (flag ``service-mismatch``);
``unregistered``  the port has no registered name on this transport (its status flags say so);
``unverified``    nothing recognised (no payload, or no signature matched).

The observed protocol of a flow comes from the direction whose first recognised packet
weighs more (ties: the one whose sender matches the signature's role, then the packet
seen first).  Evidence on a later payload packet of a service that upgrades in-band
(``Carriers.after_plaintext``, e.g. STARTTLS on smtp) counts as consistent.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..flows import FlowTable
from ..label import F_MISMATCH, Labels, severity_of
from ..registry.compile import NPORTS, CompiledRegistry
from ..registry.model import TRANSPORTS
from .match import PROTOCOL_CODE, SIG_ALT, SIG_CONFIRM_ONLY, SIG_NAMES, SIG_PROTOCOL, SIG_ROLE, SIG_WEIGHT
from .table import CARRIERS, PROTOCOLS

VERDICTS: tuple[str, ...] = ("unverified", "consistent", "mismatch", "unregistered")
"""Verdict code -> name."""
V_UNVERIFIED, V_CONSISTENT, V_MISMATCH, V_UNREGISTERED = range(4)
DIRECTIONS = ("client-to-server", "server-to-client")
"""``Labels.evidence_side`` -> ECS-like direction name."""
_PROTO_LOWER = np.array([None] + [p.name for p in PROTOCOLS], dtype=object)
_PROTO_DISPLAY = np.array([None] + [p.display for p in PROTOCOLS], dtype=object)


@dataclass
class CarrierIndex:
    """Per (transport, port): bit ``code`` set where a registered name carries protocol ``code``."""

    carries: np.ndarray  # uint8 (len(TRANSPORTS) * NPORTS, BITS_BYTES): bit ``code`` of each row
    after_plaintext: np.ndarray  # same layout: carries it after an in-band upgrade
    named: np.ndarray  # bool: the (transport, port) has at least one registered name


BITS_BYTES = (len(PROTOCOLS) + 1 + 7) // 8
"""Bytes per (transport, port) row of the carrier bit matrices (bit ``code`` little-endian within a row)."""
_OVER_CODES = [(PROTOCOL_CODE[p.name], PROTOCOL_CODE[p.over]) for p in PROTOCOLS if p.over]


def has_bit(bits: np.ndarray, key: np.ndarray, code: np.ndarray) -> np.ndarray:
    """Per element: bit ``code`` of row ``key`` of a carrier bit matrix."""
    code = np.asarray(code, dtype=np.int64)
    return ((bits[key, code >> 3] >> (code & 7).astype(np.uint8)) & 1).astype(bool)


def carried(idx: CarrierIndex, key: int, code: int, later: bool = False) -> bool:
    """A registered name of (transport, port) ``key`` carries protocol ``code`` (``later``: after an upgrade too)."""
    k, c = np.array([key]), np.array([code])
    return bool(has_bit(idx.carries, k, c)[0] or (later and has_bit(idx.after_plaintext, k, c)[0]))


_WORDS = re.compile(r"[A-Za-z]{3,}")


def _record_bits(names: list[str], descs: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Carrier and after-plaintext bits per registry record: bool (records, protocols + 1)."""
    n = len(names)
    bits = np.zeros((n, len(PROTOCOLS) + 1), dtype=bool)
    after = np.zeros_like(bits)
    low = [x.lower() for x in names]
    index: dict[str, list[int]] = {}
    for i, x in enumerate(low):
        index.setdefault(x, []).append(i)
    # only records mentioning one of the patterns' words need the regular expressions
    # (the patterns are alternations of words, so a match needs one of their words)
    pats = [r for c in CARRIERS.values() for r in (c.name_re, c.desc_re) if r]
    words = sorted({w.lower() for r in pats for w in _WORDS.findall(re.sub(r"\\.", " ", r))})
    pre = re.compile("|".join(words))
    texts = [f"{a} {b.lower()}".replace("\n", " ") for a, b in zip(low, descs, strict=True)]
    big = "\n".join(texts)  # one scan of all records instead of one search per record
    line_start = np.cumsum([0] + [len(t) + 1 for t in texts[:-1]])
    hits = [m.start() for m in pre.finditer(big)]
    maybe = np.unique(np.searchsorted(line_start, hits, side="right") - 1).tolist() if hits else []
    for pname, car in CARRIERS.items():
        code = PROTOCOL_CODE[pname]
        hit = np.zeros(n, dtype=bool)
        for x in car.names:
            hit[index.get(x, [])] = True
        if car.name_re or car.desc_re:
            nre = re.compile(car.name_re, re.I) if car.name_re else None
            dre = re.compile(car.desc_re, re.I) if car.desc_re else None
            xre = re.compile(car.exclude_re, re.I) if car.exclude_re else None
            for i in maybe:
                if hit[i] or (xre is not None and xre.search(low[i])):
                    continue
                if (nre is not None and nre.search(low[i])) or (dre is not None and dre.search(descs[i])):
                    hit[i] = True
        bits[:, code] = hit
        for x in car.after_plaintext:
            after[index.get(x, []), code] = True
    for _ in range(3):  # a protocol riding in another is carried where that one is (nesting is shallow)
        for child, parent in _OVER_CODES:
            bits[:, child] |= bits[:, parent]
            after[:, child] |= after[:, parent]
    return bits, after


def carrier_index(reg: CompiledRegistry) -> CarrierIndex:
    """The registry's carrier bits (computed once per registry object, then cached on it).

    >>> idx = carrier_index(load_registry())  # doctest: +SKIP
    >>> bool(idx.carries[443] >> PROTOCOL_CODE["tls"] & 1)  # doctest: +SKIP
    True
    """
    cached = reg.__dict__.get("_evidence_carriers")
    if isinstance(cached, CarrierIndex):
        return cached
    idx = _load_carriers(reg)
    if idx is None:
        idx = _build_carriers(reg)
        _save_carriers(reg, idx)
    reg.__dict__["_evidence_carriers"] = idx
    return idx


def _carriers_path(reg: CompiledRegistry) -> Path:
    """Disk cache of the index beside the compiled registry: one per registry sha256 and carrier table."""
    from ..registry.cache import _compiler
    from ..registry.sources import cache_dir

    table = hashlib.sha256((repr(sorted(CARRIERS.items())) + repr(_OVER_CODES)).encode() + _compiler().encode())
    table = table.hexdigest()[:16]
    return cache_dir() / f"{reg.provenance.sha256}.carriers-{table}.npy"


def _load_carriers(reg: CompiledRegistry) -> CarrierIndex | None:
    try:
        arr = np.load(_carriers_path(reg), allow_pickle=False)
    except (OSError, ValueError):
        return None
    if arr.shape != (2 * BITS_BYTES + 1, len(TRANSPORTS) * NPORTS) or arr.dtype != np.uint8:
        return None
    b = BITS_BYTES
    return CarrierIndex(carries=arr[:b].T.copy(), after_plaintext=arr[b : 2 * b].T.copy(), named=arr[2 * b] != 0)


def _save_carriers(reg: CompiledRegistry, idx: CarrierIndex) -> None:
    import io

    from ..registry.cache import atomic_write

    buf = io.BytesIO()
    np.save(buf, np.concatenate([idx.carries.T, idx.after_plaintext.T, idx.named.astype(np.uint8)[None, :]]))
    try:
        atomic_write(_carriers_path(reg), buf.getvalue(), make_dirs=True)
    except OSError:
        pass  # a read-only cache only costs time


def _build_carriers(reg: CompiledRegistry) -> CarrierIndex:
    """Compute the index from the registry's records (about 0.1 s for the full registry)."""
    recs = reg.records
    bits, after = _record_bits([r.name or "" for r in recs], [r.description or "" for r in recs])
    counts = np.diff(reg.name_offsets).astype(np.int64)
    keys = np.repeat(np.arange(len(TRANSPORTS) * NPORTS), counts)
    ids = reg.name_ids.astype(np.int64)
    out = []
    for per_record in (bits, after):
        rows = np.zeros((len(TRANSPORTS) * NPORTS, per_record.shape[1]), dtype=bool)
        if ids.size:
            np.logical_or.at(rows, keys, per_record[ids])
        out.append(np.packbits(rows, axis=1, bitorder="little"))
    return CarrierIndex(carries=out[0], after_plaintext=out[1], named=counts > 0)


def observed(flows: FlowTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per flow: (signature code used, its direction 0 c2s / 1 s2c / -1 none, protocol code)."""
    sc, ss = flows.evidence_sig_c2s, flows.evidence_sig_s2c
    rc, rs = SIG_ROLE[sc], SIG_ROLE[ss]
    score_c = SIG_WEIGHT[sc].astype(np.int16) * 2 + (rc != 2)  # role any/client fits client to server
    score_s = SIG_WEIGHT[ss].astype(np.int16) * 2 + (rs != 1)
    score_c[sc == 0] = 0
    score_s[ss == 0] = 0
    # equal scores: the packet seen first (same file: lower packet number)
    s_first = (flows.evidence_file_s2c < flows.evidence_file_c2s) | (
        (flows.evidence_file_s2c == flows.evidence_file_c2s) & (flows.evidence_pkt_s2c < flows.evidence_pkt_c2s)
    )
    use_s = (score_s > score_c) | ((score_s == score_c) & (ss > 0) & s_first)
    sig = np.where(use_s, ss, sc)
    side = np.where(sig == 0, -1, use_s.astype(np.int8)).astype(np.int8)
    return sig, side, SIG_PROTOCOL[sig]


def verdicts(flows: FlowTable, labels: Labels, reg: CompiledRegistry) -> Labels:
    """Fill the evidence columns of ``labels`` (verdict, protocol, side) and flag mismatches, in place.

    ``flows`` must be oriented (``pipeline.label_flows``) and carry the evidence columns.

    >>> from classifier.flows import FlowAggregator, PacketTags, make_batch
    >>> from classifier.pipeline import label_flows
    >>> from classifier.registry.compile import compile_records
    >>> from classifier.registry.model import Provenance, Record
    >>> reg = compile_records([Record(name="https", port_low=443, port_high=443, transport="tcp")],
    ...                       Provenance(source="x", sha256="0" * 64, format="xml"))
    >>> b = make_batch(ts_ns=[0, 1], src=["192.0.2.1", "198.51.100.2"], dst=["198.51.100.2", "192.0.2.1"],
    ...                sport=[50000, 443], dport=[443, 50000], tcp_flags=[0x02, 0x12], payload_len=[0, 21])
    >>> tags = PacketTags.none(2)
    >>> tags.sig[1] = SIG_NAMES.index("ssh-banner")  # the server sent an SSH banner
    >>> agg = FlowAggregator()
    >>> agg.add(b, tags)
    >>> flows, labels = label_flows(agg.result(), reg)
    >>> labels = verdicts(flows, labels, reg)
    >>> VERDICTS[labels.verdict[0]], note(reg, int(labels.verdict[0]), int(labels.protocol[0]), 0, 443, 6)
    ('mismatch', 'port 443/tcp registered for https; payload is SSH')
    """
    idx = carrier_index(reg)
    sig, side, proto = observed(flows)
    t = labels.transport.astype(np.int64)
    key = np.maximum(t, 0) * NPORTS + flows.server_port.astype(np.int64)
    valid = t >= 0
    carried = has_bit(idx.carries, key, proto)
    # bytes that are also another protocol (an NBNS-shaped query on 53 is DNS): the one the port carries
    alt = SIG_ALT[sig]
    use_alt = (alt > 0) & ~carried & has_bit(idx.carries, key, alt)
    proto = np.where(use_alt, alt, proto).astype(proto.dtype)
    carried |= use_alt
    # the evidence packet is not the direction's first payload packet: an in-band upgrade is possible
    first_c, first_s = flows.payload_pkt_c2s[:, 0], flows.payload_pkt_s2c[:, 0]
    ev_pkt = np.where(side == 1, flows.evidence_pkt_s2c, flows.evidence_pkt_c2s)
    first = np.where(side == 1, first_s, first_c)
    later = ev_pkt != first
    carried |= has_bit(idx.after_plaintext, key, proto) & later
    named = idx.named[key] & valid
    # weak evidence (confirm_only) may confirm a registered name, never contradict one
    weak = SIG_CONFIRM_ONLY[sig] & ~carried
    sig, proto = np.where(weak, 0, sig), np.where(weak, 0, proto).astype(proto.dtype)
    side = np.where(weak, -1, side).astype(np.int8)
    v = np.full(len(flows), V_UNVERIFIED, dtype=np.uint8)
    seen = proto > 0
    v[seen & ~named] = V_UNREGISTERED
    v[seen & named & carried] = V_CONSISTENT
    v[seen & named & ~carried] = V_MISMATCH
    labels.verdict = v
    labels.protocol = proto
    labels.evidence_side = side
    labels.flags = labels.flags | np.where(v == V_MISMATCH, F_MISMATCH, 0).astype(np.uint8)
    labels.severity = severity_of(labels.flags)
    return labels


# --------------------------------------------------------------------------- report helpers


def protocol_names(codes: np.ndarray, display: bool = False) -> np.ndarray:
    """Protocol codes as ECS names (``tls``), or display names (``TLS``); None for 0."""
    return (_PROTO_DISPLAY if display else _PROTO_LOWER)[np.asarray(codes, dtype=np.int64)]


def registered_names(reg: CompiledRegistry, transport: int, port: int, most: int = 3) -> str:
    """The names the registry gives a port, primary first (``urd, submissions``), at most ``most``."""
    if transport < 0:
        return ""
    names: list[str] = []
    for r in reg.names_on(TRANSPORTS[transport], port):
        if r.name and r.name not in names:
            names.append(r.name)
    more = len(names) - most
    return ", ".join(names[:most]) + (f" (+{more})" if more > 0 else "")


def note(
    reg: CompiledRegistry, verdict: int, protocol: int, transport: int, port: int, proto_number: int
) -> str | None:
    """One line saying both sides, for a mismatch or an unregistered port (None otherwise; see ``verdicts``)."""
    tname = TRANSPORTS[transport] if transport >= 0 else str(proto_number)
    what = _PROTO_DISPLAY[protocol]
    if verdict == V_MISMATCH:
        return f"port {port}/{tname} registered for {registered_names(reg, transport, port)}; payload is {what}"
    if verdict == V_UNREGISTERED:
        return f"port {port}/{tname} has no registered service; payload is {what}"
    return None


_SHOWN_AS = np.array([0] + [PROTOCOL_CODE[q.over] if q.over else i + 1 for i, q in enumerate(PROTOCOLS)])
"""Protocol code -> the code ``network.protocol`` shows: the carrier of a carried protocol (HTTP for Elasticsearch)."""
_CARRIED = np.array([None] + [q.name if q.over else None for q in PROTOCOLS], dtype=object)


def applications(protocol: np.ndarray, server_name: np.ndarray) -> np.ndarray:
    """``network.application`` per flow: a carried protocol (``elasticsearch`` over HTTP, ``dnscrypt`` over
    DNS), else the application its TLS server name belongs to (``classifier.evidence.apps``), else None."""
    from .apps import APP_NAMES, application_codes

    out = _CARRIED[np.asarray(protocol, dtype=np.int64)]
    free = np.flatnonzero(np.equal(out, None) & (np.asarray(server_name) != b""))
    if free.size:
        out[free] = np.array(APP_NAMES, dtype=object)[application_codes(server_name[free])]
    return out


SAID_COLUMNS: dict[str, tuple[str, str, str]] = {
    "http.request.method": ("http", "http.request.method", "c2s"),
    "url.original": ("http", "url.original", "c2s"),
    "url.domain": ("http", "url.domain", "c2s"),
    "user_agent.original": ("http", "user_agent.original", "c2s"),
    "dns.question.name": ("dns", "dns.question.name", "c2s"),
    "dns.question.type": ("dns", "dns.question.type", "c2s"),
    "portclass.ssh.client_software": ("ssh", "software", "c2s"),
    "portclass.ssh.server_software": ("ssh", "software", "s2c"),
    "portclass.server_greeting": ("greeting", "greeting", "s2c"),
    "portclass.tls.client.ja4": ("tls", "ja4", "c2s"),
    "portclass.tls.client.alpn": ("tls", "alpn", "c2s"),
}
"""Column (ECS name where ECS has one) -> (extractor, its field, direction): what each flow said."""


@dataclass
class Coded:
    """A dictionary-encoded column: ``values[indices[i]]`` per row, null where the index is negative."""

    indices: np.ndarray
    values: Sequence[str]  # a tuple: a fixed table (``report.rows.coded`` builds it once)

    def tolist(self) -> list[str | None]:
        """One value (or None) per row."""
        table = np.array([*self.values, None], dtype=object)
        return table[np.where(self.indices < 0, len(self.values), self.indices)].tolist()


def said_codes(flows: FlowTable) -> dict[str, Coded]:
    """The ``SAID_COLUMNS`` of every flow, from what its evidence packet each way said (null where
    nothing), dictionary-encoded: each field of the stored values is cut out for all flows of one
    extractor at once and decoded once per distinct value (``extract.fields_of`` per value, vectorized)."""
    from .extract import _CONTROL, EXTRACTOR, FIELDS, QTYPES

    n = len(flows)
    out = {k: Coded(np.full(n, -1, dtype=np.int32), []) for k in SAID_COLUMNS}
    kinds = np.array([None] + [EXTRACTOR.get(x) for x in SIG_NAMES[1:]], dtype=object)
    for way, said, sig in (
        ("c2s", flows.said_c2s, flows.evidence_sig_c2s),
        ("s2c", flows.said_s2c, flows.evidence_sig_s2c),
    ):
        kind = kinds[sig]
        has = np.not_equal(said, None) & np.not_equal(kind, None)
        for k in set(kind[has].tolist()):
            want = {f: col for col, (kk, f, w) in SAID_COLUMNS.items() if kk == k and w == way}
            if not want:
                continue
            rows = np.flatnonzero(has & (kind == k))
            width = sum(w for _, w in FIELDS[k])
            raw = np.array(said[rows].tolist(), dtype=f"S{width}").view(np.uint8).reshape(rows.size, width)
            at = 0
            for name, w in FIELDS[k]:
                field, at = raw[:, at : at + w], at + w
                if name not in want:
                    continue
                uniq, inv = np.unique(np.ascontiguousarray(field).view(f"S{w}").reshape(-1), return_inverse=True)
                texts = [u.translate(_CONTROL).decode("utf-8", errors="replace") for u in uniq.tolist()]
                if name == "dns.question.type":
                    texts = [QTYPES.get(int(t), t) if t.isdigit() else t for t in texts]
                col = out[want[name]]
                code = np.asarray(inv, dtype=np.int32).reshape(-1) + len(col.values)
                code[(uniq == b"")[inv.reshape(-1)]] = -1  # an empty field is left out
                col.indices[rows] = code
                col.values.extend(texts)
    return out


def said_columns(flows: FlowTable) -> dict[str, list[Any]]:
    """The ``SAID_COLUMNS`` of every flow as lists (None where nothing); see ``said_codes``."""
    return {k: v.tolist() for k, v in said_codes(flows).items()}


def said_summary(flows: FlowTable, rows: np.ndarray) -> np.ndarray:
    """One short line per flow of ``rows`` saying what it said (bytes, b"" nothing): the TLS server
    name, else the HTTP request (``GET host/path``), the DNS question (``name TYPE``), the SSH
    software both ways, or the server's greeting.  For the terminal and HTML flow tables."""
    from .extract import EXTRACTOR, fields_of

    out = np.array(flows.server_name[rows], dtype=object)
    kinds = [None] + [EXTRACTOR.get(x) for x in SIG_NAMES[1:]]
    for k, i in enumerate(rows.tolist()):
        if out[k]:
            continue
        got: dict[str, str] = {}
        for said, sig, way in (
            (flows.said_c2s, flows.evidence_sig_c2s, "c2s"),
            (flows.said_s2c, flows.evidence_sig_s2c, "s2c"),
        ):
            kind = kinds[int(sig[i])]
            if said[i] is not None and kind is not None:
                got.update({f"{kind}.{way}.{f}": v for f, v in fields_of(kind, said[i]).items()})
        if "http.c2s.http.request.method" in got:
            host, target = got.get("http.c2s.url.domain", ""), got.get("http.c2s.url.original", "")
            text = f"{got['http.c2s.http.request.method']} {host}{target}"
        elif "dns.c2s.dns.question.name" in got:
            text = f"{got['dns.c2s.dns.question.name']} {got.get('dns.c2s.dns.question.type', '')}"
        elif "ssh.c2s.software" in got or "ssh.s2c.software" in got:
            text = f"{got.get('ssh.c2s.software', '?')} -> {got.get('ssh.s2c.software', '?')}"
        else:
            text = got.get("greeting.s2c.greeting", "")
        out[k] = text.strip().encode()
    return out


def flow_evidence_columns(flows: FlowTable, labels: Labels, reg: CompiledRegistry, files: list[str]) -> dict[str, Any]:
    """ECS-style columns of the evidence for every flow (rows in table order), dictionary-encoded
    (``Coded``) but for ``portclass.evidence.packet`` (int64, -1 where none).

    ``network.protocol`` (the carrier of a carried protocol), ``network.application`` (the carried
    protocol, or the application a TLS server name belongs to), ``portclass.verdict``, ``portclass.verdict_note``,
    ``portclass.evidence.{signature,direction,file,packet}``, ``tls.client.server_name``, what the
    flow said (``SAID_COLUMNS``: HTTP request line, Host and User-Agent, DNS question, SSH software,
    server greeting), and
    ``portclass.tshark_protocol`` / ``portclass.tshark_agreement`` (lists) when tshark was asked.
    """
    from .apps import APP_NAMES, application_codes

    n = len(flows)
    v, p, side = labels.verdict, labels.protocol, labels.evidence_side
    sig = np.where(side == 1, flows.evidence_sig_s2c, np.where(side == 0, flows.evidence_sig_c2s, 0))
    pkt = np.where(side == 1, flows.evidence_pkt_s2c, flows.evidence_pkt_c2s)
    fidx = np.where(side == 1, flows.evidence_file_s2c, flows.evidence_file_c2s)
    has = side >= 0
    # notes: one per distinct (transport, port, protocol, verdict) of the flagged flows
    key = labels.transport.astype(np.int64) * NPORTS + flows.server_port
    flagged = np.flatnonzero((v == V_MISMATCH) | (v == V_UNREGISTERED))
    note_idx = np.full(n, -1, dtype=np.int32)
    notes: list[str] = []
    if flagged.size:
        combo = (key[flagged] * 256 + p[flagged]) * 4 + v[flagged]
        _, first, inv = np.unique(combo, return_index=True, return_inverse=True)
        for i in flagged[first].tolist():
            port, number = int(flows.server_port[i]), int(flows.proto[i])
            notes.append(note(reg, int(v[i]), int(p[i]), int(labels.transport[i]), port, number) or "")
        note_idx[flagged] = np.asarray(inv, dtype=np.int32).reshape(-1)
    # server names: decoded, and their application looked up, once per distinct name
    names, sni_inv = np.unique(flows.server_name, return_inverse=True)
    sni_inv = np.asarray(sni_inv, dtype=np.int32).reshape(-1)
    sni_text = [b.decode("utf-8", errors="replace") for b in names.tolist()]
    sni_idx = np.where((names == b"")[sni_inv], -1, sni_inv).astype(np.int32)
    app = _CARRIED_CODE[np.asarray(p, dtype=np.int64)]  # a carried protocol, else the server name's application
    free = (app < 0) & (sni_idx >= 0)
    if free.any():
        app_of_name = application_codes(names).astype(np.int32) + len(_CARRIED_NAMES) - 1
        app_of_name[app_of_name < len(_CARRIED_NAMES)] = -1
        app[free] = app_of_name[sni_inv[free]]
    shown = _SHOWN_AS[p]
    cols: dict[str, Any] = {
        "network.protocol": Coded(np.where(shown == 0, -1, shown - 1).astype(np.int32), _PROTO_NAMES),
        "network.application": Coded(app, (*_CARRIED_NAMES, *APP_NAMES[1:])),
        "portclass.verdict": Coded(v.astype(np.int32), VERDICTS),
        "portclass.verdict_note": Coded(note_idx, notes),
        "portclass.evidence.signature": Coded(np.where(has, sig.astype(np.int32), -1), SIG_NAMES),
        "portclass.evidence.direction": Coded(np.where(has, side.astype(np.int32), -1), DIRECTIONS),
        "portclass.evidence.file": Coded(np.where(has & (fidx < len(files)), fidx.astype(np.int32), -1), list(files)),
        "portclass.evidence.packet": np.where(has, pkt.astype(np.int64), -1),
        "tls.client.server_name": Coded(sni_idx, sni_text),
    }
    cols.update(said_codes(flows))
    ts = labels.tshark_protocol
    if ts is not None and bool(np.not_equal(ts, None).any()):  # tshark asked (not one Python object per flow)
        from .tshark import agreement

        cols["portclass.tshark_protocol"] = ts.tolist()
        cols["portclass.tshark_agreement"] = agreement(labels).tolist()
    return cols


_PROTO_NAMES = tuple(q.name for q in PROTOCOLS)
"""``network.protocol`` values: protocol code k >= 1 is entry k - 1."""
_CARRIED_NAMES = [q.name for q in PROTOCOLS if q.over]
_CARRIED_CODE = np.array([-1] + [_CARRIED_NAMES.index(q.name) if q.over else -1 for q in PROTOCOLS], dtype=np.int32)
"""Protocol code -> index of the carried protocol's name in ``_CARRIED_NAMES`` (-1: not a carried one)."""
