"""The shipped compact datamodel is exactly what the generator derives from xapi's export."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from xenlab.sim import datamodel

ROOT = Path(__file__).resolve().parents[2]
EXPORT = ROOT.parent / "shared" / "reference" / "xenapi.json"
SHIPPED = Path(datamodel.__file__).parent / "data" / "datamodel.json"


def _generator():
    spec = importlib.util.spec_from_file_location("derive_datamodel", ROOT / "scripts" / "derive_datamodel.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


needs_export = pytest.mark.skipif(not EXPORT.is_file(), reason=f"{EXPORT} (the full export) is not here")


@needs_export
def test_shipped_file_is_derived_from_the_export():
    assert SHIPPED.read_text() == _generator().derive_file(EXPORT), "run scripts/derive_datamodel.py"


@needs_export
def test_compact_keeps_every_fact_of_the_export():
    raw = json.loads(EXPORT.read_text())
    dm = datamodel.get()
    assert sorted(dm.classes) == sorted(c["name"] for c in raw)
    for c in raw:
        spec = dm.cls(c["name"])
        assert list(spec.fields) == [f["name"] for f in c["fields"]]
        assert list(spec.messages) == [m["name"] for m in c["messages"]]
        for f in c["fields"]:
            fs = spec.fields[f["name"]]
            assert (fs.qualifier, fs.has_default) == (f["qualifier"], "default" in f)
            assert fs.state == f["lifecycle"]["state"]
        for m in c["messages"]:
            ms = spec.messages[m["name"]]
            assert [p.name for p in ms.params] == [p["name"] for p in m["params"]]
            assert ms.result_text == (m["result"][0] if m.get("result") else "void")
            assert ms.errors == tuple(e["name"] for e in m.get("errors", []))
            assert (ms.implicit, ms.state) == (bool(m.get("implicit")), m["lifecycle"]["state"])
        for e in c.get("enums", []):
            assert dm.enum_values(e["name"]) == tuple(v["name"] for v in e["values"])


def test_no_prose_in_the_shipped_file():
    text = SHIPPED.read_text()
    assert '"description":' not in text and '"doc":' not in text and '"transitions"' not in text
    assert len(text) < 400_000


def test_generator_check_mode_detects_a_stale_file(tmp_path):
    gen = _generator()
    export = tmp_path / "xenapi.json"
    export.write_text(json.dumps([{"name": "pool", "description": "A pool", "fields": [], "messages": [],
                                   "enums": [], "lifecycle": {"state": "Published_s"}}]))
    out = tmp_path / "dm.json"
    assert gen.main(["--export", str(export), "--output", str(out)]) == 0
    assert gen.main(["--export", str(export), "--output", str(out), "--check"]) == 0
    assert "A pool" not in out.read_text()
    assert datamodel.load(out).classes["pool"].fields == {}
    out.write_text(out.read_text().replace("pool", "pewl"))
    assert gen.main(["--export", str(export), "--output", str(out), "--check"]) == 1
