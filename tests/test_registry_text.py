"""Tests for the plain-text / pipe-table registry parser (classifier.registry.text).

The five seeds in ``../shared/seeds`` are damaged text renderings of the IANA registry
(collapsed columns, collapsed empty cells, wrapped rows).  Their records are checked
against the 2026 XML registry, read here with ElementTree directly so that this test does
not depend on the project's own XML parser.
"""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cache

import pytest

from classifier.errors import RegistryError
from classifier.registry.model import Record
from classifier.registry.text import looks_like_text, parse_text
from tests.shared import shared

NOTICE = (
    "ASSIGNMENT OF A PORT NUMBER DOES NOT IN ANY WAY IMPLY AN ENDORSEMENT OF AN APPLICATION OR PRODUCT, "
    'AND THE FACT THAT NETWORK TRAFFIC IS FLOWING TO OR FROM A REGISTERED PORT DOES NOT MEAN THAT IT IS "GOOD" '
    "TRAFFIC, NOR THAT IT NECESSARILY CORRESPONDS TO THE ASSIGNED SERVICE. FIREWALL AND SYSTEM ADMINISTRATORS "
    "SHOULD CHOOSE HOW TO CONFIGURE THEIR SYSTEMS BASED ON THEIR KNOWLEDGE OF THE TRAFFIC IN QUESTION, NOT "
    "WHETHER THERE IS A PORT NUMBER REGISTERED OR NOT."
)

XML_2026 = "service-names-port-numbers.xml"  # <updated>2026-08-17</updated>
XML_2025 = "service-names-port-numbers-2025-08-26.xml"
XML_2025_EDITION = "2025-08-26"

# seed file -> (edition from "Last Updated", number of registry rows).  Counted by reading
# each seed whole, from the column-header line to the end of the table:
SEEDS: dict[str, tuple[str, int]] = {
    # Collapsed plain text: 7 lines between the column header and the blank line before
    # "Contact Information", one row each (4 z-wave/z-wave-s, 41231-41793 Unassigned,
    # z-wave-tunnel, 44123 udp Reserved).  The 7 "[ID] Name ... mailto:" lines are contacts.
    "000_a215b120b73d2dee.txt": ("2024-11-22", 7),
    # "| a | b |" table, 101 lines after the |---| separator, one row each, no contact table:
    # 34 rows start with a port (Reserved/Unassigned), 40 with a name and a port, 27 are
    # service-name-only ("| leaf-1 | Leaf-1 Protocol |" ... "| fix | ...").  The last line
    # (fix) is cut short: it has no newline and lacks its trailing empty-cell pipes.
    "001_e34007f9f689f5d1.txt": ("2025-10-30", 101),
    # Collapsed plain text, service-name-only section: 22 lines x-on ... zigbee-gateway,
    # one row each; then 18 contact lines.
    "002_0411c9ada570d720.txt": ("2023-09-12", 22),
    # Collapsed plain text listing only "<port> <tcp|udp> Reserved" rows: 101 lines from
    # "8433 tcp Reserved" to "10810 tcp Reserved" (no trailing newline, no contact table).
    "003_de2ce3757f88cd50.txt": ("2024-11-19", 101),
    # "a | b |" table (no leading pipe): 6 physical lines, 4 rows -- both elpro-tunnel rows
    # wrap after the description cell, the elpro_tunnel alias rows do not; then a 1-person
    # contact table.
    "004_a979048618d4e473.txt": ("2025-03-28", 4),
}

# Seed rows that differ from the 2026 XML although the XML record is not newer than the
# seed, with the reason.  Empty: every seed row agrees with the 2026 XML registry.
KNOWN_DIFFERENCES_2026: dict[tuple[str | None, str | None, str | None], str] = {}

