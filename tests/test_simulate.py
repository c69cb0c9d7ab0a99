"""Simulation against closed forms (linear models) and per-set scipy solve_ivp (nonlinear models)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.linalg import expm

import koopnb as kn
from koopnb.errors import RegimenError, SimulationError
from koopnb.simulate import ode

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

TWO_COMPARTMENT = """
CL = 3 [L/h] ~ 0.3
V1 = 10 [L] ~ 0.2
Q = 2 [L/h] ~ 0.3
V2 = 25 [L] ~ 0.2
d/dt(central) = -(CL + Q)/V1*central + Q/V2*periph
d/dt(periph) = Q/V1*central - Q/V2*periph
conc = central / V1
dose central
"""

COVARIATE = """
covariate WT = 70 [kg]
TVCL = 2.8 [L/h] ~ 0.3
V = 31.5 [L] ~ 0.15
ka = 1.5 [1/h] ~ 0.6
F = 0.8 fixed
tlag = 0.5 [h]
CL = TVCL*(WT/70)^0.75
d/dt(depot) = -ka*depot
d/dt(central) = ka*depot - CL/V*central
conc = central/V
conc ~ proportional(0.1)
dose depot bioavailability=F lag=tlag
"""

OSCILLATOR = """
w = 2
c = 0.3
x(0) = 1.5
d/dt(x) = y
d/dt(y) = -w^2*x - c*y
position = x
"""

MICHAELIS_MENTEN = """
ka = 1.2 [1/h] ~ 0.4
Vmax = 10 [mg/h] ~ 0.3
Km = 2 [mg/L] ~ 0.3
V = 30 [L] ~ 0.2
d/dt(depot) = -ka*depot
d/dt(central) = ka*depot - Vmax*(central/V)/(Km + central/V)
conc = central / V
dose depot
"""

MM_IV = """
Vmax = 10 [mg/h] ~ 0.3
Km = 2 [mg/L] ~ 0.3
V = 30 [L] ~ 0.2
d/dt(central) = -Vmax*(central/V)/(Km + central/V)
conc = central / V
dose central
"""

TIMES = np.array([0.0, 0.1, 0.5, 1.0, 2.0, 4.0, 7.5, 12.0, 24.0])


def bateman(t, dose, ka, k, V, t_dose=0.0):
    """One-compartment oral concentration after one dose at t_dose (0 before it)."""
    tau = np.asarray(t, float) - t_dose
    value = dose * ka / (V * (ka - k)) * (np.exp(-k * np.maximum(tau, 0)) - np.exp(-ka * np.maximum(tau, 0)))
    return np.where(tau >= 0, value, 0.0)


@pytest.fixture(scope="module")
def oral():
    return kn.parse_model(ORAL)


# -- linear models against closed forms ------------------------------------------------------------

def test_oral_single_dose_matches_bateman(oral):
    ka, CL, V = np.array([1.5, 0.7, 3.0]), np.array([2.8, 5.0, 1.1]), np.array([31.5, 20.0, 50.0])
    out = oral.simulate({"ka": ka, "CL": CL, "V": V}, kn.Regimen.parse("320 mg po"), TIMES)
    expected = bateman(TIMES[None], 320, ka[:, None], (CL / V)[:, None], V[:, None])
    np.testing.assert_allclose(out["conc"], expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out["depot"], 320 * np.exp(-ka[:, None] * TIMES), rtol=1e-13)
    np.testing.assert_allclose(out["central"], out["conc"] * V[:, None], rtol=1e-13)


def test_oral_repeated_doses_superpose(oral):
    regimen = kn.Regimen.parse("100 mg po q12h x4")
    times = np.linspace(0, 60, 241)
    out = oral.simulate({}, regimen, times)["conc"][0]
    k = 2.8 / 31.5
    expected = sum(bateman(times, 100, 1.5, k, 31.5, 12.0 * j) for j in range(4))
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-14)


def test_state_is_right_continuous_at_a_bolus():
    model = kn.parse_model(IV)
    out = model.simulate({}, kn.Regimen.repeat(100, every=6, count=2), [6 - 1e-9, 6.0])["conc"][0]
    k = 4 / 20
    np.testing.assert_allclose(out, [5 * np.exp(-k * (6 - 1e-9)), 5 * np.exp(-6 * k) + 5], rtol=1e-12)


def test_iv_bolus():
    model = kn.parse_model(IV)
    CL, V = np.array([4.0, 2.0]), np.array([20.0, 35.0])
    out = model.simulate({"CL": CL, "V": V}, kn.Regimen.parse("500 mg iv"), TIMES)["conc"]
    np.testing.assert_allclose(out, 500 / V[:, None] * np.exp(-(CL / V)[:, None] * TIMES), rtol=1e-13)


def test_zero_order_infusion_during_and_after():
    model = kn.parse_model(IV)
    duration, amount, CL, V = 2.0, 600.0, 4.0, 20.0
    k, rate = CL / V, amount / duration
    times = np.array([0.0, 0.3, 1.0, 1.999, 2.0, 2.5, 5.0, 10.0])
    out = model.simulate({}, kn.Regimen([kn.Dose(amount, duration=duration)]), times)["conc"][0]
    during = rate / CL * (1 - np.exp(-k * times))
    after = rate / CL * (1 - np.exp(-k * duration)) * np.exp(-k * (times - duration))
    np.testing.assert_allclose(out, np.where(times <= duration, during, after), rtol=1e-13, atol=1e-15)


def test_two_compartment_infusion_matches_augmented_expm():
    model = kn.parse_model(TWO_COMPARTMENT)
    CL, V1, Q, V2 = 3.0, 10.0, 2.0, 25.0
    A = np.array([[-(CL + Q) / V1, Q / V2], [Q / V1, -Q / V2]])
    rate, duration = 250.0, 4.0
    # The rate as a third state that stays constant: exp of the augmented 3x3 system.
    augmented = np.zeros((3, 3))
    augmented[:2, :2] = A
    augmented[0, 2] = 1.0
    times = np.array([0.5, 2.0, 4.0, 6.0, 12.0, 30.0])
    expected = []
    at_end = expm(augmented * duration) @ [0, 0, rate]
    for t in times:
        if t <= duration:
            expected.append((expm(augmented * t) @ [0, 0, rate])[:2])
        else:
            expected.append(expm(A * (t - duration)) @ at_end[:2])
    expected = np.array(expected)
    out = model.simulate({}, kn.Regimen([kn.Dose(rate * duration, duration=duration)]), times)
    np.testing.assert_allclose(out["central"][0], expected[:, 0], rtol=1e-12)
    np.testing.assert_allclose(out["periph"][0], expected[:, 1], rtol=1e-12)
    np.testing.assert_allclose(out["conc"][0], expected[:, 0] / V1, rtol=1e-12)


def limit_conc(t, dose, k, V):
    """ka = k: the Bateman function's limit dose/V · k t e^{−kt}."""
    return dose / V * k * t * np.exp(-k * t)


