"""The one place tests find ``../shared`` (the project's sibling folder of real data)."""

from __future__ import annotations

import os
from pathlib import Path


class SharedDataMissing(RuntimeError):
    """``../shared`` is not where the tests expect it: a loud failure, never a silent skip."""


def shared_dir() -> Path:
    """Return ``../shared`` beside the project root (or $PORTCLASS_SHARED); raise if it is absent.

    The real registries and captures are the ground truth of many tests: a missing folder must fail
    the run (also at collection, where corpus tests are parametrized), not shrink it to nothing.
    """
    env = os.environ.get("PORTCLASS_SHARED")
    cand = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared"
    if not cand.is_dir():
        raise SharedDataMissing(f"shared data not found at {cand} (set PORTCLASS_SHARED to its folder)")
    return cand


def shared(*parts: str) -> Path:
    """Path of a file under ../shared, e.g. ``shared("registry", "service-names-port-numbers.xml")``."""
    path = shared_dir().joinpath(*parts)
    if not path.exists():
        raise SharedDataMissing(f"{path} is missing from the shared data")
    return path
