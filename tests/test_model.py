"""The Model object of API.md: attributes, prior, equations, display, parameter validation and shapes."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

import koopnb as kn
from koopnb.errors import KoopnbError

ORAL = """
# theophylline: one compartment, first-order absorption
ka = 1.5  [1/h] ~ 0.6
CL = 2.8  [L/h] ~ 27%
V  = 31.5 [L]   ~ 0.15
d/dt(depot)   = -ka*depot
d/dt(central) =  ka*depot - CL/V*central
conc = central / V
conc ~ additive(0.7)
dose depot
"""

COVARIATE = """
covariate WT = 70 [kg]
TVCL = 2.8 [L/h] ~ 0.3
V = 31.5 [L] ~ 0.15
ka = 1.5 [1/h]
F = 0.8 fixed
CL = TVCL*(WT/70)^0.75
d/dt(depot) = -ka*depot
d/dt(central) = ka*depot - CL/V*central
conc = central/V
amount = central
dose depot bioavailability=F
"""

MM = """
Vmax = 10 [mg/h] ~ 0.3
Km = 2 [mg/L] ~ 0.3
V = 30 [L] ~ 0.2
d/dt(central) = -Vmax*(central/V)/(Km + central/V)
conc = central / V
dose central
"""


@pytest.fixture(scope="module")
def oral():
    return kn.parse_model(ORAL, name="theo")


def test_attributes(oral):
    assert oral.name == "theo"
    assert oral.states == ("depot", "central")
    assert oral.parameters == ("ka", "CL", "V")
    assert oral.covariates == {}
    assert oral.observables == ("conc",)
    assert oral.typical == {"ka": 1.5, "CL": 2.8, "V": 31.5}
    assert oral.is_linear is True


def test_omega_from_sd_and_cv(oral):
    expected = np.diag([0.6**2, np.log(1 + 0.27**2), 0.15**2])
    np.testing.assert_allclose(oral.omega, expected, rtol=1e-15)
    assert oral.omega.shape == (3, 3)


def test_covariates_fixed_constants_and_parameters_without_iiv():
    model = kn.parse_model(COVARIATE)
    assert model.covariates == {"WT": 70.0}
    assert model.parameters == ("TVCL", "V", "ka")  # F is fixed: a constant, not a parameter
    assert model.observables == ("conc", "amount")
    np.testing.assert_allclose(model.omega, np.diag([0.09, 0.0225, 0.0]), rtol=1e-15)
    prior = model.prior()
    assert prior.names == ("TVCL", "V") or list(prior.names) == ["TVCL", "V"]


def test_nonlinear_model_is_not_linear():
    assert kn.parse_model(MM).is_linear is False


def test_prior_is_a_multivariate_log_normal_with_the_typical_medians(oral):
    prior = oral.prior()
    assert isinstance(prior, kn.MvLogNormal)
    assert list(prior.names) == ["ka", "CL", "V"]
    samples = prior.sample(200_000, seed=1)
    logs = np.log(np.stack([samples[name] for name in ("ka", "CL", "V")]))
    np.testing.assert_allclose(np.exp(np.median(logs, axis=1)), [1.5, 2.8, 31.5], rtol=0.01)
    np.testing.assert_allclose(np.cov(logs), oral.omega, atol=0.004)
    # The log-density is the multivariate normal of the logs with the Jacobian 1/Π x.
    point = {"ka": np.array([1.5]), "CL": np.array([2.8]), "V": np.array([31.5])}
    expected = -0.5 * np.log(np.linalg.det(2 * np.pi * oral.omega)) - np.log(1.5 * 2.8 * 31.5)
    np.testing.assert_allclose(prior.logpdf(point), expected, rtol=1e-12)


def test_prior_without_iiv_is_an_error():
    model = kn.parse_model("k = 0.1 [1/h]\nd/dt(x) = -k*x\ny = x\ndose x\n")
    with pytest.raises(KoopnbError, match="no parameter with IIV"):
        model.prior()


def test_equations(oral):
    equations = oral.equations()
    assert all(isinstance(eq, sp.Eq) for eq in equations)
    t = sp.Symbol("t", real=True)
    ka, depot = sp.Symbol("ka", real=True), sp.Symbol("depot", real=True)
    assert sp.Eq(sp.Derivative(sp.Function("depot")(t), t), -ka * depot) in equations
    assert any(eq.lhs == sp.Symbol("conc", real=True) for eq in equations)


def test_display(oral):
    latex = oral._repr_latex_()
    assert latex.startswith("$") and latex.endswith("$") and "aligned" in latex
    assert "depot" in latex
    html = oral._repr_html_()
    for text in ("theo", "ka", "CL", "31.5", "conc"):
        assert text in html
    assert "27" in html  # CV% of CL


# -- parameters and shapes -------------------------------------------------------------------------

def test_unknown_parameter_suggests_the_closest_name(oral):
    with pytest.raises(KoopnbError, match="'CLL' is not a parameter of the model \\(did you mean 'CL'\\?\\)"):
        oral.simulate({"CLL": 3.0}, kn.Regimen.parse("100 mg po"), [1.0])
    with pytest.raises(KoopnbError, match="'Q' is not a parameter of the model; the parameters are ka, CL, V"):
        oral.simulate({"Q": 3.0}, kn.Regimen.parse("100 mg po"), [1.0])


def test_unknown_covariate(oral):
    model = kn.parse_model(COVARIATE)
    with pytest.raises(KoopnbError, match="'wt' is not a covariate"):
        model.simulate({}, kn.Regimen.parse("100 mg po"), [1.0], covariates={"wt": 60})


def test_mismatched_array_lengths(oral):
    with pytest.raises(KoopnbError, match="different lengths \\[2, 3\\]"):
        oral.simulate({"ka": [1.0, 2.0], "CL": [1.0, 2.0, 3.0]}, kn.Regimen.parse("100 mg po"), [1.0])


def test_covariate_length_must_match_the_batch():
    model = kn.parse_model(COVARIATE)
    with pytest.raises(KoopnbError, match="different lengths"):
        model.simulate({"V": [30.0, 31.0]}, None, [1.0], covariates={"WT": [60.0, 70.0, 80.0]})


@pytest.mark.parametrize("value", [np.nan, np.inf, [1.0, np.nan]])
def test_non_finite_parameters(oral, value):
    with pytest.raises(KoopnbError, match="'ka' has a value that is not finite"):
        oral.simulate({"ka": value}, kn.Regimen.parse("100 mg po"), [1.0])


def test_two_dimensional_parameter_is_an_error(oral):
    with pytest.raises(KoopnbError, match="1-D array"):
        oral.simulate({"ka": [[1.0, 2.0]]}, kn.Regimen.parse("100 mg po"), [1.0])


@pytest.mark.parametrize("text", [ORAL, COVARIATE, MM])
@pytest.mark.parametrize("batch", [1, 7])
def test_every_output_and_state_has_shape_batch_by_times(text, batch):
    model = kn.parse_model(text)
    times = np.array([0.0, 0.5, 2.0, 8.0, 24.0])
    name = model.parameters[0]
    params = {name: model.typical[name] * np.linspace(0.8, 1.2, batch)} if batch > 1 else {}
    out = model.simulate(params, kn.Regimen.parse("100 mg po"), times)
    assert set(out) == set(model.observables) | set(model.states)
    for values in out.values():
        assert values.shape == (batch, times.size)
        assert np.all(np.isfinite(values))


def test_scalars_and_length_one_arrays_broadcast(oral):
    out = oral.simulate({"ka": 1.5, "CL": [2.8, 3.0], "V": np.array([31.5])}, kn.Regimen.parse("100 mg po"), [1.0])
    assert out["conc"].shape == (2, 1)
    single = oral.simulate({"CL": 3.0}, kn.Regimen.parse("100 mg po"), [1.0])["conc"]
    assert out["conc"][1, 0] == pytest.approx(single[0, 0], rel=1e-15)
