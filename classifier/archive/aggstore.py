"""Running aggregates (``report.aggregates.Aggregates``) as a safe file: an ``.npz`` of plain arrays
(read with ``allow_pickle=False``) and one JSON document describing how they nest.

The dataset's state keeps one per input and per timeline, so that a later run's summary covers the
whole archive without reading any flow back.  Only the classes listed in ``_CLASSES`` can be rebuilt:
a state file never names code to run (unlike pickle).
"""

from __future__ import annotations

import io
import json
from collections import Counter
from typing import Any

import numpy as np

from ..capture.columns import CaptureStats
from ..engine import Ended
from ..flows import FlowTable
from ..label import Labels
from ..report.aggregates import Aggregates, Timeline, Worst, _Grouped, _Set

_CLASSES: dict[str, type] = {
    c.__name__: c for c in (Aggregates, _Grouped, _Set, Timeline, Worst, Ended, FlowTable, Labels, CaptureStats)
}
FORMAT = 1


def dumps(agg: Aggregates) -> bytes:
    """``agg`` as the bytes of an ``.npz`` file (arrays, and the nesting as JSON in ``_meta``)."""
    arrays: dict[str, np.ndarray] = {}

    def enc(x: Any) -> Any:
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        if isinstance(x, np.generic):
            return x.item()
        if isinstance(x, np.ndarray):
            key = f"a{len(arrays)}"
            if x.dtype == object:  # bytes, str or None per row (a flow's payload, tshark's name)
                kind = np.array([0 if v is None else 1 if isinstance(v, bytes) else 2 for v in x.ravel()], np.uint8)
                raw = [b"" if v is None else v if isinstance(v, bytes) else str(v).encode() for v in x.ravel()]
                arrays[key + "k"], arrays[key] = kind, np.frombuffer(b"".join(raw), dtype=np.uint8)
                arrays[key + "n"] = np.array([len(r) for r in raw], dtype=np.int64)
                return {"$obj": key, "shape": list(x.shape)}
            arrays[key] = x
            return {"$a": key}
        if isinstance(x, Counter):
            return {"$c": [[k, enc(v)] for k, v in x.items()]}
        if isinstance(x, dict):
            return {"$d": {str(k): enc(v) for k, v in x.items()}}
        if isinstance(x, (list, tuple)):
            return {"$t" if isinstance(x, tuple) else "$l": [enc(v) for v in x]}
        name = type(x).__name__
        if _CLASSES.get(name) is not type(x):
            raise TypeError(f"cannot store a {name} in the aggregates state")
        return {"$o": name, "s": enc(x.__getstate__())}

    arrays["_meta"] = np.frombuffer(json.dumps({"format": FORMAT, "agg": enc(agg)}).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def loads(data: bytes) -> Aggregates:
    """The aggregates ``dumps`` stored."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("_meta").tobytes())
    if meta.get("format") != FORMAT:
        raise ValueError(f"aggregates state format {meta.get('format')!r}, this portclass reads {FORMAT}")

    def dec(x: Any) -> Any:
        if not isinstance(x, dict):
            return x
        if "$a" in x:
            return arrays[x["$a"]]
        if "$obj" in x:
            key = x["$obj"]
            kind, raw, n = arrays[key + "k"], arrays[key].tobytes(), arrays[key + "n"]
            ends = np.cumsum(n).tolist()
            out = np.empty(kind.size, dtype=object)
            out[:] = [None if k == 0 else raw[e - ln : e] if k == 1 else raw[e - ln : e].decode()
                      for k, e, ln in zip(kind.tolist(), ends, n.tolist(), strict=True)]  # fmt: skip
            return out.reshape(x["shape"])
        if "$c" in x:
            return Counter({k: dec(v) for k, v in x["$c"]})
        if "$d" in x:
            return {k: dec(v) for k, v in x["$d"].items()}
        if "$l" in x:
            return [dec(v) for v in x["$l"]]
        if "$t" in x:
            return tuple(dec(v) for v in x["$t"])
        cls = _CLASSES.get(x["$o"])
        if cls is None:
            raise ValueError(f"aggregates state names {x['$o']!r}, not a class it may hold")
        obj = cls.__new__(cls)
        obj.__dict__.update(dec(x["s"]))
        return obj

    agg = dec(meta["agg"])
    if not isinstance(agg, Aggregates):
        raise ValueError("aggregates state does not hold aggregates")
    return agg
