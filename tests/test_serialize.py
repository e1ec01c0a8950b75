"""Column serializers (classifier.report.serialize) against the libraries that define each format's text:
orjson for JSON, the csv module for CSV, Zeek's escaping (report.zeek.escape) value by value."""

from __future__ import annotations

import csv
import io
import json

import orjson
import pyarrow as pa

from classifier.report.rows import pylist
from classifier.report.serialize import csv_body, jsonl_body, per_value
from classifier.report.zeek import _NEEDS_ESCAPE, UNSET_FIELD, escape

NASTY = [
    "plain",
    'quote"d',
    "back\\slash",
    "ctl\x01x",
    "nul\x00",
    "comma,x",
    "line\nbreak",
    "cr\rx",
    "",
    "-",
    "(empty)",
    "#hash",
    "ünïcödé ✓",
    None,
    "tab\tx",
    "del\x7f",
    "-x",
]


def _columns() -> dict[str, object]:
    n = len(NASTY)
    text = pa.array(NASTY, pa.string())
    return {
        "@timestamp": pa.array([f"2024-01-01T00:00:{i:02d}.000000Z" for i in range(n)]),
        "a.text": text,
        "a.coded": text.dictionary_encode(),
        "a.count": pa.array([i if i % 3 else None for i in range(n)], pa.int64()),
        "b.only_nulls": pa.nulls(n, pa.string()),
        "b.list": pa.array([["x", 'y"'] if i % 2 else [] for i in range(n)], pa.list_(pa.string())),
        "b.const": "same",
        "c.some": pa.array([None if i % 4 else "v" for i in range(n)], pa.string()),
        # numbers of every width and sign (small ones become codes, others text of their own)
        "c.big": pa.array([None if i % 5 == 0 else (-1) ** i * 10**i for i in range(n)], pa.int64()),
        "c.small": pa.array([i * 37 % 300 for i in range(n)], pa.int64()),
        # a dictionary too large to fuse with its neighbours (``Lines.SMALL``), with a null value
        "d.many": pa.DictionaryArray.from_arrays(
            pa.array([(i * 97) % 1500 if i % 3 else None for i in range(n)], pa.int32()),
            pa.array([None if j == 0 else f"v,{j}" for j in range(1500)], pa.string()),
        ),
        "d.few": pa.DictionaryArray.from_arrays(pa.array([i % 2 for i in range(n)], pa.int32()), pa.array([None, "x"])),
    }


def _expected_docs(cols: dict[str, object]) -> list[dict]:
    n = len(NASTY)
    docs: list[dict] = [{} for _ in range(n)]
    for key, values in cols.items():
        vals = [values] * n if isinstance(values, str) else pylist(values)
        path = [key] if key.startswith("@") else key.split(".")
        for doc, v in zip(docs, vals, strict=True):
            if v is None:
                continue
            node = doc
            for p in path[:-1]:
                node = node.setdefault(p, {})
            node[path[-1]] = v
    return docs


def test_jsonl_body_is_orjson_of_each_document() -> None:
    cols = _columns()
    got = bytes(jsonl_body(cols)).decode().split("\n")
    assert got[-1] == ""
    want = [orjson.dumps(d).decode() for d in _expected_docs(cols)]
    assert got[:-1] == want
    assert json.loads(got[1])["a"]["text"] == 'quote"d'
    assert "b" not in json.loads(got[4]) or "only_nulls" not in json.loads(got[4])["b"]


def test_csv_body_is_the_csv_module_row_by_row() -> None:
    cols = _columns()
    n = len(NASTY)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    lists = {k: [v] * n if isinstance(v, str) else pylist(v) for k, v in cols.items()}
    for row in zip(*lists.values(), strict=True):
        w.writerow([";".join(v) if isinstance(v, list) else ("" if v is None else v) for v in row])
    assert bytes(csv_body(cols)).decode() == buf.getvalue()
    assert '"comma,x"' in buf.getvalue() and '"quote""d"' in buf.getvalue() and '"line\nbreak"' in buf.getvalue()


def test_zeek_strings_escape_as_zeek_value_by_value() -> None:
    for arr in (pa.array(NASTY, pa.string()), pa.array(NASTY, pa.string()).dictionary_encode()):
        got = per_value(arr, escape, UNSET_FIELD, safe=_NEEDS_ESCAPE).to_pylist()
        assert got == [UNSET_FIELD if v is None else escape(v) for v in NASTY]
    assert escape("-x") == "-x" and escape("#") == "\\x23"


def test_address_texts_built_by_arrow_are_ipaddress_texts() -> None:
    """The writers' address dictionary (IPv4 by Arrow's kernels, IPv6 by ipaddress) against ipaddress."""
    import ipaddress

    import numpy as np

    from classifier.flows import addr_to_words
    from classifier.report.addr import unique_address_array

    rng = np.random.default_rng(3)
    v4 = [str(ipaddress.IPv4Address(int(x))) for x in rng.integers(0, 2**32, 200)] + ["0.0.0.0", "255.255.255.255"]
    v6 = [str(ipaddress.IPv6Address(int(x) << 64 | 1)) for x in rng.integers(0, 2**62, 20)] + ["::", "::1"]
    addrs = v4 + v6 + v4[:10]
    words = [addr_to_words(a) for a in addrs]
    hi, lo = (np.array([w[i] for w in words], np.uint64) for i in (0, 1))
    text, inv = unique_address_array(hi, lo)
    assert [text.to_pylist()[i] for i in inv] == [ipaddress.ip_address(a).compressed for a in addrs]
