"""Steady-state doses (NONMEM SS=1/SS=2) and resets (EVID 3/4), against textbook closed forms and
long simulations."""

from __future__ import annotations

import numpy as np
import pytest

import koopnb as kn
from koopnb.errors import SimulationError
from koopnb.regimen import Dose, Regimen
from koopnb.simulate import steady

IV = """
CL = 4 [L/h] ~ 0.3
V = 20 [L] ~ 0.2
d/dt(central) = -CL/V*central
conc = central / V
"""

ORAL = """
ka = 1.5 [1/h] ~ 0.6
CL = 2.8 [L/h] ~ 0.27
V = 31.5 [L] ~ 0.15
F = 0.8
tlag = 0.4 [h]
d/dt(depot) = -ka*depot
d/dt(central) = ka*depot - CL/V*central
conc = central / V
dose depot bioavailability=F lag=tlag
"""

TWO = """
CL = 5 [L/h] ~ 0.3
V1 = 10 [L]
Q = 2 [L/h]
V2 = 20 [L]
ka = 1.1 [1/h]
d/dt(depot) = -ka*depot
d/dt(central) = ka*depot - (CL + Q)/V1*central + Q/V2*peripheral
d/dt(peripheral) = Q/V1*central - Q/V2*peripheral
conc = central / V1
dose depot
"""

MM = """
Vmax = 30 [mg/h] ~ 0.2
Km = 2 [mg/L]
V = 20 [L]
d/dt(central) = -Vmax*(central/V)/(Km + central/V)
conc = central / V
"""

TIGHT = 1e-10


def close(actual, expected, rtol=TIGHT):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=0)


# --- one compartment: textbook formulas (Gibaldi & Perrier, Pharmacokinetics, 2nd ed., ch. 3) ------


@pytest.mark.parametrize("solver", ["auto", "linear"])
def test_iv_bolus_steady_state_cmax_cmin_auc_equal_the_textbook_formulas(solver):
    model = kn.parse_model(IV)
    cl = np.array([2.0, 4.0, 9.0])
    k, dose, tau, v = cl / 20, 100.0, 12.0, 20.0
    regimen = Regimen([Dose(dose, 0.0, "central", steady_state=1, interval=tau)])
    params = {"CL": cl}
    cmax = dose / v / (1 - np.exp(-k * tau))
    close(kn.Cmax(0, tau).evaluate(model, params, regimen, solver=solver), cmax)
    close(kn.Cmin(0, tau).evaluate(model, params, regimen, solver=solver), cmax * np.exp(-k * tau))
    close(kn.AUC(0, tau).evaluate(model, params, regimen, solver=solver), dose / cl)  # AUC_tau,ss = D / CL
    # The steady state before the dose: the trough; the series continues with plain doses.
    series = Regimen.parse("100 iv q12h x4 ss")
    close(kn.Conc(36).evaluate(model, params, series), cmax)
    close(kn.Cmin(24, 36).evaluate(model, params, series), cmax * np.exp(-k * tau))


def test_iv_infusion_steady_state_equals_the_textbook_formulas():
    model = kn.parse_model(IV)
    cl = np.array([1.0, 4.0, 12.0])
    k, dose, tau, tinf = cl / 20, 500.0, 8.0, 1.5
    regimen = Regimen.parse(f"{dose:g} mg iv over {tinf:g} h q{tau:g}h ss")
    params = {"CL": cl}
    rate = dose / tinf
    cmax = rate / cl * (1 - np.exp(-k * tinf)) / (1 - np.exp(-k * tau))  # at the end of the infusion
    cmin = cmax * np.exp(-k * (tau - tinf))
    close(kn.Cmax(0, tau).evaluate(model, params, regimen), cmax)
    close(kn.Conc(tinf).evaluate(model, params, regimen), cmax)
    close(kn.Cmin(0, tau).evaluate(model, params, regimen), cmin)
    close(kn.AUC(0, tau).evaluate(model, params, regimen), dose / cl)


def test_continuous_infusion_as_steady_state_with_duration_equal_to_interval_is_css():
    model = kn.parse_model(IV)
    regimen = Regimen.parse("240 mg iv over 24 h q24h ss")
    conc = model.simulate({"CL": 4.0}, regimen, [0, 5, 23.9])["conc"]
    close(conc, np.full((1, 3), 240 / 24 / 4.0))  # Css = R0 / CL


def bateman_ss(t, dose, f, ka, k, v, tau):
    """Oral steady state after the absorbed dose starts (t from the lagged dose time)."""
    return f * dose * ka / (v * (ka - k)) * (np.exp(-k * t) / (1 - np.exp(-k * tau))
                                              - np.exp(-ka * t) / (1 - np.exp(-ka * tau)))


