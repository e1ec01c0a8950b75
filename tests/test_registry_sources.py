"""Cache, discovery order, partial sources, and `registry update` against a real local HTTP server."""

from __future__ import annotations

import http.server
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from classifier.registry import cache, sources
from classifier.registry.compile import STATUS_NAMES, UNKNOWN
from tests.conftest import run_cli


def test_cache_roundtrip_single_file(user_dirs, xml_path):
    reg = sources.compile_file(xml_path)
    files = list(sources.cache_dir().glob("*.pcreg"))
    assert [f.name for f in files] == [f"{reg.provenance.sha256}.pcreg"]
    again = cache.load(files[0])
    for name in ("status", "flags", "service", "packed", "name_offsets", "name_ids"):
        assert np.array_equal(getattr(again, name), getattr(reg, name)), name
    assert again.provenance == reg.provenance
    assert [r.name for r in again.records] == [r.name for r in reg.records]
    assert list(again.service_names[:3]) == ["Reserved", "Reserved", "tcpmux"]


def test_cache_names_on_decodes_only_what_it_names(user_dirs, xml_path):
    """A cache-loaded registry answers ``names_on`` with the same records, without decoding them all."""
    reg = sources.compile_file(xml_path)
    again = cache.load(next(sources.cache_dir().glob("*.pcreg")))
    got = again.names_on("tcp", 443)
    assert again._records is None and len(again._one) == len(got)
    assert [r.name for r in got][0] == "https"
    for t, port in (("tcp", 443), ("udp", 53), ("tcp", 22), ("sctp", 9), ("tcp", 65000)):
        assert again.names_on(t, port) == reg.names_on(t, port)
    assert again.records == reg.records and again.names_on("udp", 53) == reg.names_on("udp", 53)


def test_cache_damaged_is_rebuilt(user_dirs, xml_path):
    reg = sources.compile_file(xml_path)
    entry = sources.cache_dir() / f"{reg.provenance.sha256}.pcreg"
    entry.write_bytes(entry.read_bytes()[:100])
    assert cache.load(entry) is None
    again = sources.compile_file(xml_path)
    assert np.array_equal(again.status, reg.status) and cache.load(entry) is not None


def test_discovery_order(user_dirs, xml_path, xml_2025_path, csv_path, monkeypatch):
    monkeypatch.delenv("PORTCLASS_REGISTRY", raising=False)
    # nothing imported: the system's full registry (ipv6toolkit's CSV; here the shared copy, so the check
    # does not depend on what this machine has installed: test_registry_csv reads Debian's own)
    monkeypatch.setattr(sources, "SYSTEM_FULL", (csv_path, *sources.SYSTEM_FULL[1:]))
    sys_reg = sources.load_registry()
    assert sys_reg.provenance.source == str(csv_path) and sys_reg.provenance.full
    sources.import_file(xml_2025_path)
    assert sources.load_registry().provenance.edition == "2025-08-26"
    monkeypatch.setenv("PORTCLASS_REGISTRY", str(xml_path))
    assert sources.load_registry().provenance.edition == "2026-08-17"
    assert sources.load_registry(xml_2025_path).provenance.edition == "2025-08-26"


def test_no_registry_at_all(user_dirs, monkeypatch):
    monkeypatch.setattr(sources, "SYSTEM_FULL", (user_dirs / "none.csv",))
    monkeypatch.setattr(sources, "SYSTEM_PARTIAL", (user_dirs / "none",))
    with pytest.raises(Exception) as exc:
        sources.load_registry()
    assert "portclass registry update" in str(exc.value)


@pytest.mark.parametrize("path", ["/usr/share/wireshark/services", "/etc/services"])
def test_partial_services_source(path):
    if not Path(path).is_file():
        pytest.skip(f"{path} not installed")
    reg = sources.compile_file(path, use_cache=False)
    p = reg.provenance
    assert p.format == "services" and not p.full
    t = 0
    assert STATUS_NAMES[reg.status[t, 22]] == "assigned" and reg.records[reg.service[t, 22]].name == "ssh"
    assert reg.status[t, 42000] == UNKNOWN  # a digest cannot say unassigned
    assert STATUS_NAMES[reg.status[t, 60000]] == "dynamic"
    assert "PARTIAL" in p.line()


class _Server:
    """A real HTTP server on 127.0.0.1 serving files from a directory."""

    def __init__(self, root: Path) -> None:
        handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(root), **kw)  # noqa: E731
        http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def served(tmp_path, xml_path, xml_2025_path):
    root = tmp_path / "www"
    root.mkdir()
    data = xml_path.read_bytes()
    (root / "registry.xml").write_bytes(data)
    (root / "old.xml").write_bytes(xml_2025_path.read_bytes())
    (root / "truncated.xml").write_bytes(data[: len(data) * 2 // 3])
    (root / "garbage.xml").write_bytes(os.urandom(50_000))
    (root / "small.xml").write_bytes(
        b'<?xml version="1.0"?><registry xmlns="http://www.iana.org/assignments" id="service-names-port-numbers">'
        b"<updated>2030-01-01</updated><record><name>x</name><protocol>tcp</protocol><number>1</number>"
        b"<description>x</description></record></registry>"
    )
    with _Server(root) as srv:
        yield srv


def test_update_then_failures_keep_previous(user_dirs, served):
    ok = run_cli("registry", "update", "--url", f"{served.url}/old.xml")
    assert ok.returncode == 0, ok.stderr
    assert "2025-08-26" in ok.stdout
    current = sources.current_path()
    before = current.read_bytes()
    for name, problem in [
        ("truncated.xml", "not well-formed XML"),
        ("garbage.xml", "binary data"),
        ("small.xml", "holds only 1 records"),
        ("missing.xml", "HTTP 404"),
    ]:
        res = run_cli("registry", "update", "--url", f"{served.url}/{name}")
        assert res.returncode == 2, (name, res.stdout)
        line = res.stderr.strip()
        assert "\n" not in line and problem in line and "previous registry is kept" in line, line
        assert f"{served.url}/{name}" in line
        assert current.read_bytes() == before
    info = json.loads(run_cli("registry", "info", "--format", "json").stdout)
    assert info["edition"] == "2025-08-26" and info["source"] == f"{served.url}/old.xml"
    new = run_cli("registry", "update", "--url", f"{served.url}/registry.xml")
    assert new.returncode == 0
    info = json.loads(run_cli("registry", "info", "--format", "json").stdout)
    assert info["edition"] == "2026-08-17" and info["records"] == 14533


def test_update_connection_refused(user_dirs):
    res = run_cli("registry", "update", "--url", "http://127.0.0.1:9/registry.xml")
    assert res.returncode == 2 and "download failed" in res.stderr and "Traceback" not in res.stderr
