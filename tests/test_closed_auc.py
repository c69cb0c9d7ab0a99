"""AUC.evaluate's closed-form path (koopnb/simulate/closed.py) against the general solution and scipy.

The general path (exact spectral solution, or the ODE solver) is an independent computation: different
formulas, different code.  Every case below must agree to 1e-12 relative, and the cases the closed form must not
take (infusions, lag, bioavailability, steady state, histories, near-equal eigenvalues) must give the general
path's answer too."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.integrate import quad

import koopnb as kn
from koopnb.simulate.closed import CHUNK, closed_form_auc

ORAL = """
ka = 1.5 [1/h] ~ 0.6
CL = 2.8 [L/h] ~ 0.3
V  = 31.5 [L] ~ 0.15
d/dt(depot)   = -ka*depot
d/dt(central) =  ka*depot - CL/V*central
conc = central / V
conc ~ additive(0.7)
dose depot
"""
TWO = """
covariate WT = 70 [kg]
CL = 4.5 [L/h] ~ 0.4
V1 = 58.4 [L] ~ 0.8
V2 = 38.4 [L] ~ 0.5
Q = 6.5 [L/h]
d/dt(central) = -CL*(WT/70)/V1*central - Q/V1*central + Q/V2*peripheral
d/dt(peripheral) = Q/V1*central - Q/V2*peripheral
conc = central / V1 + 0.5
conc ~ additive(1)
dose central
"""


def _sample(model, n, seed=0):
    return model.prior().sample(n, seed=seed)


@pytest.mark.parametrize("text, regimen, window", [
    (ORAL, "320 mg po", (0, 24)),
    (ORAL, "320 mg po q8h x5", (10, 40)),            # doses before, inside and after the window
    (ORAL, "100 mg po q6h x3 at 30 h", (0, 24)),     # every dose after the window: 0
    (ORAL, "200 mg po; 50 mg into central at 4 h", (2, 30)),  # two dosed states
    (TWO, "1000 mg iv q12h x4", (0, 72)),            # two compartments, an output offset, a covariate
])
def test_closed_form_equals_the_general_solution(text, regimen, window):
    model = kn.parse_model(text)
    regimen = kn.Regimen.parse(regimen)
    params = _sample(model, 2 * CHUNK + 17)           # more than one chunk, and a ragged last one
    metric = kn.AUC(*window)
    fast = closed_form_auc(model, "conc", *window, params, regimen, {"WT": 82.0} if "WT" in text else None)
    assert fast is not None
    general = metric.general(model, params, regimen, {"WT": 82.0} if "WT" in text else None)
    np.testing.assert_allclose(fast, general, rtol=1e-12, atol=1e-12)


def test_closed_form_against_scipy_quad_for_one_patient():
    model = kn.parse_model(ORAL)
    regimen = kn.Regimen.parse("320 mg po q12h x3")
    ka, cl, v = 1.3, 2.5, 30.0

    def conc(t):
        return sum(320 * ka / (v * (ka - cl / v)) * (np.exp(-cl / v * (t - s)) - np.exp(-ka * (t - s)))
                   for s in (0, 12, 24) if t >= s)

    exact = sum(quad(conc, a, b, epsabs=1e-13, epsrel=1e-13)[0] for a, b in ((5, 12), (12, 24), (24, 30)))
    got = kn.AUC(5, 30).evaluate(model, {"ka": ka, "CL": cl, "V": v}, regimen)
    assert got.shape == (1,)
    assert got[0] == pytest.approx(exact, rel=1e-11)


def test_sets_with_equal_eigenvalues_go_to_the_general_solver():
    model = kn.parse_model(ORAL)
    regimen = kn.Regimen.parse("320 mg po")
    params = {"ka": np.array([0.1, 1.5, 2.8 / 31.5]), "CL": 2.8, "V": 31.5}  # the last: ka = CL/V exactly
    fast = kn.AUC(0, 24).evaluate(model, params, regimen)
    general = kn.AUC(0, 24).general(model, params, regimen)
    np.testing.assert_allclose(fast, general, rtol=1e-10)
    k = 2.8 / 31.5  # ka = k: C = D k t e^{-kt}/V, AUC(0,T) = D/V (1 − e^{-kT}(1 + kT))/k
    assert fast[2] == pytest.approx(320 / 31.5 * (1 - np.exp(-k * 24) * (1 + k * 24)) / k, rel=1e-9)


@pytest.mark.parametrize("text, regimen, covariates", [
    (ORAL, "320 mg po over 1 h", None),                       # an infusion
    (ORAL.replace("dose depot", "dose depot lag=0.5"), "320 mg po", None),
    (ORAL.replace("dose depot", "dose depot bioavailability=0.8"), "320 mg po", None),
    (ORAL, "320 mg po q12h ss", None),                        # steady state
    (TWO, "1000 mg iv", pd.DataFrame({"TIME": [0.0, 24.0], "WT": [70.0, 90.0]})),  # a covariate history
])
def test_everything_else_is_left_to_the_general_path(text, regimen, covariates):
    model = kn.parse_model(text)
    regimen = kn.Regimen.parse(regimen)
    assert closed_form_auc(model, "conc", 0, 48, {}, regimen, covariates) is None
    value = kn.AUC(0, 48).evaluate(model, {}, regimen, covariates)
    assert np.all(np.isfinite(value)) and value[0] > 0


def test_a_zero_eigenvalue_by_chance_goes_to_the_general_solver():
    model = kn.parse_model(ORAL)
    regimen = kn.Regimen.parse("320 mg po q12h x2")
    params = {"ka": np.array([1.5, 1.5]), "CL": np.array([2.8, 0.0]), "V": 31.5}  # CL = 0: eigenvalue 0
    fast = kn.AUC(6, 30).evaluate(model, params, regimen)
    np.testing.assert_allclose(fast, kn.AUC(6, 30).general(model, params, regimen), rtol=1e-12)
    # No elimination: conc = D (1 − e^{-ka (t − s)})/V per dose s, integrated over [6, 30] in closed form.
    ka, v = 1.5, 31.5
    exact = sum(320 / v * ((30 - s) - (6 - min(s, 6)) + (np.exp(-ka * (30 - s)) - np.exp(-ka * max(6 - s, 0))) / ka)
                for s in (0, 12))
    assert fast[1] == pytest.approx(exact, rel=1e-12)


def test_a_constant_zero_eigenvalue_is_taken_by_the_closed_form():
    model = kn.parse_model("""
ka = 1.5 [1/h] ~ 0.6
V  = 31.5 [L] ~ 0.15
d/dt(depot)   = -ka*depot
d/dt(central) =  ka*depot
conc = central / V
dose depot
""")
    regimen = kn.Regimen.parse("320 mg po")
    params = _sample(model, 1000)
    fast = closed_form_auc(model, "conc", 2, 24, params, regimen, None)
    assert fast is not None
    ka, v = params["ka"], params["V"]
    exact = 320 / v * (22 + (np.exp(-ka * 24) - np.exp(-ka * 2)) / ka)
    np.testing.assert_allclose(fast, exact, rtol=1e-12)
