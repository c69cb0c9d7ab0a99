"""The closed-form impulse responses of linear models, and the fit predictions built on them.

Checked against scipy's matrix exponential (an independent method) and against the general exact
solution that Model.simulate uses, for the model shapes the closed form covers, and for the parameter
sets it must hand back to the general solver (equal eigenvalues, complex spectra).
"""

import numpy as np
import pytest
from scipy.linalg import expm

import koopnb as kn
from koopnb.inference.simulation import StackedSubjects
from koopnb.inference.subjects import one_subject
from koopnb.model.modal import impulse_responses

ORAL = """
ka = 1.5  [1/h] ~ 0.6
CL = 2.8  [L/h] ~ 0.3
V  = 31.5 [L]   ~ 0.2
d/dt(depot)   = -ka*depot
d/dt(central) =  ka*depot - CL/V*central
conc = central / V
conc ~ additive(0.5)
dose depot
"""

TWO_COMPARTMENT = """
ka = 0.9 [1/h] ~ 0.4
CL = 4.0 [L/h] ~ 0.3
V1 = 20  [L]   ~ 0.2
Q  = 6.0 [L/h] ~ 0.3
V2 = 45  [L]   ~ 0.2
d/dt(depot)      = -ka*depot
d/dt(central)    = ka*depot - (CL + Q)/V1*central + Q/V2*peripheral
d/dt(peripheral) = Q/V1*central - Q/V2*peripheral
baseline = 1.5
conc = baseline + 1000 * central / V1
conc ~ combined(0.2, 0.1)
dose depot
"""

OSCILLATING = """
k = 0.3 [1/h] ~ 0.2
w = 0.8 [1/h] ~ 0.2
d/dt(a) = -k*a - w*b
d/dt(b) =  w*a - 2*k*b
y = a + 2*b
y ~ additive(0.1)
dose a
"""


def response_by_expm(model, output, parameters, state, tau):
    """c0 + C expm(A tau) e_state for one parameter set, by scipy (output must be affine)."""
    compiled = model.compiled
    args = [np.array([v]) for v in parameters]
    n = len(compiled.states)
    a = np.array([np.broadcast_to(v, (1,))[0] for v in compiled.matrix(*args)]).reshape(n, n)
    def output_at(x):
        values = compiled.output_values(np.zeros(1), *[np.array([xi]) for xi in x], *args)
        return float(np.asarray(values[compiled.outputs.index(output)]).ravel()[0])
    offset = output_at(np.zeros(n))
    return np.array([output_at(expm(a * t)[:, state]) - offset for t in tau]), offset


@pytest.mark.parametrize("text, output, dosed", [(ORAL, "conc", (0,)), (TWO_COMPARTMENT, "conc", (0, 1))])
def test_impulse_responses_match_the_matrix_exponential(text, output, dosed):
    model = kn.parse_model(text)
    responses = impulse_responses(model.compiled, output, dosed)
    assert responses is not None
    rng = np.random.default_rng(3)
    typical = np.array([model.typical[name] for name in model.parameters])
    sets = typical * np.exp(0.4 * rng.standard_normal((5, typical.size)))
    lam, gaps, checks, coefficients, offset = responses.evaluate(list(sets.T), len(sets))
    first, second = np.triu_indices(len(lam), 1)
    np.testing.assert_allclose(gaps, lam[first] - lam[second], rtol=1e-12)
    assert (checks[0::2] <= 0).all() and (checks[1::2] >= 0).all()  # real spectra, decaying
    assert checks.shape[0] == (2 if "peripheral" in text else 0)
    tau = np.array([0.0, 0.3, 2.0, 11.0, 40.0])
    for b, parameters in enumerate(sets):
        for m, state in enumerate(dosed):
            expected, expected_offset = response_by_expm(model, output, parameters, state, tau)
            closed = np.exp(np.outer(tau, lam[:, b])) @ coefficients[:, m, b]
            assert closed == pytest.approx(expected, rel=1e-10, abs=1e-12 * np.abs(expected).max())
            assert np.broadcast_to(offset, len(sets))[b] == pytest.approx(expected_offset, rel=1e-14)


def test_models_without_a_closed_form_are_refused():
    transit = """
    ktr = 2 [1/h] ~ 0.3
    k = 0.2 [1/h] ~ 0.3
    d/dt(t1) = -ktr*t1
    d/dt(t2) = ktr*t1 - ktr*t2
    d/dt(central) = ktr*t2 - k*central
    c = central
    c ~ additive(1)
    dose t1
    """
    nonlinear = """
    Vmax = 10 ~ 0.2
    Km = 2 ~ 0.2
    d/dt(central) = -Vmax*central/(Km + central)
    c = central
    c ~ additive(1)
    dose central
    """
    three = """
    k12 = 0.5 ~ 0.2
    k21 = 0.3 ~ 0.2
    k13 = 0.2 ~ 0.2
    k31 = 0.1 ~ 0.2
    k10 = 0.4 ~ 0.2
    d/dt(a1) = -(k10 + k12 + k13)*a1 + k21*a2 + k31*a3
    d/dt(a2) = k12*a1 - k21*a2
    d/dt(a3) = k13*a1 - k31*a3
    c = a1
    c ~ additive(1)
    dose a1
    """
    log_output = ORAL.replace("conc = central / V", "conc = log(central / V + 1)")
    rotation = OSCILLATING.replace("2*k*b", "k*b")  # eigenvalues -k ± iw for every parameter set
    for text, output in ((transit, "c"), (nonlinear, "c"), (three, "c"), (log_output, "conc"), (rotation, "y")):
        model = kn.parse_model(text)
        assert impulse_responses(model.compiled, output, (0,)) is None
    assert impulse_responses(kn.parse_model(OSCILLATING).compiled, "y", (0,)) is not None