def test_oral_steady_state_with_lag_and_bioavailability_equals_the_bateman_formula():
    model = kn.parse_model(ORAL)
    ka, cl, v, f, tlag, dose, tau = np.array([0.7, 1.5, 3.0]), 2.8, 31.5, 0.8, 0.4, 320.0, 12.0
    k = cl / v
    regimen = Regimen.parse(f"{dose:g} mg po q{tau:g}h ss")
    params = {"ka": ka}
    tmax = np.log(ka * (1 - np.exp(-k * tau)) / (k * (1 - np.exp(-ka * tau)))) / (ka - k)
    cmax = bateman_ss(tmax, dose, f, ka, k, v, tau)
    close(kn.Cmax(0, tau).evaluate(model, params, regimen), cmax)
    # The trough is where the lagged dose starts: the previous dose's curve a whole interval on.
    close(kn.Cmin(0, tau).evaluate(model, params, regimen), bateman_ss(tau, dose, f, ka, k, v, tau))
    close(kn.AUC(tlag, tlag + tau).evaluate(model, params, regimen), f * dose / cl)
    times = np.array([0.0, 0.2, tlag, 1.0, 5.0, 11.0])
    shifted = np.where(times >= tlag, times - tlag, times - tlag + tau)
    close(model.simulate(params, regimen, times)["conc"], bateman_ss(shifted[None], dose, f, ka[:, None], k, v, tau))


# --- two compartments, SS=2, nonlinear --------------------------------------------------------------


def test_two_compartment_steady_state_equals_fifty_simulated_doses():
    model = kn.parse_model(TWO)
    params = {"CL": np.array([3.0, 5.0, 8.0])}
    tau = 12.0
    times = np.linspace(0, tau, 25)
    at_steady_state = model.simulate(params, Regimen.parse("100 mg po q12h ss"), times)
    fifty = model.simulate(params, Regimen.parse("100 mg po q12h x50"), 49 * tau + times)
    for name in ("depot", "central", "peripheral", "conc"):
        close(at_steady_state[name], fifty[name], rtol=1e-8)


def test_ss2_adds_the_steady_state_to_the_current_state():
    model = kn.parse_model(TWO)
    params = {"CL": np.array([3.0, 8.0])}
    times = np.array([0.0, 3.0, 6.0, 6.5, 10.0, 30.0])
    plain = Regimen.parse("200 mg po; 80 mg into central at 2 h")
    combined = plain + Regimen([Dose(50, 6.0, steady_state=2, interval=8)])
    alone = Regimen([Dose(50, 6.0, steady_state=1, interval=8)])
    together = model.simulate(params, combined, times)["central"]
    expected = model.simulate(params, plain, times)["central"] + np.where(
        times >= 6, model.simulate(params, alone, times)["central"], 0.0)
    close(together, expected, rtol=1e-12)
    # SS=1 at the same time resets instead: the earlier doses are gone.
    reset = plain + Regimen([Dose(50, 6.0, steady_state=1, interval=8)])
    after = times >= 6
    close(model.simulate(params, reset, times)["central"][:, after],
          model.simulate(params, alone, times)["central"][:, after], rtol=1e-12)


def test_nonlinear_steady_state_agrees_with_a_two_hundred_dose_simulation():
    model = kn.parse_model(MM)
    params = {"Vmax": np.array([20.0, 30.0, 45.0])}
    tau = 12.0
    times = np.array([0.0, 1.0, 6.0, 11.5])
    ss = model.simulate(params, Regimen.parse("150 mg iv q12h ss"), times)["conc"]
    long = model.simulate(params, Regimen.parse("150 mg iv q12h x200"), 199 * tau + times)["conc"]
    # The steady state is reached to STEADY_STATE_RTOL (1e-8); both solves carry the ODE error (1e-8).
    close(ss, long, rtol=5e-8)
    # The same steady state from the linear-closed-form side: an exactly linear model through the ODE solver.
    linear = kn.parse_model(IV)
    close(linear.simulate({}, Regimen.parse("100 mg iv q12h ss"), times, solver="ode")["conc"],
          linear.simulate({}, Regimen.parse("100 mg iv q12h ss"), times)["conc"], rtol=1e-7)


def test_nonlinear_steady_state_that_does_not_converge_says_so(monkeypatch):
    monkeypatch.setattr(steady, "MAX_PERIODS", 3)
    model = kn.parse_model(MM)
    with pytest.raises(SimulationError, match=r"was not reached in 3 periods of 12 h for 2 of 2 parameter sets"):
        model.simulate({"Vmax": np.array([20.0, 30.0])}, Regimen.parse("150 mg iv q12h ss"), [1.0])


def test_nonlinear_ss2_is_refused_in_one_sentence():
    model = kn.parse_model(MM)
    with pytest.raises(SimulationError, match="only right for linear models"):
        model.simulate({}, Regimen([Dose(100, 0, "central", steady_state=2, interval=12)]), [1.0])


