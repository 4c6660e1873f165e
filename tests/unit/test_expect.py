"""Expectations: what scenario authors may write, and the verdicts and messages they get."""

import re

import pytest

from xenlab.results import Figure
from xenlab.scenario.expect import ExpectationError, parse_expectation


def verdict(expectation, value, unit="s", name="downtime", note=""):
    return parse_expectation(expectation).evaluate(name, Figure(value=value, unit=unit, note=note))


def test_a_missed_limit_reads_plainly():
    result = verdict("< 2s", 2.4)
    assert not result.passed
    assert result.message == "downtime 2.40 s is not < 2 s"
    assert (result.figure, result.expected, result.measured.value) == ("downtime", "< 2s", 2.4)


def test_a_met_limit_passes():
    result = verdict("< 2s", 1.2)
    assert result.passed and result.message == "downtime 1.20 s is < 2 s"


@pytest.mark.parametrize("text,value,passed", [
    ("<= 1500ms", 1.5, True), ("<= 1500ms", 1.501, False),
    ("< 2m", 100, True), ("< 2 min", 130, False),
    (">= 3s", 3.0, True), ("> 3s", 3.0, False),
    ("== 2s", 2.0, True), ("= 2s", 2.1, False), ("!= 0s", 0.0, False),
    ("between 1s and 3s", 1.0, True), ("between 1s and 3s", 3.0, True), ("between 1s and 3s", 3.01, False),
    ("between 500ms and 1s", 0.4, False),
])
def test_time_limits_in_any_unit(text, value, passed):
    assert verdict(text, value).passed is passed


def test_a_figure_in_milliseconds_is_compared_in_milliseconds():
    result = verdict("< 2s", 1500, unit="ms")
    assert result.passed and result.message == "downtime 1500.00 ms is < 2000 ms"
    assert not verdict("between 1s and 1.2s", 1300, unit="ms").passed


@pytest.mark.parametrize("text,value,passed", [
    ("== 0", 0, True), ("== 0", 1, False), ("0", 0, True), ("<= 50", 50, True), ("<= 50", 51, False),
    ("> 3", 4, True), ("between 2 and 4", 5, False),
])
def test_counts(text, value, passed):
    assert verdict(text, value, unit="count", name="heartbeats_lost").passed is passed


def test_a_count_message_shows_whole_numbers():
    assert verdict("<= 50", 64, unit="count", name="heartbeats_lost").message == "heartbeats_lost 64 is not <= 50"


def test_percentages():
    assert verdict("> 99%", 99.5, unit="%", name="delivered").passed
    result = verdict("> 99%", 98.0, unit="%", name="delivered")
    assert not result.passed and result.message == "delivered 98.0% is not > 99%"


@pytest.mark.parametrize("raw", ["ok", "OK", "true", "yes", True])
def test_yes_expectations(raw):
    assert verdict(raw, 1.0, unit="bool", name="integrity").passed
    result = verdict(raw, 0.0, unit="bool", name="integrity", note="record 3: checksum mismatch")
    assert not result.passed
    assert "record 3: checksum mismatch" in result.message


@pytest.mark.parametrize("raw", ["not ok", "false", "no", False])
def test_no_expectations(raw):
    assert verdict(raw, 0.0, unit="bool", name="integrity").passed
    assert not verdict(raw, 1.0, unit="bool", name="integrity").passed


def test_an_unmeasured_figure_fails_with_its_reason():
    result = verdict("< 2s", None, note="heartbeats stopped and did not resume")
    assert not result.passed
    assert result.message == "downtime was not measured: heartbeats stopped and did not resume"


def test_a_limit_in_the_wrong_unit_fails_instead_of_guessing():
    result = verdict("< 2s", 3, unit="count", name="heartbeats_lost")
    assert not result.passed and "cannot check heartbeats_lost" in result.message
    assert parse_expectation("< 2").unit_problem("s").startswith("is measured in seconds")
    assert parse_expectation("< 2s").unit_problem("ms") == ""