# Seed rows that differ from the 2025-08-26 XML: the registry changed after that edition
# and before the seed's own "Last Updated" date, so the seed is right and the 2026 XML agrees.
KNOWN_DIFFERENCES_2025: dict[tuple[str | None, str | None, str | None], str] = {
    ("pmcd", "44321", "tcp"): "modification date 2025-09-29 added after the 2025-08-26 edition",
    ("pmcd", "44321", "udp"): "modification date 2025-09-29 added after the 2025-08-26 edition",
}

_NS = "{http://www.iana.org/assignments}"


@dataclass(frozen=True)
class XmlRow:
    """The fields of one XML <record> in the text rendering's conventions."""

    name: str | None
    number: str | None
    protocol: str | None
    description: str
    assignee: str
    contact: str
    references: str
    registered: str
    modified: str
    unauthorized: str | None
    notes: str


def _norm(s: str) -> str:
    return " ".join(s.split())


def _xref_text(x: ET.Element) -> str:
    """An <xref> as the text renderings print it: [RFC6335], [Jon_Postel], [RFC8765, Section 6.1]."""
    if x.text and x.text.strip():
        return f"[{x.text.strip()}]"
    data = x.get("data", "")
    return f"[{data.upper()}]" if x.get("type") == "rfc" else f"[{data}]"


def _mixed_text(el: ET.Element | None) -> str:
    """Text of an element with inline <xref/>s rendered as brackets and <br/> as space."""
    if el is None:
        return ""
    parts = [el.text or ""]
    for child in el:
        parts.append(_xref_text(child) if child.tag == _NS + "xref" else " ")
        parts.append(child.tail or "")
    return _norm("".join(parts))


@cache
def xml_rows(filename: str) -> dict[tuple[str | None, str | None, str | None], list[XmlRow]]:
    """All records of an XML registry edition keyed by (name, number, protocol)."""
    out: dict[tuple[str | None, str | None, str | None], list[XmlRow]] = {}
    root = ET.parse(shared("registry", filename)).getroot()
    for rec in root.iter(_NS + "record"):

        def text(tag: str, rec: ET.Element = rec) -> str | None:
            el = rec.find(_NS + tag)
            return _norm("".join(el.itertext())) if el is not None else None

        people = [x for x in rec.findall(_NS + "xref") if x.get("type") == "person"]
        others = [x for x in rec.findall(_NS + "xref") if x.get("type") != "person"]
        contact = "".join(_xref_text(x) for x in people)
        assignee = "".join(_xref_text(x) for x in rec.findall(f"{_NS}assignee/{_NS}xref")) or contact
        row = XmlRow(
            name=text("name"),
            number=text("number"),
            protocol=text("protocol"),
            description=_mixed_text(rec.find(_NS + "description")),
            assignee=assignee,
            contact=contact,
            references=" ".join(_xref_text(x) for x in others),
            registered=rec.get("date", ""),
            modified=rec.get("updated", ""),
            unauthorized=text("unauthorized"),
            notes=_mixed_text(rec.find(_NS + "note")),
        )
        out.setdefault((row.name, row.number, row.protocol), []).append(row)
    return out


def key(r: Record) -> tuple[str | None, str | None, str | None]:
    """A record's (name, number, protocol) key as the XML spells it."""
    if r.port_low is None:
        number = None
    elif r.port_low == r.port_high:
        number = str(r.port_low)
    else:
        number = f"{r.port_low}-{r.port_high}"
    return (r.name, number, r.transport)


def fields(r: Record | XmlRow) -> dict[str, str | None]:
    """The fields both sides carry, for comparison."""
    return {
        "description": r.description,
        "assignee": r.assignee,
        "contact": r.contact,
        "registered": r.registered,
        "modified": r.modified,
        "references": r.references,
        "unauthorized": r.unauthorized,
        "notes": r.notes,
    }


@cache
def seed_text(name: str) -> str:
    return shared("seeds", name).read_text(encoding="utf-8")


@cache
def seed(name: str) -> list[Record]:
    return parse_text(seed_text(name), source=name).records