def test_steady_state_that_cannot_exist_or_overlaps_its_next_dose_is_refused():
    accumulating = kn.parse_model("""
    CL = 4
    V = 20
    d/dt(central) = -CL/V*central
    d/dt(eliminated) = CL/V*central
    """)
    with pytest.raises(SimulationError, match="no steady state for 1 of 1 parameter sets: some state is never"):
        accumulating.simulate({}, Regimen.parse("100 iv q12h ss"), [1.0])
    oral = kn.parse_model(ORAL)
    with pytest.raises(SimulationError, match="lag time plus infusion duration must not exceed the interval"):
        oral.simulate({}, Regimen.parse("100 mg po over 11.8 h q12h ss"), [1.0])


# --- resets (EVID 3 and 4) --------------------------------------------------------------------------


@pytest.mark.parametrize("solver", ["linear", "ode"])
def test_after_a_reset_the_solution_is_a_fresh_solution_from_the_reset_time(solver):
    model = kn.parse_model(ORAL.replace("d/dt(depot)", "central(0) = 40\nd/dt(depot)"))
    params = {"ka": np.array([0.9, 2.0])}
    history = Regimen.parse("300 mg po q12h x3; 100 mg po over 10 h at 25 h; reset at 30 h; 50 mg po at 30 h; "
                            "50 mg po at 36 h")
    fresh = Regimen.parse("50 mg po; 50 mg po at 6 h")
    times = np.array([0.0, 0.1, 2.0, 5.9, 6.0, 12.0, 20.0])
    after = model.simulate(params, history, 30 + times, solver=solver)
    from_zero = model.simulate(params, fresh, times, solver=solver)
    rtol = TIGHT if solver == "linear" else 1e-7
    for name in ("depot", "central", "conc"):
        close(after[name], from_zero[name], rtol=rtol)
    # Before the reset the history acts as usual.
    close(model.simulate(params, history, [29.0], solver=solver)["central"],
          model.simulate(params, Regimen.parse("300 mg po q12h x3; 100 mg po over 10 h at 25 h"), [29.0],
                         solver=solver)["central"], rtol=rtol)


def test_metrics_across_a_reset_are_exact():
    model = kn.parse_model(IV)
    regimen = Regimen.parse("100 mg iv; reset at 10 h; 60 mg iv at 10 h")
    k = 0.2
    # AUC(0, 20) = 100/20 (1 − e^{−10k})/k + 60/20 (1 − e^{−10k})/k; Cmax over (5, 20) is the 60 mg peak.
    close(kn.AUC(0, 20).evaluate(model, {}, regimen), (5 + 3) * (1 - np.exp(-10 * k)) / k)
    close(kn.Cmax(5, 20).evaluate(model, {}, regimen), np.array([3.0]))
    close(kn.Cmin(5, 20).evaluate(model, {}, regimen), np.array([3.0 * np.exp(-10 * k)]))


def test_a_steady_state_dose_later_in_a_history_with_lag_equals_the_doses_before_it():
    model = kn.parse_model(ORAL)
    params = {"ka": np.array([0.5, 1.5]), "CL": np.array([2.8, 6.0])}
    times = 600 + np.array([0.0, 0.2, 0.4, 1.0, 6.0, 11.9])
    steady_state = model.simulate(params, Regimen.parse("320 mg po q12h at 600 h ss"), times)["conc"]
    doses = model.simulate(params, Regimen.parse("320 mg po q12h x50 at 12 h"), times)["conc"]
    close(steady_state, doses, rtol=1e-9)  # 49 earlier doses: e^{-k 588 h} is far below 1e-9


def test_steady_state_with_a_modelled_infusion_duration_per_parameter_set():
    model = kn.parse_model(IV + "D1 = 2 [h] ~ 0.2\ndose central duration=D1\n")
    d1 = np.array([0.5, 2.0, 6.0])
    times = [0.0, 0.5, 1.0, 3.0, 7.0, 11.0]
    modelled = model.simulate({"D1": d1}, Regimen.parse("500 mg iv over model q12h ss"), times)["conc"]
    for i, duration in enumerate(d1):
        explicit = model.simulate({}, Regimen.parse(f"500 mg iv over {duration:g} h q12h ss"), times)["conc"]
        close(modelled[i], explicit[0], rtol=1e-12)


def test_ode_steady_state_auc_over_the_interval_is_dose_over_clearance():
    model = kn.parse_model(IV)
    cl = np.array([2.0, 4.0, 9.0])
    regimen = Regimen.parse("100 mg iv q12h x3 ss")
    for t0 in (0.0, 12.0):
        auc = kn.AUC(t0, t0 + 12).evaluate(model, {"CL": cl}, regimen, solver="ode")
        close(auc, 100 / cl, rtol=1e-7)  # the ODE solver's tolerance
