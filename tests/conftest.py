"""Test fixtures: isolated user cache/data directories, and compiled registries built from ../shared."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.shared import shared

_SESSION_HOME = tempfile.mkdtemp(prefix="portclass-tests-")
atexit.register(shutil.rmtree, _SESSION_HOME, True)  # each session left one behind in /tmp
# Every test (and every CLI subprocess) uses throwaway user directories, never the developer's own.
os.environ["XDG_CACHE_HOME"] = os.path.join(_SESSION_HOME, "cache")
os.environ["XDG_DATA_HOME"] = os.path.join(_SESSION_HOME, "data")
os.environ.pop("PORTCLASS_REGISTRY", None)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def xml_path() -> Path:
    """The 2026-08-17 registry XML."""
    return shared("registry", "service-names-port-numbers.xml")


@pytest.fixture(scope="session")
def xml_2025_path() -> Path:
    """The 2025-08-26 registry XML."""
    return shared("registry", "service-names-port-numbers-2025-08-26.xml")


@pytest.fixture(scope="session")
def csv_path() -> Path:
    """The registry CSV (2025 edition, `Unauthorized Use Reported` header)."""
    return shared("registry", "service-names-port-numbers.csv")


@pytest.fixture(scope="session")
def reg(xml_path):
    """The 2026 registry, compiled without the cache."""
    from classifier.registry.sources import compile_file

    return compile_file(xml_path, use_cache=False)


@pytest.fixture()
def user_dirs(tmp_path, monkeypatch) -> Path:
    """Fresh user cache and data directories for one test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path


def run_cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python -m classifier ARGS`` as a user would, capturing output."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "classifier", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=ROOT,
    )


def _ci() -> bool:
    """A CI run (``CI`` set, as .ci/run does): root on a machine with everything .ci/setup installs."""
    return os.environ.get("CI", "") not in ("", "0", "false")


def _skip_fails(report: pytest.CollectReport | pytest.TestReport) -> None:
    """In CI a skip is a test not run: it fails, naming why it would have skipped (xfails stay xfails)."""
    if _ci() and report.skipped and not hasattr(report, "wasxfail"):
        why = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where nothing may skip (.ci/setup installs everything): {why}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    _skip_fails(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> object:
    outcome = yield
    _skip_fails(outcome.get_result())