def find(records: list[Record], name: str | None, port: int | None, transport: str | None) -> Record:
    hits = [r for r in records if (r.name, r.port_low, r.transport) == (name, port, transport)]
    assert len(hits) == 1, f"expected one {name} {port}/{transport}, got {hits}"
    return hits[0]


# --------------------------------------------------------------------------- per seed


def test_seed_set_is_the_one_counted_here():
    assert sorted(p.name for p in shared("seeds").glob("*.txt")) == sorted(SEEDS)


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_seed_rows_edition_and_notice(name):
    edition, rows = SEEDS[name]
    res = parse_text(seed_text(name), source=name)
    assert res.format == "text"
    assert res.full is True
    assert res.edition == edition
    assert res.edition_kind == "registry"
    assert res.notice == NOTICE
    assert len(res.records) == rows


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_seed_agrees_with_2026_xml(name):
    """Every seed row exists in the 2026 XML with the same fields, unless the XML record changed later."""
    edition, _ = SEEDS[name]
    registry = xml_rows(XML_2026)
    for rec in seed(name):
        k = key(rec)
        assert k in registry, f"{name}: {k} not in the 2026 registry"
        (x,) = registry[k]
        changed_after_seed = max(x.registered, x.modified) > edition
        if k in KNOWN_DIFFERENCES_2026 or changed_after_seed:
            assert k in KNOWN_DIFFERENCES_2026, f"{name}: {k} changed after {edition}; explain it"
            assert fields(rec) != fields(x), f"{name}: {k} is allow-listed but agrees; drop the entry"
            continue
        assert fields(rec) == fields(x), f"{name}: {k}"


def test_differences_from_the_2025_xml_are_later_registry_changes():
    """Where a seed disagrees with the 2025-08-26 XML, the registry changed after that edition."""
    older, newer = xml_rows(XML_2025), xml_rows(XML_2026)
    found: set[tuple[str | None, str | None, str | None]] = set()
    for name, (edition, _) in SEEDS.items():
        for rec in seed(name):
            k = key(rec)
            (x_old,) = older[k]
            if fields(rec) == fields(x_old):
                continue
            found.add(k)
            (x_new,) = newer[k]
            changed = max(x_new.registered, x_new.modified)
            # the change is dated between the 2025 XML and the seed, and the 2026 XML has it
            assert XML_2025_EDITION < changed <= edition, (name, k, changed)
            assert fields(rec) == fields(x_new)
    assert found == set(KNOWN_DIFFERENCES_2025)


def test_seed_004_holds_every_record_of_port_4370():
    in_xml = {k for k in xml_rows(XML_2026) if k[1] == "4370"}
    assert {key(r) for r in seed("004_a979048618d4e473.txt")} == in_xml


# --------------------------------------------------------------------------- golden rows


def test_golden_elpro_tunnel_wrapped_row():
    # "elpro-tunnel | 4370 | tcp | ... |" wraps: assignee, contact and date are on the next line.
    r = find(seed("004_a979048618d4e473.txt"), "elpro-tunnel", 4370, "tcp")
    assert r == Record(
        name="elpro-tunnel",
        port_low=4370,
        port_high=4370,
        transport="tcp",
        description="ELPRO V2 Protocol Tunnel IANA assigned this well-formed service name as a replacement "
        'for "elpro_tunnel".',
        assignee="[Harry_Courtice]",
        contact="[Harry_Courtice]",
        registered="2008-04-14",
    )
    assert r.alias_of is None and not r.historic and r.kind == "named"
    udp = find(seed("004_a979048618d4e473.txt"), "elpro-tunnel", 4370, "udp")
    assert (udp.assignee, udp.contact, udp.registered) == ("[Harry_Courtice]", "[Harry_Courtice]", "2008-04-14")


def test_golden_elpro_tunnel_alias():
    for transport in ("tcp", "udp"):
        r = find(seed("004_a979048618d4e473.txt"), "elpro_tunnel", 4370, transport)
        assert r.alias_of == "elpro-tunnel"
        assert r.historic is True
        assert r.description == "ELPRO V2 Protocol Tunnel"
        assert r.notes.startswith('This entry is an alias to "elpro-tunnel". This entry is now historic')
        assert r.registered == "2008-04-14" and r.modified == ""


