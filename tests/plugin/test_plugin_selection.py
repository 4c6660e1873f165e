"""Lab choice and per-worker names, without pytest sessions."""

from __future__ import annotations

import re

import pytest

from xenlab.errors import SpecError, XenlabError
from xenlab.fixtures.selection import LabChoice, requested_ref, resolve_choice, spec_for_worker, worker_lab_name
from xenlab.fixtures.session import LabPolicy
from xenlab.spec import NAME_PATTERN, parse_lab


def test_marker_then_option_then_default():
    assert requested_ref(("xen-pool3",), "xen-pool2") == ("xen-pool3", "marker")
    assert requested_ref(None, "xen-pool2") == ("xen-pool2", "option")
    assert requested_ref((), None, "big") == ("big", "default")
    with pytest.raises(XenlabError, match="one lab name or file"):
        requested_ref(("a", "b"), None)


def test_names_and_files_of_the_same_lab_are_one_choice(tmp_path):
    (tmp_path / "labs").mkdir()
    (tmp_path / "labs" / "p.yaml").write_text("name: p\nhosts:\n  h1:\n")
    by_name = resolve_choice("p", "option", [tmp_path], attach_by_name=False)
    by_file = resolve_choice("labs/p.yaml", "marker", [tmp_path], attach_by_name=False)
    assert by_name == by_file and by_name.path == str((tmp_path / "labs" / "p.yaml").resolve())
    assert len({by_name, by_file}) == 1


def test_a_running_lab_may_be_named_without_a_file_only_when_reusing(tmp_path):
    assert resolve_choice("up-lab", "option", [tmp_path], attach_by_name=True) == LabChoice("up-lab", None)
    with pytest.raises(XenlabError, match="no lab file for 'up-lab'"):
        resolve_choice("up-lab", "option", [tmp_path], attach_by_name=False)


def test_an_invalid_lab_file_names_its_line(tmp_path):
    (tmp_path / "bad.yaml").write_text("name: bad\nhosts:\n  h1:\n    vcpus: 0\n")
    with pytest.raises(SpecError, match=r"bad.yaml:4"):
        resolve_choice("bad.yaml", "option", [tmp_path], attach_by_name=False)


@pytest.mark.parametrize("name,worker,expected", [
    ("xen-pool2", None, "xen-pool2"), ("xen-pool2", "master", "xen-pool2"), ("xen-pool2", "gw0", "xen-pool2-gw0"),
    ("a-very-long-lab-name-xyz", "gw12", "a-very-long-lab-nam-gw12"),
])
def test_worker_lab_names_are_valid_lab_names(name, worker, expected):
    named = worker_lab_name(name, worker)
    assert named == expected and re.fullmatch(NAME_PATTERN, named)


def test_each_worker_spec_is_its_own_lab():
    spec = parse_lab("name: xen-pool2\nhosts:\n  h1:\n  h2:\n")
    gw1 = spec_for_worker(spec, "gw1")
    assert gw1.name == "xen-pool2-gw1" and list(gw1.hosts) == ["h1", "h2"]
    assert spec_for_worker(spec, None) is spec


def test_policy_keeps_only_failed_labs_and_never_brings_down_a_reused_one():
    keep = LabPolicy(keep_on_failure=True)
    assert keep.tied is False and keep.bring_down(failed=False) and not keep.bring_down(failed=True)
    plain = LabPolicy()
    assert plain.tied is True and plain.bring_down(failed=True)
    reuse = LabPolicy(reuse=True)
    assert not reuse.bring_down(failed=False)
