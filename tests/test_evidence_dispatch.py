"""The scan's dispatch (packets sent only to the signatures their leading bytes allow) against the reference path.

``scan(batch, reference=True)`` gives every signature every packet of its transport and runs all of
its tests; the dispatch must give the same codes, server names and said values on every packet of
the shared nDPI corpus (the real bytes of 70+ protocols), for the whole table and for part of it
(benchmarks/bench_evidence.py times parts of the table).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from classifier.capture.columns import PacketBatch
from classifier.capture.reader import read_batches
from classifier.errors import PortclassError
from classifier.evidence import match
from classifier.flows import PacketTags
from tests.shared import shared

FIELDS = ("sig", "said_rows", "said", "name_rows", "names")


@functools.lru_cache(maxsize=1)
def corpus_batches() -> tuple[PacketBatch, ...]:
    """Every batch of every readable capture of the corpus (read once)."""
    out = []
    for p in sorted(shared("captures", "ndpi", "pcap").iterdir()):
        try:
            out.extend(read_batches([p]))
        except PortclassError:
            continue
    return tuple(out)


def differences(a: PacketTags, b: PacketTags) -> list[str]:
    """The fields of two scans' tags that differ."""
    bad = []
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        if (x is None) != (y is None) or (x is not None and (x.shape != y.shape or not np.array_equal(x, y))):
            bad.append(f)
    return bad


def test_dispatch_matches_the_reference_on_the_corpus() -> None:
    batches = corpus_batches()
    tagged = named = said = 0
    codes: set[int] = set()
    for b in batches:
        fast, ref = match.scan(b), match.scan(b, reference=True)
        assert differences(fast, ref) == []
        tagged += int((ref.sig > 0).sum())
        named += ref.names.shape[0]
        said += ref.said.shape[0]
        codes.update(np.unique(ref.sig).tolist())
    # the comparison saw real matches, of most of the table
    assert len(batches) > 200 and tagged > 10_000 and named > 300 and said > 2_500
    assert len(codes) > 90, len(codes)


@pytest.mark.parametrize("protocols", [20, 50])
def test_dispatch_of_part_of_the_table_matches_its_reference(protocols: int) -> None:
    from classifier.evidence.table import PROTOCOLS

    keep = {p.name for p in PROTOCOLS[:protocols]}
    d = match.Dispatch(tuple(c for c in match.COMPILED if c.sig.protocol in keep))
    assert 0 < len(d.compiled) < len(match.COMPILED)
    for b in corpus_batches()[::3]:
        assert differences(match.scan(b, d), match.scan(b, d, reference=True)) == []


def test_the_comparison_catches_a_dispatch_that_drops_packets() -> None:
    """A dispatch whose first-byte table forgets 'G' for http-request loses GET requests: the test sees it."""
    d = match.Dispatch(match.COMPILED)
    i = match.SIG_CODE["http-request"] - 1
    d.first[ord("G"), i >> 6] &= ~np.uint64(1 << (i & 63))  # TCP rows start at 0
    assert any(differences(match.scan(b, d), match.scan(b)) for b in corpus_batches())


def test_dispatch_tables_are_exact_where_they_read() -> None:
    """Tests on the bytes the tables read are dropped from a row's remaining tests, nowhere else."""
    d = match.DISPATCH
    assert d.positions[0] == 0 and len(d.positions) == match.DISPATCH_POSITIONS
    dropped = 0
    for c, rest in zip(d.compiled, d.rest, strict=True):
        left = {w: (m, v) for w, m, v in rest.words}
        for w, m, v in c.words:
            read = sum(0xFF << (8 * sh) for sh in range(8) if 8 * w + sh in d.positions)
            assert left.get(w, (0, 0)) == (m & ~read, v & ~read)
            dropped += bool(m & read)
        assert rest.bytesets == [(o, lut) for o, lut in c.bytesets if o not in d.positions]
        assert not rest.lengths  # the length table settles min/max/exact lengths
    assert dropped > 100  # most rows test their first bytes


def test_small_batch_runs_only_the_rows_its_packets_allow(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch of SSH and DNS payloads runs a handful of rows, not the table (the live sensor's small batches)."""
    ran: list[str] = []
    real = match._run

    def spy(b, c, rows, rest, found):  # type: ignore[no-untyped-def]
        ran.append(c.sig.name)
        return real(b, c, rows, rest, found)

    monkeypatch.setattr(match, "_run", spy)
    codes = match.scan_bytes([b"SSH-2.0-OpenSSH_9.2\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"])
    assert [match.SIG_NAMES[c] for c in codes] == ["ssh-banner", "http-request"]
    assert "ssh-banner" in ran and "http-request" in ran
    assert len(ran) < len(match.COMPILED) // 4