def test_golden_reserved_row_with_collapsed_cells():
    # "| 41121 | udp | Reserved | |||||||||": the empty name cell collapsed to the end.
    r = find(seed("001_e34007f9f689f5d1.txt"), None, 41121, "udp")
    assert r == Record(port_low=41121, port_high=41121, transport="udp", description="Reserved")
    assert r.kind == "reserved" and r.unauthorized is None


def test_golden_unassigned_ranges():
    recs = seed("001_e34007f9f689f5d1.txt")
    r = find(recs, None, 41122, None)
    assert (r.port_high, r.description, r.kind, r.transports) == (41229, "Unassigned", "unassigned", ("tcp", "udp"))
    r = find(recs, None, 41798, None)
    assert (r.port_high, r.unauthorized, r.notes) == (42507, "Unauthorized Use Known on port 42000", "")
    r = find(recs, None, 44446, None)
    assert r.unauthorized == "Known UNAUTHORIZED USE: Ports 44515 & 44516"
    r = find(recs, None, 44323, "udp")
    assert (r.description, r.unauthorized) == ("Unassigned", None)
    assert r.notes == '"pcp" assignment withdrawn, moved to port 5351 per RFC6887'
    plain = find(seed("000_a215b120b73d2dee.txt"), None, 41231, None)
    assert (plain.port_high, plain.description, plain.kind) == (41793, "Unassigned", "unassigned")


def test_golden_single_date_and_reference_on_a_placeholder():
    # "| 49151 | Reserved | 2024-12-20 | [RFC6335] |": no transport, the lone date is the update.
    r = find(seed("001_e34007f9f689f5d1.txt"), None, 49151, None)
    assert (r.description, r.registered, r.modified, r.references) == ("Reserved", "", "2024-12-20", "[RFC6335]")


def test_golden_plain_rows_with_two_contacts_and_month_dates():
    r = find(seed("000_a215b120b73d2dee.txt"), "z-wave", 4123, "tcp")
    assert (r.description, r.assignee, r.contact) == (
        "Z-Wave Protocol",
        "[Sigma_Designs_Inc_2]",
        "[Anders_Brandt][Mary_Miller]",
    )
    assert (r.registered, r.modified) == ("2007-02", "2012-11-08")


def test_golden_reserved_list_with_notes():
    recs = seed("003_de2ce3757f88cd50.txt")
    assert all(r.kind == "reserved" and r.name is None and r.port_low == r.port_high for r in recs)
    r = find(recs, None, 8699, "udp")
    assert (r.registered, r.modified, r.notes) == (
        "2004-11",
        "2013-05-24",
        "This entry is being removed on 2013-05-24.",
    )
    r = find(recs, None, 10321, "tcp")
    assert (r.registered, r.modified, r.notes) == ("", "2023-12-05", "De-Assigned on 2023-12-05.")
    assert find(recs, None, 9899, "tcp").modified == "2013-04-10"


