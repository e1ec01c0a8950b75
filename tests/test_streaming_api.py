"""The API's live capture (``classifier.live.capture``) follows the streaming rule by default: flows go to
``on_ended`` as they end and the result holds running aggregates and a bounded list, not every flow."""

from __future__ import annotations

import json
import threading
import time

from tests.test_sensor import BPF, Traffic, live


@live
def test_capture_holds_no_flow_and_reports_what_keeping_them_reports(reg, tmp_path):
    import dataclasses

    from classifier.engine import Ended, Timeouts
    from classifier.live import LiveOptions, capture
    from classifier.report import write

    def traffic() -> None:
        with Traffic(rate=200):
            time.sleep(3)

    sender = threading.Thread(target=traffic, daemon=True)
    opts = LiveOptions(["lo"], bpf=BPF, backend="scapy", duration=5, timeouts=Timeouts.parse_idle("udp=0.3"))
    chunks: list[Ended] = []
    threading.Timer(0.5, sender.start).start()
    result = capture(opts, reg, on_ended=chunks.append, max_flows=100_000)
    sender.join()
    a = result.analysis
    ended = sum(len(c) for c in chunks)
    assert len(a.flows) == 0 and ended == a.aggregates.flows == result.running.flows >= 300
    assert result.engine["peak_alive"] < ended / 3  # flows alive at once, not flows seen
    # the whole-run document from the aggregates equals the one from every flow kept (keep_flows=True's)
    every = Ended.concat(chunks)
    kept = dataclasses.replace(a, flows=every.flows, labels=every.labels, part=every.part, aggregates=None)
    write(a, "json", tmp_path / "agg.json")
    write(kept, "json", tmp_path / "kept.json")
    agg_doc, kept_doc = (json.loads((tmp_path / n).read_text()) for n in ("agg.json", "kept.json"))
    assert agg_doc["totals"]["flows"] == ended and agg_doc == kept_doc
    bounded = capture(dataclasses.replace(opts, duration=1), reg, max_flows=5)
    assert len(bounded.analysis.flows) == 0 and len(bounded.analysis.aggregates.worst) <= 5
