"""Concurrent installs: real `registry import` processes at once, two editions; the result is one edition."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

from classifier.registry import cache
from tests.conftest import ROOT, run_cli


def test_concurrent_imports_serialize_and_agree(user_dirs, xml_path, xml_2025_path):
    env = dict(os.environ)
    files = [xml_path, xml_2025_path] * 3
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "classifier", "registry", "import", str(f)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for f in files
    ]
    results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert [rc for rc, _, _ in results] == [0] * len(files), [err for _, _, err in results]
    d = user_dirs / "data" / "portclass" / "registry"
    kept = sorted(p for p in d.iterdir() if p.name.startswith("source"))
    assert len(kept) == 1, [p.name for p in d.iterdir()]
    assert not [p.name for p in d.iterdir() if p.name.endswith((".tmp", ".new"))]
    reg = cache.load(d / "current.pcreg")
    source = kept[0].read_bytes()
    assert reg.provenance.sha256 == hashlib.sha256(source).hexdigest()
    edition = {xml_path.read_bytes(): "2026-08-17", xml_2025_path.read_bytes(): "2025-08-26"}[source]
    assert reg.provenance.edition == edition
    info = json.loads(run_cli("registry", "info", "--format", "json").stdout)
    assert info["edition"] == edition and info["sha256"] == reg.provenance.sha256


def test_kept_source_is_used_when_the_compiled_default_is_unusable(user_dirs, xml_2025_path):
    assert run_cli("registry", "import", str(xml_2025_path)).returncode == 0
    d = user_dirs / "data" / "portclass" / "registry"
    (d / "current.pcreg").write_bytes(b"PCREG001 damaged")
    info = run_cli("registry", "info", "--format", "json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["edition"] == "2025-08-26"
