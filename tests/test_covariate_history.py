"""Covariates that change over time (NOCB and LOCF), against hand-computed piecewise exponential solutions."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq
from scipy.stats import norm

import koopnb as kn
from koopnb.covariates import CovariateHistory, as_history
from koopnb.errors import DataError, KoopnbError
from koopnb.regimen import Regimen

MODEL = """
CL = 4 [L/h] ~ 0.3
V = 20 [L]
covariate CRCL = 100 [mL/min]
CLi = CL * CRCL / 100
d/dt(central) = -CLi/V*central
conc = central / V
"""

NONLINEAR = MODEL.replace("-CLi/V*central", "-CLi/V*central*(1 + 0*central)")  # same equations, ODE path

ROWS = pd.DataFrame({"TIME": [0.0, 24.0, 48.0, 72.0], "CRCL": [80.0, 100.0, 50.0, 150.0]})
DOSE, TAU, COUNT, V = 100.0, 12.0, 6, 20.0
REGIMEN = Regimen.parse("100 mg iv q12h x6")
DOSE_TIMES = TAU * np.arange(COUNT)


def crcl(t: float, rule: str) -> float:
    """The covariate at t by the rule, written out independently of koopnb.covariates."""
    times, values = ROWS["TIME"].to_numpy(), ROWS["CRCL"].to_numpy()
    if rule == "nocb":  # the first row at or after t; the last row after the last time
        later = np.flatnonzero(times >= t)
        return values[later[0]] if later.size else values[-1]
    earlier = np.flatnonzero(times <= t)  # locf: the last row at or before t; the first row before it
    return values[earlier[-1]] if earlier.size else values[0]


def pieces(rule: str, cl: float, end: float) -> list[tuple[float, float, float]]:
    """(a, b, k) stretches of constant elimination rate, split at every row time and dose."""
    edges = np.unique(np.concatenate([[0.0, end], ROWS["TIME"], DOSE_TIMES]))
    edges = edges[edges <= end]
    return [(a, b, cl * crcl((a + b) / 2, rule) / 100 / V) for a, b in itertools.pairwise(edges)]


def hand(rule: str, cl: float, times, t0: float, t1: float):
    """Concentrations at ``times`` and AUC(t0, t1) of the piecewise exponential solution, by hand."""
    end = max(float(np.max(times)), t1) + 1
    amount, auc, conc = 0.0, 0.0, {}
    for a, b, k in pieces(rule, cl, end):
        amount += DOSE * np.count_nonzero(DOSE_TIMES == a)  # right after the doses at a
        for t in times:
            if a <= t < b:
                conc[t] = amount * np.exp(-k * (t - a)) / V
        lo, hi = max(a, t0), min(b, t1)
        if hi > lo:
            start = amount * np.exp(-k * (lo - a))
            auc += start * -np.expm1(-k * (hi - lo)) / k / V
        amount *= np.exp(-k * (b - a))
    return np.array([conc[t] for t in times]), auc


TIMES = np.array([0.0, 6.0, 23.5, 24.0, 30.0, 47.9, 48.0, 60.0, 71.0, 72.0, 90.0])


@pytest.mark.parametrize("rule", ["nocb", "locf"])
@pytest.mark.parametrize("solver", ["linear", "ode"])
def test_clearance_changing_over_time_gives_the_hand_computed_piecewise_solution(rule, solver):
    model = kn.parse_model(MODEL)
    cl = np.array([2.0, 4.0, 7.0])
    history = CovariateHistory(ROWS, rule)
    rtol = 1e-10 if solver == "linear" else 1e-7
    atol = 0.0 if solver == "linear" else 1e-10  # the ODE solver's absolute tolerance (amounts)
    options = {"solver": solver}
    conc = model.simulate({"CL": cl}, REGIMEN, TIMES, covariates=history, **options)["conc"]
    expected = np.array([hand(rule, c, TIMES, 0, 96)[0] for c in cl])
    np.testing.assert_allclose(conc, expected, rtol=rtol, atol=atol)
    for t0, t1 in [(0, 96), (20, 50), (50, 80)]:
        auc = kn.AUC(t0, t1).evaluate(model, {"CL": cl}, REGIMEN, covariates=history, **options)
        np.testing.assert_allclose(auc, [hand(rule, c, [0.0], t0, t1)[1] for c in cl], rtol=rtol)
    # Troughs and peaks: the elimination rate changes at 24 and 48 h, where doses are given too.
    trough = kn.Cmin(13, 36).evaluate(model, {"CL": cl}, REGIMEN, covariates=history, **options)
    before_doses = [hand(rule, c, [24 - 1e-9, 36 - 1e-9], 0, 1)[0].min() for c in cl]  # just before 24 or 36 h
    np.testing.assert_allclose(trough, before_doses, rtol=max(rtol, 1e-9))
    peak = kn.Cmax(40, 50).evaluate(model, {"CL": cl}, REGIMEN, covariates=history, **options)
    np.testing.assert_allclose(peak, [hand(rule, c, [48.0], 0, 1)[0][0] for c in cl], rtol=rtol)


def test_the_two_rules_differ_exactly_where_they_should():
    model = kn.parse_model(MODEL)
    nocb = model.simulate({}, REGIMEN, TIMES, covariates=CovariateHistory(ROWS, "nocb"))["conc"]
    locf = model.simulate({}, REGIMEN, TIMES, covariates=CovariateHistory(ROWS, "locf"))["conc"]
    assert np.all(nocb[:, 1:] != locf[:, 1:])
    np.testing.assert_array_equal(nocb[:, 0], locf[:, 0])  # the dose at 0 before any elimination


def test_a_dataframe_uses_the_rule_it_was_read_with_and_nocb_by_default():
    model = kn.parse_model(MODEL)
    table = ROWS.copy()
    by_default = model.simulate({}, REGIMEN, TIMES, covariates=table)["conc"]
    np.testing.assert_allclose(by_default[0], hand("nocb", 4.0, TIMES, 0, 1)[0], rtol=1e-10)
    table.attrs["covariate_interpolation"] = "locf"
    read_with = model.simulate({}, REGIMEN, TIMES, covariates=table)["conc"]
    np.testing.assert_allclose(read_with[0], hand("locf", 4.0, TIMES, 0, 1)[0], rtol=1e-10)


def test_a_history_that_never_changes_is_the_same_as_constants():
    model = kn.parse_model(MODEL)
    flat = pd.DataFrame({"TIME": [0.0, 24.0], "CRCL": [60.0, 60.0]})
    assert as_history(flat) == {"CRCL": 60.0}
    np.testing.assert_array_equal(model.simulate({}, REGIMEN, TIMES, covariates=flat)["conc"],
                                  model.simulate({}, REGIMEN, TIMES, covariates={"CRCL": 60.0})["conc"])


# --- every public path uses the history, or refuses it naming the covariate -------------------------


def test_expectation_probability_and_dose_optimisation_take_the_history():
    model = kn.parse_model(MODEL)
    dist = model.prior()
    history = CovariateHistory(ROWS, "nocb")
    metric = kn.AUC(0, 96)

    def auc(cl):
        return hand("nocb", cl, [0.0], 0, 96)[1]

    # Independent reference: Gauss–Hermite over log CL ~ N(log 4, 0.3²) of the hand-computed AUC.
    nodes, weights = np.polynomial.hermite_e.hermegauss(60)
    mean = float(np.sum(weights * [auc(4.0 * np.exp(0.3 * z)) for z in nodes]) / np.sqrt(2 * np.pi))
    found = kn.expectation(metric, model, REGIMEN, dist, rtol=1e-9, covariates=history)
    assert found.value == pytest.approx(mean, rel=1e-8)
    baseline = kn.expectation(metric, model, REGIMEN, dist, rtol=1e-9, covariates={"CRCL": 80.0})
    assert abs(baseline.value / mean - 1) > 0.05  # the first row's value alone would be 9.5 % off

    # P(AUC < 100): AUC falls as CL rises, so P = P(CL > CL*) with AUC(CL*) = 100.
    threshold = brentq(lambda cl: auc(cl) - 100.0, 0.5, 50.0, xtol=1e-14)
    exact = norm.sf(np.log(threshold / 4.0) / 0.3)
    window = kn.Window(metric, None, 100.0)
    assert kn.probability(window, model, REGIMEN, dist, rtol=1e-7, atol=1e-8,
                          covariates=history).value == pytest.approx(exact, abs=1e-6)

    # The dose whose expected AUC is 120: AUC is proportional to the dose.
    result = kn.optimize_dose(model, REGIMEN, dist, kn.Target(metric, 120.0), bounds=(1, 1000),
                              covariates=history, rtol=1e-8)
    assert result.exact_dose == pytest.approx(DOSE * 120.0 / mean, rel=1e-6)  # before rounding to the step


def test_model_arguments_refuse_a_varying_history_naming_the_covariate():
    model = kn.parse_model(MODEL)
    with pytest.raises(KoopnbError, match=r"covariate 'CRCL' changes over time, but Model.arguments takes constant"):
        model.arguments({}, ROWS)


def test_prior_accepts_a_history_and_checks_its_names():
    model = kn.parse_model(MODEL)
    assert repr(model.prior(ROWS)) == repr(model.prior())
    with pytest.raises(KoopnbError, match="'WT' is not a covariate"):
        model.prior(pd.DataFrame({"TIME": [0.0, 1.0], "WT": [70.0, 71.0]}))


def test_bad_histories_are_refused_naming_row_and_column():
    with pytest.raises(DataError, match=r"row 2, column 'TIME': times must not decrease"):
        CovariateHistory(pd.DataFrame({"TIME": [5.0, 1.0], "CRCL": [1.0, 2.0]}))
    with pytest.raises(DataError, match=r"row 2, column 'CRCL': nan is not a finite number"):
        CovariateHistory(pd.DataFrame({"TIME": [0.0, 1.0], "CRCL": [1.0, np.nan]}))
    with pytest.raises(DataError, match="needs a TIME column"):
        CovariateHistory(pd.DataFrame({"CRCL": [1.0]}))
    with pytest.raises(DataError, match="'nocb' or 'locf'"):
        CovariateHistory(ROWS, "linear")
    model = kn.parse_model(MODEL)
    with pytest.raises(KoopnbError, match="'WT' is not a covariate"):
        model.simulate({}, REGIMEN, [1.0], covariates=pd.DataFrame({"TIME": [0.0, 1.0], "WT": [70.0, 71.0]}))


def test_rows_at_one_time_follow_the_rule():
    table = pd.DataFrame({"TIME": [0.0, 10.0, 10.0, 20.0], "CRCL": [1.0, 2.0, 3.0, 4.0]})
    nocb, locf = CovariateHistory(table, "nocb"), CovariateHistory(table, "locf")
    assert nocb.at([5.0, 10.0, 15.0])["CRCL"].tolist() == [2.0, 2.0, 4.0]
    assert locf.at([5.0, 10.0, 15.0])["CRCL"].tolist() == [1.0, 3.0, 3.0]
    assert nocb.change_times().tolist() == [0.0, 10.0] and locf.change_times().tolist() == [10.0, 20.0]


def test_a_steady_state_dose_takes_the_covariates_at_its_record_time():
    model = kn.parse_model(MODEL)
    rows = pd.DataFrame({"TIME": [24.0, 48.0], "CRCL": [50.0, 150.0]})  # NOCB: 50 up to 24 h, 150 after
    regimen = Regimen.parse("100 mg iv q12h at 24 h ss")
    k_before, k_after = 4.0 * 0.5 / V, 4.0 * 1.5 / V
    trough = DOSE * np.exp(-k_before * TAU) / (1 - np.exp(-k_before * TAU))
    conc = model.simulate({}, regimen, [30.0, 40.0], covariates=rows)["conc"]
    np.testing.assert_allclose(conc[0], (trough + DOSE) / V * np.exp(-k_after * np.array([6.0, 16.0])), rtol=1e-12)


def test_bioavailability_of_each_dose_is_the_covariate_at_its_time():
    model = kn.parse_model("""
    ka = 1.2 [1/h]
    CL = 4 [L/h] ~ 0.3
    V = 20 [L]
    covariate FED = 0
    F = 0.5 + 0.3*FED
    d/dt(depot) = -ka*depot
    d/dt(central) = ka*depot - CL/V*central
    conc = central / V
    dose depot bioavailability=F
    """)
    rows = pd.DataFrame({"TIME": [24.0, 48.0], "FED": [0.0, 1.0]})  # NOCB: fasting up to 24 h, fed after
    regimen = Regimen.parse("100 mg po at 24 h; 100 mg po at 36 h")
    cl = np.array([2.0, 4.0])
    auc = kn.AUC(0, 2000).evaluate(model, {"CL": cl}, regimen, covariates=rows)  # the tail after 2000 h is < 1e-30
    np.testing.assert_allclose(auc * V, (0.5 * 100 + 0.8 * 100) / cl * V, rtol=1e-12)  # AUC = Σ F·D / CL


@pytest.mark.parametrize("rule", ["nocb", "locf"])
def test_time_above_a_level_with_a_changing_clearance_equals_the_hand_computed_crossings(rule):
    model = kn.parse_model(MODEL)
    level = 3.0
    history = CovariateHistory(ROWS, rule)
    expected = 0.0
    amount = 0.0
    for a, b, k in pieces(rule, 4.0, 96.0):  # on each stretch the level is crossed at most once, downwards
        amount += DOSE * np.count_nonzero(DOSE_TIMES == a)
        above_for = np.log(amount / (V * level)) / k if amount > V * level else 0.0
        expected += min(above_for, b - a)
        amount *= np.exp(-k * (b - a))
    found = kn.TimeAbove(level, 0, 96).evaluate(model, {}, REGIMEN, covariates=history)
    assert found[0] == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("rule", ["nocb", "locf"])
def test_initial_state_at_the_start_and_at_a_reset_takes_the_covariates_of_that_instant(rule):
    model = kn.parse_model(MODEL + "covariate BASE = 1 [mg/L]\ncentral(0) = BASE*V\n")
    rows = pd.DataFrame({"TIME": [0.0, 24.0, 48.0], "BASE": [1.0, 2.0, 3.0]})
    regimen = Regimen(resets=[24.0])
    k = 4.0 / V
    conc = model.simulate({}, regimen, [6.0, 30.0], covariates=CovariateHistory(rows, rule))["conc"]
    np.testing.assert_allclose(conc[0], [1.0 * np.exp(-k * 6), 2.0 * np.exp(-k * 6)], rtol=1e-12)
