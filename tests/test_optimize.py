"""Dose and regimen optimisation against closed-form optima, brute force and independent Monte Carlo.

Closed forms: with c(t) = D·F/CL exactly (no elimination, c = F·central/CL) and log-normal CL (and F),
D/CL ~ LogNormal(D/m, ω), so P(a ≤ D/CL < b) is maximised at D* = m·sqrt(a·b) with
P* = 2Φ(ln(b/a)/(2ω)) − 1, and E[D/CL] = T at D = T·m·exp(−ω²/2).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from matplotlib.figure import Figure
from scipy.special import ndtr
from shared_models import MICHAELIS_MENTEN

import koopnb as kn
from koopnb.errors import KoopnbError
from koopnb.plotting import plot_probability_vs_dose

# No elimination and c = central/CL: after a bolus D, c(t) = D/CL exactly for every t > 0.
DOSE_OVER_CL = "CL = 2.8 [L/h] ~ 0.3\nd/dt(central) = 0\nc = central/CL\ndose central"
# Two uncertain parameters: c = D·F/CL ~ LogNormal(D·0.8/2.8, sqrt(0.3² + 0.2²)).
DOSE_TIMES_F_OVER_CL = "CL = 2.8 ~ 0.3\nF = 0.8 ~ 0.2\nd/dt(central) = 0\nc = F*central/CL\ndose central"

THEOPHYLLINE = """
ka = 1.5  [1/h] ~ 0.6
CL = 2.8  [L/h] ~ 27%
V  = 31.5 [L]   ~ 0.15
d/dt(depot)   = -ka*depot
d/dt(central) =  ka*depot - CL/V*central
conc = central / V
conc ~ additive(0.7)
dose depot
"""

# Goti et al. 2018 (Ther Drug Monit 40:212), Table 2 typical values (70 kg, CrCL 120 mL/min, no dialysis);
# IIV CV on CL, Vc, Vp as extracted by nlmixr2lib from that table; the paper has no IIV on Q.
VANCOMYCIN = """
CL = 4.5  [L/h] ~ 39.8%
Vc = 58.4 [L]   ~ 81.6%
Vp = 38.4 [L]   ~ 57.1%
Q  = 6.5  [L/h]
d/dt(central)    = -CL/Vc*central - Q/Vc*central + Q/Vp*peripheral
d/dt(peripheral) =  Q/Vc*central - Q/Vp*peripheral
conc = central / Vc
dose central
"""

ONE_BOLUS = kn.Regimen([kn.Dose(100.0)])


def closed_form_chance(dose, low: float, high: float, omega: float = 0.3, scale: float = 2.8):
    """P(low ≤ dose/CL < high) for CL ~ LogNormal(scale, omega)."""
    centre = np.log(np.asarray(dose, dtype=float) / scale)
    return ndtr((centre - math.log(low)) / omega) - ndtr((centre - math.log(high)) / omega)


def multiples_of(result: kn.DoseResult, low: float, high: float) -> np.ndarray:
    return result.step * np.arange(math.ceil(low / result.step - 1e-9), math.floor(high / result.step + 1e-9) + 1)


def within_monte_carlo(result: kn.DoseResult, model, dist, n: int = 400_000, seed: int = 7) -> tuple[float, float]:
    """|certified − Monte Carlo| and the allowance certified.error + 4·(MC standard error)."""
    mc = kn.probability(result.target if not isinstance(result.target, list) else _all(result.target), model,
                        result.regimen, dist, method="montecarlo", n=n, seed=seed)
    return abs(result.objective - mc.value), result.error + 4 * mc.error


def _all(windows):
    from koopnb.expectation.integrand import AllWindows

    return AllWindows(windows)


@pytest.fixture(scope="module")
def dose_over_cl():
    return kn.parse_model(DOSE_OVER_CL)


@pytest.fixture(scope="module")
def theophylline():
    return kn.parse_model(THEOPHYLLINE)


@pytest.fixture(scope="module")
def vancomycin():
    return kn.parse_model(VANCOMYCIN)


# --- closed-form optima -------------------------------------------------------------------------------------

@pytest.mark.parametrize("metric", [kn.Conc(1.0), kn.AUC(0, 1)], ids=["conc", "auc"])
@pytest.mark.parametrize("low, high", [(30.0, 50.0), (10.0, 12.0), (15.0, 60.0)])
def test_window_optimum_matches_closed_form(dose_over_cl, metric, low, high):
    result = kn.optimize_dose(dose_over_cl, ONE_BOLUS, dose_over_cl.prior(), kn.Window(metric, low, high),
                              bounds=(1.0, 1000.0), atol=1e-9)
    omega = 0.3
    best = 2.8 * math.sqrt(low * high)
    chance = 2 * ndtr(math.log(high / low) / (2 * omega)) - 1
    assert result.feasible and result.converged and result.message == ""
    assert result.exact_dose == pytest.approx(best, rel=1e-5)
    # the answer is the best multiple of the default step (5: 5 % of the current 100), by the closed form
    assert result.step == 5.0 and result.dose % 5.0 == 0
    doses = multiples_of(result, 1.0, 1000.0)
    assert result.dose == doses[np.argmax(closed_form_chance(doses, low, high))]
    at_dose = closed_form_chance(result.dose, low, high)
    assert abs(result.objective - at_dose) <= 1e-6
    assert abs(result.objective - at_dose) <= result.error + 1e-12
    assert chance - 0.02 < result.objective <= chance
    assert result.regimen.doses[0].amount == result.dose


def test_near_certain_window(dose_over_cl):
    """P* = 1 − 4e−6: the maximum is so flat that the dose is determined only up to where the search's tails
    (1e−4) reach, but the probability it achieves is optimal to well within 1e−6."""
    result = kn.optimize_dose(dose_over_cl, ONE_BOLUS, dose_over_cl.prior(), kn.Window(kn.Conc(1.0), 5.0, 80.0),
                              bounds=(1.0, 1000.0), atol=1e-9)
    chance = 2 * ndtr(math.log(16.0) / 0.6) - 1
    at_dose = closed_form_chance(result.dose, 5.0, 80.0)
    doses = multiples_of(result, 1.0, 1000.0)
    assert result.dose == doses[np.argmax(closed_form_chance(doses, 5.0, 80.0))] == 55.0
    assert at_dose >= chance - 2e-7  # 55 rather than 56.2: a loss of 1.5e-7
    assert abs(result.objective - at_dose) <= result.error + 1e-12
    assert result.exact_dose == pytest.approx(56.0, rel=0.01)


def test_window_optimum_in_two_dimensions():
    model = kn.parse_model(DOSE_TIMES_F_OVER_CL)
    omega = math.hypot(0.3, 0.2)
    result = kn.optimize_dose(model, ONE_BOLUS, model.prior(), kn.Window(kn.Conc(1.0), 20.0, 40.0),
                              bounds=(10.0, 500.0), atol=1e-9)
    assert result.exact_dose == pytest.approx(2.8 / 0.8 * math.sqrt(20 * 40), rel=1e-5)
    assert result.dose == 100.0  # the multiple of 5 nearest 98.99, and the better one by the closed form
    assert abs(result.objective - closed_form_chance(100.0, 20.0, 40.0, omega, 2.8 / 0.8)) <= 1e-6


@pytest.mark.parametrize("value", [25.0, 40.0, 120.0])
def test_target_dose_matches_closed_form(dose_over_cl, value):
    result = kn.optimize_dose(dose_over_cl, ONE_BOLUS, dose_over_cl.prior(), kn.Target(kn.AUC(0, 1), value),
                              bounds=(1.0, 1000.0), rtol=1e-9, atol=1e-12)
    assert result.feasible and result.converged
    exact = value * 2.8 * math.exp(-0.3**2 / 2)
    assert result.exact_dose == pytest.approx(exact, rel=1e-7)
    assert result.dose == result.step * round(exact / result.step)  # E is linear in the dose: the nearest multiple
    assert result.objective == pytest.approx(value * result.dose / exact, rel=1e-7)


def test_target_dose_in_two_dimensions():
    model = kn.parse_model(DOSE_TIMES_F_OVER_CL)
    result = kn.optimize_dose(model, ONE_BOLUS, model.prior(), kn.Target(kn.Conc(2.0), 30.0), bounds=(1.0, 500.0),
                              rtol=1e-9, atol=1e-12)
    assert result.exact_dose == pytest.approx(30.0 * 2.8 / 0.8 * math.exp(-(0.3**2 + 0.2**2) / 2), rel=1e-7)


def test_search_uses_one_table_for_a_linear_model(dose_over_cl):
    """Every dose of a linear model is read off one table at the reference dose: the search costs the same
    few evaluations whatever the grid."""
    window = kn.Window(kn.Conc(1.0), 30.0, 50.0)
    coarse = kn.optimize_dose(dose_over_cl, ONE_BOLUS, dose_over_cl.prior(), window, bounds=(1.0, 1000.0), grid=21)
    fine = kn.optimize_dose(dose_over_cl, ONE_BOLUS, dose_over_cl.prior(), window, bounds=(1.0, 1000.0), grid=801)
    assert coarse.search_evals == fine.search_evals < 100
    assert fine.dose == pytest.approx(coarse.dose, rel=1e-6)
    assert fine.n_evals == fine.search_evals + fine.certified.n_evals + fine.current.n_evals


# --- discrete steps against brute force ---------------------------------------------------------------------

def test_step_matches_brute_force(theophylline):
    regimen = kn.Regimen([kn.Dose(320.0)])
    dist = theophylline.prior()
    window = kn.Window(kn.AUC(0, 24), 80.0, 120.0)
    result = kn.optimize_dose(theophylline, regimen, dist, window, bounds=(100.0, 800.0), step=25.0, atol=1e-7)
    doses = np.arange(100.0, 800.1, 25.0)
    brute = np.array([kn.probability(window, theophylline, regimen.scaled(d / 320.0), dist, atol=1e-7).value
                      for d in doses])
    assert result.dose == doses[np.argmax(brute)]
    assert result.dose % 25.0 == 0
    assert abs(result.objective - brute.max()) <= 1e-6
    # the continuous optimum lies between the best multiple's neighbours
    continuous = kn.optimize_dose(theophylline, regimen, dist, window, bounds=(100.0, 800.0))
    assert abs(continuous.dose - result.dose) < 25.0
    assert continuous.objective >= result.objective - continuous.error - result.error


def test_step_for_a_target(dose_over_cl):
    result = kn.optimize_dose(dose_over_cl, ONE_BOLUS, dose_over_cl.prior(), kn.Target(kn.AUC(0, 1), 40.0),
                              bounds=(10.0, 300.0), step=10.0)
    exact = 40.0 * 2.8 * math.exp(-0.045)
    assert result.dose == 10.0 * round(exact / 10.0)


# --- Monte Carlo objective ----------------------------------------------------------------------------------

def test_monte_carlo_search_lands_near_the_koopman_optimum(theophylline):
    regimen = kn.Regimen([kn.Dose(320.0)])
    window = kn.Window(kn.AUC(0, 24), 80.0, 120.0)
    koopman = kn.optimize_dose(theophylline, regimen, theophylline.prior(), window, bounds=(50.0, 1000.0))
    carlo = kn.optimize_dose(theophylline, regimen, theophylline.prior(), window, bounds=(50.0, 1000.0),
                             method="montecarlo", n=20_000, seed=3)
    assert carlo.method == "montecarlo" and carlo.search_evals == 20_000  # one set of draws serves every dose
    assert carlo.dose == pytest.approx(koopman.dose, rel=0.05)
    # both are certified by the same full-accuracy Koopman probability; the Koopman optimum is no worse
    assert koopman.objective >= carlo.objective - koopman.error - carlo.error
    again = kn.optimize_dose(theophylline, regimen, theophylline.prior(), window, bounds=(50.0, 1000.0),
                             method="montecarlo", n=20_000, seed=3)
    assert again.dose == carlo.dose  # fixed seed, common random numbers: reproducible


def test_certified_probability_agrees_with_monte_carlo(theophylline):
    result = kn.optimize_dose(theophylline, kn.Regimen([kn.Dose(320.0)]), theophylline.prior(),
                              kn.Window(kn.AUC(0, 24), 80.0, 120.0), bounds=(50.0, 1000.0))
    difference, allowance = within_monte_carlo(result, theophylline, theophylline.prior())
    assert difference <= allowance


# --- nonlinear model ----------------------------------------------------------------------------------------

def test_michaelis_menten_window():
    model = kn.parse_model(MICHAELIS_MENTEN)
    dist = model.prior()
    regimen = kn.Regimen([kn.Dose(600.0)])
    window = kn.Window(kn.AUC(0, 24), 150.0, 250.0)
    result = kn.optimize_dose(model, regimen, dist, window, bounds=(200.0, 1500.0), grid=15)
    assert result.feasible and result.converged
    # per-dose tables: the search cost grows with the doses looked at (15 grid doses plus the polish)
    assert result.search_evals > 15 * 33
    difference, allowance = within_monte_carlo(result, model, dist, n=200_000)
    assert difference <= allowance
    # a maximum: 3% either side is worse, by more than the certification errors
    best = kn.probability(window, model, regimen.scaled(result.exact_dose / 600.0), dist, atol=1e-7)
    for factor in (0.97, 1.03):
        nearby = kn.probability(window, model, regimen.scaled(result.exact_dose * factor / 600.0), dist, atol=1e-7)
        assert nearby.value < best.value - best.error - nearby.error
    # the answer is the better of the two multiples of the step (25) around it
    assert result.step == 25.0 and abs(result.dose - result.exact_dose) < 25.0 and result.dose % 25.0 == 0
    other = result.dose + (25.0 if result.dose < result.exact_dose else -25.0)
    neighbour = kn.probability(window, model, regimen.scaled(other / 600.0), dist, atol=1e-7)
    assert result.objective >= neighbour.value - neighbour.error - result.error


def test_michaelis_menten_target():
    model = kn.parse_model(MICHAELIS_MENTEN)
    dist = model.prior()
    target = kn.Target(kn.AUC(0, 24), 200.0)
    result = kn.optimize_dose(model, kn.Regimen([kn.Dose(600.0)]), dist, target, bounds=(200.0, 1500.0),
                              rtol=1e-6)
    assert result.feasible
    regimen = kn.Regimen([kn.Dose(result.exact_dose)])
    at_exact = kn.expectation(target.metric, model, regimen, dist, rtol=1e-6)
    assert abs(at_exact.value - 200.0) <= 2 * at_exact.error + 1e-5 * 200
    mc = kn.expectation(target.metric, model, regimen, dist, method="montecarlo", n=100_000, seed=5)
    assert abs(mc.value - 200.0) <= 4 * mc.error + at_exact.error
    # the practical dose is the multiple of 25 whose expected AUC is nearer 200 than its neighbour's
    assert result.dose % 25.0 == 0 and abs(result.dose - result.exact_dose) < 25.0
    other = result.dose + (25.0 if result.dose < result.exact_dose else -25.0)
    neighbour = kn.expectation(target.metric, model, kn.Regimen([kn.Dose(other)]), dist, rtol=1e-6)
    assert abs(result.objective - 200.0) < abs(neighbour.value - 200.0)


# --- infeasible targets and bad input -----------------------------------------------------------------------

def test_window_out_of_reach_says_so(dose_over_cl):
    result = kn.optimize_dose(dose_over_cl, ONE_BOLUS, dose_over_cl.prior(), kn.Window(kn.Conc(1.0), 1000.0, 2000.0),
                              bounds=(1.0, 20.0))
    assert not result.feasible
    assert result.objective < 1e-3
    assert "no dose between 1 and 20" in result.message
    assert result.message in str(result)
    assert result.to_dict()["feasible"] is False


@pytest.mark.parametrize("value, edge", [(1000.0, 20.0), (0.01, 1.0)])
def test_target_out_of_reach_says_so(dose_over_cl, value, edge):
    result = kn.optimize_dose(dose_over_cl, ONE_BOLUS, dose_over_cl.prior(), kn.Target(kn.Conc(1.0), value),
                              bounds=(1.0, 20.0))
    assert not result.feasible
    assert result.dose == edge  # the closest the bounds allow, and said plainly
    assert "no dose between 1 and 20" in result.message and "expected value ranges" in result.message


@pytest.mark.parametrize("bounds, step, target, words", [
    ((10.0, 5.0), None, "window", "0 < low < high"),
    ((0.0, 5.0), None, "window", "0 < low < high"),
    ((1.0, math.inf), None, "window", "0 < low < high"),
    ("wide", None, "window", "bounds must be two doses"),
    ((1.0, 5.0), -1.0, "window", "step must be a positive number"),
    ((1.0, 5.0), 10.0, "window", "no multiple of 10"),
    ((1.0, 5.0), None, "auc(0, 24)", "the target must be a Window"),
    ((1.0, 5.0), None, [], "the target must be a Window"),
])
def test_bad_input_raises_one_sentence(dose_over_cl, bounds, step, target, words):
    if target == "window":
        target = kn.Window(kn.Conc(1.0), 30.0, 50.0)
    with pytest.raises(KoopnbError) as raised:
        kn.optimize_dose(dose_over_cl, ONE_BOLUS, dose_over_cl.prior(), target, bounds=bounds, step=step)
    message = str(raised.value)
    assert words in message
    assert "\n" not in message and message.count(". ") == 0


def test_bad_regimen_and_method(dose_over_cl):
    window = kn.Window(kn.Conc(1.0), 30.0, 50.0)
    with pytest.raises(KoopnbError, match="at least one dose"):
        kn.optimize_dose(dose_over_cl, kn.Regimen([]), dose_over_cl.prior(), window, bounds=(1.0, 5.0))
    with pytest.raises(KoopnbError, match="unknown method"):
        kn.optimize_dose(dose_over_cl, ONE_BOLUS, dose_over_cl.prior(), window, bounds=(1.0, 5.0), method="grid")
    with pytest.raises(KoopnbError, match="at least one amount"):
        kn.optimize_regimen(dose_over_cl, dose_over_cl.prior(), window, amounts=[], intervals=[12])
    with pytest.raises(KoopnbError, match="must be positive"):
        kn.optimize_regimen(dose_over_cl, dose_over_cl.prior(), window, amounts=[-5], intervals=[12])


# --- regimens: vancomycin ------------------------------------------------------------------------------------

VANCOMYCIN_TARGET = [kn.Window(kn.AUC(0, 24), 400.0, 600.0), kn.Window(kn.Conc(24), None, 20.0)]
"""AUC over a day at steady state in 400–600 mg·h/L and the trough before the next dose below 20 mg/L."""


@pytest.fixture(scope="module")
def vancomycin_table(vancomycin):
    return kn.optimize_regimen(vancomycin, vancomycin.prior(), VANCOMYCIN_TARGET, amounts=np.arange(500, 2001, 250),
                               intervals=(8, 12, 24), duration=1.0, steady_state_after=96, unit="mg", atol=1e-4)


def test_vancomycin_table_is_ranked(vancomycin_table):
    table = vancomycin_table
    assert len(table) == 7 * 3
    assert list(table.columns) == ["regimen", "loading", "amount", "interval", "duration", "daily", "objective",
                                   "error", "converged", "n_evals"]
    assert np.all(np.diff(table["objective"]) <= 0)
    assert table["converged"].all()
    assert np.all((table["objective"] >= 0) & (table["objective"] <= 1))
    assert "mg" in table["regimen"][0]


def test_longer_intervals_need_larger_doses(vancomycin_table):
    table = vancomycin_table
    best = {interval: table[table["interval"] == interval].iloc[0]["amount"] for interval in (8, 12, 24)}
    assert best[8] < best[12] < best[24]


def test_chosen_vancomycin_regimen_agrees_with_monte_carlo(vancomycin, vancomycin_table):
    top = vancomycin_table.iloc[0]
    interval = float(top["interval"])
    count = math.ceil(120 / interval)
    regimen = kn.Regimen.repeat(float(top["amount"]), every=interval, count=count, duration=1.0)
    start = math.ceil(96 / interval) * interval  # the first dosing interval starting at or after 96 h
    event = _all([kn.Window(kn.AUC(start, start + 24), 400.0, 600.0), kn.Window(kn.Conc(start + 24), None, 20.0)])
    mc = kn.probability(event, vancomycin, regimen, vancomycin.prior(), method="montecarlo", n=400_000, seed=11)
    assert abs(top["objective"] - mc.value) <= top["error"] + 4 * mc.error


def test_loading_dose_and_steady_state(vancomycin):
    window = kn.Window(kn.AUC(0, 24), 400.0, 600.0)
    table = kn.optimize_regimen(vancomycin, vancomycin.prior(), window, amounts=[1000], intervals=[12], duration=1.0,
                                loading=(0, 2000), atol=1e-6)
    loaded = table[table["loading"] == 2000].iloc[0]
    regimen = kn.Regimen([kn.Dose(2000.0, 0.0, duration=1.0)]) + kn.Regimen.repeat(1000.0, every=12, count=2,
                                                                                     start=12, duration=1.0)
    direct = kn.probability(window, vancomycin, regimen, vancomycin.prior(), atol=1e-6)
    assert abs(loaded["objective"] - direct.value) <= loaded["error"] + direct.error
    plain = table[table["loading"] == 0].iloc[0]
    assert loaded["objective"] > plain["objective"]  # a first day without loading falls short of the window

    steady = kn.optimize_regimen(vancomycin, vancomycin.prior(), window, amounts=[1000], intervals=[12],
                                 duration=1.0, steady_state_after=100, atol=1e-6).iloc[0]
    regimen = kn.Regimen.repeat(1000.0, every=12, count=11, duration=1.0)  # doses up to 120 h cover 108..132
    direct = kn.probability(kn.Window(kn.AUC(108, 132), 400.0, 600.0), vancomycin, regimen, vancomycin.prior(),
                            atol=1e-6)
    assert abs(steady["objective"] - direct.value) <= steady["error"] + direct.error
    assert steady["objective"] > plain["objective"]


def test_regimen_for_a_target(vancomycin):
    target = kn.Target(kn.AUC(0, 24), 500.0)
    table = kn.optimize_regimen(vancomycin, vancomycin.prior(), target, amounts=[500, 1000, 1500], intervals=[12, 24],
                                duration=1.0, steady_state_after=1500)
    assert np.all(np.diff(np.abs(table["objective"] - 500.0)) >= 0)
    # At steady state the daily AUC is the daily dose over CL: E = dose·24/interval · E[1/CL].  Some patients
    # (large Vc, small CL) have terminal half-lives near 100 h, so steady state is taken after 1500 h.
    mean_inverse_cl = math.exp(math.log(1 + 0.398**2) / 2) / 4.5
    for _, row in table.iterrows():
        expected = row["amount"] * 24 / row["interval"] * mean_inverse_cl
        assert row["objective"] == pytest.approx(expected, rel=1e-3)


# --- the result object and its plot -------------------------------------------------------------------------

def test_result_summary_and_plot(theophylline):
    result = kn.optimize_dose(theophylline, kn.Regimen([kn.Dose(320.0)], unit="mg"), theophylline.prior(),
                              kn.Window(kn.AUC(0, 24), 80.0, 120.0), bounds=(50.0, 1000.0), grid=201)
    summary = result.to_dict()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["unit"] == "mg" and summary["method"] == "koopman"
    assert "mg" in str(result) and "converged" in str(result)
    assert result.curve_doses.shape == result.curve_values.shape == (201,)
    assert np.interp(result.dose, result.curve_doses, result.curve_values) == pytest.approx(result.objective, abs=1e-3)
    assert result.curve_values.max() >= result.objective - 1e-3
    figure = plot_probability_vs_dose(result)
    assert isinstance(figure, Figure)
    ax = figure.axes[0]
    x, y = ax.lines[0].get_data()
    np.testing.assert_array_equal(x, result.curve_doses)
    np.testing.assert_array_equal(y, result.curve_values)
    assert "mg" in ax.get_xlabel()
    assert any(np.allclose(line.get_xdata(), result.dose) for line in ax.lines[1:])


def test_plot_for_a_target_on_given_axes(dose_over_cl):
    result = kn.optimize_dose(dose_over_cl, ONE_BOLUS, dose_over_cl.prior(), kn.Target(kn.Conc(1.0), 40.0),
                              bounds=(1.0, 300.0))
    figure = Figure()
    ax = figure.subplots()
    assert plot_probability_vs_dose(result, ax=ax) is figure
    assert ax.get_ylabel().startswith("E[")
    assert any(np.allclose(line.get_ydata(), 40.0) for line in ax.lines[1:])


# --- wide bounds, and limits ----------------------------------------------------------------------------------

@pytest.mark.parametrize("high", [1e5, 1e6, 1e9])
def test_wide_bounds_find_the_same_dose(theophylline, high):
    """The search runs in log-dose: a million-fold range cannot step over a window a few percent wide in dose."""
    regimen, window = kn.Regimen([kn.Dose(320.0)]), kn.Window(kn.AUC(0, 24), 80.0, 120.0)
    narrow = kn.optimize_dose(theophylline, regimen, theophylline.prior(), window, bounds=(100.0, 1000.0))
    wide = kn.optimize_dose(theophylline, regimen, theophylline.prior(), window, bounds=(1.0, high))
    assert wide.feasible and wide.exact_dose == pytest.approx(narrow.exact_dose, rel=1e-4)


def test_wide_bounds_find_a_narrow_window_of_a_nonlinear_model():
    """Michaelis–Menten (each dose simulated on its own): a window reached only near one dose in 1..1e6 mg."""
    model = kn.parse_model(MICHAELIS_MENTEN)
    regimen, window = kn.Regimen([kn.Dose(600.0)]), kn.Window(kn.AUC(0, 24), 150.0, 250.0)
    narrow = kn.optimize_dose(model, regimen, model.prior(), window, bounds=(200.0, 1500.0))
    wide = kn.optimize_dose(model, regimen, model.prior(), window, bounds=(1.0, 1e6))
    assert wide.feasible and wide.exact_dose == pytest.approx(narrow.exact_dose, rel=1e-3)


def test_monte_carlo_search_on_sorted_draws_equals_the_dose_by_dose_count(theophylline):
    regimen, window = kn.Regimen([kn.Dose(320.0)]), kn.Window(kn.AUC(0, 24), 80.0, 120.0)
    result = kn.optimize_dose(theophylline, regimen, theophylline.prior(), window, bounds=(50.0, 1000.0),
                              method="montecarlo", n=5000, seed=4)
    auc = kn.AUC(0, 24).evaluate(theophylline, theophylline.prior().sample(5000, seed=4), regimen)
    by_dose = np.array([window.indicator(auc * d / 320.0).mean() for d in result.curve_doses])
    np.testing.assert_array_equal(result.curve_values, by_dose)


@pytest.mark.parametrize("bounds, step, grid, words", [
    ((1.0, 1e5), 1e-6, None, "more than 100,000; use a larger step"),
    ((1.0, 1e5), 0.5, None, "more than 100,000"),
    ((1e-9, 1e6), None, None, r"span more than 10\^12"),
    ((1.0, 100.0), None, 10**7, "grid must be a whole number of doses from 2 to 100,000"),
    ((1.0, 100.0), None, 1, "grid must be a whole number"),
    ((1.0, 100.0), "5", None, "step must be a positive number"),
])
def test_search_size_limits(dose_over_cl, bounds, step, grid, words):
    window = kn.Window(kn.Conc(1.0), 30.0, 50.0)
    with pytest.raises(KoopnbError, match=words):
        kn.optimize_dose(dose_over_cl, ONE_BOLUS, dose_over_cl.prior(), window, bounds=bounds, step=step, grid=grid)
