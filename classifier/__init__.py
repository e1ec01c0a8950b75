"""portclass: label network flows with the IANA Service Name and Transport Protocol Port Number Registry.

For notebooks: ``classifier.classify(paths)`` returns the labelled flows (``.to_pandas()``,
``.to_arrow()``, ``.summary()``, ``.filter(...)``); ``classifier.load_registry()`` the registry.
Both are imported on first use, so ``import classifier`` stays cheap for the command line.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "classify", "from_packets", "flows_as_they_end", "load_registry", "Flows"]

_API = {"classify", "from_packets", "flows_as_they_end", "load_registry", "Flows"}


def __getattr__(name: str) -> Any:
    """Load the Python API (``classifier.api``) lazily on first access."""
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'classifier' has no attribute {name!r}")
