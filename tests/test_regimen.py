"""Dose, Regimen and the regimen mini-language."""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from koopnb.errors import RegimenError
from koopnb.regimen import MAX_DOSES, Dose, Regimen

# --- Dose ------------------------------------------------------------------------------------------


def test_dose_defaults_to_a_bolus_into_the_default_compartment_at_time_zero():
    dose = Dose(320)
    assert (dose.amount, dose.time, dose.cmt, dose.duration) == (320.0, 0.0, None, 0.0)
    assert isinstance(dose.amount, float)
    assert dose.rate == math.inf


def test_infusion_rate_is_amount_over_duration():
    assert Dose(1000, duration=2).rate == 500.0


def test_dose_accepts_numpy_numbers_and_stores_floats():
    dose = Dose(np.float32(2.5), np.int64(3))
    assert dose == Dose(2.5, 3.0)
    assert type(dose.time) is float


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"amount": -1}, "amount"),
        ({"amount": math.nan}, "amount"),
        ({"amount": 1, "time": -0.5}, "time"),
        ({"amount": 1, "time": math.inf}, "time"),
        ({"amount": 1, "duration": -1}, "duration"),
        ({"amount": "320"}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": 1, "cmt": 2}, "compartment"),
        ({"amount": 1, "cmt": " "}, "compartment"),
    ],
)
def test_bad_doses_are_rejected_naming_the_field(kwargs, word):
    with pytest.raises(RegimenError, match=word):
        Dose(**kwargs)


def test_dose_is_immutable():
    with pytest.raises(AttributeError):
        Dose(1).amount = 2


# --- Regimen ---------------------------------------------------------------------------------------


def test_regimen_sorts_doses_by_time_stably():
    a, b, c = Dose(1, 5), Dose(2, 0), Dose(3, 5)
    regimen = Regimen([a, b, c])
    assert regimen.doses == (b, a, c)
    assert isinstance(regimen.doses, tuple)
    np.testing.assert_array_equal(regimen.times, [0, 5, 5])
    np.testing.assert_array_equal(regimen.amounts, [2, 1, 3])


def test_regimen_rejects_things_that_are_not_doses():
    with pytest.raises(RegimenError, match="Dose objects"):
        Regimen([320])


def test_repeat_builds_evenly_spaced_doses():
    regimen = Regimen.repeat(500, every=8, count=9, start=2, cmt="depot", duration=0.5, unit="mg")
    assert len(regimen) == 9
    np.testing.assert_allclose(regimen.times, 2 + 8 * np.arange(9), rtol=0, atol=0)
    assert all(d.amount == 500 and d.cmt == "depot" and d.duration == 0.5 for d in regimen)
    assert regimen.unit == "mg"
    assert regimen.end == 2 + 8 * 8 + 0.5


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"count": 0}, "number of doses"),
        ({"count": 2.5}, "number of doses"),
        ({"count": True}, "number of doses"),
        ({"every": 0}, "interval"),
        ({"every": -12}, "interval"),
        ({"start": -1}, "start"),
    ],
)
def test_repeat_rejects_bad_arguments(kwargs, word):
    arguments = {"amount": 100, "every": 12, "count": 3} | kwargs
    with pytest.raises(RegimenError, match=word):
        Regimen.repeat(**arguments)


def test_a_single_repeated_dose_needs_no_interval():
    assert Regimen.repeat(100, every=0, count=1) == Regimen([Dose(100)])


def test_scaled_multiplies_every_amount_and_keeps_the_rest():
    regimen = Regimen.parse("1000 mg iv over 1 h q12h x3")
    doubled = regimen.scaled(2)
    np.testing.assert_array_equal(doubled.amounts, [2000, 2000, 2000])
    np.testing.assert_array_equal(doubled.times, regimen.times)
    assert [d.duration for d in doubled] == [1.0] * 3
    assert doubled.unit == "mg"
    assert regimen.amounts[0] == 1000  # the original is untouched
    with pytest.raises(RegimenError, match="scale factor"):
        regimen.scaled(-1)


