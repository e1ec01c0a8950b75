"""Compile registry records into dense per-transport NumPy arrays, and look ports up in them.

Layout (T = 4 transports in ``TRANSPORTS`` order, P = 65536 ports):

- ``status[T, P]`` uint8: ``UNASSIGNED``, ``ASSIGNED``, ``RESERVED``, ``DYNAMIC``, ``UNKNOWN``
  (a partial source cannot tell what is not listed);
- ``flags[T, P]`` uint8: bit set of ``FLAG_*``;
- ``service[T, P]`` int32: index of the primary record (a named, non-alias one where there is one), -1 none;
- ``packed[T * P]`` uint32: the three above in one word, so a lookup is a single gather;
- ``name_offsets[T * P + 1]``/``name_ids``: every record naming each port (CSR), primary first.

Priority where records overlap: a named (or nameless but assigned) record wins over Reserved,
which wins over Unassigned. A record with no transport covers tcp and udp.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .model import DYNAMIC_LOW, TRANSPORTS, Provenance, Record
from .unauthorized import note_ports

NPORTS = 65536
UNASSIGNED, ASSIGNED, RESERVED, DYNAMIC, UNKNOWN = 0, 1, 2, 3, 4
STATUS_NAMES: tuple[str, ...] = ("unassigned", "assigned", "reserved", "dynamic", "unknown")

FLAG_UNAUTHORIZED = 1
"""An unauthorized-use note of the registry names this port."""
FLAG_OTHER_TRANSPORT = 2
"""Not assigned on this transport, but assigned on another one."""
FLAG_MULTIPLE = 4
"""More than one primary (non-alias) service name on this port."""
FLAG_ALIASES = 8
"""An alias or historic name exists for this port as well."""
FLAG_NAMES: dict[int, str] = {
    FLAG_UNAUTHORIZED: "unauthorized-use-known",
    FLAG_OTHER_TRANSPORT: "transport-not-registered",
    FLAG_MULTIPLE: "multiple-services",
    FLAG_ALIASES: "has-aliases",
}

_PRIO = {"unassigned": 1, "reserved": 2, "named": 3, "assigned": 3}
_STATUS_OF_PRIO = np.array([UNASSIGNED, UNASSIGNED, RESERVED, ASSIGNED], dtype=np.uint8)


def transport_index(name: str) -> int:
    """Index of a transport name in the arrays (tcp 0, udp 1, sctp 2, dccp 3)."""
    try:
        return TRANSPORTS.index(name.lower())
    except ValueError:
        raise ValueError(f"unknown transport {name!r} (one of {', '.join(TRANSPORTS)})") from None


def flag_names(bits: int) -> list[str]:
    """Names of the flag bits set in ``bits``, in a fixed order."""
    return [n for b, n in FLAG_NAMES.items() if bits & b]


class Lookup:
    """Result of a vectorized lookup: one packed little-endian word per port looked up.

    ``status`` and ``flags`` are zero-copy strided views into the words, so decoding costs nothing;
    ``service`` (record index, -1 for none) is computed on first use.
    """

    __slots__ = ("word", "_service")

    def __init__(self, word: np.ndarray) -> None:
        self.word = word
        self._service: np.ndarray | None = None

    @property
    def status(self) -> np.ndarray:
        """Status code per port (index into ``STATUS_NAMES``)."""
        return self.word.view(np.uint8)[0::4]

    @property
    def flags(self) -> np.ndarray:
        """Flag bits per port (``FLAG_*``)."""
        return self.word.view(np.uint8)[1::4]

    @property
    def service_plus1(self) -> np.ndarray:
        """Record index + 1 per port (0: no record names the port), a zero-copy view."""
        return self.word.view(np.uint16)[1::2]

    @property
    def service(self) -> np.ndarray:
        """Record index of the primary name per port, -1 where no record names the port."""
        if self._service is None:
            self._service = self.service_plus1.astype(np.int32) - 1
        return self._service


@dataclass
class CompiledRegistry:
    """The registry as dense arrays plus the records and provenance behind them.

    >>> reg = compile_records([Record(name="http", port_low=80, port_high=80, transport="tcp")],
    ...                       Provenance(source="x", sha256="0" * 64, format="xml"))
    >>> STATUS_NAMES[reg.lookup(np.array([80, 81]), "tcp").status[0]]
    'assigned'
    """

    status: np.ndarray
    flags: np.ndarray
    service: np.ndarray
    packed: np.ndarray
    name_offsets: np.ndarray
    name_ids: np.ndarray
    provenance: Provenance
    _records: list[Record] | None = None
    _records_loader: object | None = field(default=None, repr=False)
    _names: np.ndarray | None = field(default=None, repr=False)
    _names_loader: object | None = field(default=None, repr=False)
    _row_loader: object | None = field(default=None, repr=False)
    _one: dict[int, Record] = field(default_factory=dict, repr=False)
    cache_bytes: bytes | None = field(default=None, repr=False, compare=False)
    """The cache file's bytes it was loaded from (``cache.loads``): what the archive sends its workers."""

    @property
    def records(self) -> list[Record]:
        """The parsed records (decoded lazily when loaded from the cache)."""
        if self._records is None:
            self._records = self._records_loader()  # type: ignore[operator]
        return self._records

    def record(self, j: int) -> Record:
        """Record ``j``; from the cache, decoded alone until all are (a report naming a few hundred ports
        need not build the 13,000 records, about 0.3 s)."""
        if self._records is not None or self._row_loader is None:
            return self.records[j]
        if j not in self._one:
            self._one[j] = self._row_loader(j)  # type: ignore[operator]
        return self._one[j]

    @property
    def service_names(self) -> np.ndarray:
        """Name per record index as a NumPy string array (nameless assignments show their description)."""
        if self._names is None:
            if self._names_loader is not None:
                self._names = self._names_loader()  # type: ignore[operator]
            else:
                self._names = np.array([r.name or r.description for r in self.records] or [""], dtype=str)
        return self._names

    def lookup(self, ports: np.ndarray, transport: str | int | np.ndarray = "tcp") -> Lookup:
        """Vectorized lookup of ports on a transport (a name, an index, or an array of indexes).

        Labelling a million flows is one call: one gather in ``packed`` and three bit operations.
        """
        ports = np.asarray(ports)
        if isinstance(transport, str):
            transport = transport_index(transport)
        if np.ndim(transport) == 0:
            t = int(transport)
            return Lookup(self.packed[t * NPORTS : (t + 1) * NPORTS][ports])
        idx = (np.asarray(transport).astype(np.intp) << 16) | ports
        return Lookup(self.packed.take(idx))

    def names_on(self, transport: str, port: int) -> list[Record]:
        """Every record naming ``port`` on ``transport``, primary first, then the others and aliases."""
        i = transport_index(transport) * NPORTS + port
        ids = self.name_ids[self.name_offsets[i] : self.name_offsets[i + 1]]
        return [self.record(int(j)) for j in ids]

    def counts(self) -> dict[str, dict[str, int]]:
        """Ports per status for each transport, plus flagged-unauthorized counts."""
        out: dict[str, dict[str, int]] = {}
        for t, name in enumerate(TRANSPORTS):
            bc = np.bincount(self.status[t], minlength=len(STATUS_NAMES))
            row = {s: int(bc[i]) for i, s in enumerate(STATUS_NAMES) if bc[i] or i < 4}
            row["unauthorized-use-known"] = int(np.count_nonzero(self.flags[t] & FLAG_UNAUTHORIZED))
            out[name] = row
        return out


