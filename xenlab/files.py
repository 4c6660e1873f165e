"""Every kind of xenlab file: which kind a file is, its check, and its JSON Schema.

`xenlab validate FILE...` checks any of them as its own command would, with the same
loaders (file:line errors): a lab file (`xenlab up`), a scenario (`xenlab run`, against
the lab it names when that lab's file is found), a qualification profile (`xenlab
qualify`, `xenlab report --profile`), a hardware matrix (`xenlab matrix`), a results file
(`xenlab report`). A file says its kind with the modeline editors read,
`# yaml-language-server: $schema=.../scenario.schema.json`; without one, its keys tell
(a scenario has `steps`, a matrix `axes`, ...), and a file whose keys point at two kinds,
or none, is refused with what to write. `xenlab schema --kind KIND` prints each kind's
JSON Schema; the repository keeps them in docs/schema/ for editors.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel

from .errors import SpecError, XenlabError
from .validation import require_mapping
from .yamlfile import LocatedDocument, load_located

FileKind = Literal["lab", "scenario", "profile", "matrix", "results"]
FILE_KINDS: tuple[str, ...] = get_args(FileKind)
WHAT = {"lab": "lab file", "scenario": "scenario", "profile": "qualification profile", "matrix": "hardware matrix",
        "results": "results file"}
SCHEMA_DIR = Path("docs/schema")  # in the repository, beside the docs
MODELINE = re.compile(r"^#\s*yaml-language-server:\s*\$schema=(\S+)\s*$")
MODELINE_LINES = 20  # a modeline is looked for among a file's first lines


def schema_file_name(kind: str) -> str:
    return f"{kind}.schema.json"


def modeline(kind: str, relative_to_schema_dir: str) -> str:
    """The line a YAML file of `kind` starts with so editors check it (`../docs/schema` from labs/)."""
    return f"# yaml-language-server: $schema={relative_to_schema_dir}/{schema_file_name(kind)}"


def _models() -> dict[str, type[BaseModel]]:
    from .matrix import MatrixSpec
    from .report.qualification import QualificationProfile
    from .results import RunResults
    from .scenario.model import Scenario
    from .spec import LabSpec

    return {"lab": LabSpec, "scenario": Scenario, "profile": QualificationProfile, "matrix": MatrixSpec,
            "results": RunResults}


# -- the JSON Schemas ---------------------------------------------------------------------
def json_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of a kind of file (the scenario's with what its model checks by hand)."""
    if kind not in FILE_KINDS:
        raise XenlabError(f"no kind of xenlab file is called {kind!r} (kinds: {', '.join(FILE_KINDS)})")
    if kind == "scenario":
        from .scenario.schema import scenario_json_schema

        schema = scenario_json_schema()
    else:
        schema = _models()[kind].model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$comment": f"the {WHAT[kind]} of xenlab, written by `xenlab schema --kind {kind}`: do not edit",
            **schema}


def json_schema_text(kind: str) -> str:
    return json.dumps(json_schema(kind), indent=2, sort_keys=False) + "\n"


# -- which kind a file is -------------------------------------------------------------------
def kind_by_modeline(doc_text: str, path: str) -> FileKind | None:
    """The kind a file's yaml-language-server modeline names, if it has one."""
    for number, line in enumerate(doc_text.splitlines()[:MODELINE_LINES], start=1):
        match = MODELINE.match(line.strip())
        if match is None:
            continue
        name = match.group(1).rsplit("/", 1)[-1]
        for kind in FILE_KINDS:
            if name == schema_file_name(kind):
                return kind  # type: ignore[return-value]
        raise SpecError(path, [(number, (f"the modeline names schema {match.group(1)!r}, which is none of xenlab's "
                                         f"({', '.join(schema_file_name(k) for k in FILE_KINDS)})"))])
    return None


def _marks() -> dict[str, set[str]]:
    """The top-level keys only one kind of YAML file has (`steps`: a scenario)."""
    keys = {kind: {f.alias or name for name, f in model.model_fields.items()}
            for kind, model in _models().items() if kind != "results"}
    return {kind: own - set().union(*(k for other, k in keys.items() if other != kind)) for kind, own in keys.items()}


