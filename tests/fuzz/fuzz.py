"""Coverage-guided fuzzing of one target with atheris: ``python -m tests.fuzz.fuzz TARGET [libFuzzer args]``.

Targets are those of ``tests.fuzz.harness.TARGETS``.  A failure whose signature is a known open bug
(``tests.fuzz.known.OPEN``) is recorded (first input per signature, in ``$PORTCLASS_FUZZ_FINDINGS``)
and the run goes on; any other failure is a crash, which libFuzzer writes as an artifact.
``PORTCLASS_FUZZ_COLLECT=1`` records every failure that way (a long exploratory run, one input per
signature); ``PORTCLASS_FUZZ_ONLY=SIGNATURE`` crashes on that signature alone (for -minimize_crash).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path


def _import_all() -> None:
    """Import every module of the classifier package (live capture back-ends aside)."""
    import importlib
    import pkgutil

    import classifier

    for mod in pkgutil.walk_packages(classifier.__path__, "classifier."):
        if not mod.name.startswith(("classifier.live", "classifier.__main__")):
            importlib.import_module(mod.name)


def main() -> None:
    import atheris

    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: python -m tests.fuzz.fuzz TARGET [libFuzzer options] [corpus dirs]")
    target = sys.argv.pop(1)
    with atheris.instrument_imports(include=["classifier"]):
        _import_all()  # modules imported lazily later would escape the coverage instrumentation
    from tests.fuzz.harness import TARGETS, registry
    from tests.fuzz.known import OPEN, signature

    check = TARGETS[target]
    if target == "reports":
        registry()  # compile once, before the clock of the first input starts
    collect = os.environ.get("PORTCLASS_FUZZ_COLLECT") == "1"
    only = os.environ.get("PORTCLASS_FUZZ_ONLY")
    findings = Path(os.environ.get("PORTCLASS_FUZZ_FINDINGS", "fuzz-findings")) / target
    seen: set[str] = set()

    def one(data: bytes) -> None:
        try:
            check(data)
        except Exception as exc:  # noqa: BLE001 - classified below
            sig = signature(exc)
            if only is not None:
                if sig == only:
                    raise
                return
            if not collect and not any(pattern in sig for pattern in OPEN):
                raise
            if sig not in seen:
                seen.add(sig)
                d = findings / sig.replace("/", "_").replace(":", "_")
                d.mkdir(parents=True, exist_ok=True)
                (d / hashlib.sha1(data).hexdigest()).write_bytes(data)
                print(f"\n#finding {target} {sig}: {str(exc)[:200]!r}", file=sys.stderr, flush=True)

    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
