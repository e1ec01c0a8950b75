"""Bad registry input: one line naming the file and the problem, exit code 2, caches untouched."""

from __future__ import annotations

import pytest

from classifier.errors import RegistryError
from classifier.registry.sources import compile_file
from tests.conftest import run_cli

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<registry xmlns="http://www.iana.org/assignments" id="service-names-port-numbers"><record>
<name>&lol3;</name><protocol>tcp</protocol><number>1</number><description>x</description></record></registry>
"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<registry xmlns="http://www.iana.org/assignments" id="service-names-port-numbers"><record>
<name>&xxe;</name><protocol>tcp</protocol><number>1</number><description>x</description></record></registry>
"""


def _cases(xml_path):
    data = xml_path.read_bytes()
    return {
        "empty.xml": (b"", "empty file"),
        "notes.txt": (b"just some notes\nnothing to see\n", "not a recognised registry rendering"),
        "truncated.xml": (data[: len(data) // 2], "not well-formed XML"),
        "foreign.csv": (b"id,name,price,stock\n1,apple,3,10\n2,pear,4,5\n", "CSV header is not the IANA port registry"),
        "binary.bin": (bytes(range(256)) * 64, "binary data"),
        "other.xml": (
            b'<?xml version="1.0"?><registry xmlns="http://www.iana.org/assignments" id="protocol-numbers"/>',
            "not the IANA port registry",
        ),
        "laughs.xml": (BILLION_LAUGHS, "refused"),
        "xxe.xml": (EXTERNAL_ENTITY, "refused"),
    }


CASES = ["empty.xml", "notes.txt", "truncated.xml", "foreign.csv", "binary.bin", "other.xml", "laughs.xml", "xxe.xml"]


@pytest.mark.parametrize("name", CASES)
def test_bad_file_api(tmp_path, xml_path, name):
    data, problem = _cases(xml_path)[name]
    f = tmp_path / name
    f.write_bytes(data)
    with pytest.raises(RegistryError) as exc:
        compile_file(f, use_cache=False)
    msg = str(exc.value)
    assert msg.startswith(str(f)) and problem in msg and "\n" not in msg


@pytest.mark.parametrize("name", CASES)
def test_bad_file_cli_import_keeps_previous(tmp_path, user_dirs, xml_path, name):
    good = run_cli("registry", "import", str(xml_path))
    assert good.returncode == 0, good.stderr
    current = user_dirs / "data" / "portclass" / "registry" / "current.pcreg"
    before = current.read_bytes()
    cache_before = sorted(p.name for p in (user_dirs / "cache").rglob("*"))
    data, problem = _cases(xml_path)[name]
    f = tmp_path / name
    f.write_bytes(data)
    res = run_cli("registry", "import", str(f))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(f) in lines[0] and problem in lines[0], res.stderr
    assert "Traceback" not in res.stderr
    assert current.read_bytes() == before
    assert sorted(p.name for p in (user_dirs / "cache").rglob("*")) == cache_before
    info = run_cli("registry", "info", "--format", "json")
    assert '"edition": "2026-08-17"' in info.stdout


def test_xxe_never_reads_the_file(tmp_path):
    f = tmp_path / "xxe.xml"
    f.write_bytes(EXTERNAL_ENTITY)
    with pytest.raises(RegistryError) as exc:
        compile_file(f, use_cache=False)
    assert "root:" not in str(exc.value)


def test_missing_file_cli(tmp_path):
    res = run_cli("--registry", str(tmp_path / "nope.xml"), "registry", "info")
    assert res.returncode == 2 and res.stderr.strip() == f"portclass: {tmp_path / 'nope.xml'}: no such file"
