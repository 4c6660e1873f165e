"""A suite run as 2 shards one after the other, merged, equals the same suite run whole.

The suite is a small project of its own: two simulated labs (copies of
labs/xapi-sim-pool3.yaml, no QEMU), a scenario file on each, a plugin test on one of them,
and two tests without a lab (one fails on purpose, so outcomes other than passed are
compared too). Each run is a child `pytest` process, as a CI job would start it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCENARIO = """name: {x}-move
lab: sim-{x}
steps:
  - form_pool: {{members: [h1, h2]}}
  - create_vm: {{name: vm1, host: h1}}
  - migrate: {{vm: vm1, to: h2}}
  - assert:
      - vm_on: {{vm: vm1, host: h2}}
"""

TESTS = '''import pytest


def test_passes():
    assert 1 + 1 == 2


def test_fails_on_purpose():
    assert 1 + 1 == 3


@pytest.mark.lab("sim-b")
def test_sim_b_has_three_hosts(hosts):
    assert len(hosts) == 3
'''


def make_project(root: Path) -> Path:
    (root / "labs").mkdir(parents=True)
    (root / "scenarios").mkdir()
    base = (REPO / "labs/xapi-sim-pool3.yaml").read_text()
    for x in "ab":
        (root / "labs" / f"sim-{x}.yaml").write_text(base.replace("name: xapi-sim-pool3", f"name: sim-{x}"))
        (root / "scenarios" / f"{x}-move.yaml").write_text(SCENARIO.format(x=x))
    (root / "test_suite.py").write_text(TESTS)
    (root / "pytest.ini").write_text("[pytest]\n")
    return root


def child(project: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "XENLAB_RUN_DIR": str(tmp_path / "runs"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("XENLAB_RUN_ID", None)
    env.pop("XENLAB_MACHINE", None)
    return subprocess.run([sys.executable, *args], cwd=project, env=env, capture_output=True, text=True,
                          timeout=600, check=False)


def scenarios(directory: Path) -> list[tuple[str, str, str]]:
    """(lab, name, outcome) of every scenario in a directory's results files."""
    found = []
    for path in sorted(directory.glob("results*.json")):
        found += [(s["lab"], s["name"], s["outcome"]) for s in json.loads(path.read_text())["scenarios"]]
    return sorted(found)


def junit_cases(path: Path) -> list[tuple[str, str, str]]:
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
        cases.append((case.get("classname"), case.get("name"), outcome))
    return sorted(cases)


def test_two_shards_merged_equal_the_whole_run(tmp_path):
    project = make_project(tmp_path / "project")
    whole = child(project, tmp_path, "-m", "pytest", "-p", "no:cacheprovider", "--xenlab-report", "whole")
    assert whole.returncode == 1, whole.stdout + whole.stderr  # the test that fails on purpose
    history = str(tmp_path / "no-history.sqlite")  # the plan from declared and default times, as on a first night
    for k in (1, 2):
        shard = child(project, tmp_path, "-m", "pytest", "-p", "no:cacheprovider", "--xenlab-shard", f"{k}/2",
                      "--xenlab-run-id", "night-1", "--xenlab-machine", f"runner{k}", f"--xenlab-history={history}",
                      "--xenlab-report", f"shard{k}")
        assert shard.returncode in (0, 1), shard.stdout + shard.stderr
        assert f"shard {k}/2:" in shard.stdout and "expected" in shard.stdout
    manifests = [json.loads((project / f"shard{k}" / "shard.json").read_text()) for k in (1, 2)]
    assert all(m["finished"] and m["items"] for m in manifests)  # both machines had work
    for lab in ("sim-a", "sim-b"):  # a lab's items on one machine only
        holders = [m["index"] for m in manifests if f"lab {lab}" in m["groups"]]
        assert len(holders) == 1, (lab, manifests)
    merged = child(project, tmp_path, "-m", "xenlab.cli", "report", "merge", "shard1", "shard2", "--out", "merged")
    assert merged.returncode == 0, merged.stdout + merged.stderr
    out = project / "merged"
    assert {p.name for p in out.iterdir()} >= {"results.json", "junit.xml", "report.html"}

    assert scenarios(out) == scenarios(project / "whole")  # item for item: names, labs, outcomes
    assert scenarios(out) == sorted([("sim-a", "a-move", "passed"), ("sim-b", "b-move", "passed"),
                                     ("sim-b", "test_suite.py::test_sim_b_has_three_hosts[sim-b]", "passed")])
    assert junit_cases(out / "junit.xml") == junit_cases(project / "whole" / "junit.xml")
    assert ("test_suite", "test_fails_on_purpose", "failure") in junit_cases(out / "junit.xml")

    results = json.loads((out / "results.json").read_text())
    assert results["run_id"] == "night-1"
    assert [(s["shard"], s["machine"], s["status"]) for s in results["shards"]] == [
        ("1/2", "runner1", "reported"), ("2/2", "runner2", "reported")]
    ran_on = {s["name"]: (s["shard"], s["machine"]) for s in results["scenarios"]}
    for m in manifests:
        for item in m["items"]:
            name = item.split("::")[-1] if item.startswith("scenarios/") else item
            if name in ran_on:
                assert ran_on[name] == (f"{m['index']}/2", m["machine"])
    html = (out / "report.html").read_text()
    assert "Shards (run night-1)" in html and "runner2" in html

    # the merged whole goes into the history once, and the next night's plan takes its times from there
    db = str(tmp_path / "history.sqlite")
    added = child(project, tmp_path, "-m", "xenlab.cli", "history", "add", "merged/results.json", "--db", db)
    assert added.returncode == 0 and "stored run" in added.stdout, added.stdout + added.stderr
    next_night = child(project, tmp_path, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q",
                       "--xenlab-shard", "1/1", f"--xenlab-history={db}")
    assert next_night.returncode == 0, next_night.stdout + next_night.stderr
    lab_lines = [line for line in next_night.stdout.splitlines() if line.startswith("  lab ")]
    assert len(lab_lines) == 2 and all(line.endswith("(history)") for line in lab_lines), next_night.stdout

    again = child(project, tmp_path, "-m", "xenlab.cli", "report", "merge", "shard1", "shard2", "shard1",
                  "--out", "twice")
    assert again.returncode == 2 and "shard 1/2 of run night-1 was given already" in again.stderr + again.stdout
    assert not (project / "twice").exists()  # refused before anything was written
    alone = child(project, tmp_path, "-m", "xenlab.cli", "report", "merge", "shard2", "--out", "alone")
    assert alone.returncode == 1 and "shard 1/2 missing" in alone.stdout + alone.stderr
    alone_results = json.loads((project / "alone" / "results.json").read_text())
    assert [s["status"] for s in alone_results["shards"]] == ["missing", "reported"]
