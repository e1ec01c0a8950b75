"""The JSON Lines output of the whole shared corpus against Elastic's own generated ECS field list.

``tests/ecs`` pins the ``@elastic/ecs`` npm package (``.ci/setup --test`` runs ``npm ci`` there); its
``EcsFlat`` export names every ECS field with its type.  Every field outside ``portclass.*`` must be
one of them, with a JSON value of that type (a list only where ECS says the field is an array); no
value is null; every document says the ECS version it follows; every key is a valid field name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from classifier.report.rows import ECS_VERSION
from tests.conftest import run_cli
from tests.shared import shared

ECS_DIR = Path(__file__).resolve().parent / "ecs"
_STR = (str,)
_INT = (int,)
_NUM = (int, float)
TYPES = {
    "keyword": _STR,
    "constant_keyword": _STR,
    "wildcard": _STR,
    "text": _STR,
    "match_only_text": _STR,
    "ip": _STR,
    "date": _STR,
    "version": _STR,
    "long": _INT,
    "integer": _INT,
    "short": _INT,
    "byte": _INT,
    "unsigned_long": _INT,
    "float": _NUM,
    "double": _NUM,
    "half_float": _NUM,
    "scaled_float": _NUM,
    "boolean": (bool,),
}
"""ECS field type -> the JSON (Python) types its values may have."""
_KEY = re.compile(r"^(@timestamp|[A-Za-z0-9_]+)$")


def ecs_fields() -> tuple[str, dict[str, dict]]:
    """(ECS version, flat name -> {type, normalize}) from the pinned package, through node."""
    node = shutil.which("node")
    pkg = ECS_DIR / "node_modules" / "@elastic" / "ecs"
    if node is None or not pkg.is_dir():
        if os.environ.get("CI"):
            raise RuntimeError("tests/ecs not installed: run bash .ci/setup --test")
        pytest.skip("the @elastic/ecs package is not installed (bash .ci/setup --test)")
    script = (
        "const m = require('@elastic/ecs');"
        "const out = {};"
        "for (const [k, v] of Object.entries(m.EcsFlat)) out[k] = {type: v.type, normalize: v.normalize || []};"
        "process.stdout.write(JSON.stringify({version: m.EcsVersion, fields: out}));"
    )
    res = subprocess.run([node, "-e", script], cwd=ECS_DIR, capture_output=True, text=True, timeout=60, check=True)
    doc = json.loads(res.stdout)
    return doc["version"], doc["fields"]


def flatten(doc: dict, prefix: str = "") -> dict[str, object]:
    """Dotted leaf names -> values (lists are leaves)."""
    out: dict[str, object] = {}
    for k, v in doc.items():
        assert _KEY.match(k), f"not a field name: {k!r}"
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            assert v, f"empty object {name}"
            out.update(flatten(v, name + "."))
        else:
            out[name] = v
    return out


@pytest.fixture(scope="module")
def corpus_jsonl(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("ecs") / "corpus.jsonl"
    xml = shared("registry", "service-names-port-numbers.xml")
    res = run_cli("--registry", str(xml), str(shared("captures", "ndpi", "pcap")), "-f", "jsonl", "-o", str(out),
                  "--no-progress", timeout=600)
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_every_field_is_ecs_with_its_type_and_nothing_is_null(corpus_jsonl: list[dict]) -> None:
    version, fields = ecs_fields()
    assert version == ECS_VERSION
    assert len(corpus_jsonl) > 5000
    seen: set[str] = set()
    for doc in corpus_jsonl:
        assert doc["ecs"]["version"] == ECS_VERSION
        for name, value in flatten(doc).items():
            assert value is not None, name
            if name.startswith("portclass."):
                continue
            seen.add(name)
            assert name in fields, f"{name} is not an ECS field"
            want = TYPES[fields[name]["type"]]
            values = value if isinstance(value, list) else [value]
            if isinstance(value, list):
                assert "array" in fields[name]["normalize"], f"{name} is not an array in ECS"
            for v in values:
                ok = isinstance(v, want) and (not isinstance(v, bool) or want == (bool,))
                assert ok, (name, v, fields[name]["type"])
    # the fields a flow document always has, and the ones that come with evidence
    for name in ("@timestamp", "ecs.version", "event.start", "source.ip", "destination.port", "network.community_id"):
        assert name in seen
    assert "tls.client.server_name" in seen and "network.protocol" in seen


def test_notice_document_is_ecs_and_dated_by_the_capture(corpus_jsonl: list[dict]) -> None:
    notice, flows = corpus_jsonl[0], corpus_jsonl[1:]
    assert notice["event"]["dataset"] == "portclass.notice"
    assert notice["@timestamp"] == min(f["@timestamp"] for f in flows)
    no_ports = notice["portclass"]["totals"]["no_ports"]
    assert isinstance(no_ports, list) and all(set(x) == {"name", "count"} for x in no_ports)
    assert any(" " in x["name"] for x in no_ports)  # names like "IP proto 170" are values, not keys
