"""Population fit of the theophylline data against published nonlinear mixed-effects estimates.

Reference: nlmixr2 vignette "Modifying nlmixr2 models by piping" (nlmixr2 package documentation),
FOCEi fit of theo_sd (the same 12 subjects, 132 concentrations, time-0 samples included) with a
one-compartment first-order absorption model, log-normal IIV on ka, CL, V and additive error:
ka 1.594 /h (tka 0.4663), CL 2.751 L/h (tcl 1.012), V 31.81 L (tv 3.460), add.sd 0.6947 mg/L,
BSV 70.00 / 26.80 / 13.88 CV% (omega = sqrt(ln(1 + CV²)) = 0.632 / 0.263 / 0.138),
η-shrinkage 1.4 / 4.0 / 10.3 %.
"""

import warnings

import matplotlib
import numpy as np
import pandas as pd
import pytest
import scipy.stats
from shared_models import CORRELATED

import koopnb as kn
from koopnb.errors import FitError
from koopnb.inference import ConvergenceWarning, PopulationPosterior, fit_individual, fit_population

matplotlib.use("Agg")

MODEL = """
ka = 1.5  [1/h] ~ 0.6
CL = 2.8  [L/h] ~ 0.3
V  = 31.5 [L]   ~ 0.1
d/dt(depot)   = -ka*depot
d/dt(central) =  ka*depot - CL/V*central
conc = central / V
conc ~ additive(0.7)
dose depot
"""
PUBLISHED = {"ka": 1.594, "CL": 2.751, "V": 31.81, "conc.additive": 0.6947,
             "omega_ka": np.sqrt(np.log(1 + 0.70**2)), "omega_CL": np.sqrt(np.log(1 + 0.268**2)),
             "omega_V": np.sqrt(np.log(1 + 0.1388**2))}


@pytest.fixture(scope="module")
def model():
    return kn.parse_model(MODEL)