def test_shifted_moves_every_dose_and_refuses_negative_times():
    regimen = Regimen.parse("100 mg q12h x2")
    np.testing.assert_array_equal(regimen.shifted(6).times, [6, 18])
    np.testing.assert_array_equal(regimen.shifted(6).shifted(-6).times, [0, 12])
    with pytest.raises(RegimenError, match="time"):
        regimen.shifted(-1)


def test_adding_combines_a_loading_dose_and_maintenance():
    loading = Regimen.parse("1000 mg po")
    maintenance = Regimen.parse("500 mg po q12h x3 at 12 h")
    combined = loading + maintenance
    np.testing.assert_array_equal(combined.times, [0, 12, 24, 36])
    np.testing.assert_array_equal(combined.amounts, [1000, 500, 500, 500])
    assert combined.unit == "mg"
    assert combined == Regimen.parse("1000 mg po; 500 mg po q12h x3 at 12 h")
    assert (Regimen([Dose(1, 5)]) + Dose(2)).times.tolist() == [0, 5]


def test_adding_keeps_a_unit_when_only_one_side_has_one_and_refuses_mixed_units():
    assert (Regimen([Dose(1)]) + Regimen.parse("2 mg")).unit == "mg"
    with pytest.raises(RegimenError, match="'mg' with doses in 'g'"):
        Regimen.parse("2 mg") + Regimen.parse("1 g")


def test_end_includes_the_last_infusion():
    assert Regimen.parse("100 mg iv over 2 h q12h x2").end == 14.0
    assert Regimen().end == 0.0


def test_equality_and_hashing_follow_doses_and_unit():
    assert Regimen.parse("320 mg po q24h x3") == Regimen.repeat(320, 24, 3, unit="mg")
    assert Regimen.parse("320 mg po") != Regimen.parse("320 po")
    assert len({Regimen.parse("320 mg"), Regimen.parse("320 mg po")}) == 1


def test_regimen_is_immutable():
    regimen = Regimen([Dose(1)])
    with pytest.raises(AttributeError):
        regimen.doses = ()
    with pytest.raises(AttributeError):
        regimen.extra = 1


# --- the mini-language -----------------------------------------------------------------------------


def _doses(text):
    return [(d.amount, d.time, d.cmt, d.duration) for d in Regimen.parse(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("320 mg po", [(320, 0, None, 0)]),
        ("320 mg", [(320, 0, None, 0)]),
        ("320", [(320, 0, None, 0)]),
        ("320mg PO", [(320, 0, None, 0)]),
        ("100 MG IV Q12H X2", [(100, 0, "central", 0), (100, 12, "central", 0)]),
        ("2.5 mg iv", [(2.5, 0, "central", 0)]),
        ("1e3 mcg into depot", [(1000, 0, "depot", 0)]),
        ("5 units into 2", [(5, 0, "2", 0)]),
        ("1000 mg iv over 1 h q12h x3", [(1000, t, "central", 1) for t in (0, 12, 24)]),
        ("1000 mg iv over 1h q 12 h x 3", [(1000, t, "central", 1) for t in (0, 12, 24)]),
        ("1000 mg iv over 1 hr q12 x3", [(1000, t, "central", 1) for t in (0, 12, 24)]),
        ("1000 mg iv over 1 hours q12hours x3", [(1000, t, "central", 1) for t in (0, 12, 24)]),
        ("500 mg po q8h x3 at 2 h", [(500, t, None, 0) for t in (2, 10, 18)]),
        ("500 mg po at 2h q8h x3", [(500, t, None, 0) for t in (2, 10, 18)]),
        ("500 mg x3 q8h po", [(500, t, None, 0) for t in (0, 8, 16)]),
        ("320 mg po q24h x1", [(320, 0, None, 0)]),
        ("320 mg po x1", [(320, 0, None, 0)]),
        ("100 mg po q0.5h x2", [(100, 0, None, 0), (100, 0.5, None, 0)]),
        (
            "1000 mg po; 500 mg po q12h x2 at 12 h",
            [(1000, 0, None, 0), (500, 12, None, 0), (500, 24, None, 0)],
        ),
        # Doses at the same time keep a canonical order (duration, compartment, amount), not the order written.
        ("100 mg iv; 50 mg po", [(50, 0, None, 0), (100, 0, "central", 0)]),
        ("320 mg po;", [(320, 0, None, 0)]),
    ],
)
def test_parse_reads_every_form(text, expected):
    assert _doses(text) == expected


