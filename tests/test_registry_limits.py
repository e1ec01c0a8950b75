"""Registry sources that would hang or exhaust memory: special files and oversized files are refused at once."""

from __future__ import annotations

import json
import os

import pytest

from classifier.registry.files import MAX_BYTES
from classifier.registry.sources import compile_file
from tests.conftest import run_cli


def _one_line(res, *needles: str) -> str:
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("cmd", [("registry", "info"), ("registry", "dump"), ("registry", "import")])
def test_fifo_without_writer_is_refused_not_waited_on(tmp_path, user_dirs, cmd):
    fifo = tmp_path / "registry.xml"
    os.mkfifo(fifo)
    args = [*cmd, str(fifo)] if cmd[1] != "info" else ["--registry", str(fifo), *cmd]
    res = run_cli(*args, timeout=30)  # before the fix: blocked in open() forever
    _one_line(res, str(fifo), "FIFO", "not a registry file")


def test_character_device_is_refused(user_dirs):
    res = run_cli("--registry", "/dev/zero", "registry", "info", timeout=30)
    _one_line(res, "/dev/zero", "character device")


def test_directory_is_refused(tmp_path, user_dirs):
    res = run_cli("registry", "import", str(tmp_path), timeout=30)
    _one_line(res, str(tmp_path), "directory")


def test_oversized_registry_is_refused_before_parsing(tmp_path, user_dirs, xml_path):
    """A well-formed registry XML made ten times larger than a real edition: refused, not parsed."""
    data = xml_path.read_bytes()
    start = data.index(b"<record")
    end = data.rindex(b"</record>") + len(b"</record>")
    body = data[start:end]
    copies = MAX_BYTES // len(body) + 1
    big = tmp_path / "big.xml"
    with open(big, "wb") as fh:
        fh.write(data[:start])
        for _ in range(copies):
            fh.write(body)
        fh.write(data[end:])
    assert big.stat().st_size > MAX_BYTES
    for args in (("--registry", str(big), "registry", "info"), ("registry", "import", str(big))):
        line = _one_line(run_cli(*args, timeout=60), str(big), "too large for a registry")
        assert f"{big.stat().st_size:,} bytes" in line
    assert not (user_dirs / "data" / "portclass" / "registry" / "current.pcreg").exists()


PIPE_HEADER = (
    "| Service Name | Port Number | Transport Protocol | Description | Assignee | Contact | Registration Date "
    "| Modification Date | Reference | Service Code | Unauthorized Use Reported | Assignment Notes |\n"
)


def test_text_row_that_never_ends_is_skipped_not_quadratic(tmp_path, user_dirs):
    """A pipe table whose row never gets its pipes: was 110 s for 2 MB (quadratic row growth)."""
    f = tmp_path / "table.txt"
    f.write_text(PIPE_HEADER + "| ssh | 22 | tcp | The Secure Shell (SSH) Protocol | | | | | [RFC4251] | | | |\n"
                 + "| http | 80 | tcp\n" + "continued words that never close the row\n" * 50_000)
    res = run_cli("--registry", str(f), "registry", "info", "--format", "json", timeout=60)  # a hang guard only
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    assert d["records"] == 1 and d["skipped"] == 1 and "characters" in d["skipped_example"]


def test_text_row_of_many_brackets_is_skipped(tmp_path):
    f = tmp_path / "plain.txt"
    f.write_text(
        "Service Name Port Number Transport Protocol Description\n"
        "ssh 22 tcp The Secure Shell (SSH) Protocol [RFC4251]\n"
        "http 80 tcp " + "[a] " * 100_000 + "\n"
    )
    reg = compile_file(f, use_cache=False)
    assert [r.name for r in reg.records] == ["ssh"] and reg.provenance.skipped == 1