@pytest.fixture(scope="module")
def population(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fit_population(model, kn.datasets.theophylline(), walkers=16, steps=300, seed=1, progress=False,
                              individual_draws=400)


@pytest.mark.slow
def test_mode_agrees_with_the_published_focei_estimates(population):
    """The Laplace marginal is the objective FOCE-I approximates, so its mode should sit on the
    published estimates: typical values and residual SD within 2 %; omegas within 12 % (the mode is
    taken in log-omega coordinates with a half-normal prior, which nudges small omegas up)."""
    for name in ("ka", "CL", "V", "conc.additive"):
        assert population.map[name] == pytest.approx(PUBLISHED[name], rel=0.02), name
    for name in ("omega_ka", "omega_CL", "omega_V"):
        assert population.map[name] == pytest.approx(PUBLISHED[name], rel=0.12), name
    # .ofv is NONMEM's FOCE-I objective at the mode: never below the maximum-likelihood minimum, and close to it
    ml = fit_population(population.model, kn.datasets.theophylline(), method="ml")
    assert ml.ofv - 1e-6 <= population.ofv < ml.ofv + 2.0


@pytest.mark.slow
def test_posterior_medians_agree_with_the_published_estimates(population):
    """Posterior medians differ from maximum-likelihood estimates by the posterior's skew (12 subjects):
    typical values within 10 %, residual SD within 5 %, omegas within 30 %."""
    typical = population.typical
    for name in ("ka", "CL", "V"):
        assert typical[name] == pytest.approx(PUBLISHED[name], rel=0.10), name
    assert population.sigma["conc.additive"] == pytest.approx(PUBLISHED["conc.additive"], rel=0.05)
    omega = np.sqrt(np.diag(population.omega))
    for i, name in enumerate(("ka", "CL", "V")):
        assert omega[i] == pytest.approx(PUBLISHED[f"omega_{name}"], rel=0.30), name
    table = population.summary()
    assert table.loc["omega_V", "shrinkage%"] == pytest.approx(10.3, abs=8)


@pytest.mark.slow
def test_individuals_to_model_and_round_trip(tmp_path, model, population):
    assert sorted(population.individuals) == list(range(1, 13))
    subject = population.individuals[1]
    assert set(subject.samples) == {"ka", "CL", "V"}
    fitted = population.to_model()
    assert fitted.typical == pytest.approx(population.typical)
    assert fitted.error_models["conc"].additive == pytest.approx(population.sigma["conc.additive"])
    np.testing.assert_allclose(fitted.omega, population.omega)
    # the fitted population is a prior for a new patient
    data = kn.datasets.theophylline()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        patient = fit_individual(model, data[data.ID == 3], prior=population, walkers=16, steps=200, seed=2,
                                 progress=False)
    assert patient.model.typical == pytest.approx(population.typical)
    path = tmp_path / "theophylline.npz"
    population.save(path)
    again = PopulationPosterior.load(path)
    np.testing.assert_array_equal(again.draws, population.draws)
    np.testing.assert_array_equal(again.individuals[5].draws, population.individuals[5].draws)
    assert again.to_model().typical == pytest.approx(fitted.typical)
    assert isinstance(population.to_distribution(), kn.MvLogNormal)


@pytest.mark.slow
def test_goodness_of_fit_plot(population):
    from koopnb.plotting import plot_goodness_of_fit

    figure = plot_goodness_of_fit(population)
    assert len(figure.axes) == 4
    pred, dv = figure.axes[0].lines[1].get_data()
    table = population.table()
    np.testing.assert_allclose(pred, table["PRED"])
    np.testing.assert_allclose(dv, table["DV"])


def test_population_errors_are_one_sentence(model):
    with pytest.raises(FitError, match="'ka_typical' is not a population quantity"):
        fit_population(model, kn.datasets.theophylline(), priors={"ka_typical": kn.LogNormal(1.0, 1.0)},
                       steps=20, progress=False)
    no_iiv = kn.parse_model(MODEL.replace("~ 0.6", "").replace("~ 0.3", "").replace("~ 0.1", ""))
    with pytest.raises(FitError, match="no parameter with IIV"):
        fit_population(no_iiv, kn.datasets.theophylline(), steps=20, progress=False)


def test_default_priors_in_closed_form_equal_koopnbs_distributions():
    """The default priors are evaluated in closed form for speed; given as koopnb distributions (log-normal,
    half-normal as a truncated normal, uniform correlation) they give the same log-density, Jacobians included."""
    from koopnb.inference.population import PopulationProblem
    from koopnb.inference.subjects import all_subjects

    model = kn.parse_model(CORRELATED)
    data = pd.DataFrame({"ID": [1, 1, 2, 2], "TIME": [1.0, 2.0, 1.0, 2.0], "DV": [11.0, 11.5, 10.8, 11.2]})
    subjects = all_subjects(model, data, None, "level")
    default = PopulationProblem(model, subjects, "level", {})
    given = PopulationProblem(model, subjects, "level", {
        "B": kn.LogNormal(2.0, 2.0), "omega_C": kn.TruncatedNormal(0.0, 1.0, 0.0, np.inf),
        "corr_B_C": kn.Uniform(-1.0, 1.0), "level.additive": kn.LogNormal(0.3, 2.0)})
    points = default.start + 0.3 * np.random.default_rng(3).standard_normal((5, default.start.size))
    np.testing.assert_allclose(given.log_prior(points), default.log_prior(points), rtol=1e-12)
    # and by hand for one point: log-normal and half-normal densities times the Jacobian of the coordinates
    x = default.natural(points[:1])[0]
    expected = (sum(scipy.stats.lognorm(s=2.0, scale=v).logpdf(x[i]) + points[0, i]
                    for i, v in ((0, 2.0), (1, 1.5), (5, 0.3)))
                + sum(scipy.stats.halfnorm.logpdf(x[i]) + points[0, i] for i in (2, 3))
                + scipy.stats.uniform(-1, 2).logpdf(x[4]) + np.log(1 - x[4] ** 2))
    assert default.log_prior(points[:1])[0] == pytest.approx(expected, rel=1e-12)


def test_population_posterior_with_correlated_iiv():
    """Ω, the fitted model and a new patient's distribution keep the sampled correlation (draws held fixed, so
    Ω is known exactly; the patient's log-parameters are then N(log θ, Ω), checked to Monte Carlo error)."""
    model = kn.parse_model(CORRELATED)
    names = ["B", "C", "omega_B", "omega_C", "corr_B_C", "level.additive"]
    values = np.array([2.2, 1.4, 0.4, 0.3, 0.5, 0.3])
    draws = np.tile(values, (50, 4, 1))
    posterior = PopulationPosterior(names, draws, np.zeros((50, 4)), dict(zip(names, values, strict=True)), {},
                                    model, "level", {}, {})
    expected = np.array([[0.16, 0.06], [0.06, 0.09]])
    np.testing.assert_allclose(posterior.omega, expected, rtol=1e-12)
    np.testing.assert_allclose(posterior.to_model().omega, expected, rtol=1e-12)
    patient = posterior.to_distribution(n=20000, seed=4)
    assert patient.median() == pytest.approx({"B": 2.2, "C": 1.4}, rel=0.02)
    np.testing.assert_allclose(patient.covariance, expected, atol=0.006)
