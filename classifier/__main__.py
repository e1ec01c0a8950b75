"""``python -m classifier`` runs the portclass command (signal handlers first, then the rest)."""

from .interrupt import install

install()

from .cli import entry  # noqa: E402 - after the handlers, so Ctrl-C during imports ends quietly

entry()
