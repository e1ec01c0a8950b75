"""SIGINT/SIGTERM and closed pipes: one rule for every command (installed first thing by the CLI).

A signal raises ``Interrupted`` (a ``KeyboardInterrupt``, so code that stops reading on Ctrl-C
stops on SIGTERM too) and the process exits 128 + the signal's number: 130 for SIGINT, 143 for
SIGTERM. What was read before it is still reported, marked partial in the report's own format
(``partial_note``); a signal while a report is being written abandons that file (the previous one
stays untouched). Only the standard library is imported here, so the handlers are in place before
NumPy and the rest load.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_owner_pid: int | None = None
received: int | None = None
"""The first signal that interrupted this run (None: none)."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; the exit code is 128 + the signal's number."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        self.signum = int(signum)
        super().__init__(signal.Signals(self.signum).name)

    @property
    def exit_code(self) -> int:
        """130 for SIGINT, 143 for SIGTERM (the shell's convention for a run ended by a signal)."""
        return 128 + self.signum


_armed = False


def _raise(signum: int, _frame: Any) -> None:
    if os.getpid() != _owner_pid:  # a forked helper process: end quietly, its parent reports
        os._exit(128 + signum)
    global received
    if received is None:
        received = signum
    if not _armed:  # still importing: nothing was opened or written, so end right here
        os.write(2, f"portclass: interrupted by {signal.Signals(signum).name}; no report written\n".encode())
        os._exit(128 + signum)
    global _pending
    if _flag_only and not _pending:  # reading: stop at the next batch boundary (``check``)
        _pending = True
        return
    raise Interrupted(signum)


def install() -> None:
    """SIGINT and SIGTERM end the process at once (one line, 128 + N) until ``arm``; forked children just exit.

    Handlers are set with both signals held back, so none arrives half-way through.
    """
    global _owner_pid, received, _armed
    _owner_pid, received, _armed = os.getpid(), None, False
    with deferred():
        for sig in SIGNALS:
            signal.signal(sig, _raise)


_flag_only = False
_pending = False


@contextlib.contextmanager
def stop_at_boundaries() -> Iterator[None]:
    """While reading: the first signal only asks to stop, and ``check`` (called between batches)
    raises it where the flow tables are consistent; a second signal raises at once."""
    global _flag_only, _pending
    _flag_only, _pending = True, False
    try:
        yield
    finally:
        _flag_only = False


def check() -> None:
    """Raise ``Interrupted`` if a signal asked to stop (see ``stop_at_boundaries``)."""
    global _pending
    if _pending:
        _pending = False
        raise Interrupted(received or signal.SIGINT)


def arm() -> None:
    """From now on a signal raises ``Interrupted`` (the command's ``try`` reports it and cleans up)."""
    global _armed
    _armed = True


def signal_name() -> str:
    """The name of the signal that interrupted the run (SIGINT when it was a plain KeyboardInterrupt)."""
    return signal.Signals(received or signal.SIGINT).name


def exit_code(exc: BaseException | None = None) -> int:
    """The exit code for an interruption: 128 + the signal's number (130 for a plain KeyboardInterrupt)."""
    return exc.exit_code if isinstance(exc, Interrupted) else 128 + (received or signal.SIGINT)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back for a few statements that must run together (a signal then arrives after)."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not POSIX
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def ending() -> None:
    """The command is over (only its last line and the exit remain): hold SIGINT/SIGTERM back for good.

    Only in a process whose handlers ``install`` set (the command line), never in a library user's.
    """
    if os.getpid() == _owner_pid and hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)


def partial_fields(a: Any) -> dict[str, Any]:
    """``partial`` (bool) and ``interrupted_by`` (the signal's name, or None) for key/value formats."""
    partial = bool(getattr(a, "interrupted", False))
    return {"partial": partial, "interrupted_by": signal_name() if partial else None}


def partial_note(a: Any) -> str | None:
    """What a report of an interrupted run says about itself (None for a complete one).

    Every format carries it: the JSON notice line and document (``partial``), a ``#`` line in CSV,
    a ``#portclass_partial`` header line in Zeek, Parquet metadata, a banner in HTML and the summary.
    """
    if not getattr(a, "interrupted", False):
        return None
    return f"partial: interrupted by {signal_name()}; the report covers only the packets read before it"


def stdout_closed() -> None:
    """The reader of stdout went away (``| head``): point stdout at /dev/null so the exit flush is quiet."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
