"""In CI (``CI`` set, as .ci/run does) a skipped test fails: CI has root and every package .ci/setup
installs, so a skip there is a test that silently did not run.  Elsewhere skips stay skips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

DEMO = """
import pytest

def test_skips():
    pytest.skip("no such program")

@pytest.mark.skipif(True, reason="no such package")
def test_skipif():
    pass

def test_open_bug():
    pytest.xfail("open bug")

def test_runs():
    assert 6 * 7 == 42
"""


def _summary(tmp_path: Path, ci: str | None) -> str:
    (tmp_path / "test_demo.py").write_text(DEMO)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
                          str(tmp_path / "test_demo.py")], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=120)  # fmt: skip
    return res.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("ci", ["1", "true"])
def test_a_skip_fails_in_ci(tmp_path: Path, ci: str) -> None:
    assert _summary(tmp_path, ci).startswith("1 failed, 1 passed, 1 xfailed, 1 error in ")


@pytest.mark.parametrize("ci", [None, "", "0", "false"])
def test_a_skip_is_a_skip_elsewhere(tmp_path: Path, ci: str | None) -> None:
    assert _summary(tmp_path, ci).startswith("1 passed, 2 skipped, 1 xfailed in ")
