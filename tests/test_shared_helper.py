"""The shared-data helper fails loudly: a missing ../shared never shrinks the suite to nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.shared import SharedDataMissing, shared, shared_dir

ROOT = Path(__file__).resolve().parents[1]


def test_shared_dir_holds_the_real_data() -> None:
    """The folder found is the real one: the 2026 registry edition and the nDPI corpus are there."""
    assert b"<updated>2026-08-17</updated>" in shared("registry", "service-names-port-numbers.xml").read_bytes()
    assert len(list(shared("captures", "ndpi", "pcap").iterdir())) > 200


def test_missing_file_raises(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A missing folder or file is an error naming the path, not a skip."""
    monkeypatch.setenv("PORTCLASS_SHARED", str(tmp_path / "nowhere"))
    with pytest.raises(SharedDataMissing, match="nowhere"):
        shared_dir()
    monkeypatch.setenv("PORTCLASS_SHARED", str(tmp_path))
    with pytest.raises(SharedDataMissing, match="no-such.xml"):
        shared("registry", "no-such.xml")


def test_corpus_collection_fails_without_shared(tmp_path: Path) -> None:
    """Collecting a corpus-parametrized test file without ../shared is an error, never '0 tests'."""
    env = dict(os.environ, PORTCLASS_SHARED=str(tmp_path / "nowhere"))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_corpus.py", "--collect-only"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode not in (0, 5), proc.stdout[-2000:]
    assert "shared data not found" in proc.stdout + proc.stderr