@pytest.mark.parametrize(
    ("text", "unit"),
    [
        ("320 mg", "mg"),
        ("1 g iv", "g"),
        ("50 ug", "ug"),
        ("50 µg", "µg"),
        ("2 mmol", "mmol"),
        ("100 IU", "IU"),
        ("4 mg/kg po", "mg/kg"),
        ("30 mg/m2", "mg/m2"),
        ("320 po", None),
        ("1 mg; 2 mg", "mg"),
        ("1 mg; 2", "mg"),
    ],
)
def test_parse_stores_the_amount_unit_without_converting(text, unit):
    regimen = Regimen.parse(text)
    assert regimen.unit == unit
    assert regimen.amounts[0] == float(text.split()[0])


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("320 mg po q24 x", 16, "'x' needs a number of doses (e.g. x3)"),
        ("320 mg po q24h", 11, "say how many doses with x N"),
        ("320 mg po x3", 11, "'x3' needs an interval between doses"),
        ("320 mg po q", 12, "'q' needs an interval in hours"),
        ("320 mg po qh x2", 11, "'qh' is not understood"),
        ("320 mg q0h x2", 8, "'q' needs an interval > 0 h"),
        ("320 mg po x2.5 q12h", 12, "whole number >= 1, not 2.5"),
        ("320 mg po x0 q12h", 12, "whole number >= 1, not 0"),
        ("320 mg over", 12, "'over' needs a duration"),
        ("320 mg at", 10, "'at' needs a start time"),
        ("320 mg over 30 min", 16, "times are in hours ('h'), not 'min'"),
        ("320 mg po q1d x3", 13, "times are in hours ('h'), not 'd'"),
        ("320 mg into", 12, "'into' needs a state name"),
        ("320 mg into at 2 h", 12, "'into' needs a state name"),
        ("320 mg po iv", 11, "'iv' repeats 'po' given at character 8"),
        ("320 mg q12h x2 q6h", 16, "'q' repeats 'q' given at character 8"),
        ("320 mg po daily", 11, "'daily' is not understood (expected po, iv, into, over, q, x, at or ss)"),
        ("320 mg po 5", 11, "'5' is not understood here"),
        ("-320 mg", 1, "unexpected character '-'"),
        ("320 mg, po", 7, "unexpected character ','"),
        ("po 320 mg", 1, "a dose starts with its amount (e.g. 320 mg), not 'po'"),
        ("320 mg;; 5 mg", 8, "a dose starts with its amount (e.g. 320 mg), not nothing"),
        ("", 1, "the regimen is empty"),
        ("   ", 1, "the regimen is empty"),
        ("320 mg; 1 g", 11, "unit 'g' differs from 'mg'; one regimen uses one amount unit"),
        ("1e999 mg", 1, "amount must be a finite number"),
    ],
)
def test_parse_errors_name_the_word_and_its_character(text, position, message):
    with pytest.raises(RegimenError) as caught:
        Regimen.parse(text)
    assert str(caught.value).startswith(f"regimen {text!r} at character {position}: ")
    assert message in str(caught.value)


def test_parse_error_message_is_exactly_one_sentence():
    with pytest.raises(RegimenError) as caught:
        Regimen.parse("320 mg po q24 x")
    assert (
        str(caught.value)
        == "regimen '320 mg po q24 x' at character 16: 'x' needs a number of doses (e.g. x3)"
    )


def test_parse_refuses_text_that_is_not_a_string():
    with pytest.raises(RegimenError, match="must be text"):
        Regimen.parse(320)


