"""Exposure metrics against closed forms, scipy quad and brentq, and the metric mini-language."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad, solve_ivp
from scipy.optimize import brentq

import koopnb as kn
from koopnb.errors import MetricError
from koopnb.metrics import parse_bounds, parse_metric, parse_window

ORAL = """
ka = 1.5  [1/h] ~ 0.6
CL = 2.8  [L/h] ~ 27%
V  = 31.5 [L]   ~ 0.15
d/dt(depot)   = -ka*depot
d/dt(central) =  ka*depot - CL/V*central
conc = central / V
conc ~ additive(0.7)
dose depot
"""

IV = """
CL = 4 [L/h] ~ 0.3
V = 20 [L] ~ 0.2
d/dt(central) = -CL/V*central
conc = central / V
dose central
"""

MM = """
Vmax = 10 [mg/h] ~ 0.3
Km = 2 [mg/L] ~ 0.3
V = 30 [L] ~ 0.2
d/dt(central) = -Vmax*(central/V)/(Km + central/V)
conc = central / V
dose central
"""

KA = np.array([1.5, 0.4, 3.0, 0.9])
CL = np.array([2.8, 1.5, 6.0, 3.3])
V = np.array([31.5, 20.0, 45.0, 25.0])
PARAMS = {"ka": KA, "CL": CL, "V": V}


@pytest.fixture(scope="module")
def oral():
    return kn.parse_model(ORAL)


def conc(t, dose, ka, k, V, doses=(0.0,)):
    """Bateman superposition for oral doses at the given times."""
    total = 0.0
    for t_dose in doses:
        tau = np.maximum(np.asarray(t, float) - t_dose, 0.0)
        total = total + dose * ka / (V * (ka - k)) * (np.exp(-k * tau) - np.exp(-ka * tau))
    return total


def test_auc_matches_quad(oral):
    regimen = kn.Regimen.parse("320 mg po q12h x3")
    values = kn.AUC(2, 30).evaluate(oral, PARAMS, regimen)
    for b in range(len(KA)):
        k = CL[b] / V[b]
        f = lambda t, b=b, k=k: conc(t, 320, KA[b], k, V[b], doses=(0, 12, 24))  # noqa: E731
        expected = quad(f, 2, 30, points=[12, 24], epsabs=0, epsrel=1e-13, limit=200)[0]
        assert values[b] == pytest.approx(expected, rel=1e-11)


def test_auc_to_infinity_tends_to_dose_over_clearance(oral):
    value = kn.AUC(0, 2000).evaluate(oral, {}, kn.Regimen.parse("320 mg po"))
    assert value[0] == pytest.approx(320 / 2.8, rel=1e-12)


def test_auc_of_a_state_and_of_a_named_output(oral):
    regimen = kn.Regimen.parse("100 mg po")
    central = kn.AUC(0, 24, output="central").evaluate(oral, {}, regimen)
    concentration = kn.AUC(0, 24, output="conc").evaluate(oral, {}, regimen)
    assert central[0] == pytest.approx(concentration[0] * 31.5, rel=1e-13)


def test_auc_of_michaelis_menten_matches_quad_on_solve_ivp():
    model = kn.parse_model(MM)
    params = {"Vmax": np.array([10.0, 25.0]), "Km": np.array([2.0, 0.7]), "V": np.array([30.0, 18.0])}
    regimen = kn.Regimen([kn.Dose(300), kn.Dose(200, time=6.0, duration=2.0)])
    values = kn.AUC(1, 20).evaluate(model, params, regimen, rtol=1e-10, atol=1e-10)
    for b in range(2):
        Vmax, Km, Vb = params["Vmax"][b], params["Km"][b], params["V"][b]

        def rhs(t, y, rate, Vmax=Vmax, Km=Km, Vb=Vb):
            return [-Vmax * (y[0] / Vb) / (Km + y[0] / Vb) + rate]

        pieces = [(0, 6, 0.0), (6, 8, 100.0), (8, 20, 0.0)]
        state, solutions = [300.0], []
        for a, e, rate in pieces:
            sol = solve_ivp(rhs, (a, e), state, args=(rate,), method="DOP853", rtol=1e-12, atol=1e-12,
                            dense_output=True)
            solutions.append((a, e, sol.sol))
            state = sol.y[:, -1]
        expected = sum(quad(lambda t, s=s, Vb=Vb: s(t)[0] / Vb, max(a, 1), e, epsabs=0, epsrel=1e-12)[0]
                       for a, e, s in solutions if e > 1)
        assert values[b] == pytest.approx(expected, rel=1e-7)


def test_cmax_and_tmax_match_the_closed_form(oral):
    values = kn.Cmax(0, 24).evaluate(oral, PARAMS, kn.Regimen.parse("320 mg po"))
    k = CL / V
    tmax = np.log(KA / k) / (KA - k)
    np.testing.assert_allclose(values, conc(tmax, 320, KA, k, V), rtol=1e-13)


def test_cmax_over_repeated_doses_is_the_highest_peak(oral):
    regimen = kn.Regimen.parse("320 mg po q24h x3")
    values = kn.Cmax(0, 72).evaluate(oral, PARAMS, regimen)
    k = CL / V
    for b in range(len(KA)):
        f = lambda t, b=b: -conc(t, 320, KA[b], k[b], V[b], doses=(0, 24, 48))  # noqa: E731
        from scipy.optimize import minimize_scalar

        best = max(-minimize_scalar(f, bounds=(48, 60), method="bounded", options={"xatol": 1e-12}).fun,
                   -minimize_scalar(f, bounds=(24, 36), method="bounded", options={"xatol": 1e-12}).fun)
        assert values[b] == pytest.approx(best, rel=1e-10)
        assert values[b] >= best


def test_cmin_trough_before_the_next_dose(oral):
    regimen = kn.Regimen.parse("320 mg po q12h x3")
    trough = kn.Cmin(12, 24).evaluate(oral, PARAMS, regimen)
    k = CL / V
    # The minimum over [12, 24] is the trough just before the dose at 24 (the dose at 24 is not counted);
    # at 12 the new dose has not been absorbed yet, so the curve first falls a little.
    for b in range(len(KA)):
        f = lambda t, b=b: conc(t, 320, KA[b], k[b], V[b], doses=(0, 12))  # noqa: E731
        expected = min(f(24.0), min(f(t) for t in np.linspace(12, 24, 20001)))
        assert trough[b] == pytest.approx(expected, rel=1e-9)
        assert trough[b] <= expected * (1 + 1e-13)


def test_cmin_of_iv_bolus_is_the_value_before_the_next_dose():
    model = kn.parse_model(IV)
    regimen = kn.Regimen.parse("100 mg iv q6h x3")
    k = 4 / 20
    before = 5 * (np.exp(-6 * k) + np.exp(-12 * k))
    assert kn.Cmin(6, 12).evaluate(model, {}, regimen)[0] == pytest.approx(before, rel=1e-14)
    # The peak of [6, 12] is the right limit at 6 (the dose at 6 counts, the dose at 12 does not).
    assert kn.Cmax(6, 12).evaluate(model, {}, regimen)[0] == pytest.approx(5 * (np.exp(-6 * k) + 1), rel=1e-14)


def test_conc_is_right_continuous(oral):
    model = kn.parse_model(IV)
    regimen = kn.Regimen.parse("100 mg iv q6h x2")
    assert kn.Conc(6).evaluate(model, {}, regimen)[0] == pytest.approx(5 * np.exp(-1.2) + 5, rel=1e-14)
    value = kn.Conc(3.5).evaluate(oral, PARAMS, kn.Regimen.parse("320 mg po"))
    np.testing.assert_allclose(value, conc(3.5, 320, KA, CL / V, V), rtol=1e-13)


def test_time_above_matches_brentq_crossings(oral):
    regimen = kn.Regimen.parse("320 mg po q12h x2")
    level = 3.0
    values = kn.TimeAbove(level, 0, 36).evaluate(oral, PARAMS, regimen)
    k = CL / V
    for b in range(len(KA)):
        f = lambda t, b=b: conc(t, 320, KA[b], k[b], V[b], doses=(0, 12)) - level  # noqa: E731
        grid = np.linspace(0, 36, 36001)
        signs = np.sign(f(grid))
        crossings = [brentq(f, grid[i], grid[i + 1], xtol=1e-14, rtol=1e-15)
                     for i in np.flatnonzero(signs[:-1] * signs[1:] < 0)]
        edges = np.concatenate([[0.0], crossings, [36.0]])
        middle = (edges[:-1] + edges[1:]) / 2
        expected = np.sum(np.diff(edges) * (f(middle) >= 0))
        assert values[b] == pytest.approx(expected, abs=1e-10)
    assert np.all(values > 0)


def test_time_above_edges():
    model = kn.parse_model(IV)
    regimen = kn.Regimen.parse("100 mg iv")  # conc = 5 e^{-0.2 t}
    crossing = np.log(5 / 2) / 0.2
    assert kn.TimeAbove(2, 0, 24).evaluate(model, {}, regimen)[0] == pytest.approx(crossing, rel=1e-13)
    assert kn.TimeAbove(2, 1, 3).evaluate(model, {}, regimen)[0] == pytest.approx(2.0, rel=1e-14)
    assert kn.TimeAbove(10, 0, 24).evaluate(model, {}, regimen)[0] == 0.0
    assert kn.TimeAbove(-1, 0, 24).evaluate(model, {}, regimen)[0] == pytest.approx(24.0, rel=1e-14)


def test_metrics_on_the_ode_solution_agree_with_the_exact_one(oral):
    regimen = kn.Regimen.parse("320 mg po q12h x3")
    for metric in (kn.AUC(0, 36), kn.Cmax(0, 36), kn.Cmin(12, 24), kn.TimeAbove(3, 0, 36)):
        exact = metric.evaluate(oral, PARAMS, regimen)
        ode = metric.evaluate(oral, PARAMS, regimen, solver="ode", rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ode, exact, rtol=1e-7, atol=1e-8)


def test_metrics_with_per_set_lag_times():
    model = kn.parse_model(ORAL.replace("dose depot", "tlag = 0.5 [h]\ndose depot lag=tlag"))
    tlag = np.array([0.0, 0.7, 2.5])
    values = kn.Cmax(0, 24).evaluate(model, {"tlag": tlag}, kn.Regimen.parse("320 mg po"))
    k = 2.8 / 31.5
    tmax = np.log(1.5 / k) / (1.5 - k)
    np.testing.assert_allclose(values, conc(tmax, 320, 1.5, k, 31.5), rtol=1e-13)
    auc = kn.AUC(0, 10).evaluate(model, {"tlag": tlag}, kn.Regimen.parse("320 mg po"))
    for b in range(3):
        expected = quad(lambda t, b=b: conc(t - tlag[b], 320, 1.5, k, 31.5) if t > tlag[b] else 0.0, 0, 10,
                        points=[tlag[b]], epsabs=0, epsrel=1e-13)[0]
        assert auc[b] == pytest.approx(expected, rel=1e-11)


# -- windows and targets ---------------------------------------------------------------------------

def test_window_indicator_is_low_inclusive_high_exclusive():
    window = kn.Window(kn.AUC(0, 24), 400, 600)
    np.testing.assert_array_equal(window.indicator(np.array([399.999, 400, 500, 599.999, 600, 700])),
                                  [0, 1, 1, 1, 0, 0])
    below = kn.Window(kn.AUC(0, 24), None, 600)
    np.testing.assert_array_equal(below.indicator(np.array([-1e9, 599.9, 600])), [1, 1, 0])
    above = kn.Window(kn.AUC(0, 24), 400, None)
    np.testing.assert_array_equal(above.indicator(np.array([399.9, 400, 1e9])), [0, 1, 1])


@pytest.mark.parametrize("args, message", [
    ((kn.AUC(0, 24), None, None), "at least one bound"),
    ((kn.AUC(0, 24), 600, 400), "below its high bound"),
    (("auc(0, 24)", 1, 2), "needs a metric"),
    ((kn.AUC(0, 24), None, float("nan")), "high bound must be a finite number or None"),
    ((kn.AUC(0, 24), float("nan"), None), "low bound must be a finite number or None"),
    ((kn.AUC(0, 24), float("nan"), 600), "low bound must be a finite number"),
    ((kn.AUC(0, 24), 400, float("inf")), "high bound must be a finite number"),
    ((kn.AUC(0, 24), "400", 600), "low bound must be a finite number"),
])
def test_bad_windows(args, message):
    with pytest.raises(MetricError, match=message):
        kn.Window(*args)


def test_target():
    target = kn.Target(kn.Cmax(0, 24), 5.0)
    assert str(target) == "E[cmax(0, 24)] = 5"
    with pytest.raises(MetricError):
        kn.Target(kn.Cmax(0, 24), float("nan"))


# -- the metric language ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("auc(0, 24)", kn.AUC(0, 24)),
    ("  auc( 0 ,24.5 , conc )", kn.AUC(0, 24.5, output="conc")),
    ("cmax(0,24)", kn.Cmax(0, 24)),
    ("cmin(12, 24, central)", kn.Cmin(12, 24, output="central")),
    ("conc(6)", kn.Conc(6)),
    ("conc(1e1, conc)", kn.Conc(10, output="conc")),
    ("time_above(2.5, 0, 48)", kn.TimeAbove(2.5, 0, 48)),
])
def test_parse_metric(text, expected):
    metric = parse_metric(text)
    assert metric == expected
    assert parse_metric(str(metric)) == metric


@pytest.mark.parametrize("text, message", [
    ("auc", "not of the form"),
    ("area(0, 24)", "unknown metric 'area'"),
    ("auc(0)", "takes 2 numbers"),
    ("auc(0, 24, 48)", "takes 2 numbers"),
    ("auc(0, x)", "'x' is not a number"),
    ("auc(0, 24, 3conc)", "not an output name"),
    ("conc(1, 2)", "'2' is not an output name|takes 1 number"),
    ("auc(24, 0)", "0 <= t0 < t1"),
    ("auc(-1, 4)", "0 <= t0 < t1"),
    ("conc(-2)", "finite number of hours"),
    ("", "not of the form"),
])
def test_parse_metric_errors(text, message):
    with pytest.raises(MetricError, match=message):
        parse_metric(text)


@pytest.mark.parametrize("text, low, high", [
    ("auc(0, 24) in 400..600", 400, 600),
    ("cmax(0,24) in ..12", None, 12),
    ("time_above(2, 0, 24) in 8..", 8, None),
    ("cmin(0, 24, conc) in 0.5..2.5", 0.5, 2.5),
])
def test_parse_window(text, low, high):
    window = parse_window(text)
    assert (window.low, window.high) == (low, high)
    assert parse_window(str(window)) == window


@pytest.mark.parametrize("text, message", [
    ("auc(0, 24)", "METRIC in LOW..HIGH"),
    ("auc(0, 24) in ..", "LOW..HIGH"),
    ("auc(0, 24) in 4-6", "LOW..HIGH"),
    ("auc(0, 24) in a..6", "'a' is not a number"),
    ("auc(0, 24) in 6..4", "below its high bound"),
])
def test_parse_window_errors(text, message):
    with pytest.raises(MetricError, match=message):
        parse_window(text)


def test_parse_bounds():
    assert parse_bounds(" 1.5 .. 2 ") == (1.5, 2.0)


def test_unknown_output_is_a_metric_error(oral):
    with pytest.raises(MetricError, match="'effect' is not an output"):
        kn.AUC(0, 24, output="effect").evaluate(oral, {}, kn.Regimen.parse("100 mg po"))