def stack_for(model, regimen, times, output):
    values = np.ones(len(times))
    return StackedSubjects(model, [one_subject(model, (times, values), regimen, None, None, output)], output)


REGIMEN = kn.Regimen([kn.Dose(320.0), kn.Dose(200.0, time=12.0), kn.Dose(150.0, time=20.0, cmt="central", duration=1.5),
                      kn.Dose(100.0, time=30.0, cmt="central")])
TIMES = np.array([0.0, 0.25, 1.0, 6.0, 12.0, 12.5, 20.0, 20.7, 21.5, 24.0, 30.0, 36.0, 72.0])


@pytest.mark.parametrize("text", [ORAL, TWO_COMPARTMENT])
def test_fit_predictions_match_model_simulate(text):
    model = kn.parse_model(text)
    stack = stack_for(model, REGIMEN, TIMES, "conc")
    assert stack.closed_form is not None
    rng = np.random.default_rng(5)
    typical = np.array([model.typical[name] for name in model.parameters])
    sets = typical * np.exp(0.5 * rng.standard_normal((40, typical.size)))
    predicted = stack.predict(np.zeros(len(sets), dtype=int), sets)
    reference = model.simulate(dict(zip(model.parameters, sets.T, strict=True)), REGIMEN, TIMES)["conc"]
    np.testing.assert_allclose(predicted, reference, rtol=1e-10, atol=1e-12 * np.abs(reference).max())


def test_equal_eigenvalues_and_complex_spectra_go_to_the_general_solver():
    model = kn.parse_model(ORAL)
    stack = stack_for(model, REGIMEN, TIMES, "conc")
    # ka = CL/V exactly, and within the confluence gap, next to ordinary sets.
    sets = np.array([[2.8 / 31.5, 2.8, 31.5], [1.0000001 * 2.8 / 31.5, 2.8, 31.5], [1.5, 2.8, 31.5]])
    with np.errstate(divide="ignore", invalid="ignore"):
        _, usable = stack.closed_form(np.zeros(3, dtype=int), list(sets.T))
    assert usable.tolist() == [False, False, True]
    predicted = stack.predict(np.zeros(3, dtype=int), sets)
    reference = model.simulate(dict(zip(model.parameters, sets.T, strict=True)), REGIMEN, TIMES)["conc"]
    np.testing.assert_allclose(predicted, reference, rtol=1e-9)

    oscillating = kn.parse_model(OSCILLATING)
    regimen = kn.Regimen([kn.Dose(10.0), kn.Dose(5.0, time=4.0)])
    stack = stack_for(oscillating, regimen, TIMES, "y")
    # Eigenvalues -3k/2 ± sqrt(k²/4 - w²): complex when w > k/2.
    sets = np.array([[0.3, 0.8], [0.5, 0.1], [0.2, 2.0]])
    with np.errstate(invalid="ignore"):
        _, usable = stack.closed_form(np.zeros(3, dtype=int), list(sets.T))
    assert usable.tolist() == [False, True, False]
    predicted = stack.predict(np.zeros(3, dtype=int), sets)
    reference = oscillating.simulate({"k": sets[:, 0], "w": sets[:, 1]}, regimen, TIMES)["y"]
    np.testing.assert_allclose(predicted, reference, rtol=1e-9, atol=1e-12)


def test_several_subjects_with_padding_and_covariates():
    text = ORAL.replace("CL/V*central", "CL*(WT/70)^0.75/V*central")
    text = text.replace("ka = 1.5", "covariate WT = 70 [kg]\nka = 1.5")
    model = kn.parse_model(text)
    subjects = [one_subject(model, (times, np.ones(len(times))), regimen, {"WT": wt}, None, "conc")
                for times, regimen, wt in ((TIMES, REGIMEN, 55.0), (TIMES[:5], kn.Regimen([kn.Dose(100.0)]), 90.0))]
    stack = StackedSubjects(model, subjects, "conc")
    assert stack.closed_form is not None
    rows = np.array([0, 1, 1, 0])
    sets = np.array([[1.5, 2.8, 31.5], [0.7, 3.1, 40.0], [2.2, 1.9, 25.0], [1.1, 4.0, 33.0]])
    predicted = stack.predict(rows, sets)
    for i, row in enumerate(rows):
        times, regimen, wt = ((TIMES, REGIMEN, 55.0), (TIMES[:5], kn.Regimen([kn.Dose(100.0)]), 90.0))[row]
        reference = model.simulate(dict(zip(model.parameters, sets[i], strict=True)), regimen, times,
                                   covariates={"WT": wt})["conc"][0]
        np.testing.assert_allclose(predicted[i, :len(times)], reference, rtol=1e-10, atol=1e-13)