# --- writing regimens as text --------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "320 mg po",
        "320 mg po q24h x3",
        "1000 mg iv over 1 h q12h x6",
        "500 mg po q8h x9 at 2 h",
        "1000 mg po; 500 mg po q12h x5 at 12 h",
        "100 mcg into depot q12h x2",
        "100 po; 50 iv over 0.5 h at 1 h",
        "0.1 mg po q0.1h x7 at 0.3 h",
    ],
)
def test_str_is_canonical_and_round_trips(text):
    regimen = Regimen.parse(text)
    assert str(regimen) == text
    assert Regimen.parse(str(regimen)) == regimen
    assert repr(regimen) == f"Regimen.parse({text!r})"


def test_str_groups_interleaved_series_and_breaks_irregular_spacing():
    regimen = Regimen([Dose(100, t) for t in (0, 12, 24, 30)]) + Regimen.repeat(50, 12, 3, cmt="central")
    assert str(regimen) == "100 po q12h x3; 50 iv q12h x3; 100 po at 30 h"
    assert Regimen.parse(str(regimen)) == regimen


def test_str_of_regimens_built_in_python_round_trips():
    regimen = Regimen.repeat(250, every=6, count=4, start=1.5, cmt="gut", duration=0.25, unit="mg")
    assert Regimen.parse(str(regimen)) == regimen
    assert repr(Regimen()) == "Regimen([])"


nice_numbers = st.integers(min_value=0, max_value=10_000).map(lambda n: n / 4)


@given(
    st.lists(
        st.tuples(
            nice_numbers,
            nice_numbers,
            st.sampled_from([None, "central", "depot", "2"]),
            nice_numbers,
            st.integers(min_value=1, max_value=6),
            st.integers(min_value=1, max_value=96).map(lambda n: n / 2),
        ),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from([None, "mg", "mcg/kg"]),
)
def test_any_regimen_of_repeated_series_round_trips_through_text(series, unit):
    regimen = Regimen([], unit)
    for amount, start, cmt, duration, count, every in series:
        regimen = regimen + Regimen.repeat(amount, every, count, start, cmt, duration, unit)
    assert Regimen.parse(str(regimen)) == regimen


# --- steady state, resets and limits (issue 12, issue 14 defect 8) -----------------------------------


def test_steady_state_dose_stores_an_int_and_needs_its_interval():
    dose = Dose(1000, cmt="central", duration=1, steady_state=True, interval=12)
    assert (dose.steady_state, dose.interval) == (1, 12.0) and type(dose.steady_state) is int
    assert Dose(5, steady_state=2, interval=np.float64(8)).steady_state == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steady_state": 1}, "needs its dosing interval"),
        ({"steady_state": 3, "interval": 12}, "must be 0 (none), 1 (SS=1) or 2 (SS=2)"),
        ({"steady_state": 1, "interval": 0}, "must be > 0 h"),
        ({"steady_state": 1, "interval": -2}, "interval must be a finite number >= 0"),
        ({"interval": 12}, "only used by a steady-state dose"),
        ({"steady_state": 1, "interval": 12, "duration": 13}, "would overlap itself"),
    ],
)
def test_bad_steady_state_doses_are_refused_in_one_sentence(kwargs, message):
    with pytest.raises(RegimenError, match=re.escape(message)) as caught:
        Dose(100, **kwargs)
    assert str(caught.value).count(". ") == 0


def test_modelled_duration_is_none_and_round_trips_as_over_model():
    regimen = Regimen([Dose(100, cmt="central", duration=None)])
    assert math.isnan(regimen.doses[0].rate) and regimen.end == 0.0
    assert str(regimen) == "100 iv over model"
    assert Regimen.parse(str(regimen)) == regimen


def test_parse_ss_makes_the_first_dose_of_the_series_a_steady_state_dose():
    (dose,) = Regimen.parse("1000 mg iv over 1 h q12h ss").doses
    assert dose == Dose(1000, 0.0, "central", 1.0, steady_state=1, interval=12.0)
    doses = Regimen.parse("500 mg po q8h x3 at 2 h ss2").doses
    assert [(d.time, d.steady_state, d.interval) for d in doses] == [(2.0, 2, 8.0), (10.0, 0, None), (18.0, 0, None)]


