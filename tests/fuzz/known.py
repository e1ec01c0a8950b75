"""Failures the fuzzers found: each kept input, what it shows, and whether its bug is still open.

``REGRESSIONS`` maps a file under ``tests/fuzz/regressions/`` to ``(signature, description, open)``;
``open`` names the issue-9 work that fixes it while that fix is not merged (the replay test is then
``xfail(strict=True)``, so it fails loudly once fixed: clear ``open`` then), else None.
``OPEN`` holds the signatures the CI fuzz run tolerates (recorded, not fatal) meanwhile.
"""

from __future__ import annotations

import traceback
from pathlib import Path

from tests.fuzz.harness import Broken

REGRESSIONS: dict[str, tuple[str, str, str | None]] = {
    "capture/out-of-order-timestamps": (
        "broken:negative-duration",
        "pcap of 2 packets, the second stamped before the first: a flow whose end is before its start",
        None,  # fixed in main: cafd5f1 (flows: start and end are the min and max of their packets' times)
    ),
    "reports/out-of-order-timestamps": (
        "broken:negative-duration",
        "the same capture through the analysis: negative event.duration, negative capture span",
        None,  # fixed in main: cafd5f1
    ),
    "capture/packets-before-their-interface": (
        "broken:chunk-dependence",
        "pcapng whose packets name interface 1 before its description block: other counts with 256-byte chunks",
        None,  # fixed in main (capture: interface blocks carried across chunks)
    ),
    "capture/fragment-payload-bytes-by-chunk": (
        "broken:chunk-dependence",
        "sample.pcapng with one timestamp byte flipped (then cut): the second HTTP connection on one 5-tuple"
        " said nothing with 64 MiB chunks, 'GET /favicon.ico' with 256-byte chunks (the scan extracted one"
        " packet per 5-tuple and batch, not per flow)",
        None,  # fixed in main (evidence: every marked packet is extracted)
    ),
    "reports/html-timeline-long-span": (
        "ValueError@classifier/report/html.py:timeline_chart",
        "2 flows years apart: the HTML timeline raises ValueError (negative list argument), no report",
        None,
    ),
    "update/garbage-status-line": (
        "BadStatusLine@classifier/registry/sources.py:download",
        "a server answering one NUL byte: http.client.BadStatusLine traceback",
        None,  # fixed in main (registry: download errors as one line)
    ),
    "update/unknown-protocol": (
        "UnknownProtocol@classifier/registry/sources.py:download",
        "status line 'HTTP/ 404': http.client.UnknownProtocol traceback",
        None,  # fixed in main (registry: download errors as one line)
    ),
    "update/chunked-body-cut": (
        "IncompleteRead@classifier/registry/sources.py:download",
        "chunked response closed before its first chunk: http.client.IncompleteRead traceback",
        None,  # fixed in main (registry: download errors as one line)
    ),
    "update/redirect-loop-three-lines": (
        "broken:multi-line-error",
        "a 301 to itself (empty Location): the redirect-loop error is three lines, not one",
        None,  # fixed in main (registry: download errors as one line)
    ),
    "registry/xml-bad-number": (
        "ValueError@classifier/registry/xml.py:_record",
        "a record with <number>1e3</number> (fuzzer: empty, ')899'): ValueError traceback from int()",
        None,  # fixed in main (registry: XML <number> checked)
    ),
    "registry/xml-multibyte-encoding": (
        "ValueError@classifier/registry/xml.py:parse_xml",
        "'<?xml version=\"\" encoding=\"UTF7\"?>': ValueError (multi-byte encodings are not supported) traceback",
        None,  # fixed in main (registry: encodings expat cannot read are one line)
    ),
    "registry/xml-unknown-encoding": (
        "LookupError@classifier/registry/xml.py:parse_xml",
        "'<?xml version=\"\" encoding=\"F\"?>': LookupError (unknown encoding) traceback from the XML reader",
        None,  # fixed in main (registry: encodings expat cannot read are one line)
    ),
}

OPEN: frozenset[str] = frozenset(sig for sig, _, why in REGRESSIONS.values() if why)

ROOT = Path(__file__).resolve().parents[2]


def signature(exc: BaseException) -> str:
    """A short stable name for a failure: the broken property, else exception type @ innermost project frame."""
    if isinstance(exc, Broken):
        return f"broken:{exc.name}"
    frames = traceback.extract_tb(exc.__traceback__)
    where = "?"
    for fr in reversed(frames):
        parts = Path(fr.filename).parts
        if "classifier" in parts:
            i = len(parts) - 1 - parts[::-1].index("classifier")
            where = f"{'/'.join(parts[i:])}:{fr.name}"
            break
    return f"{type(exc).__name__}@{where}"
