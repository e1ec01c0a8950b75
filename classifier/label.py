"""Label flows by vectorized lookup of their ports in the compiled registry.

The label of a flow is what the registry assigns to its **server** port: the primary service name,
its description and aliases, and the port's status. Flags (a bit set, vocabulary in ``FLAG_NAMES``):

- ``unauthorized-use-known``: the registry's unauthorized-use note names the server port, or the
  client port where the client port could be a service (see below);
- ``reserved-port``: the server port (or such a client port) is Reserved;
- ``unassigned-port``: the server port is Unassigned;
- ``dynamic-port``: the server port is in the Dynamic/Private range 49152-65535 (peer-to-peer, or
  a service on an ephemeral port);
- ``transport-not-registered``: the server port is assigned, but for another transport only;
- ``unknown-port``: a partial registry source does not list the server port (it cannot tell more);
- ``service-mismatch``: the payload evidence names a protocol that no name registered on the server
  port carries (``classifier.evidence.verdict``; e.g. SSH on 443/tcp, registered for https).

A client's port counts only where it could be a service: when it is a system port (< 1024) or when
the server side is a mere guess (rule ``first-packet``); where a SYN, the registry or the port ranges
decided the server side, the client's port is an ephemeral one (Linux picks 32768-60999, which holds
ports such as 33436-33534 with known unauthorized use) and says nothing about the flow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .capture.columns import TRANSPORT_OF_PROTO
from .registry.compile import (
    DYNAMIC,
    FLAG_OTHER_TRANSPORT,
    FLAG_UNAUTHORIZED,
    RESERVED,
    UNASSIGNED,
    UNKNOWN,
    CompiledRegistry,
)

F_UNAUTHORIZED = 1
F_RESERVED = 2
F_UNASSIGNED = 4
F_DYNAMIC = 8
F_TRANSPORT = 16
F_UNKNOWN = 32
F_MISMATCH = 64
FLAG_NAMES: dict[int, str] = {
    F_MISMATCH: "service-mismatch",
    F_UNAUTHORIZED: "unauthorized-use-known",
    F_RESERVED: "reserved-port",
    F_TRANSPORT: "transport-not-registered",
    F_UNASSIGNED: "unassigned-port",
    F_DYNAMIC: "dynamic-port",
    F_UNKNOWN: "unknown-port",
}
"""Flag bit -> name, worst first."""
SEVERITY: dict[int, int] = {
    F_MISMATCH: 6,
    F_UNAUTHORIZED: 5,
    F_RESERVED: 4,
    F_TRANSPORT: 3,
    F_UNASSIGNED: 3,
    F_DYNAMIC: 2,
    F_UNKNOWN: 1,
}
"""How bad each flag is; a flow's severity is that of its worst flag (0: not flagged)."""

_T_OF_PROTO = np.full(256, -1, dtype=np.int8)
for _p, _t in TRANSPORT_OF_PROTO.items():
    _T_OF_PROTO[_p] = _t


def flag_list(bits: int) -> list[str]:
    """Names of the flags set in ``bits``, worst first."""
    return [n for b, n in FLAG_NAMES.items() if bits & b]


@dataclass
class Labels:
    """Per-flow label columns, parallel to the flow table's rows."""

    transport: np.ndarray  # int8 index into TRANSPORTS, -1 for a protocol without registry ports
    status: np.ndarray  # uint8 status of the server port (registry.compile.STATUS_NAMES)
    service: np.ndarray  # int32 record index of the server port's primary name, -1 none
    flags: np.ndarray  # uint8 bit set of F_*
    severity: np.ndarray  # uint8, 0 = not flagged
    # filled by the evidence stage (classifier.evidence.verdict); defaults: nothing inspected
    verdict: np.ndarray | None = None  # uint8 code of classifier.evidence.verdict.VERDICTS (0 unverified)
    protocol: np.ndarray | None = None  # uint8 observed protocol code (classifier.evidence.PROTOCOLS), 0 none
    evidence_side: np.ndarray | None = None  # int8 direction of that evidence: 0 c2s, 1 s2c, -1 none
    tshark_protocol: np.ndarray | None = None  # object: Wireshark's protocol per flow (--dissect tshark), None

    def __post_init__(self) -> None:
        n = int(np.shape(self.status)[0])
        if self.verdict is None:
            self.verdict = np.zeros(n, dtype=np.uint8)
        if self.protocol is None:
            self.protocol = np.zeros(n, dtype=np.uint8)
        if self.evidence_side is None:
            self.evidence_side = np.full(n, -1, dtype=np.int8)
        if self.tshark_protocol is None:
            self.tshark_protocol = np.full(n, None, dtype=object)

    def __len__(self) -> int:
        return int(self.status.shape[0])


def label_ports(
    reg: CompiledRegistry,
    proto: np.ndarray,
    client_port: np.ndarray,
    server_port: np.ndarray,
    client_counts: np.ndarray | None = None,
) -> Labels:
    """Label flows from their IP protocol and ports: two gathers in the registry, then bit arithmetic.

    ``client_counts`` says per flow whether the client port may carry flags (default: only system
    ports). Labelling a million flows is one call.

    >>> from classifier.registry.sources import load_registry  # doctest: +SKIP
    >>> label_ports(load_registry(), np.array([6]), np.array([51000]), np.array([42000])).flags  # doctest: +SKIP
    array([5], dtype=uint8)
    """
    t = _T_OF_PROTO[np.asarray(proto, dtype=np.uint8)]
    tt = np.maximum(t, 0)
    s = reg.lookup(np.asarray(server_port), tt)
    c = reg.lookup(np.asarray(client_port), tt)
    if client_counts is None:
        client_counts = np.asarray(client_port) < 1024
    valid = t >= 0
    s_status = s.status
    c_status = np.where(client_counts, c.status, 255)
    c_flags = np.where(client_counts, c.flags, 0)
    flags = np.zeros(len(t), dtype=np.uint8)
    flags |= np.where(((s.flags | c_flags) & FLAG_UNAUTHORIZED) != 0, F_UNAUTHORIZED, 0).astype(np.uint8)
    flags |= np.where((s_status == RESERVED) | (c_status == RESERVED), F_RESERVED, 0).astype(np.uint8)
    flags |= np.where(s_status == UNASSIGNED, F_UNASSIGNED, 0).astype(np.uint8)
    flags |= np.where(s_status == DYNAMIC, F_DYNAMIC, 0).astype(np.uint8)
    flags |= np.where((s.flags & FLAG_OTHER_TRANSPORT) != 0, F_TRANSPORT, 0).astype(np.uint8)
    flags |= np.where(s_status == UNKNOWN, F_UNKNOWN, 0).astype(np.uint8)
    flags[~valid] = 0
    return Labels(
        transport=t,
        status=np.where(valid, s_status, UNKNOWN).astype(np.uint8),
        service=np.where(valid, s.service, -1).astype(np.int32),
        flags=flags,
        severity=severity_of(flags),
    )


def severity_of(flags: np.ndarray) -> np.ndarray:
    """Severity per flow: that of its worst flag."""
    sev = np.zeros(flags.shape, dtype=np.uint8)
    for bit, level in SEVERITY.items():
        sev = np.maximum(sev, np.where((flags & bit) != 0, level, 0).astype(np.uint8))
    return sev