def test_golden_service_name_only_rows():
    recs = seed("001_e34007f9f689f5d1.txt")
    r = find(recs, "1password", None, None)
    assert r.port_high is None and r.transports == ("tcp", "udp")
    assert (r.assignee, r.contact, r.notes) == ("[Roustem_Karimov]", "[Roustem_Karimov]", "Defined TXT keys: None")
    assert find(recs, "leaf-1", None, None).description == "Leaf-1 Protocol"
    r = find(recs, "dccp-ping", None, "dccp")
    assert (r.service_code, r.registered, r.notes) == ("1885957735", "2012-11-14", "Defined TXT keys: None")
    r = find(recs, "dns-push-tls", None, "tcp")
    assert (r.references, r.notes) == ("[RFC8765, Section 6.1]", "Defined TXT Keys: None")
    # a bracket glued to prose is notes text, not a reference
    r = find(recs, "est-coaps", None, "udp")
    assert (r.references, r.notes) == ("", "[RFC9148]. Defined TXT keys: None")
    assert (r.registered, r.modified) == ("2022-05-03", "2022-05-04")
    plain = seed("002_0411c9ada570d720.txt")
    assert all(r.port_low is None and r.kind == "named" for r in plain)
    r = find(plain, "x-plane9", None, "udp")
    assert (r.description, r.assignee, r.notes) == ("x-plane9", "[Austin_Meyer]", "Defined TXT keys: None")
    r = find(plain, "xgate-rmi", None, None)
    assert r.description == "xGate Remote Management Interface"
    assert r.notes == "Defined TXT keys: tech=value (string) model=value (string) version=value (string)"


def test_golden_slash_name_alias():
    recs = seed("001_e34007f9f689f5d1.txt")
    r = find(recs, "EtherNet/IP-2", 44818, "udp")
    assert (r.alias_of, r.historic, r.description) == ("EtherNet-IP-2", True, "EtherNet/IP messaging")
    assert r.notes.startswith("New contact added for port 44818 on 2008-02-01 This entry is an alias")
    assert find(recs, "EtherNet-IP-2", 44818, "udp").alias_of is None


@pytest.mark.parametrize("name", ["000_a215b120b73d2dee.txt", "002_0411c9ada570d720.txt", "004_a979048618d4e473.txt"])
def test_contact_table_yields_no_records(name):
    text = seed_text(name)
    assert "Contact Information" in text
    recs = seed(name)
    for r in recs:
        assert "mailto:" not in " ".join(str(v) for v in r.to_dict().values())
        assert not (r.name or "").startswith("[")
    # cutting the contact table off changes nothing
    cut = parse_text(text[: text.index("Contact Information")]).records
    assert cut == recs


# --------------------------------------------------------------------------- API and edge cases


def test_looks_like_text():
    for name in SEEDS:
        assert looks_like_text(seed_text(name)[:65536])
    with open(shared("registry", XML_2026), encoding="utf-8") as fh:
        assert not looks_like_text(fh.read(65536))
    with open(shared("registry", "service-names-port-numbers.csv"), encoding="utf-8") as fh:
        assert not looks_like_text(fh.read(65536))
    assert not looks_like_text("# /etc/services\nhttp 80/tcp www\n")
    assert looks_like_text("| Service Name | Port Number | Transport Protocol | Description |\n")


def test_no_rows_is_a_registry_error():
    with pytest.raises(RegistryError) as exc:
        parse_text("Service Name Port Number Transport Protocol Description\n\nContact Information\n", "x.txt")
    assert exc.value.path == "x.txt"
    assert "\n" not in str(exc.value) and str(exc.value).startswith("x.txt: ")
    with pytest.raises(RegistryError):
        parse_text("")


def test_headerless_excerpts():
    plain = parse_text("some preamble\nz-wave 4123 tcp Z-Wave Protocol [A_B] [C_D] 2007-02\n44123 udp Reserved\n")
    assert [key(r) for r in plain.records] == [("z-wave", "4123", "tcp"), (None, "44123", "udp")]
    assert plain.edition is None and plain.notice is None
    piped = parse_text(
        "- Last Updated\n- 2025-01-02\n| 41121 | udp | Reserved | |||||||||\n| 5 | Unassigned | ||||||||||\n"
    )
    assert [key(r) for r in piped.records] == [(None, "41121", "udp"), (None, "5", None)]
    assert piped.edition == "2025-01-02"


