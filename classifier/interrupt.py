"""SIGINT/SIGTERM and closed pipes: one rule for every command (installed first thing by the CLI).

The process exits 128 + the signal's number (130 for SIGINT, 143 for SIGTERM) with one line on
stderr. A signal while captures are read stops the reading at the next batch boundary and the
report of what was read is written, marked partial in its own format (``partial_note``); at any
other moment the run ends at once and the output file stays as it was (a report being written is
abandoned: ``classifier.atomic`` cleans up inside ``raising``). Only the standard library is
imported here, so the handlers are in place before NumPy and the rest load.
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
_ended = False


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; the exit code is 128 + the signal's number."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        self.signum = int(signum)
        super().__init__(signal.Signals(self.signum).name)

    @property
    def exit_code(self) -> int:
        """130 for SIGINT, 143 for SIGTERM (the shell's convention for a run ended by a signal)."""
        return 128 + self.signum


EXIT, FLAG, RAISE = "exit", "flag", "raise"
_mode = EXIT
_pending = False


def _exit_now(signum: int) -> None:
    """End the process here: one line, no clean-up needed (nothing of ours is half-written)."""
    line = f"portclass: interrupted by {signal.Signals(signum).name}; no report written\n"
    if os.isatty(2) and "rich" in sys.modules:  # a progress bar may have hidden the cursor
        line = "\x1b[?25h\r\x1b[2K" + line
    os.write(2, line.encode())
    mp = sys.modules.get("multiprocessing")
    if mp is not None:  # a forked reading process (classifier.feed) would read on for nothing
        for child in mp.active_children():
            with contextlib.suppress(OSError):
                os.kill(child.pid, signal.SIGKILL)
    os._exit(128 + signum)


def _handler(signum: int, _frame: Any) -> None:
    if os.getpid() != _owner_pid:  # a forked helper process: end quietly, its parent reports
        os._exit(128 + signum)
    if _ended:  # the report is out (``ending``): a signal another thread took changes nothing now
        return
    global received, _pending
    if received is None:
        received = signum
    if _mode == RAISE:
        raise Interrupted(signum)
    if _mode == FLAG and not _pending:  # reading: stop at the next batch boundary (``check``)
        _pending = True
        return
    _exit_now(signum)


def install() -> None:
    """SIGINT/SIGTERM end this process at once with one line and 128 + N (forked children just exit),
    except inside ``stop_at_boundaries`` (a stop request) and ``raising`` (an exception, for clean-up).

    Exiting at once is the default because an exception raised at an arbitrary point (during an
    import of a C extension, say) can be turned into another error or swallowed by library code.
    """
    global _owner_pid, received, _mode, _pending, _ended
    _owner_pid, received, _mode, _pending, _ended = os.getpid(), None, EXIT, False, False
    with deferred():
        for sig in SIGNALS:
            signal.signal(sig, _handler)


@contextlib.contextmanager
def _in_mode(mode: str) -> Iterator[None]:
    global _mode
    old, _mode = _mode, mode
    try:
        yield
    finally:
        _mode = old


def raising() -> contextlib.AbstractContextManager[None]:
    """Inside: a signal raises ``Interrupted`` where it lands, so ``finally`` blocks and ``except``
    clauses clean up (temporary files, child processes); the command line then reports it."""
    return _in_mode(RAISE)


@contextlib.contextmanager
def stop_at_boundaries() -> Iterator[None]:
    """While reading: the first signal only asks to stop, and ``check`` (called between batches)
    raises it where the flow tables are consistent; a second signal ends the process."""
    global _pending
    _pending = False
    with _in_mode(FLAG):
        yield


def check() -> None:
    """Raise ``Interrupted`` if a signal asked to stop (see ``stop_at_boundaries``)."""
    global _pending
    if _pending:
        _pending = False
        raise Interrupted(received or signal.SIGINT)


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
        if not _ended:  # ``ending`` inside keeps them held back
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def ending() -> None:
    """The command is over (its report is out; only its last line and the exit remain): hold
    SIGINT/SIGTERM back for good, so a late one changes neither the exit code nor the message.

    Only in a process whose handlers ``install`` set (the command line), never in a library user's.
    """
    global _ended
    if os.getpid() == _owner_pid and hasattr(signal, "pthread_sigmask"):
        _ended = True
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
