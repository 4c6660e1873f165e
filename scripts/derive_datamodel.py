"""Derive the simulator's compact datamodel from xapi's full export.

    python scripts/derive_datamodel.py [--export ../shared/reference/xenapi.json] [--check]

xapi publishes its datamodel as ``xenapi.json`` (~1.5 MB, mostly prose).  The simulator
needs only the facts: classes, fields (type, qualifier, default, lifecycle state),
enums, messages (parameters, result, declared errors, implicit, lifecycle state) and the
classes' lifecycle.  This script keeps those, drops every description, and writes
``xenlab/sim/data/datamodel.json``, which ships inside the package so nothing at run
time needs the export.  ``--check`` exits 1 if the shipped file differs from what the
export gives (tests/sim/test_sim_datamodel.py runs the same comparison).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_EXPORT = REPO.parent / "shared" / "reference" / "xenapi.json"
OUTPUT = REPO / "xenlab" / "sim" / "data" / "datamodel.json"
FORMAT = "xenlab.sim.datamodel/1"


def _state(obj: dict[str, Any]) -> str:
    return (obj.get("lifecycle") or {}).get("state", "Published_s")


def _field(f: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": f["name"], "type": f["type"], "qualifier": f["qualifier"]}
    if "default" in f:
        out["default"] = f["default"]
    if _state(f) != "Published_s":
        out["state"] = _state(f)
    return out


def _message(m: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": m["name"],
        "params": [[p["name"], p["type"]] for p in m["params"]],
        "result": m["result"][0] if m.get("result") else "void",
    }
    errors = [e["name"] for e in m.get("errors", [])]
    if errors:
        out["errors"] = errors
    if m.get("implicit"):
        out["implicit"] = True
    if _state(m) != "Published_s":
        out["state"] = _state(m)
    return out


def derive(raw: list[dict[str, Any]], source_bytes: bytes) -> dict[str, Any]:
    """The compact datamodel of one export (deterministic: same export, same output)."""
    return {
        "format": FORMAT,
        "source": {"file": "xenapi.json", "sha256": hashlib.sha256(source_bytes).hexdigest()},
        "classes": [
            {
                "name": c["name"],
                "state": _state(c),
                "enums": [[e["name"], [v["name"] for v in e["values"]]] for e in c.get("enums", [])],
                "fields": [_field(f) for f in c["fields"]],
                "messages": [_message(m) for m in c["messages"]],
            }
            for c in raw
        ],
    }


def render(compact: dict[str, Any]) -> str:
    return json.dumps(compact, separators=(",", ":"), sort_keys=False) + "\n"


def derive_file(export: Path) -> str:
    data = export.read_bytes()
    return render(derive(json.loads(data), data))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", type=Path, default=DEFAULT_EXPORT, help="xapi's xenapi.json")
    ap.add_argument("--output", type=Path, default=OUTPUT)
    ap.add_argument("--check", action="store_true", help="compare with the shipped file instead of writing")
    args = ap.parse_args(argv)
    if not args.export.is_file():
        print(f"derive_datamodel: {args.export}: no such file (give --export)", file=sys.stderr)
        return 2
    text = derive_file(args.export)
    if args.check:
        same = args.output.is_file() and args.output.read_text() == text
        print(f"{args.output}: {'up to date' if same else 'OUT OF DATE: run scripts/derive_datamodel.py'}")
        return 0 if same else 1
    args.output.write_text(text)
    print(f"{args.output}: {len(text)} bytes from {args.export} ({args.export.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
