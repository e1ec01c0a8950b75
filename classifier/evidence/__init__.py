"""Payload evidence: what the first payload bytes of each flow say, against what the registry claims.

``scan`` recognises protocols in a batch's payloads (signature tables in ``table``, evaluated
vectorized in ``match``, structural walks in ``walk``); the flow stage keeps, per flow and
direction, the first recognised packet; ``verdicts`` compares the observed protocol with every
name the registry gives the server port (``consistent``, ``mismatch``, ``unverified`` or
``unregistered``); ``extract`` (and ``ja4`` for TLS ClientHellos) takes what each flow said from
the packets a signature named; ``apps`` names the application a TLS server name belongs to;
``tshark`` asks Wireshark's dissectors for a second opinion.

>>> from classifier.evidence import scan_bytes, SIG_NAMES
>>> [SIG_NAMES[c] for c in scan_bytes([b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"])]
['http-request']
"""

from __future__ import annotations

from .match import PROTOCOL_CODE, SIG_NAMES, SIG_PROTOCOL, scan, scan_bytes, scan_payloads
from .table import CARRIERS, PROTOCOLS, SIGNATURES
from .verdict import VERDICTS, carrier_index, verdicts

__all__ = [
    "CARRIERS",
    "PROTOCOLS",
    "PROTOCOL_CODE",
    "SIGNATURES",
    "SIG_NAMES",
    "SIG_PROTOCOL",
    "VERDICTS",
    "carrier_index",
    "scan",
    "scan_bytes",
    "scan_payloads",
    "verdicts",
]
