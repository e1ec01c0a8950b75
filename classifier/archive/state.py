"""The dataset's own state in ``DATASET/_portclass/``: what was labelled, and flows a timeline left open.

``manifest.json`` (written atomically, the commit point of a run) lists each input done (identity,
parts, aggregates) and each timeline of several files (its files, the parts the driver wrote, its
carry).  A *carry* (``carry-<timeline>.npz``) holds the flows open at the end of a timeline's last
file, so that the next run joins the ring buffer's next file to them exactly; the flows were also
written (as ended by the end of input) in the timeline's end part, which that run replaces.
``agg-<name>.npz`` (``aggstore``) holds the summary aggregates of an input or a timeline's join and
end parts: the whole archive's summary merges them.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write
from ..flows import FLOW_DTYPES, FlowTable
from ..report.aggregates import Aggregates

STATE_DIR = "_portclass"
FORMAT = 1


def load_manifest(root: Path) -> dict[str, Any]:
    """The manifest of a dataset (an empty one for a new dataset)."""
    path = root / STATE_DIR / "manifest.json"
    if not path.exists():
        return {"format": FORMAT, "inputs": {}, "timelines": {}}
    data = json.loads(path.read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: manifest format {data.get('format')!r}, this portclass writes {FORMAT}")
    return data


def save_manifest(root: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest atomically (temporary file, then rename)."""
    atomic_write(root / STATE_DIR / "manifest.json", json.dumps(manifest, indent=1).encode(), make_dirs=True)


def save_carry(root: Path, name: str, table: FlowTable, clock_ns: int | None) -> str:
    """Store open flows (``name`` under the state directory, atomically); returns the file name."""
    arrays: dict[str, np.ndarray] = {"_clock": np.array([-1 if clock_ns is None else clock_ns], dtype=np.int64)}
    for col, values in table.columns().items():
        if values.dtype == object:  # bytes or None per row (what a flow's evidence packet said)
            arrays[col + ".set"] = np.array([v is not None for v in values], dtype=bool)
            arrays[col] = np.array([b"" if v is None else bytes(v) for v in values], dtype=object).astype(bytes)
        else:
            arrays[col] = values
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write(root / STATE_DIR / name, buf.getvalue(), make_dirs=True)
    return name


def load_carry(root: Path, name: str) -> tuple[FlowTable, int | None]:
    """The open flows ``save_carry`` stored, and the clock of the file they were open at."""
    with np.load(root / STATE_DIR / name, allow_pickle=False) as z:
        cols: dict[str, np.ndarray] = {}
        for col, dt in FLOW_DTYPES.items():
            if dt == np.dtype(object):
                raw, is_set = z[col], z[col + ".set"]
                out = np.empty(raw.shape[0], dtype=object)
                out[:] = [raw[i] if is_set[i] else None for i in range(raw.shape[0])]
                cols[col] = out
            else:
                cols[col] = z[col]
        clock = int(z["_clock"][0])
    return FlowTable(**cols), (None if clock < 0 else clock)


def save_summary(root: Path, name: str, agg: Aggregates) -> str:
    """Store summary aggregates as ``agg-<name>.npz`` (atomically); returns the file name."""
    from .aggstore import dumps

    fname = f"agg-{name}.npz"
    atomic_write(root / STATE_DIR / fname, dumps(agg), make_dirs=True)
    return fname


def load_summary(root: Path, fname: str | None) -> Aggregates | None:
    """The aggregates ``save_summary`` stored (None: none stored, e.g. a dataset of an older portclass)."""
    from .aggstore import loads

    if fname is None or not (root / STATE_DIR / fname).exists():
        return None
    return loads((root / STATE_DIR / fname).read_bytes())
