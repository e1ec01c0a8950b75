"""The archive's stored summary aggregates (``archive.aggstore``): a round trip renders the same report
as the aggregates it stored, and a state file naming any other class is refused (no pickle)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from classifier.archive import aggstore
from classifier.report.aggregates import analyze_aggregated, with_aggregates
from classifier.report.machine import json_parts
from tests.shared import shared

FILES = ["443-curl.pcap", "dropbox.pcap", "dns_exfiltration.pcap", "anydesk.pcapng"]


def test_round_trip_renders_the_same_json_report(reg):
    a = analyze_aggregated([str(shared("captures", "ndpi", "pcap", f)) for f in FILES], reg, 12)
    data = aggstore.dumps(a.aggregates)
    back = aggstore.loads(data)
    assert back.flows == a.aggregates.flows > 20 and len(back.worst) == 12
    before, after = "".join(json_parts(a)), "".join(json_parts(with_aggregates(a, back)))
    assert json.loads(after)["flows"] and after == before
    # it merges as the original does: twice the flows, the same worst list's length
    assert back.merge(aggstore.loads(data)).flows == 2 * a.aggregates.flows


def test_a_state_naming_another_class_is_refused(reg):
    a = analyze_aggregated([str(shared("captures", "ndpi", "pcap", FILES[0]))], reg, 3)
    with np.load(io.BytesIO(aggstore.dumps(a.aggregates)), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = arrays["_meta"].tobytes().replace(b'"$o": "Timeline"', b'"$o": "Popen"')
    assert meta != arrays["_meta"].tobytes()
    arrays["_meta"] = np.frombuffer(meta, dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with pytest.raises(ValueError, match="Popen"):
        aggstore.loads(buf.getvalue())