def _span(rec: Record) -> tuple[int, int] | None:
    if rec.port_low is None:
        return None
    hi = rec.port_high if rec.port_high is not None else rec.port_low
    if not (0 <= rec.port_low <= hi < NPORTS):
        return None
    return rec.port_low, hi


def compile_records(records: list[Record], provenance: Provenance) -> CompiledRegistry:
    """Build the dense arrays from records (about 20 ms for the full registry)."""
    T = len(TRANSPORTS)
    prio = np.zeros((T, NPORTS), dtype=np.uint8)
    flags = np.zeros((T, NPORTS), dtype=np.uint8)
    ent_key: list[np.ndarray] = []
    ent_rank: list[np.ndarray] = []
    ent_rec: list[np.ndarray] = []
    for i, rec in enumerate(records):
        span = _span(rec)
        if span is None:
            continue
        lo, hi = span
        kind = rec.kind
        p = _PRIO[kind]
        tix = [TRANSPORTS.index(t) for t in rec.transports if t in TRANSPORTS]
        for t in tix:
            np.maximum(prio[t, lo : hi + 1], p, out=prio[t, lo : hi + 1])
        if rec.unauthorized:
            named = note_ports(rec.unauthorized) or [(lo, hi)]
            for t in tix:
                for a, b in named:
                    flags[t, a : b + 1] |= FLAG_UNAUTHORIZED
        if kind in ("named", "assigned"):
            n = hi - lo + 1
            rank = 2 if rec.alias_of else (0 if kind == "named" else 1)
            for t in tix:
                ent_key.append(np.arange(t * NPORTS + lo, t * NPORTS + hi + 1, dtype=np.int64))
                ent_rank.append(np.full(n, rank, dtype=np.int8))
                ent_rec.append(np.full(n, i, dtype=np.int32))

    status = _STATUS_OF_PRIO[prio]
    if not provenance.full:
        status[prio == 0] = UNKNOWN
    dyn = np.zeros(NPORTS, dtype=bool)
    dyn[DYNAMIC_LOW:] = True
    status[(prio < 3) & dyn[None, :]] = DYNAMIC

    if ent_key:
        key = np.concatenate(ent_key)
        rank = np.concatenate(ent_rank)
        rid = np.concatenate(ent_rec)
        order = np.lexsort((rid, rank, key))
        key, rank, rid = key[order], rank[order], rid[order]
    else:
        key = np.zeros(0, np.int64)
        rank = np.zeros(0, np.int8)
        rid = np.zeros(0, np.int32)
    counts = np.bincount(key, minlength=T * NPORTS)
    offsets = np.zeros(T * NPORTS + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    service = np.full(T * NPORTS, -1, dtype=np.int32)
    has = counts > 0
    service[has] = rid[offsets[:-1][has]]
    primaries = np.bincount(key[rank < 2], minlength=T * NPORTS)
    aliases = np.bincount(key[rank == 2], minlength=T * NPORTS)
    flat_flags = flags.reshape(-1)
    flat_flags[primaries > 1] |= FLAG_MULTIPLE
    flat_flags[aliases > 0] |= FLAG_ALIASES
    assigned_any = (status == ASSIGNED).any(axis=0)
    flags[(status != ASSIGNED) & assigned_any[None, :]] |= FLAG_OTHER_TRANSPORT
    service = service.reshape(T, NPORTS)

    packed = (
        status.astype("<u4").reshape(-1)
        | (flags.astype("<u4").reshape(-1) << 8)
        | ((service.reshape(-1).astype(np.int64) + 1).astype("<u4") << 16)
    ).astype("<u4")
    provenance.records = len(records)
    return CompiledRegistry(
        status=status,
        flags=flags,
        service=service,
        packed=packed,
        name_offsets=offsets,
        name_ids=rid.astype(np.int32),
        provenance=provenance,
        _records=records,
    )
