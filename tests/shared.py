"""The one place tests find ``../shared`` (the project's sibling folder of real data)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def shared_dir() -> Path:
    """Return ``../shared`` beside the project root (or $PORTCLASS_SHARED), skipping if absent."""
    env = os.environ.get("PORTCLASS_SHARED")
    cand = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared"
    if not cand.is_dir():
        if os.environ.get("CI"):
            raise RuntimeError(f"shared data not found at {cand}")
        pytest.skip(f"shared data not found at {cand}")
    return cand


def shared(*parts: str) -> Path:
    """Path of a file under ../shared, e.g. ``shared("registry", "service-names-port-numbers.xml")``."""
    return shared_dir().joinpath(*parts)
