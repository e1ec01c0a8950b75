"""Run every fuzz target for a fixed time (CI's fuzz step): ``python -m tests.fuzz.run [--scale X] [--out DIR]``.

Each target gets its seed corpus (``tests.fuzz.seeds``) and a working corpus in ``DIR/corpus/<target>``
(kept between runs when DIR is), runs for its share of the budget, and prints executions, exec/s and
what it found.  Exit status 1 when a target crashed (a new failure: its input is in
``DIR/crashes/<target>/``; keep it as a regression, see ``tests/fuzz/known.py``), else 0.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.fuzz.seeds import SEEDS, write_seeds

ROOT = Path(__file__).resolve().parents[2]
BUDGET_S: dict[str, int] = {"capture": 60, "reports": 45, "registry": 30, "registry_compile": 25, "update": 30}
"""Seconds per target in one CI run (about three minutes and a half in all)."""
SLICE_S: dict[str, int] = {"capture": 30, "reports": 30, "registry": 60, "registry_compile": 15, "update": 15}
"""Seconds one fuzzer process runs before the next takes over the corpus: memory grows with every input
under atheris' instrumentation (about 1 MB per compiled registry), so no process lives long enough to
reach the RSS limit."""
_RUNS = re.compile(r"stat::number_of_executed_units:\s*(\d+)")
_TIME = re.compile(r"Done (\d+) runs in (\d+) second")


def run_target(target: str, seconds: int, out: Path, extra: list[str]) -> tuple[int, int, float, list[str]]:
    """Fuzz one target for ``seconds`` (in slices): (exit status, executions, seconds taken, findings lines)."""
    seeds = write_seeds(target, out / "seeds" / target)
    corpus = out / "corpus" / target
    crashes = out / "crashes" / target
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PORTCLASS_FUZZ_FINDINGS=str(out / "findings"), PYTHONHASHSEED="0")
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    t0 = time.monotonic()
    runs, findings, rc, part = 0, [], 0, 0
    while rc == 0 and (left := seconds - (time.monotonic() - t0)) >= 1:
        cmd = [
            sys.executable,
            "-m",
            "tests.fuzz.fuzz",
            target,
            f"-max_total_time={max(1, round(min(left, SLICE_S[target])))}",
            "-timeout=30",
            "-rss_limit_mb=4096",
            "-print_final_stats=1",
            f"-artifact_prefix={crashes}/",
            *extra,
            str(corpus),
            str(seeds),
        ]
        log = out / f"{target}.{part}.log"
        part += 1
        scratch = tempfile.mkdtemp(prefix="portclass-fuzz-slice-", dir=shm)
        try:
            with open(log, "wb") as f:
                rc = subprocess.call(cmd, cwd=ROOT, env={**env, "PORTCLASS_FUZZ_SCRATCH": scratch}, stdout=f,
                                     stderr=subprocess.STDOUT)  # fmt: skip
        finally:
            shutil.rmtree(scratch, ignore_errors=True)  # the fuzzer's _exit skips the harness's own clean-up
        text = log.read_text(errors="replace")
        done = [int(m) for m in _RUNS.findall(text)] or [int(m.group(1)) for m in _TIME.finditer(text)] or [0]
        runs += done[-1]
        for line in text.splitlines():
            if line.startswith("#finding") and not any(f.split(": ")[0] == line.split(": ")[0] for f in findings):
                findings.append(line)
        if rc != 0:
            tail = [line for line in text.splitlines() if line.strip()][-25:]
            print("\n".join(tail), file=sys.stderr)
    return rc, runs, time.monotonic() - t0, findings


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="working directory (default: a temporary one)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every target's time budget")
    p.add_argument("--targets", default=",".join(BUDGET_S), help="comma-separated targets")
    p.add_argument("extra", nargs="*", help="more libFuzzer options (after --)")
    args = p.parse_args(argv)
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("fuzz: atheris is not installed (pip install -e '.[test]' on Linux x86_64)", file=sys.stderr)
        return 2
    out = args.out or Path(tempfile.mkdtemp(prefix="portclass-fuzz-run-"))
    out.mkdir(parents=True, exist_ok=True)
    failed = []
    total = 0
    for target in args.targets.split(","):
        if target not in SEEDS:
            p.error(f"unknown target {target!r} (one of {', '.join(SEEDS)})")
        seconds = max(1, round(BUDGET_S[target] * args.scale))
        rc, runs, took, findings = run_target(target, seconds, out, args.extra)
        total += runs
        state = "ok" if rc == 0 else f"CRASH (exit {rc}; input in {out / 'crashes' / target})"
        print(f"fuzz {target:16} {runs:9d} execs in {took:6.1f} s = {runs / max(took, 1e-9):7.1f}/s  {state}")
        for line in findings:
            print(f"    known open bug {line.removeprefix('#finding ')}")
        if rc != 0:
            failed.append(target)
    print(f"fuzz total {total} execs; {'crashed: ' + ', '.join(failed) if failed else 'no new crash'}")
    if args.out is None and not failed:
        shutil.rmtree(out, ignore_errors=True)  # a temporary working directory is kept only to show a crash
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
