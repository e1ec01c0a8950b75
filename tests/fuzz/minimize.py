"""Shrink a failing fuzz input while it keeps failing the same way: ``python -m tests.fuzz.minimize TARGET IN OUT``.

Greedy delta debugging: cut out ever smaller spans, then zero ever smaller spans, keeping each change
that leaves the failure's signature (``tests.fuzz.known.signature``) unchanged.  The result is what goes
into ``tests/fuzz/regressions/<target>/``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tests.fuzz.harness import TARGETS
from tests.fuzz.known import signature


def failure(target: str, data: bytes) -> str | None:
    """The signature of ``data``'s failure on ``target``, None when it passes."""
    try:
        TARGETS[target](data)
    except Exception as exc:  # noqa: BLE001
        return signature(exc)
    return None


def minimize(target: str, data: bytes, seconds: float = 120.0, keep: int = 1) -> bytes:
    """The smallest variant of ``data`` found in ``seconds`` failing as ``data`` does (first ``keep`` bytes kept)."""
    want = failure(target, data)
    if want is None:
        raise SystemExit(f"{target}: input does not fail")
    deadline = time.monotonic() + seconds
    for op in ("cut", "zero"):
        span = max(1, (len(data) - keep) // 2)
        while span >= 1 and time.monotonic() < deadline:
            pos, changed = keep, False
            while pos < len(data) and time.monotonic() < deadline:
                if op == "cut":
                    cand = data[:pos] + data[pos + span :]
                else:
                    cand = data[:pos] + bytes(min(span, len(data) - pos)) + data[pos + span :]
                if cand != data and failure(target, cand) == want:
                    data, changed = cand, True
                    if op == "zero":
                        pos += span
                else:
                    pos += span
            if not changed:
                span //= 2
    return data


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("target", choices=sorted(TARGETS))
    p.add_argument("input", type=Path)
    p.add_argument("output", type=Path)
    p.add_argument("--seconds", type=float, default=120.0)
    args = p.parse_args()
    data = args.input.read_bytes()
    keep = 1 if args.target in ("capture", "reports") else 0  # the capture mode byte
    small = minimize(args.target, data, args.seconds, keep)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(small)
    print(f"{args.target}: {len(data)} -> {len(small)} bytes, {failure(args.target, small)}", file=sys.stderr)


if __name__ == "__main__":
    main()
