"""Replay what the fuzzers found (``tests/fuzz/regressions/<target>/<name>``) and check the harness itself.

Each kept input runs through the same check as under atheris (``tests.fuzz.harness``), so CI fails if
a fixed bug comes back.  Inputs whose bug is still open (``tests.fuzz.known``) are strict xfails: they
fail loudly once the fix lands, to be marked fixed.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.fuzz import harness
from tests.fuzz.known import OPEN, REGRESSIONS, signature
from tests.fuzz.seeds import SEEDS

HERE = Path(__file__).resolve().parent / "regressions"
FILES = sorted(str(p.relative_to(HERE)) for p in HERE.glob("*/*") if p.is_file() and p.name != "README.md")


def test_every_kept_input_is_documented() -> None:
    """Each file in regressions/ has an entry in ``known.REGRESSIONS`` and each entry has its file."""
    assert FILES, "regressions/ holds the inputs the fuzzers found"
    assert sorted(REGRESSIONS) == FILES
    assert OPEN == {sig for sig, _, why in REGRESSIONS.values() if why}


@pytest.mark.parametrize("rel", FILES)
def test_regression(rel: str) -> None:
    """The kept input passes its target's checks (it failed them when found).

    While its bug is open it must still fail the same way (an expected failure, as ``xfail(strict=True)``);
    once it passes, the test fails until the entry in ``known.py`` is marked fixed.
    """
    target = rel.split("/", 1)[0]
    sig, _, why = REGRESSIONS[rel]
    data = (HERE / rel).read_bytes()
    try:
        harness.TARGETS[target](data)
    except Exception as exc:
        if why and signature(exc) == sig:
            pytest.xfail(f"open: {why}")
        raise
    assert not why, f"{rel} passes now: its bug ({why}) is fixed, set open to None in tests/fuzz/known.py"


@pytest.mark.parametrize("target", sorted(SEEDS))
def test_seeds_pass(target: str) -> None:
    """Every seed of every target passes its checks, or fails only by a known open bug."""
    seeds = SEEDS[target]()
    assert len(seeds) >= 5
    for data in seeds.values():
        try:
            harness.TARGETS[target](data)
        except Exception as exc:
            if signature(exc) not in OPEN:  # the redirect seed loops to itself: open issue-9 bug
                raise


def test_capture_checks_can_fail() -> None:
    """The accounting and sign checks reject a count that does not add up and a flow ending before it starts."""
    path = harness.capture_file(SEEDS["capture"]()["sample.pcap"])
    flows, stats, rows = harness.read_flows(path, 64 << 20)
    harness.check_stats(stats, rows, flows)
    assert stats.packets == 114 and rows == 111 and len(flows) == 19  # captures/README.md
    stats.non_ip += 1
    with pytest.raises(harness.Broken, match="packet-accounting"):
        harness.check_stats(stats, rows, flows)
    stats.non_ip -= 1
    flows.last_ts_ns[3] = flows.first_ts_ns[3] - 1
    with pytest.raises(harness.Broken, match="negative-duration") as e:
        harness.check_flows(flows)
    assert signature(e.value) == "broken:negative-duration"


def test_small_chunks_really_split_the_file() -> None:
    """The second read of the chunk-invariance check sees many chunk boundaries, not one chunk."""
    from classifier.capture.reader import read_batches

    path = harness.capture_file(SEEDS["capture"]()["sample.pcapng"])
    with harness._small_chunks():
        sizes = Counter(len(b) > 0 for b in read_batches([str(path)], harness.SMALL_CHUNK, lane_bytes=64))
    assert sizes[True] > 20


def test_signature_names_the_innermost_project_frame() -> None:
    """A stray exception is keyed by its type and the classifier function it came from."""
    from classifier.registry.csv import parse_csv

    with pytest.raises(Exception) as e:
        parse_csv(None)  # type: ignore[arg-type]
    assert signature(e.value) == "AttributeError@classifier/registry/csv.py:parse_csv"


def test_reports_hold_every_flow() -> None:
    """The reports target writes all seven formats for the sample capture (19 flows in each)."""
    harness.check_reports(SEEDS["reports"]()["sample.pcap-24"])
    harness.check_reports(SEEDS["reports"]()["sample.pcap"])
    assert np.array_equal(sorted(p.name for p in harness.WORK.glob("report*")), ["report"])
