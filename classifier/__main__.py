"""``python -m classifier`` runs the portclass command."""

from .cli import entry

entry()
