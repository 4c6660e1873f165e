"""The lab fixtures in inner pytest sessions: which lab, how many boots, kept or not."""

from __future__ import annotations

LAB_TESTS = '''
import pytest

def test_one(lab):
    print("LAB", lab.name)

def test_two(hosts):
    assert [h.name for h in hosts] == ["h1", "h2"]

def test_three(lab):
    assert lab.name == "xen-pool2"
'''


def test_markers_and_options_are_registered(project):
    markers = project.run("--markers")
    markers.stdout.fnmatch_lines(["@pytest.mark.lab(name_or_file):*", "@pytest.mark.isolated:*"])
    help_text = project.run("--help")
    help_text.stdout.fnmatch_lines(["*--lab=NAME_OR_FILE*", "*--keep-lab*", "*--reuse-lab*", "*--accel=*",
                                    "*--xenlab-report=DIR*"])


def test_collect_only_boots_nothing_and_ids_name_the_lab(project):
    project.pytester.makepyfile(test_in_labs=LAB_TESTS + '''
def test_without_lab():
    pass
''')
    result = project.run("--collect-only", "-q")
    result.stdout.fnmatch_lines(["test_in_labs.py::test_one[[]xen-pool2[]]", "test_in_labs.py::test_without_lab"])
    assert project.log() == []


def test_tests_without_a_lab_never_boot(project):
    project.pytester.makepyfile(test_in_plain="def test_plain():\n    assert True\n")
    project.run().assert_outcomes(passed=1)
    assert project.log() == []


def test_one_boot_shared_by_every_test_of_a_lab(project):
    project.pytester.makepyfile(test_in_labs=LAB_TESTS)
    result = project.run("-s")
    result.assert_outcomes(passed=3)
    assert project.kinds() == [("create", "xen-pool2"), ("up", "xen-pool2"), ("checkpoint_save", "xen-pool2"),
                               ("down", "xen-pool2")]
    up = next(e for e in project.log() if e["event"] == "up")
    assert up["tied"] is True and up["accel"] is None
    result.stdout.fnmatch_lines(["*lab xen-pool2: up in *"])


def test_marker_wins_over_the_lab_option(project):
    project.pytester.makepyfile(test_in_choice='''
import pytest

def test_default_is_the_option(lab):
    assert lab.name == "xen-pool3"

@pytest.mark.lab("xen-pool2")
def test_marker_wins(lab):
    assert lab.name == "xen-pool2"

@pytest.mark.lab("labs/xen-pool3.yaml")
def test_marker_by_file_shares_the_lab_of_the_same_file(lab):
    assert lab.name == "xen-pool3"
''')
    project.run("--lab", "xen-pool3").assert_outcomes(passed=3)
    # tests are grouped by lab: each lab comes up once and goes before the next one
    assert project.kinds("up", "down") == [("up", "xen-pool3"), ("down", "xen-pool3"),
                                           ("up", "xen-pool2"), ("down", "xen-pool2")]


def test_without_option_or_marker_the_default_lab_is_used(project):
    project.pytester.makepyfile(test_in_default="def test_default(lab):\n    assert lab.name == 'xen-pool2'\n")
    project.run().assert_outcomes(passed=1)


def test_a_bad_lab_option_is_a_usage_error_with_file_and_line(project):
    (project.pytester.path / "labs" / "broken.yaml").write_text("name: broken\nhosts:\n  h1:\n    memroy_mib: 3\n")
    project.pytester.makepyfile(test_in_x="def test_x(lab):\n    pass\n")
    result = project.run("--lab", "broken")
    assert result.ret == 4  # pytest's usage error
    result.stderr.fnmatch_lines(["*broken.yaml:4: unknown key 'memroy_mib' in hosts.h1*"])
    assert project.log() == []


def test_an_unknown_marker_lab_is_a_collection_error(project):
    project.pytester.makepyfile(test_in_x='''
import pytest

@pytest.mark.lab("xen-pool9")
def test_x(lab):
    pass
''')
    result = project.run()
    result.stdout.fnmatch_lines(["*no lab file for 'xen-pool9'*"])
    assert result.ret != 0 and project.log() == []


def test_keep_lab_leaves_a_failed_lab_running_untied_and_says_how_to_get_in(project):
    project.pytester.makepyfile(test_in_keep="def test_fails(lab):\n    assert False\n")
    result = project.run("--keep-lab")
    result.assert_outcomes(failed=1)
    up = next(e for e in project.log() if e["event"] == "up")
    assert up["tied"] is False
    assert ("down", "xen-pool2") not in project.kinds()
    result.stdout.fnmatch_lines(["*lab xen-pool2 left running because 1 test(s) failed*xenlab ssh --lab xen-pool2 h1*"])