@pytest.mark.parametrize(
    "text",
    [
        "1000 mg iv over 1 h q12h ss",
        "1000 mg iv over 1 h q12h x6 ss",
        "500 mg po q8h x3 at 2 h ss2",
        "250 mg po q12h x5 ss",
        "250 mg po q12h ss; 250 mg po q12h x4 at 24 h",
        "100 mg po q24h x2; reset at 48 h; 100 mg po q12h x3 at 48 h ss",
        "reset at 0 h; 20 mg into depot at 5 h",
    ],
)
def test_steady_state_and_resets_round_trip_through_text(text):
    regimen = Regimen.parse(text)
    assert str(regimen) == text
    assert Regimen.parse(str(regimen)) == regimen


def test_plain_doses_that_continue_a_steady_state_series_are_written_as_one_series():
    regimen = Regimen.parse("250 mg po q12h ss; 250 mg po q12h x4 at 12 h")
    assert str(regimen) == "250 mg po q12h x5 ss"


def test_resets_are_sorted_kept_by_scaling_shifting_and_adding():
    regimen = Regimen([Dose(100, 0.0), Dose(100, 24.0, steady_state=1, interval=12)], "mg", resets=[48, 12, 48])
    assert regimen.resets == (12.0, 48.0)
    assert regimen.scaled(2).resets == (12.0, 48.0) and regimen.scaled(2).doses[1].steady_state == 1
    assert regimen.shifted(1).resets == (13.0, 49.0) and regimen.shifted(1).doses[1].interval == 12.0
    assert (regimen + Regimen(resets=[5])).resets == (5.0, 12.0, 48.0)
    assert regimen != Regimen(regimen.doses, "mg")
    with pytest.raises(RegimenError, match="reset time"):
        Regimen(resets=[-1])
    with pytest.raises(RegimenError, match="sequence of times"):
        Regimen(resets=12)


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("100 mg q12h ss2 ss", 17, "'ss' repeats 'ss2' given at character 13"),
        ("100 mg ss", 8, "'ss' needs the dosing interval"),
        ("reset 4 h", 1, "'reset' needs its time"),
    ],
)
def test_steady_state_parse_errors_name_their_character(text, position, message):
    with pytest.raises(RegimenError, match=re.escape(f"at character {position}: {message}")):
        Regimen.parse(text)


def test_resource_cap_refuses_ten_million_doses_before_building_them_stating_the_limit():
    with pytest.raises(RegimenError, match=r"10000000 doses is more than the 100,000 one regimen may hold"):
        Regimen.parse("100 mg q12h x10000000")
    with pytest.raises(RegimenError, match="100,000"):
        Regimen.repeat(1, every=1, count=MAX_DOSES + 1)
    with pytest.raises(RegimenError, match="at most 100,000 doses"):
        Regimen(Dose(1, float(t)) for t in itertools.count())  # an endless generator is refused, not exhausted


@given(
    st.lists(
        st.tuples(
            nice_numbers,
            nice_numbers,
            st.sampled_from([None, "central", "depot"]),
            st.sampled_from([0.0, 0.5, 1.0, None]),
            st.integers(min_value=1, max_value=4),
            st.integers(min_value=2, max_value=48).map(lambda n: n / 2),
            st.sampled_from([0, 1, 2]),
        ),
        min_size=1,
        max_size=4,
    ),
    st.lists(nice_numbers, max_size=3),
)
def test_any_regimen_with_steady_state_doses_modelled_durations_and_resets_round_trips(series, resets):
    regimen = Regimen([], "mg", resets)
    for amount, start, cmt, duration, count, every, steady in series:
        doses = Regimen.repeat(amount, every, count, start, cmt, duration, "mg").doses
        if steady:
            doses = (Dose(amount, start, cmt, duration, steady_state=steady, interval=every), *doses[1:])
        regimen = regimen + Regimen(doses, "mg")
    assert Regimen.parse(str(regimen)) == regimen