def kind_by_keys(doc: LocatedDocument) -> FileKind:
    """The kind a YAML file's top-level keys say it is; SpecError when they say two kinds, or none."""
    require_mapping(doc)
    if str(doc.data.get("schema", "")).startswith("xenlab.results/"):  # results JSON under another name
        return "results"
    marks = _marks()
    found = {kind: [k for k in doc.data if k in own] for kind, own in marks.items()}
    found = {kind: keys for kind, keys in found.items() if keys}
    hint = (f"start the file with a modeline naming its kind, e.g. `{modeline('scenario', '../docs/schema')}` "
            f"(kinds: {', '.join(FILE_KINDS)})")
    if len(found) > 1:
        said = "; ".join(f"{', '.join(keys)} (a {WHAT[kind]})" for kind, keys in found.items())
        first = min((k for keys in found.values() for k in keys), key=lambda k: doc.line_of((k,)) or 0)
        raise SpecError(doc.path, [(doc.line_of((first,)), (f"cannot tell which kind of xenlab file this is: its keys "
                                                             f"belong to different kinds: {said}; remove the stray "
                                                             f"keys, or {hint}"))])
    if found:
        return next(iter(found))  # type: ignore[return-value]
    hosts = doc.data.get("hosts")
    if isinstance(hosts, dict) and hosts:  # a lab's hosts are named hosts; a profile's are checks on every host
        from .report.qualification import HostChecks

        return "profile" if set(hosts) <= set(HostChecks.model_fields) else "lab"
    told = "; ".join(f"a {WHAT[kind]} has {' or '.join(sorted(keys)[:3])}" for kind, keys in marks.items())
    raise SpecError(doc.path, [(doc.line_of(()), (f"cannot tell which kind of xenlab file this is: none of its keys "
                                                  f"({', '.join(map(str, doc.data)) or 'none'}) marks one ({told}); "
                                                  f"{hint}"))])


def is_json(path: Path) -> bool:
    return path.suffix == ".json"


def kind_of(path: Path) -> FileKind:
    """Which kind of xenlab file `path` is (a JSON file: results)."""
    if is_json(path):
        return "results"
    doc = load_located(path)  # size, nesting, aliases and encoding refused here, with the line
    with open(path, "rb") as f:
        head = f.read(MODELINE_LINES * 200).decode("utf-8", errors="replace")
    return kind_by_modeline(head, doc.path) or kind_by_keys(doc)


# -- checking a file as its own command would -------------------------------------------------
@dataclass(frozen=True)
class FileCheck:
    path: str
    kind: FileKind
    summary: str  # one line: what the file is and holds

    @property
    def line(self) -> str:
        return f"{self.path}: valid {WHAT[self.kind]} {self.summary}"


def validate_file(name: str, base: Path | None = None) -> FileCheck:
    """Check one file as its command would; SpecError (file:line) when it is bad.

    A lab's name (`xen-pool2`) means its lab file, as `xenlab up` reads it."""
    from .spec import NAME_PATTERN, resolve_lab_path

    path = Path(name)
    if not path.exists() and re.fullmatch(NAME_PATTERN, name):
        path = resolve_lab_path(name)
    if not path.is_file():
        raise SpecError(str(path), [(None, "no such file")])
    kind = kind_of(path)
    return FileCheck(str(name), kind, CHECKS[kind](path, base or Path.cwd()))


def _lab(path: Path, base: Path) -> str:
    from .spec import load_lab

    spec = load_lab(path)
    return f"{spec.name} ({len(spec.hosts)} hosts, backend {spec.backend})"


def _scenario(path: Path, base: Path) -> str:
    from .lab.labs import make_lab, resolve_lab
    from .scenario.model import load_scenario
    from .scenario.session import fit
    from .spec import load_lab

    scenario = load_scenario(path)
    what = f"{scenario.name} ({scenario.planned_steps()} steps)"
    if scenario.lab is None:
        return f"{what}; it names no lab: its hosts are checked against the lab it runs on"
    try:
        ref = resolve_lab(scenario.lab, [base], attach="never")
    except SpecError:
        raise
    except XenlabError as exc:
        return f"{what}; not checked against lab {scenario.lab}: {exc}"
    assert ref.path is not None
    problems = fit(scenario, make_lab(load_lab(ref.path), ref.path))
    if problems:
        raise SpecError(scenario.path, problems)
    return f"{what}, fits lab {ref.name}"


def _profile(path: Path, base: Path) -> str:
    from .report.qualification import load_profile

    profile = load_profile(path)
    suite = "its own suite" if profile.suite is not None else "the default suite"
    return f"{profile.name} ({len(profile.metrics)} metric thresholds; `xenlab qualify` runs {suite})"


def _matrix(path: Path, base: Path) -> str:
    from .matrix import load_matrix

    plan = load_matrix(path)
    axes = " x ".join(f"{axis} [{', '.join(values)}]" for axis, values in plan.axes.items())
    return f"{plan.matrix}: {axes} -> {len(plan.combinations)} labs"


def _results(path: Path, base: Path) -> str:
    from .results import load_results

    results = load_results(path)
    outcomes: dict[str, int] = {}
    for scenario in results.scenarios:
        outcomes[scenario.outcome] = outcomes.get(scenario.outcome, 0) + 1
    told = ", ".join(f"{n} {outcome}" for outcome, n in outcomes.items()) or "none"
    return f"of lab {results.lab or '?'}: {len(results.scenarios)} scenarios ({told})"


CHECKS = {"lab": _lab, "scenario": _scenario, "profile": _profile, "matrix": _matrix, "results": _results}
