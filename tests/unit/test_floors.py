"""No module imports one above it: the floors of docs/architecture.md, checked on the source.

Every runtime import between xenlab modules (module level or inside a function; imports
under `if TYPE_CHECKING:` are annotations only) must go to the same floor or below.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "xenlab"

# module (or package prefix) -> floor; the longest matching prefix wins
FLOORS = {
    "xenlab": 0, "xenlab.errors": 0, "xenlab.waiting": 0, "xenlab.yamlfile": 0, "xenlab.validation": 0,
    "xenlab.spec": 1, "xenlab.hardware": 1, "xenlab.results": 1, "xenlab.plan": 1, "xenlab.metrics": 1, "xenlab.sim": 1,
    "xenlab.shards": 1, "xenlab.migration_profile": 1,
    "xenlab.images": 2, "xenlab.report": 2,
    "xenlab.lab": 3, "xenlab.matrix": 3,
    "xenlab.toolstack": 4, "xenlab.faults": 4, "xenlab.observe": 4,
    "xenlab.drivers": 5,
    "xenlab.scenario": 6, "xenlab.qualify": 6, "xenlab.files": 6,
    "xenlab.fixtures": 7, "xenlab.pytest_plugin": 7, "xenlab.cli": 7, "xenlab.cli_cache": 7, "xenlab.cli_qualify": 7, "xenlab.cli_output": 7, "xenlab.cli_report": 7,
    "xenlab.cli_shard": 7, "xenlab.cli_run": 7,
}


def floor_of(module: str) -> int:
    best = max((p for p in FLOORS if module == p or module.startswith(p + ".")), key=len)
    return FLOORS[best]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported xenlab module) of every import not under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text())
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for child in node.body for n in ast.walk(child)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            found += [(node.lineno, n) for n in names if n.startswith("xenlab")]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("xenlab")]
    return found


def test_no_module_imports_one_above_it():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        for line, imported in runtime_imports(path):
            if floor_of(imported) > floor_of(importer):
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {importer} (floor {floor_of(importer)}) "
                              f"imports {imported} (floor {floor_of(imported)})")
    assert upward == []


def test_every_module_has_a_floor_and_the_checker_sees_upward_imports(tmp_path):
    assert all(floor_of(module_name(p)) >= 0 for p in PACKAGE.rglob("*.py"))
    assert floor_of("xenlab.lab.sim") == 3 and floor_of("xenlab.scenario.session") == 6
    probe = PACKAGE / "lab" / "contract.py"
    assert ("xenlab.waiting", 0) in [(m, floor_of(m)) for _, m in runtime_imports(probe)]
    assert not any(m.startswith("xenlab.metrics") for _, m in runtime_imports(probe))  # under TYPE_CHECKING only
