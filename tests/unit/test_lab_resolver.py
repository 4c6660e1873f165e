"""The one lab resolver: names and files, and how running labs count for each face."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xenlab.errors import SpecError, XenlabError
from xenlab.lab import LabRef, resolve_lab
from xenlab.lab.rundir import RunDir

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("XENLAB_RUN_DIR", str(tmp_path / "runs"))


def pretend_up(name: str) -> None:
    """A run directory with state is what `running_labs` sees (no process is needed for that)."""
    run = RunDir.for_lab(name)
    run.root.mkdir(parents=True)
    (run.root / "state.json").write_text(json.dumps({"lab": name}))


def test_a_name_is_the_file_under_labs_of_the_first_base_that_has_it(tmp_path):
    ref = resolve_lab("xen-pool2", [tmp_path, REPO])
    assert ref == LabRef("xen-pool2", str(REPO / "labs/xen-pool2.yaml"), running=False)
    assert resolve_lab("labs/xapi-sim-pool3.yaml", [REPO]).name == "xapi-sim-pool3"


def test_running_labs_count_as_each_face_needs():
    pretend_up("xen-pool2")
    assert resolve_lab("xen-pool2", [REPO], attach="first") == LabRef("xen-pool2", None, True)  # xenlab run
    assert resolve_lab("xen-pool2", [REPO], attach="never").running is False  # pytest brings its own
    assert resolve_lab("xen-pool2", [REPO], attach="last").path is not None  # --reuse-lab: the file, attached
    assert resolve_lab(str(REPO / "labs/xen-pool2.yaml"), attach="only").running  # xenlab ssh: a file names it
    with pytest.raises(XenlabError, match="lab 'other' is not up"):
        resolve_lab("other", [REPO], attach="only")
    assert resolve_lab("other", [REPO], attach="last") == LabRef("other", None, False)  # attached when needed


def test_a_sim_lab_is_never_running_and_a_bad_reference_is_refused_clearly(tmp_path):
    assert not resolve_lab(str(REPO / "labs/xapi-sim-pool3.yaml")).running
    with pytest.raises(XenlabError, match="no lab file for 'nowhere'"):
        resolve_lab("nowhere", [tmp_path])
    with pytest.raises(XenlabError, match="neither a lab name"):
        resolve_lab("Bad Name", [tmp_path])
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nhosts:\n  h1:\n    vcpus: 0\n")
    with pytest.raises(SpecError, match=r"bad.yaml:4"):
        resolve_lab(str(bad))
