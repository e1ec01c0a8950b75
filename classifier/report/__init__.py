"""Reports: the analyst's terminal summary and machine formats.

Each format is a module with ``write(analysis, fmt, out, **options)``; ``WRITERS`` maps a format
name to its module, imported only when used (so optional dependencies load on demand).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

WRITERS: dict[str, str] = {
    "terminal": "terminal",
    "jsonl": "machine",
    "json": "machine",
    "csv": "machine",
    "zeek": "zeek",
    "parquet": "parquet",
    "html": "html",
}
"""Format name -> module in this package that writes it."""


def write(analysis: Any, fmt: str, out: str | Path | None, **options: Any) -> None:
    """Write ``analysis`` in format ``fmt`` to ``out`` (None: stdout), atomically for files."""
    module = importlib.import_module(f".{WRITERS[fmt]}", __name__)
    module.write(analysis, fmt, out, **options)
