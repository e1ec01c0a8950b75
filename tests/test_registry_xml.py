"""The compiled registry agrees with the XML for all 4 x 65536 (transport, port) pairs."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from classifier.registry.compile import (
    FLAG_UNAUTHORIZED,
    STATUS_NAMES,
    flag_names,
)
from classifier.registry.model import TRANSPORTS

NS = "{http://www.iana.org/assignments}"

# What each distinct unauthorized-use note of the 2026 XML names, read by a person from the notes:
# a list of port ranges, or None where the note names no port (then the record's own ports count).
NOTE_PORTS: dict[str, list[tuple[int, int]] | None] = {
    "Unauthorized use by some mail users (see [RFC4146] for details)": None,
    "PORT 90 also being used unofficially by Pointcast": [(90, 90)],
    "Known Unauthorized Use on 100": [(100, 100)],
    "Known Unauthorized Use on 106": [(106, 106)],
    "Unauthorized Use Known on port 796": [(796, 796)],
    "Unauthorized Use Known on port 1053": [(1053, 1053)],
    "Unauthorized Use Known on port 1491": [(1491, 1491)],
    "Unauthorized Use Known on port 1521": [(1521, 1521)],
    "Unauthorized Use Known on port 1947": [(1947, 1947)],
    "Unauthorized Use Known on port 2037": [(2037, 2037)],
    "Unauthorized Use Known on ports 2194-2196": [(2194, 2196)],
    "Unauthorized Use Known on port 2662": [(2662, 2662)],
    "Known Unauthorized Use on port 3060": [(3060, 3060)],
    "Known Unauthorized Use on port 3131": [(3131, 3131)],
    "Known UNAUTHORIZED USE: port 3145": [(3145, 3145)],
    "Known Unauthorized Use on port 3300": [(3300, 3300)],
    "Known Unauthorized Use on port 3301": [(3301, 3301)],
    "Known UNAUTHORIZED USE: Port 4045": [(4045, 4045)],
    "Unauthorized Use Known on port 4315": [(4315, 4315)],
    "Known Unauthorized Use on port 4443": [(4443, 4443)],
    "krb524 assigned the port, nv used it without an assignment": None,
    "Known UNAUTHORIZED USE: Ports 4490 and 4491": [(4490, 4490), (4491, 4491)],
    "Known UNAUTHORIZED USE: port 4967": [(4967, 4967)],
    "Unauthorized Use Known on ports 5151 and 5152": [(5151, 5151), (5152, 5152)],
    "Known Unauthorized Use on port 5162": [(5162, 5162)],
    "Known UNAUTHORIZED USE: Port 5444": [(5444, 5444)],
    "Known UNAUTHORIZED USEs on port 5555": [(5555, 5555)],
    "Known Unauthorized Use on port 5556": [(5556, 5556)],
    "Known UNAUTHORIZED USE on Port 5570": [(5570, 5570)],
    "Known Unauthorized Use on port 6003": [(6003, 6003)],
    "Known Unauthorized Use on port 6100": [(6100, 6100)],
    "Known Unauthorized Use on port 6200": [(6200, 6200)],
    "Known Unauthorized Use on port 6501": [(6501, 6501)],
    "Unofficial use of port 6588 by AnalogX and Microsoft": [(6588, 6588)],
    "Unauthorized Use Known on port 6632": [(6632, 6632)],
    "Unauthorized Use Known on Port 6659": [(6659, 6659)],
    "Known Unauthorized Use on port 7001": [(7001, 7001)],
    "Known Unauthorized Use on port 7002": [(7002, 7002)],
    "Known Unauthorized Use on port 7005": [(7005, 7005)],
    "Known Unauthorized Use on 7011": [(7011, 7011)],
    "Known Unauthorized Use on port 7499": [(7499, 7499)],
    "Known Unauthorized Use on port 7501": [(7501, 7501)],
    "Known Unauthorized Use on port 7777": [(7777, 7777)],
    "Known Unauthorized Use on port 7785": [(7785, 7785)],
    "Known Unauthorized Use on port 7786": [(7786, 7786)],
    "Known Unauthorized Use on port 7787": [(7787, 7787)],
    "Known Unauthorized Use on port 7788": [(7788, 7788)],
    "Known Unauthorized Use on port 7789": [(7789, 7789)],
    "Known Unauthorized Use on port 8001": [(8001, 8001)],
    "yes": None,
    "Unauthorized Use Known on ports 8616 and 8617": [(8616, 8616), (8617, 8617)],
    "Known UNAUTHORIZED USE: Port 8801": [(8801, 8801)],
    "Unauthorized Use Known on port 8882": [(8882, 8882)],
    "Known Unauthorized Use on port 8888": [(8888, 8888)],
    "Known Unauthorized Use on port 8889": [(8889, 8889)],
    "Known Unauthorized Use on port 8890": [(8890, 8890)],
    "Known Unauthorized Use on port 9001": [(9001, 9001)],
    "Known UNAUTHORIZED USE: port 11488": [(11488, 11488)],
    "Unauthorized Use Known on port 11711": [(11711, 11711)],
    "Known Unauthorized Use on port 16000": [(16000, 16000)],
    "Known Unauthorized Use on port 18259": [(18259, 18259)],
    "Unauthorized Use Known on port 24727": [(24727, 24727)],
    "Unauthorized Use Known on ports 27018 and 27019": [(27018, 27018), (27019, 27019)],
    "Unauthorized Use Known on port 28000": [(28000, 28000)],
    "Unauthorized Use Known on ports 28017, 28018 and 28019": [(28017, 28017), (28018, 28018), (28019, 28019)],
    "Known Unauthorized Use on port 33435": [(33435, 33435)],
    "Known Unauthorized Use on ports 33436-33534": [(33436, 33534)],
    "Unauthorized Use Known on port 42000": [(42000, 42000)],
    "Known UNAUTHORIZED USE: Ports 44515 & 44516": [(44515, 44515), (44516, 44516)],
}


def _reference(xml_path):
    """An independent, loop-based reading of the XML: status, names and unauthorized ports per pair."""
    root = ET.parse(xml_path).getroot()
    rank = {}  # (t, port) -> 3 named/assigned, 2 reserved, 1 unassigned
    names: dict[tuple[str, int], list[str]] = {}
    unauth: set[tuple[str, int]] = set()
    for rec in root.iter(NS + "record"):
        num = rec.findtext(NS + "number")
        if not num:
            continue
        lo, _, hi = num.partition("-")
        lo, hi = int(lo), int(hi or lo)
        proto = rec.findtext(NS + "protocol")
        transports = [proto] if proto else ["tcp", "udp"]
        name = (rec.findtext(NS + "name") or "").strip()
        desc = " ".join("".join(rec.find(NS + "description").itertext()).split())
        if name:
            r = 3
        elif desc.lower().startswith("reserved"):
            r = 2
        elif re.match(r"\(?(unassigned|de-registered|removed|deprecated|decomissioned|de-commissioned)", desc, re.I):
            r = 1
        else:
            r = 3  # a port assigned without a service name ("any private mail system")
        note = rec.findtext(NS + "unauthorized")
        note_ranges = None
        if note:
            note = " ".join(note.split())
            note_ranges = NOTE_PORTS[note] or [(lo, hi)]
        for t in transports:
            for p in range(lo, hi + 1):
                rank[(t, p)] = max(rank.get((t, p), 0), r)
                if name:
                    names.setdefault((t, p), []).append(name)
            for a, b in note_ranges or []:
                unauth.update((t, p) for p in range(a, b + 1))
    return rank, names, unauth


@pytest.fixture(scope="module")
def reference(xml_path):
    return _reference(xml_path)


def test_every_note_is_known(xml_path):
    """The table above covers every distinct note; a new edition with new wording fails here first."""
    root = ET.parse(xml_path).getroot()
    notes = {" ".join(e.text.split()) for e in root.iter(NS + "unauthorized")}
    assert notes == set(NOTE_PORTS)


def test_status_of_all_pairs(reg, reference):
    rank, _, _ = reference
    for t, tname in enumerate(TRANSPORTS):
        expected = np.empty(65536, dtype=object)
        for p in range(65536):
            r = rank.get((tname, p), 0)
            if p >= 49152 and r < 3:
                expected[p] = "dynamic"
            else:
                expected[p] = {0: "unassigned", 1: "unassigned", 2: "reserved", 3: "assigned"}[r]
        got = np.array([STATUS_NAMES[s] for s in reg.status[t]], dtype=object)
        bad = np.flatnonzero(got != expected)
        assert bad.size == 0, f"{tname}: {[(int(p), got[p], expected[p]) for p in bad[:10]]}"


def test_service_names_of_all_pairs(reg, reference):
    _, names, _ = reference
    for tname in TRANSPORTS:
        for p in range(65536):
            want = names.get((tname, p), [])
            got = [r.name for r in reg.names_on(tname, p) if r.name]
            assert sorted(got) == sorted(want), (tname, p)


def test_unauthorized_ports_are_exactly_those_named(reg, reference):
    _, _, unauth = reference
    got = {(TRANSPORTS[t], int(p)) for t, p in zip(*np.nonzero(reg.flags & FLAG_UNAUTHORIZED), strict=True)}
    assert got == unauth
    assert len(got) == 175 + 171  # tcp + udp; no sctp/dccp record carries a note


def _entry(reg, port, transport):
    t = TRANSPORTS.index(transport)
    recs = reg.names_on(transport, port)
    return (
        STATUS_NAMES[int(reg.status[t, port])],
        flag_names(int(reg.flags[t, port])),
        [(r.name, r.alias_of) for r in recs],
    )


GOLDEN = [
    # System ports
    (0, "tcp", "reserved", [], []),
    (1, "tcp", "assigned", [], [("tcpmux", None)]),
    (7, "udp", "assigned", [], [("echo", None)]),
    (15, "tcp", "unassigned", [], []),  # "Unassigned [was netstat]"
    (114, "tcp", "unassigned", [], []),  # lower-case "unassigned", no transport -> tcp and udp
    (22, "sctp", "assigned", [], [("ssh", None)]),
    (24, "tcp", "assigned", [], [(None, None)]),  # "any private mail system": assigned, no name
    (53, "udp", "assigned", [], [("domain", None)]),
    (79, "tcp", "assigned", ["unauthorized-use-known"], [("finger", None)]),  # note names no port
    (80, "tcp", "assigned", ["has-aliases"], [("http", None), ("www", "http"), ("www-http", "http")]),
    (80, "sctp", "assigned", [], [("http", None)]),
    (443, "dccp", "unassigned", ["transport-not-registered"], []),
    (585, "tcp", "unassigned", [], []),  # "De-registered"
    (831, "tcp", "reserved", [], []),  # netconf-beep, de-assigned in 2026
    (1023, "tcp", "reserved", [], []),
    # User ports
    (1021, "dccp", "assigned", [], [("exp1", None)]),
    (1024, "tcp", "reserved", [], []),
    (2196, "tcp", "unassigned", ["unauthorized-use-known"], []),  # "ports 2194-2196"
    (2197, "tcp", "assigned", [], [("mnp-exchange", None)]),
    (300, "tcp", "assigned", [], [("tacacss", None)]),
    (300, "udp", "reserved", ["transport-not-registered"], []),
    (3306, "tcp", "assigned", [], [("mysql", None)]),
    (4370, "tcp", "assigned", ["has-aliases"], [("elpro-tunnel", None), ("elpro_tunnel", "elpro-tunnel")]),
    (4444, "tcp", "assigned", ["unauthorized-use-known", "multiple-services"], [("krb524", None), ("nv-video", None)]),
    (4490, "tcp", "unassigned", ["unauthorized-use-known"], []),  # "Ports 4490 and 4491"
    (5060, "sctp", "assigned", [], [("sip", None)]),
    (5555, "tcp", "assigned", ["unauthorized-use-known"], [("personal-agent", None)]),
    (8010, "tcp", "reserved", ["unauthorized-use-known"], []),  # note "yes" on the Reserved row
    (33500, "udp", "unassigned", ["unauthorized-use-known"], []),
    (42000, "tcp", "unassigned", ["unauthorized-use-known"], []),
    (44516, "udp", "unassigned", ["unauthorized-use-known"], []),  # "Ports 44515 & 44516"
    (49151, "tcp", "reserved", [], []),
    # Dynamic ports
    (49152, "tcp", "dynamic", [], []),
    (65535, "udp", "dynamic", [], []),
]


@pytest.mark.parametrize(("port", "transport", "status", "flags", "names"), GOLDEN)
def test_golden_ports(reg, port, transport, status, flags, names):
    assert _entry(reg, port, transport) == (status, flags, names)


def test_provenance(reg, xml_path):
    import hashlib

    p = reg.provenance
    assert p.edition == "2026-08-17" and p.edition_kind == "registry"
    assert p.sha256 == hashlib.sha256(xml_path.read_bytes()).hexdigest()
    assert p.full and p.format == "xml" and p.records == 14533
    assert p.notice.startswith("ASSIGNMENT OF A PORT NUMBER DOES NOT IN ANY WAY IMPLY AN ENDORSEMENT")
    assert "NOR THAT IT NECESSARILY CORRESPONDS TO THE ASSIGNED SERVICE" in p.notice
    assert "*" not in p.notice


def test_record_fields(reg):
    smtp = next(r for r in reg.records if r.name == "smtp" and r.transport == "tcp")
    assert (smtp.port_low, smtp.assignee, smtp.contact, smtp.modified) == (25, "[IESG]", "[IETF_Chair]", "2017-06-05")
    whois = next(r for r in reg.records if r.name == "whoispp" and r.transport == "tcp")
    assert whois.description == 'whois++ IANA assigned this well-formed service name as a replacement for "whois++".'
    alias = next(r for r in reg.records if r.name == "elpro_tunnel" and r.transport == "tcp")
    assert alias.alias_of == "elpro-tunnel" and alias.historic and alias.registered == "2008-04-14"
    coded = [r for r in reg.records if r.service_code]
    assert len(coded) == 4
    no_port = [r for r in reg.records if r.port_low is None]
    assert len(no_port) == 1070 and all(r.name for r in no_port)


def test_vectorized_lookup_matches_arrays(reg):
    rng = np.random.default_rng(7)
    ports = rng.integers(0, 65536, 100_000).astype(np.uint16)
    ts = rng.integers(0, 4, 100_000)
    look = reg.lookup(ports, ts)
    assert np.array_equal(look.status, reg.status[ts, ports])
    assert np.array_equal(look.flags, reg.flags[ts, ports])
    assert np.array_equal(look.service, reg.service[ts, ports])
    one = reg.lookup(ports, "udp")
    assert np.array_equal(one.status, reg.status[1, ports])
