"""A corpus of hostile and mistaken user files, each run through the real CLI as a subprocess.

Every file under `bad_inputs/` (lab files, scenarios, qualification profiles, results JSON,
history databases) has its expectation beside it in `<file>.expect` (see
`bad_inputs/README.md`); a few inputs too big to commit are generated here. Each must be
refused with exit 2 and no traceback, by a message on one unwrapped line that names the
file, the line where there is one, what is wrong and what to write instead; and nothing
may be started or written (the case's directory, run directory and data directory stay
as they were). The subprocesses run a few at a time, so the corpus costs seconds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from xenlab.results import Figure as ResultFigure
from xenlab.results import RunResults, ScenarioResult

REPO = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parent / "bad_inputs"
SIM_LAB = REPO / "labs" / "xapi-sim-pool3.yaml"
DEFAULT_COMMANDS = {
    "lab": "validate {file}",
    "scenario": "run {file} --lab {sim_lab}",
    "profile": "report {good} --out {out} --profile {file}",
    "results": "report {file} --out {out}",
    "history": "history add {good} --db {file}",
    "matrix": "matrix {file} --available-mib 20000",
}


@dataclass
class Case:
    name: str  # kind/file name
    kind: str  # lab, scenario, profile, results, history, matrix
    content: bytes
    command: str
    line: int | None
    says: list[str] = field(default_factory=list)


def _read_expect(path: Path) -> tuple[str | None, int | None, list[str]]:
    command, line, says = None, None, []
    for raw in path.read_text(encoding="utf-8").splitlines():
        if not raw.strip() or raw.startswith("#"):
            continue
        key, _, value = raw.partition(": ")
        if key == "command":
            command = value
        elif key == "line":
            line = int(value)
        elif key == "says":
            says.append(value)
        else:
            raise ValueError(f"{path}: unknown expectation {raw!r}")
    return command, line, says


def _corpus() -> list[Case]:
    cases = []
    for expect in sorted(CORPUS.glob("*/*.expect")):
        source = expect.with_suffix("")
        kind = source.parent.name
        command, line, says = _read_expect(expect)
        cases.append(Case(f"{kind}/{source.name}", kind, source.read_bytes(), command or DEFAULT_COMMANDS[kind],
                          line, says))
    return cases


def _generated() -> list[Case]:
    """Inputs too big (or too binary) to commit."""
    big = b"name: big\nhosts:\n  h1:\n" + b"# padding to pass the size limit\n" * 70_000
    brackets = b"name: deep\nhosts: " + b"[" * 50_000 + b"]" * 50_000 + b"\n"
    json_brackets = b'{"schema": "xenlab.results/1", "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    huge_int = b'{"schema": "xenlab.results/1", "created_at": 1' + b"0" * 5000 + b"}"
    return [
        Case("lab/2-mib-lab-file.yaml", "lab", big, DEFAULT_COMMANDS["lab"], None,
             ["the file is larger than 1024 KiB (the limit for a xenlab file)"]),
        Case("lab/50000-nested-brackets.yaml", "lab", brackets, DEFAULT_COMMANDS["lab"], 2,
             ["nested more than 40 levels deep (the limit)"]),
        Case("results/50000-nested-brackets.json", "results", json_brackets, DEFAULT_COMMANDS["results"], 1,
             ["nested more than 64 levels deep (the limit)"]),
        Case("results/5000-digit-number.json", "results", huge_int, DEFAULT_COMMANDS["results"], None,
             ["a number of 5001 digits is too long (the limit is 40)"]),
        Case("history/another-programs-database.sqlite", "history", _foreign_sqlite(), DEFAULT_COMMANDS["history"],
             None, ["is an SQLite database of something else (tables: users)", "give another --db"]),
    ]


def _foreign_sqlite() -> bytes:
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"xenlab-foreign-{os.getpid()}.sqlite"
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (name TEXT)")
    data = path.read_bytes()
    path.unlink()
    return data


CASES = _corpus() + _generated()


def _good_results(path: Path) -> Path:
    scenario = ScenarioResult(name="live-migration", file="s.yaml", lab="xen-pool2", toolstack="xl",
                              started_at=1_700_000_000.0, ended_at=1_700_000_060.0, outcome="passed",
                              summary={"downtime_p50": ResultFigure(value=2.0, unit="s")})
    return RunResults(created_at=1_700_000_000.0, lab="xen-pool2", accel="tcg", scenarios=[scenario]).write(path)


def _snapshot(*roots: Path) -> dict[str, str]:
    found = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return found


@dataclass
class Outcome:
    case: Case
    file: Path
    returncode: int
    output: str
    before: dict[str, str]
    after: dict[str, str]


def _run(case: Case, base: Path, good: Path) -> Outcome:
    home = base / case.name.replace("/", "--")
    work, run_dir, data = home / "work", home / "run", home / "data"
    for directory in (work, run_dir, data):
        directory.mkdir(parents=True, mode=0o700)  # a run base must be 0700, or xenlab refuses it
    file = work / Path(case.name).name
    file.write_bytes(case.content)
    values = {"file": file, "good": good, "sim_lab": SIM_LAB, "out": work / "out",
              "db": work / "history.sqlite"}
    argv = [sys.executable, "-m", "xenlab.cli", *[part.format(**values) for part in case.command.split()]]
    env = {**os.environ, "PYTHONPATH": str(REPO), "XENLAB_RUN_DIR": str(run_dir), "XDG_DATA_HOME": str(data),
           "COLUMNS": "80", "NO_COLOR": "1"}
    before = _snapshot(work, run_dir, data)
    done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=120, check=False)
    return Outcome(case, file, done.returncode, done.stdout + done.stderr, before, _snapshot(work, run_dir, data))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, Outcome]:
    base = tmp_path_factory.mktemp("bad-inputs")
    good = _good_results(base / "good-results.json")
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = list(pool.map(lambda case: _run(case, base, good), CASES))
    yield {o.case.name: o for o in done}
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_a_bad_input_is_refused_clearly_and_nothing_happens(outcomes, name):
    outcome = outcomes[name]
    case, output = outcome.case, outcome.output
    assert outcome.returncode == 2, output
    assert "Traceback" not in output, output
    named = f"{outcome.file}:{case.line}:" if case.line else f"{outcome.file}:"
    lines = [line for line in output.splitlines() if named in line]
    assert lines, f"no line names {named!r}:\n{output}"
    for fragment in case.says:  # on the line that names the file: whole, never wrapped
        assert any(fragment in line for line in lines), f"{fragment!r} not on a line naming {named!r}:\n{output}"
    assert outcome.after == outcome.before, "something was started or written"


def test_every_class_and_kind_of_file_is_in_the_corpus():
    classes = {line.removeprefix("# class: ").split(" (")[0] for c in CASES
               for line in c.content.decode("utf-8", "replace").splitlines()[:1] if line.startswith("# class: ")}
    assert {"tracebacks", "hangs and memory blow-ups", "accepted but invalid", "location and wording"} <= classes
    assert {c.kind for c in CASES} == set(DEFAULT_COMMANDS)
    assert len(CASES) >= 50


def test_the_corpus_has_an_expectation_for_every_file():
    inputs = {p for p in CORPUS.glob("*/*") if p.suffix != ".expect"}
    assert inputs == {p.with_suffix("") for p in CORPUS.glob("*/*.expect")}
