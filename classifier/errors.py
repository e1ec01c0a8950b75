"""Errors the user sees as one line, and the exit codes they map to."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FLAGGED = 1
EXIT_INPUT = 2
EXIT_INTERNAL = 70
"""An unexpected error inside portclass (a bug): one line, the traceback only with ``PORTCLASS_DEBUG=1``."""
EXIT_INTERRUPTED = 130
"""SIGINT; SIGTERM exits 143 (128 + the signal's number, see ``classifier.interrupt``)."""


class PortclassError(Exception):
    """An error reported as one line ``portclass: <file>: <problem>`` with an exit code."""

    exit_code = EXIT_INPUT

    def __init__(self, message: str, *, path: object | None = None, exit_code: int | None = None) -> None:
        self.path = str(path) if path is not None else None
        if exit_code is not None:
            self.exit_code = exit_code
        super().__init__(message)

    def __str__(self) -> str:
        msg = super().__str__()
        return f"{self.path}: {msg}" if self.path else msg


class RegistryError(PortclassError):
    """A registry source that cannot be read or is not the IANA port registry."""


class CaptureError(PortclassError):
    """A capture file that cannot be read at all (partial reads are warnings instead)."""