def test_a_bare_number_in_yaml_means_equal():
    expectation = parse_expectation(0)
    assert (expectation.op, expectation.limits[0].value, expectation.dimension) == ("==", 0.0, "count")


@pytest.mark.parametrize("bad", ["<< 2s", "fast", "", "< 2 parsecs", "between 3s and 1s", "between 1s and 3%",
                                 "< s", "between 1s", ["< 2s"]])
def test_unreadable_expectations_are_refused(bad):
    with pytest.raises(ExpectationError):
        parse_expectation(bad)


# -- one bound per accelerator -------------------------------------------------------------

def test_a_per_accelerator_expectation_judges_by_the_labs_accelerator():
    expectation = parse_expectation({"tcg": "< 12s", "kvm": "< 3s"})
    eight = Figure(value=8.0, unit="s")
    on_tcg = expectation.evaluate("downtime", eight, "tcg")
    on_kvm = expectation.evaluate("downtime", eight, "kvm")
    assert on_tcg.passed and "(bound for tcg)" in on_tcg.message
    assert not on_kvm.passed and on_kvm.message == "downtime 8.00 s is not < 3 s (bound for kvm)"
    assert on_kvm.expected == "< 3s (kvm)"
    assert expectation.text == "tcg: < 12s, kvm: < 3s"


def test_other_judges_a_lab_whose_accelerator_is_not_listed_and_without_it_nothing_is_judged():
    with_other = parse_expectation({"tcg": "< 12s", "other": "< 1s"})
    assert not with_other.evaluate("downtime", Figure(value=2.0, unit="s"), "").passed
    without = parse_expectation({"tcg": "< 12s"}).evaluate("downtime", Figure(value=99.0, unit="s"), "kvm")
    # not judged is never passed: the third verdict says so
    assert not without.passed and without.verdict == "not_measured"
    assert "no bound for accelerator kvm" in without.message


@pytest.mark.parametrize("raw, fragment", [
    ({}, "at least one of tcg, kvm, other"),
    ({"arm": "< 1s"}, "'arm' is not an accelerator"),
    ({"tcg": "< 1s", "kvm": "> 99%"}, "same kind of unit"),
    ({"tcg": {"kvm": "< 1s"}}, "not a mapping"),
    ({"tcg": "soon"}, "cannot read expectation 'soon'"),
])
def test_bad_per_accelerator_expectations_say_what_to_write(raw, fragment):
    with pytest.raises(ExpectationError, match=re.escape(fragment)):
        parse_expectation(raw)



def test_a_per_accelerator_expectation_on_a_figure_of_another_unit_is_named_with_its_accelerator():
    expectation = parse_expectation({"tcg": "< 12", "kvm": "< 3"})
    assert expectation.unit_problem("s").startswith("(tcg) is measured in seconds")


def test_a_figure_this_lab_cannot_measure_is_not_measured_never_passed():
    """integrity on a simulated pool: the old verdict said passed ("not measurable here")."""
    unmeasurable = Figure(value=None, unit="bool", note="the simulator keeps no disk records", measurable=False)
    result = parse_expectation("ok").evaluate("integrity", unmeasurable)
    assert result.verdict == "not_measured" and result.passed is False
    assert "not measurable here: the simulator keeps no disk records" in result.message
    missing = parse_expectation("< 2s").evaluate("downtime", Figure(value=None, unit="s", note="no heartbeat"))
    assert missing.verdict == "failed"  # measurable but not measured: the guest went silent, a failure


def test_results_written_before_the_verdict_field_read_their_verdict_from_passed():
    from xenlab.results import ExpectationResult

    old = ExpectationResult.model_validate({"figure": "downtime", "expected": "< 2s", "passed": True,
                                            "measured": {"value": 1.0, "unit": "s"}})
    assert old.verdict == "passed"
    import pydantic
    import pytest

    with pytest.raises(pydantic.ValidationError, match="contradicts"):
        ExpectationResult.model_validate({"figure": "d", "expected": "ok", "passed": True, "verdict": "not_measured",
                                          "measured": {"value": None, "unit": "bool"}})
