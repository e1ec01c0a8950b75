"""Options shared by the capture commands (``analyze`` and ``live``), declared once."""

from __future__ import annotations

import argparse

from ..pipeline import DEFAULT_IDLE_TIMEOUT_S


def seconds(text: str) -> float:
    """argparse type: a number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text!r}")
    return value


def add_idle_timeout(p: argparse.ArgumentParser) -> None:
    """``--idle-timeout S``: seconds of silence that end a flow (0 disables)."""
    p.add_argument(
        "--idle-timeout",
        type=seconds,
        default=DEFAULT_IDLE_TIMEOUT_S,
        metavar="S",
        help=f"seconds of silence that end a flow (default {DEFAULT_IDLE_TIMEOUT_S:g}; 0 disables)",
    )