def test_keep_lab_still_brings_a_passing_lab_down(project):
    project.pytester.makepyfile(test_in_keep="def test_passes(lab):\n    pass\n")
    project.run("--keep-lab").assert_outcomes(passed=1)
    assert project.kinds()[-1] == ("down", "xen-pool2")


def test_without_keep_lab_a_failure_still_brings_the_lab_down(project):
    project.pytester.makepyfile(test_in_fail="def test_fails(lab):\n    assert False\n")
    project.run().assert_outcomes(failed=1)
    assert project.kinds()[-1] == ("down", "xen-pool2")


def test_reuse_lab_attaches_saves_ready_once_and_never_brings_down(project):
    project.pytester.makepyfile(test_in_reuse=LAB_TESTS)
    result = project.run("--reuse-lab", "--lab", "xen-pool2")
    result.assert_outcomes(passed=3)
    kinds = project.kinds()
    assert ("up", "xen-pool2") not in kinds and ("down", "xen-pool2") not in kinds
    assert kinds.count(("checkpoint_save", "xen-pool2")) == 1
    assert ("attach", "xen-pool2") in kinds
    result.stdout.fnmatch_lines(["*lab xen-pool2: reused*"])


def test_accel_option_reaches_bring_up(project):
    project.pytester.makepyfile(test_in_accel="def test_a(lab):\n    pass\n")
    project.run("--accel", "tcg").assert_outcomes(passed=1)
    assert next(e for e in project.log() if e["event"] == "up")["accel"] == "tcg"


def test_isolated_tests_restore_ready_only_after_another_test_ran(project):
    project.pytester.makepyfile(test_in_iso='''
import pytest

@pytest.mark.isolated
def test_first_isolated_needs_no_restore(lab):
    pass

def test_plain(lab):
    pass

@pytest.mark.isolated
def test_isolated_after_a_test(lab):
    pass

@pytest.mark.isolated
def test_isolated_through_a_host(hostA1):
    pass
''')
    project.run().assert_outcomes(passed=4)
    assert project.kinds("checkpoint_save", "checkpoint_restore") == [
        ("checkpoint_save", "xen-pool2"), ("checkpoint_restore", "xen-pool2"), ("checkpoint_restore", "xen-pool2")]


def test_named_hosts_follow_lab_file_order_and_skip_clearly(project):
    project.pytester.makepyfile(test_in_named='''
import pytest

def test_a(hostA1, hostA2):
    assert (hostA1.name, hostA2.name) == ("h1", "h2")

def test_b(hostB1):
    pass

@pytest.mark.lab("xen-pool3")
def test_b_on_three(hostA1, hostB1):
    assert (hostA1.name, hostB1.name) == ("a1", "b1")
''')
    result = project.run("-rs")
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["*hostB1 needs a lab with at least 3 Xen hosts; lab xen-pool2 has 2 (h1, h2)*"])


def test_a_test_that_can_only_skip_boots_nothing(project):
    project.pytester.makepyfile(test_in_named="def test_b(hostB1):\n    pass\n")
    project.run().assert_outcomes(skipped=1)
    assert project.log() == []


def test_k_and_x_select_and_stop_and_the_lab_still_goes(project):
    project.pytester.makepyfile(test_in_kx='''
def test_first_fails(lab):
    assert False

def test_second_fails(lab):
    assert False

def test_other(lab):
    pass
''')
    project.run("-x").assert_outcomes(failed=1)
    assert project.kinds()[-1] == ("down", "xen-pool2")
    project.events.unlink()
    project.run("-k", "other").assert_outcomes(passed=1)
    assert project.kinds("up") == [("up", "xen-pool2")]


def test_a_terminated_session_still_takes_its_lab_down(project):
    """SIGTERM (a cancelled CI job) is handled as Ctrl-C: the session's fixtures are torn
    down, so the lab goes down; the inner session is a real process, signalled for real."""
    project.pytester.makepyfile(test_in_term='''
import os
import signal

def test_uses_the_lab(lab):
    assert lab.name == "xen-pool2"

def test_then_is_terminated(lab):
    os.kill(os.getpid(), signal.SIGTERM)

def test_never_runs(lab):
    raise AssertionError("the session went on after SIGTERM")
''')
    result = project.pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    assert result.ret == 2  # interrupted
    result.stdout.fnmatch_lines(["*stopped by signal 15*"])
    assert project.kinds("up", "down") == [("up", "xen-pool2"), ("down", "xen-pool2")]
    assert "the session went on" not in result.stdout.str()