def test_wrapped_plain_rows_and_description_brackets():
    text = (
        "Service Name Port Number Transport Protocol Description Assignee Contact\n"
        "ftp 21 tcp File Transfer Protocol [Control] [Jon_Postel] [Jon_Postel] [RFC959] Defined TXT keys:\n"
        "  u=<username> p=<password> path=<path>\n"
        "mpm 45 tcp Message Processing Module [recv]\n"
        "15 tcp Unassigned [was netstat]\n"
        "elpro-tunnel 4370 tcp ELPRO V2 Protocol Tunnel\n"
        "[Harry_Courtice] [Harry_Courtice] 2008-04-14\n"
        "x-on x-on services synchronisation protocol [M_B] [M_B]\n"
        "Defined TXT keys: Proprietary\n"
    )
    recs = parse_text(text).records
    assert len(recs) == 5
    ftp, mpm, unassigned, elpro, xon = recs
    assert (ftp.description, ftp.assignee, ftp.references) == (
        "File Transfer Protocol [Control]",
        "[Jon_Postel]",
        "[RFC959]",
    )
    assert ftp.notes == "Defined TXT keys: u=<username> p=<password> path=<path>"
    assert (mpm.description, mpm.assignee) == ("Message Processing Module [recv]", "")
    assert (unassigned.description, unassigned.references) == ("Unassigned [was netstat]", "")
    assert (elpro.description, elpro.contact, elpro.registered) == (
        "ELPRO V2 Protocol Tunnel",
        "[Harry_Courtice]",
        "2008-04-14",
    )
    assert (xon.name, xon.description, xon.notes) == (
        "x-on",
        "x-on services synchronisation protocol",
        "Defined TXT keys: Proprietary",
    )


# --------------------------------------------------------------------------- whole registry

# Rows whose description cannot be recovered once the layout collapses, with the reason.
_CSV_DESCRIPTION_LIMITS = {
    "both": {
        ("shilp", "2049"): "empty description, notes '<== NOTE Conflict on 2049 !' read as the description",
    },
    "plain": {
        ("", "2693"): "notes '(Removed 2004-2-6)' run on from 'Unassigned' like a description",
        ("xadmin", "9105"): "reference '[Ari\u00ebn Huisken <...> 15 June 2009]' has no reference shape",
        ("example", ""): "notes 'Not a real service type. ...' follow the description with no marker",
    },
}


@cache
def csv_rows() -> list[list[str]]:
    with open(shared("registry", "service-names-port-numbers.csv"), newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:3] == ["Service Name", "Port Number", "Transport Protocol"]
    return rows[1:]


def _render(row: list[str], style: str) -> str:
    cells = [_norm(c) for c in row if _norm(c)]
    if style == "plain":
        return " ".join(cells)
    return "| " + " | ".join(cells) + " | " + "|" * (12 - len(cells))


@pytest.mark.parametrize("style", ["plain", "pipe"])
def test_whole_registry_survives_collapsed_rendering(style):
    """Every CSV row rendered as collapsed text parses back to the same fields (known limits aside)."""
    rows = csv_rows()
    header = "Service Name Port Number Transport Protocol Description\n"
    if style == "pipe":
        header = "| Service Name | Port Number | Transport Protocol | Description | " + "|" * 8 + "\n|---|\n"
    recs = parse_text(header + "\n".join(_render(r, style) for r in rows) + "\n").records
    assert len(recs) == len(rows)
    limits = _CSV_DESCRIPTION_LIMITS["both"] | (_CSV_DESCRIPTION_LIMITS["plain"] if style == "plain" else {})
    for row, rec in zip(rows, recs, strict=True):
        exp = [_norm(c) for c in row]
        low, _, high = exp[1].partition("-")
        assert (rec.name or "", rec.transport or "") == (exp[0], exp[2])
        assert (rec.port_low, rec.port_high) == ((int(low), int(high or low)) if low else (None, None))
        assert (rec.assignee, rec.contact, rec.service_code) == (exp[4], exp[5], exp[9]), exp
        assert sorted(filter(None, (rec.registered, rec.modified))) == sorted(filter(None, exp[6:8])), exp
        assert (rec.unauthorized or "") == exp[10], exp
        if (exp[0], exp[1]) not in limits:
            assert rec.description == exp[3], exp
