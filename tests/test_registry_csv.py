"""The CSV renderings (both header editions) compile to the same arrays as the XML, edition aside."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from classifier.registry.diff import diff_registries
from classifier.registry.model import TRANSPORTS
from classifier.registry.sources import compile_file

DEBIAN_CSV = Path("/usr/share/ipv6toolkit/service-names-port-numbers.csv")


@pytest.fixture(scope="module")
def csv_reg(csv_path):
    return compile_file(csv_path, use_cache=False)


@pytest.fixture(scope="module")
def xml25(xml_2025_path):
    return compile_file(xml_2025_path, use_cache=False)


def test_csv_header_and_counts(csv_reg):
    p = csv_reg.provenance
    assert p.format == "csv" and p.full
    assert p.edition_kind == "file-date"  # CSV carries no edition: the file's date is said to be one
    assert p.records == 14474  # rows of the file (a quoted multi-line field is one row)


def test_multiline_quoted_field(csv_reg):
    alias = next(r for r in csv_reg.records if r.name == "elpro_tunnel" and r.transport == "udp")
    assert alias.notes.startswith('This entry is an alias to "elpro-tunnel". This entry is now historic')
    assert alias.alias_of == "elpro-tunnel" and alias.historic


def test_csv_equals_xml_of_its_edition_except_registrations(csv_reg, xml25):
    """CSV and the 2025-08-26 XML: identical arrays but for three registrations the CSV predates.

    Difference class "registered after the CSV was made": tacacss (300/tcp, 300/udp Reserved),
    m-bus-oms (4503/udp, 4503/tcp Reserved) and uet (4793/udp, 4793/tcp Reserved) appear in the
    2025-08-26 XML but not in the CSV (so on sctp and dccp those ports also gain the derived
    `transport-not-registered` flag). Nothing else differs: statuses, primary names, descriptions
    and unauthorized flags agree on all other 4 x 65536 pairs.
    """
    d = diff_registries(csv_reg, xml25)
    got = {(c.transport, c.port_low, c.port_high, c.change, c.new) for c in d.port_changes}
    assert got == {
        ("tcp", 300, 300, "assigned", "tacacss"),
        ("udp", 300, 300, "status", "reserved"),
        ("udp", 4503, 4503, "assigned", "m-bus-oms"),
        ("tcp", 4503, 4503, "status", "reserved"),
        ("udp", 4793, 4793, "assigned", "uet"),
        ("tcp", 4793, 4793, "status", "reserved"),
    }
    mask = np.ones((4, 65536), dtype=bool)
    mask[:, [300, 4503, 4793]] = False  # incl. sctp/dccp, which gain the derived transport-not-registered flag
    assert np.array_equal(csv_reg.status[mask], xml25.status[mask])
    assert np.array_equal(csv_reg.flags[mask], xml25.flags[mask])
    # service-name-only registrations made in the same window
    assert d.names_added == [
        "digitalelectric",
        "groupthink",
        "m-bus-oms",
        "radicle-node",
        "shippairing",
        "tacacss",
        "uet",
    ]
    assert d.names_removed == []


@pytest.mark.skipif(not DEBIAN_CSV.is_file(), reason="Debian package ipv6toolkit not installed")
def test_debian_csv_older_header():
    """ipv6toolkit's copy (2022 edition) uses the older `Known Unauthorized Uses` header."""
    header = DEBIAN_CSV.read_text(encoding="utf-8").splitlines()[0]
    assert "Known Unauthorized Uses" in header
    deb = compile_file(DEBIAN_CSV, use_cache=False)
    assert deb.provenance.format == "csv" and deb.provenance.full
    assert deb.provenance.records > 13000
    t = TRANSPORTS.index("tcp")
    assert deb.status[t, 42000] == 0 and deb.flags[t, 42000] & 1  # the note survives the older header
    assert deb.records[deb.service[t, 80]].name == "http"