def test_coincident_absorption_and_elimination_rates(oral):
    k = 2.8 / 31.5
    times = np.array([0.0, 1e-6, 0.5, 3.0, 11.25, 40.0, 200.0])
    out = oral.simulate({"ka": k}, kn.Regimen.parse("320 mg po"), times)
    assert np.all(np.isfinite(out["conc"]))
    np.testing.assert_allclose(out["conc"][0], limit_conc(times, 320, k, 31.5), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("factor", [1 + 1e-7, 1 - 1e-7, 1 + 1e-4, 1 - 1e-12])
def test_nearly_coincident_rates_are_smooth(oral, factor):
    k = 2.8 / 31.5
    ka = k * factor
    times = np.array([0.25, 2.0, 11.25, 40.0, 100.0])
    out = oral.simulate({"ka": ka}, kn.Regimen.parse("320 mg po"), times)["conc"][0]
    # Exact for ka ≠ k without cancellation: dose/V · ka · t e^{−kt} φ₁((k − ka) t).
    z = (k - ka) * times
    exact = 320 / 31.5 * ka * times * np.exp(-k * times) * np.where(z == 0, 1.0, np.expm1(z) / np.where(z == 0, 1, z))
    np.testing.assert_allclose(out, exact, rtol=1e-10)
    np.testing.assert_allclose(out, limit_conc(times, 320, k, 31.5), rtol=2e-6 * abs(factor - 1) / 1e-7 + 1e-10)


def test_batch_mixing_confluent_and_distinct_sets(oral):
    k = 2.8 / 31.5
    ka = np.array([1.5, k, k * (1 + 1e-9), 0.3])
    times = np.linspace(0, 48, 97)
    out = oral.simulate({"ka": ka}, kn.Regimen.parse("320 mg po q24h x2"), times)["conc"]
    expected = np.stack([
        bateman(times, 320, 1.5, k, 31.5) + bateman(times, 320, 1.5, k, 31.5, 24),
        limit_conc(times, 320, k, 31.5) + np.where(times >= 24, limit_conc(np.maximum(times - 24, 0), 320, k, 31.5), 0),
        limit_conc(times, 320, k, 31.5) + np.where(times >= 24, limit_conc(np.maximum(times - 24, 0), 320, k, 31.5), 0),
        bateman(times, 320, 0.3, k, 31.5) + bateman(times, 320, 0.3, k, 31.5, 24),
    ])
    np.testing.assert_allclose(out, expected, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(out[[0, 1, 3]], expected[[0, 1, 3]], rtol=1e-12, atol=1e-14)


def test_bioavailability_lag_and_covariates_per_set():
    model = kn.parse_model(COVARIATE)
    tlag = np.array([0.0, 0.5, 1.25])
    WT = np.array([50.0, 70.0, 95.0])
    times = np.array([0.0, 0.25, 0.5, 0.75, 1.25, 2.0, 8.0, 24.0])
    out = model.simulate({"tlag": tlag}, kn.Regimen.parse("100 mg po"), times, covariates={"WT": WT})["conc"]
    CL = 2.8 * (WT / 70) ** 0.75
    expected = bateman(times[None], 0.8 * 100, 1.5, (CL / 31.5)[:, None], 31.5, tlag[:, None])
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-15)
    # One covariate value for the whole batch broadcasts.
    same = model.simulate({"tlag": tlag}, kn.Regimen.parse("100 mg po"), times, covariates={"WT": 95.0})["conc"]
    np.testing.assert_allclose(same[2], out[2], rtol=1e-14)


def test_lag_and_bioavailability_apply_only_to_the_default_compartment():
    model = kn.parse_model(COVARIATE)
    regimen = kn.Regimen([kn.Dose(100, cmt="central")])
    out = model.simulate({}, regimen, [0.0, 3.0])["central"][0]
    np.testing.assert_allclose(out, 100 * np.exp(-2.8 / 31.5 * np.array([0.0, 3.0])), rtol=1e-13)


def test_dose_into_named_state_and_compartment_number(oral):
    times = np.array([0.0, 1.0, 5.0])
    by_name = oral.simulate({}, kn.Regimen([kn.Dose(100, cmt="central")]), times)
    by_number = oral.simulate({}, kn.Regimen([kn.Dose(100, cmt="2")]), times)
    expected = 100 / 31.5 * np.exp(-2.8 / 31.5 * times)
    for out in (by_name, by_number):
        np.testing.assert_allclose(out["conc"][0], expected, rtol=1e-13)
        np.testing.assert_array_equal(out["depot"][0], 0.0)
    depot_number = oral.simulate({}, kn.Regimen([kn.Dose(100, cmt="1")]), times)
    np.testing.assert_allclose(depot_number["conc"][0], bateman(times, 100, 1.5, 2.8 / 31.5, 31.5), rtol=1e-12)


@pytest.mark.parametrize("cmt", ["3", "0", "9", "periph"])
def test_dose_into_a_missing_compartment_is_a_regimen_error(oral, cmt):
    with pytest.raises(RegimenError, match="compartment"):
        oral.simulate({}, kn.Regimen([kn.Dose(100, cmt=cmt)]), [1.0])


def test_initial_conditions_and_complex_eigenvalues():
    model = kn.parse_model(OSCILLATOR)
    w, c = np.array([2.0, 0.5]), np.array([0.3, 0.05])
    times = np.linspace(0, 20, 41)
    out = model.simulate({"w": w, "c": c}, None, times)
    for b in range(2):
        A = np.array([[0, 1], [-w[b] ** 2, -c[b]]])
        assert np.iscomplexobj(np.linalg.eigvals(A))  # a damped oscillation
        expected = np.array([expm(A * t) @ [1.5, 0.0] for t in times])
        np.testing.assert_allclose(out["x"][b], expected[:, 0], rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(out["y"][b], expected[:, 1], rtol=1e-11, atol=1e-13)
    assert out["position"].dtype == float


def test_initial_condition_plus_doses():
    model = kn.parse_model(IV + "central(0) = 40\n")
    times = np.array([0.0, 1.0, 3.0, 6.0])
    out = model.simulate({}, kn.Regimen([kn.Dose(100, time=2.0)]), times)["central"][0]
    k = 0.2
    expected = 40 * np.exp(-k * times) + np.where(times >= 2, 100 * np.exp(-k * (times - 2)), 0)
    np.testing.assert_allclose(out, expected, rtol=1e-13)


def test_linear_integrals_are_exact(oral):
    trajectory = oral.solve({"ka": [1.5, 0.4]}, kn.Regimen.parse("320 mg po"), horizon=24, integrals=("conc",))
    k = 2.8 / 31.5
    for b, ka in enumerate([1.5, 0.4]):
        auc = 320 * ka / (31.5 * (ka - k)) * ((1 - np.exp(-k * 24)) / k - (1 - np.exp(-ka * 24)) / ka)
        np.testing.assert_allclose(trajectory.output_integral("conc", 0, 24)[b], auc, rtol=1e-13)


# -- nonlinear models against solve_ivp, one parameter set at a time -------------------------------

def reference_mm(params, regimen_doses, times, oral=True):
    """Per-set solve_ivp at rtol = atol = 1e-10 with the doses as restarts (bolus) or input rates (infusion)."""
    ka, Vmax, Km, V = params

    def rhs(t, y, rate):
        depot, central = y
        c = central / V
        return [-ka * depot, ka * depot - Vmax * c / (Km + c) + rate]

    breaks = sorted({0.0, times[-1], *[d[0] for d in regimen_doses], *[d[0] + d[2] for d in regimen_doses]})
    breaks = [b for b in breaks if b <= times[-1]]
    state = np.zeros(2)
    values = np.full((2, len(times)), np.nan)
    for a, b in itertools.pairwise(breaks):
        for time, amount, duration in regimen_doses:
            if time == a and duration == 0:
                state[0 if oral else 1] += amount
        rate = sum(amount / duration for time, amount, duration in regimen_doses
                   if duration > 0 and time <= a < time + duration)
        inside = (times >= a) & ((times < b) | (b == breaks[-1]))
        sol = solve_ivp(rhs, (a, b), state, args=(rate,), method="DOP853", rtol=1e-10, atol=1e-10, dense_output=True)
        values[:, inside] = sol.sol(times[inside])
        state = sol.y[:, -1].copy()
    return values


def test_michaelis_menten_repeated_oral_doses_match_solve_ivp():
    model = kn.parse_model(MICHAELIS_MENTEN)
    rng = np.random.default_rng(3)
    n = 5
    params = {name: model.typical[name] * np.exp(0.3 * rng.standard_normal(n)) for name in model.parameters}
    times = np.linspace(0, 36, 73)
    regimen = kn.Regimen.parse("200 mg po q12h x3")
    out = model.simulate(params, regimen, times, rtol=1e-10, atol=1e-10)
    doses = [(12.0 * j, 200.0, 0.0) for j in range(3)]
    for b in range(n):
        ref = reference_mm([params[p][b] for p in ("ka", "Vmax", "Km", "V")], doses, times)
        np.testing.assert_allclose(out["depot"][b], ref[0], rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(out["central"][b], ref[1], rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(out["conc"][b], ref[1] / params["V"][b], rtol=1e-8, atol=1e-10)


def test_michaelis_menten_bolus_and_infusion_match_solve_ivp():
    model = kn.parse_model(MM_IV)
    params = {"Vmax": np.array([10.0, 25.0, 4.0]), "Km": np.array([2.0, 0.5, 8.0]), "V": np.array([30.0, 12, 50])}
    times = np.array([0.0, 0.5, 1.0, 2.0, 2.5, 3.0, 6.0, 12.0, 24.0])
    regimen = kn.Regimen([kn.Dose(300), kn.Dose(500, time=2.0, duration=1.5), kn.Dose(150, time=12.0)])
    out = model.simulate(params, regimen, times, rtol=1e-10, atol=1e-10)
    doses = [(0.0, 300.0, 0.0), (2.0, 500.0, 1.5), (12.0, 150.0, 0.0)]
    for b in range(3):
        ref = reference_mm([0.0, params["Vmax"][b], params["Km"][b], params["V"][b]], doses, times, oral=False)
        np.testing.assert_allclose(out["central"][b], ref[1], rtol=1e-8, atol=1e-9)


def test_nonlinear_integral_of_an_output_matches_quadrature():
    from scipy.integrate import quad

    model = kn.parse_model(MM_IV)
    trajectory = model.solve({}, kn.Regimen([kn.Dose(300)]), horizon=24, integrals=("conc",), rtol=1e-10, atol=1e-10)
    ref = reference_mm([0.0, 10.0, 2.0, 30.0], [(0.0, 300.0, 0.0)], np.linspace(0, 24, 2401), oral=False)
    # quad on the dense reference solution of a smooth curve.
    grid = np.linspace(0, 24, 2401)
    auc = quad(lambda t: np.interp(t, grid, ref[1]) / 30, 0, 24, limit=500, points=grid[1:-1:50])[0]
    assert abs(trajectory.output_integral("conc", 0, 24)[0] - auc) < 1e-4 * auc


def test_failed_ode_solve_raises_simulation_error():
    model = kn.parse_model("""
k = 1
x(0) = 1
d/dt(x) = k*x^2
out = x
""")
    assert not model.is_linear
    with pytest.raises(SimulationError, match="ODE solver failed"):
        model.simulate({}, None, [0.0, 0.5, 2.0])


def test_nonlinear_model_rejects_linear_solver():
    model = kn.parse_model(MM_IV)
    with pytest.raises(SimulationError, match="linear"):
        model.simulate({}, kn.Regimen([kn.Dose(100)]), [1.0], solver="linear")


def test_linear_model_through_the_ode_solver_agrees(oral):
    times = np.linspace(0, 48, 49)
    regimen = kn.Regimen.parse("320 mg po q12h x4")
    exact = oral.simulate({"ka": [1.5, 0.3]}, regimen, times)
    ode = oral.simulate({"ka": [1.5, 0.3]}, regimen, times, solver="ode", rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ode["conc"], exact["conc"], rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("times", [[], [[1.0, 2.0]], [-1.0, 2.0], [np.nan]])
def test_bad_times_are_simulation_errors(oral, times):
    with pytest.raises(SimulationError, match="times"):
        oral.simulate({}, None, times)


# --- issue 14 defect 1: no solve hangs on a non-finite state or derivative ------------------------------


@pytest.fixture
def hang_guard():
    """Turn a hang into a failure after 60 s (the defect was an endless solve)."""
    import signal

    def fail(*_):
        raise AssertionError("the solve did not stop")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_nan_derivative_at_time_zero_stops_with_a_sentence_naming_state_and_time(hang_guard):
    model = kn.parse_model("""
    kg = 0.1 [1/h]
    Tmax = 100
    d/dt(tumor) = kg*tumor*log(Tmax/tumor)
    """)
    with pytest.raises(SimulationError, match=r"^the derivative of state 'tumor' is nan at t = 0 h \(check the model"):
        model.simulate({}, None, [0.0, 1.0])
    with pytest.raises(SimulationError, match="'tumor'"):
        kn.AUC(0, 24, "tumor").evaluate(model, {"kg": np.array([0.1, 0.2])}, None)


def test_a_state_that_blows_up_stops_with_a_simulation_error(hang_guard):
    model = kn.parse_model("""
    r = 1
    x(0) = 1
    d/dt(x) = r*x*x
    """)
    with pytest.raises(SimulationError):  # x = 1/(1 − t) is infinite at t = 1 h
        model.simulate({}, None, [0.5, 2.0])


def test_every_solve_is_bounded_by_a_number_of_evaluations(monkeypatch, hang_guard):
    from koopnb.simulate import ode

    monkeypatch.setattr(ode, "MAX_EVALUATIONS", 100)
    model = kn.parse_model("""
    k = 1000 [1/h]
    x(0) = 1
    d/dt(x) = -k*(x - exp(-t/50))
    """)
    with pytest.raises(SimulationError, match=r"more than 100 evaluations of the model between two dose events"):
        model.simulate({}, None, [0.0, 100.0])


# --- modelled infusion durations (NONMEM RATE = -2) --------------------------------------------------------

MODELLED = """
CL = 4 [L/h]
V = 20 [L]
D1 = 2 [h] ~ 0.2
d/dt(central) = -CL/V*central
conc = central / V
dose central duration=D1
"""


@pytest.mark.parametrize("solver", ["linear", "ode"])
def test_a_modelled_duration_equals_the_same_duration_given_explicitly(solver):
    model = kn.parse_model(MODELLED)
    times = [0.5, 1.0, 1.5, 2.0, 3.0, 13.0]
    d1 = np.array([1.0, 1.5, 3.0])
    modelled = model.simulate({"D1": d1}, kn.Regimen.parse("100 mg iv over model q12h x2"), times, solver=solver)
    for i, duration in enumerate(d1):
        explicit = model.simulate({"D1": duration}, kn.Regimen.parse(f"100 mg iv over {duration:g} h q12h x2"),
                                  times, solver=solver)
        # The ODE solver takes other steps for one set than for three: its tolerance (1e-8) decides.
        np.testing.assert_allclose(modelled["conc"][i], explicit["conc"][0], rtol=1e-12 if solver == "linear" else 1e-7)


def test_a_modelled_duration_needs_the_model_to_give_one():
    model = kn.parse_model(IV)
    with pytest.raises(SimulationError, match=r"^the dose of 100 at t = 0 h has a modelled duration, but the model "
                                              r"gives no infusion duration \(dose STATE duration=EXPR\)$"):
        model.simulate({}, kn.Regimen.parse("100 iv over model"), [1.0])


def test_ode_solution_asked_for_at_its_start_only_and_a_reset_at_the_horizon():
    model = kn.parse_model(IV)
    assert model.simulate({}, kn.Regimen.parse("100 iv at 1 h"), [0.0], solver="ode")["central"][0, 0] == 0.0
    regimen = kn.Regimen.parse("100 iv; reset at 24 h; 50 iv at 24 h")
    for solver in ("linear", "ode"):
        assert model.simulate({}, regimen, [24.0], solver=solver)["central"][0, 0] == pytest.approx(50.0, rel=1e-12)
        assert kn.Conc(24).evaluate(model, {}, regimen, solver=solver)[0] == pytest.approx(2.5, rel=1e-12)


def test_a_linear_model_with_a_coefficient_or_initial_value_that_is_not_finite_says_which():
    model = kn.parse_model(IV)
    with pytest.raises(SimulationError, match=r"^d/dt\(central\) has a coefficient that is not finite for 1 of 2 "):
        model.simulate({"V": np.array([0.0, 20.0])}, kn.Regimen.parse("100 iv"), [1.0])
    baseline = kn.parse_model(IV + "central(0) = log(V - 20)\n")
    with pytest.raises(SimulationError, match=r"^the initial value of state 'central' is not finite for 1 of 1 "):
        baseline.simulate({}, None, [1.0])


def test_a_chattering_switch_stops_early_with_a_simulation_error(hang_guard, monkeypatch):
    # dx/dt = +1 below the threshold and -1 above: once x reaches 1 the right-hand side switches back and forth
    # and DOP853's step size collapses to ~1e-8 h (it used to run to the 200,000-evaluation cap, ~10 s).
    model = kn.parse_model("""
    x(0) = 0
    d/dt(x) = where(x > 1, -1, 1)
    out = x
    """)
    calls = []
    rhs = ode.OdeSolution._rhs
    monkeypatch.setattr(ode.OdeSolution, "_rhs", lambda self, *args: calls.append(1) or rhs(self, *args))
    with pytest.raises(SimulationError, match=r"^the ODE solver is making almost no progress near t = 1\.0000\d* h: "
                                              r"it advanced .* h in its last 2,000 evaluations .* where\(\) condition "
                                              r"chattering"):
        model.simulate({}, None, [0.0, 0.5, 2.0, 5.0])
    assert len(calls) <= 3 * ode.PACE_WINDOW


def test_a_stiff_but_steady_solve_is_not_stopped_by_the_pace_check():
    # Stability limits DOP853 to steps of a few 1/k here (about 30,000 evaluations): slow but finishing.
    model = kn.parse_model("""
    k = 3000
    x(0) = 1
    d/dt(x) = -k*(x - 1 - 0.5*t)
    out = x
    """)
    out = model.simulate({}, None, [0.0, 1.0, 20.0])["out"][0]
    # x → 1 + 0.5 t − 0.5/k after the transient (the exact solution of this linear ODE).
    np.testing.assert_allclose(out[1:], 1 + 0.5 * np.array([1.0, 20.0]) - 0.5 / 3000, rtol=1e-7)  # solver: 1e-8
