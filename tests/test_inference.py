"""Individual Bayesian fits: likelihood against scipy, recovery and coverage on simulated patients,
bad data in one sentence, Posterior outputs, save/load, plots."""

import os
import warnings

import matplotlib
import numpy as np
import pandas as pd
import pytest
import scipy.stats

import koopnb as kn
from koopnb.errors import DataError, FitError
from koopnb.inference import ConvergenceWarning, Posterior, fit_individual
from koopnb.inference.individual import IndividualProblem
from koopnb.inference.likelihood import Additive, Combined, Exponential, Proportional, log_likelihood
from koopnb.inference.subjects import one_subject

matplotlib.use("Agg")

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
TIMES = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 24.0])
DOSE = kn.Regimen([kn.Dose(320.0)])


@pytest.fixture(scope="module")
def model():
    return kn.parse_model(THEOPHYLLINE)


@pytest.fixture(scope="module")
def posterior(model):
    values = model.simulate({"ka": 1.2, "CL": 3.3, "V": 28.0}, DOSE, TIMES)["conc"][0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fit_individual(model, (TIMES, values + 0.3), regimen=DOSE, steps=1500, seed=7, progress=False)


# ---------------------------------------------------------------- residual error models against scipy
@pytest.mark.parametrize(("error", "values", "sd"), [
    (Additive(), (0.7,), lambda f: 0.7 + 0 * f),
    (Proportional(), (0.2,), lambda f: 0.2 * f),
    (Combined(), (0.5, 0.1), lambda f: np.sqrt(0.25 + 0.01 * f**2)),
])
def test_normal_error_models_match_scipy(error, values, sd):
    f = np.array([[0.5, 2.0, 8.0]])
    y = np.array([[0.9, 1.5, 9.0]])
    expected = scipy.stats.norm.logpdf(y, f, sd(f))
    np.testing.assert_allclose(error.log_density(y, f, values), expected, rtol=1e-12)
    np.testing.assert_allclose(error.log_below(y, f, values), scipy.stats.norm.logcdf(y, f, sd(f)), rtol=1e-12)


def test_exponential_error_is_lognormal():
    f, y = np.array([[0.5, 2.0, 8.0]]), np.array([[0.9, 1.5, 9.0]])
    expected = scipy.stats.lognorm.logpdf(y, 0.3, scale=f)
    np.testing.assert_allclose(Exponential().log_density(y, f, (0.3,)), expected, rtol=1e-12)
    np.testing.assert_allclose(Exponential().log_below(y, f, (0.3,)), scipy.stats.lognorm.logcdf(y, 0.3, scale=f),
                               rtol=1e-12)


def test_blq_observations_use_the_probability_below_the_limit():
    f = np.array([[1.0, 0.2]])
    observed = np.array([[1.3, 0.5]])  # the second is BLQ with LLOQ 0.5
    below = np.array([[False, True]])
    total = log_likelihood(Additive(), (0.4,), observed, below, np.ones_like(below), f)
    expected = scipy.stats.norm.logpdf(1.3, 1.0, 0.4) + scipy.stats.norm.logcdf(0.5, 0.2, 0.4)
    np.testing.assert_allclose(total, [expected], rtol=1e-12)


@pytest.mark.parametrize(("error", "values"), [(Additive(), (0.4,)), (Proportional(), (0.2,)),
                                               (Combined(), (0.4, 0.1)), (Exponential(), (0.3,))])
def test_rows_with_a_prediction_that_is_not_finite_are_impossible(error, values):
    observed = np.array([[1.3, 0.5, 2.0]] * 5)
    predicted = np.array([[1.0, 0.6, 2.2], [np.nan, 0.6, 2.2], [1.0, np.inf, 2.2], [1.0, 0.6, -np.inf],
                          [1.0, 0.6, np.nan]])
    used = np.ones_like(observed, dtype=bool)
    for below in (np.zeros_like(used), np.array([[False, False, True]] * 5)):
        total = log_likelihood(error, values, observed, below, used, predicted)
        assert np.isfinite(total[0]) and np.all(total[1:] == -np.inf)
    # Padding is ignored, whatever its prediction.
    padded = used.copy()
    padded[:, 2] = False
    total = log_likelihood(error, values, observed, np.zeros_like(used), padded, predicted)
    assert np.isfinite(total[[0, 3, 4]]).all() and np.all(total[[1, 2]] == -np.inf)
    assert total[3] == pytest.approx(total[0]) and total[4] == pytest.approx(total[0])


def test_blq_rows_of_a_table_enter_the_fit(model):
    table = pd.DataFrame({"ID": 1, "TIME": [0, 2, 8, 24, 48], "AMT": [320, 0, 0, 0, 0], "DV": [np.nan, 7, 4, 1.0, 0.1],
                          "EVID": [1, 0, 0, 0, 0], "BLQ": [0, 0, 0, 0, 1]})
    with pytest.warns(ConvergenceWarning):  # 200 steps are plenty to check the rows, not to trust intervals
        posterior = fit_individual(model, table, steps=200, walkers=16, seed=1, progress=False)
    assert posterior.subject.below.tolist() == [False, False, False, True]


# ---------------------------------------------------------------- recovery on simulated patients
def test_posterior_covers_the_true_clearance_of_simulated_patients(model):
    """20 patients drawn from the prior, 6 observations each with additive noise (SD 0.7 mg/L):
    the 90% interval of CL should contain the truth in about 18 of 20; P(X ≥ 14 | n=20, p=0.9) ≈ 0.998."""
    rng = np.random.default_rng(2024)
    truths = model.prior().sample(20, seed=11)
    hits, posterior_error, prior_error = 0, [], []
    for i in range(20):
        true = {name: truths[name][i] for name in truths}
        clean = model.simulate(true, DOSE, TIMES)["conc"][0]
        noisy = np.abs(clean + 0.7 * rng.standard_normal(TIMES.size))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fit = fit_individual(model, (TIMES, noisy), regimen=DOSE, walkers=32, steps=600, seed=i, progress=False)
        clearance = fit.samples["CL"]
        low, high = np.quantile(clearance, [0.05, 0.95])
        hits += low <= true["CL"] <= high
        posterior_error.append(abs(np.mean(np.log(clearance)) - np.log(true["CL"])))
        prior_error.append(abs(np.log(model.typical["CL"]) - np.log(true["CL"])))
    assert hits >= 14
    assert np.mean(posterior_error) < 0.6 * np.mean(prior_error)


def test_map_matches_an_independent_scipy_optimisation(model, posterior):
    values = posterior.subject.values
    prior = model.prior()

    def negative(log_params):
        params = dict(zip(prior.names, np.exp(log_params), strict=True))
        predicted = model.simulate(params, DOSE, TIMES)["conc"][0]
        log_prior = scipy.stats.multivariate_normal(np.log(list(prior.median().values())), prior.covariance).logpdf(
            log_params)
        return -(scipy.stats.norm.logpdf(values, predicted, 0.7).sum() + log_prior)

    best = scipy.optimize.minimize(negative, np.log([1.5, 2.8, 31.5]), method="Nelder-Mead",
                                   options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 5000})
    np.testing.assert_allclose([posterior.map[n] for n in prior.names], np.exp(best.x), rtol=1e-3)


@pytest.mark.parametrize("error_line, sd", [("conc ~ additive(0.7)", lambda f: 0.7 + 0 * f),
                                             ("conc ~ combined(0.3, 0.1)", lambda f: np.sqrt(0.09 + 0.01 * f**2))])
def test_log_posterior_matches_scipy_on_every_path(error_line, sd):
    """The closed-form path, the general solver it hands sets to (ka = CL/V), and -inf where nothing exists."""
    model = kn.parse_model(THEOPHYLLINE.replace("conc ~ additive(0.7)", error_line))
    values = np.array([4.1, 6.9, 8.8, 8.1, 6.0, 1.9])
    problem = IndividualProblem(model, one_subject(model, (TIMES, values), DOSE, None, None, "conc"), "conc")
    prior = model.prior()
    log_prior = scipy.stats.multivariate_normal(np.log(list(prior.median().values())), prior.covariance)
    rng = np.random.default_rng(2)
    points = np.log([1.5, 2.8, 31.5]) + 0.3 * rng.standard_normal((6, 3))
    points[1, 0] = points[1, 1] - points[1, 2]  # ka = CL/V exactly: equal eigenvalues
    points[2, 0] = points[2, 1] - points[2, 2] + 1e-6  # inside the confluence gap
    expected = []
    for point in points:
        predicted = model.simulate(dict(zip(prior.names, np.exp(point), strict=True)), DOSE, TIMES)["conc"][0]
        expected.append(log_prior.logpdf(point) + scipy.stats.norm.logpdf(values, predicted, sd(predicted)).sum())
    np.testing.assert_allclose(problem(points), expected, rtol=1e-10)
    impossible = np.array([[np.inf, 1.0, 3.4], [np.nan, 1.0, 3.4], [0.4, 1.0, -np.inf]])
    assert np.all(problem(impossible) == -np.inf)


@pytest.mark.filterwarnings("ignore::koopnb.inference.ConvergenceWarning")
def test_same_seed_same_answer(model):
    values = model.simulate({}, DOSE, TIMES)["conc"][0]
    first, second = (fit_individual(model, (TIMES, values), regimen=DOSE, walkers=16, steps=100, seed=5,
                                    progress=False) for _ in range(2))
    np.testing.assert_array_equal(first.draws, second.draws)


def test_short_chain_warns_in_plain_words(model):
    values = model.simulate({}, DOSE, TIMES)["conc"][0]
    with pytest.warns(ConvergenceWarning, match="autocorrelation times long"):
        fit_individual(model, (TIMES, values), regimen=DOSE, walkers=16, steps=60, seed=1, progress=False)


# ---------------------------------------------------------------- bad data: one clear sentence
def _table(**changes):
    table = pd.DataFrame({"ID": 1, "TIME": [0.0, 1.0, 4.0, 12.0], "AMT": [320.0, 0, 0, 0],
                          "DV": [np.nan, 6.0, 7.0, 3.0], "EVID": [1, 0, 0, 0]})
    for column, values in changes.items():
        table[column] = values
    return table


@pytest.mark.parametrize(("data", "kind", "message"), [
    (_table(EVID=[1, 2, 2, 2]), FitError, "has no observations"),
    (_table(TIME=[1.0, 2.0, 4.0, 12.0], EVID=[0, 1, 0, 0], AMT=[0, 320.0, 0, 0], DV=[1.0, np.nan, 7, 3]), DataError,
     "before the first dose"),
])
@pytest.mark.filterwarnings("ignore::koopnb.inference.ConvergenceWarning")
def test_bad_tables_raise_one_sentence(model, data, kind, message):
    with pytest.raises(kind, match=message) as caught:
        fit_individual(model, data, steps=50, progress=False)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("error", ["additive(0.7)", "combined(0.5, 0.1)"])
def test_a_negative_observation_is_used_where_the_error_model_explains_it(error):
    """Issue 14, defect 10: NONMEM and nlmixr2 accept a negative level under an additive error."""
    model = kn.parse_model(THEOPHYLLINE.replace("additive(0.7)", error))
    values = np.array([1.0, 3.0, 6.0, 5.0, 3.0, -0.4])
    problem = IndividualProblem(model, one_subject(model, (TIMES, values), DOSE, None, None, "conc"), "conc")
    predicted = model.simulate({"ka": 1.2, "CL": 3.3, "V": 28.0}, DOSE, TIMES)["conc"][0]
    a, b = model.error_models["conc"].additive, model.error_models["conc"].proportional
    expected = scipy.stats.norm.logpdf(values, predicted, np.sqrt(a**2 + (b * predicted) ** 2)).sum()
    np.testing.assert_allclose(problem.log_likelihood(np.log([[1.2, 3.3, 28.0]])), [expected], rtol=1e-10)


@pytest.mark.parametrize("error", ["proportional(0.2)", "exponential(0.2)"])
def test_a_negative_observation_is_refused_where_the_likelihood_is_undefined(error):
    model = kn.parse_model(THEOPHYLLINE.replace("additive(0.7)", error))
    with pytest.raises(DataError, match=rf"subject 1: observation 2 \(at 4 h\) is negative .* {error[:8]}") as caught:
        fit_individual(model, _table(DV=[np.nan, 6.0, -1.0, 3.0]), steps=50, progress=False)
    assert caught.value.column == "DV" and "\n" not in str(caught.value)


def test_bad_arrays_and_covariates_raise_one_sentence(model):
    with pytest.raises(DataError, match="not a finite number"):
        fit_individual(model, (TIMES, [1, 2, np.inf, 4, 5, 6]), regimen=DOSE, progress=False)
    with pytest.raises(FitError, match="'WT' is not a covariate of the model"):
        fit_individual(model, (TIMES, np.ones(6)), regimen=DOSE, covariates={"WT": 70}, progress=False)
    with pytest.raises(FitError, match="needs the doses"):
        fit_individual(model, (TIMES, np.ones(6)), progress=False)
    with pytest.raises(FitError, match="choose one with subject="):
        fit_individual(model, kn.datasets.theophylline(), progress=False)


# ---------------------------------------------------------------- Posterior
def test_posterior_outputs(model, posterior):
    samples = posterior.samples
    assert set(samples) == {"ka", "CL", "V"}
    assert len(samples["CL"]) == posterior.draws.shape[0] * posterior.draws.shape[1]
    table = posterior.summary()
    assert list(table.columns) == ["MAP", "median", "5%", "95%", "CV%"]
    assert table.loc["CL", "5%"] < table.loc["CL", "median"] < table.loc["CL", "95%"]
    diagnostics = posterior.diagnostics
    assert 0.2 < diagnostics["acceptance_fraction"] < 0.9
    assert set(diagnostics["effective_sample_size"]) == {"ka", "CL", "V"}
    assert "<table" in posterior._repr_html_() and "Posterior" in repr(posterior)


def test_to_distribution_matches_the_log_draws(posterior):
    logs = np.log(np.column_stack([posterior.samples[n] for n in ("ka", "CL", "V")]))
    normal = posterior.to_distribution("lognormal")
    assert isinstance(normal, kn.MvLogNormal)
    np.testing.assert_allclose(normal.covariance, np.cov(logs, rowvar=False), rtol=1e-12)
    np.testing.assert_allclose(np.log(normal.medians), logs.mean(axis=0), rtol=1e-12)
    kde = posterior.to_distribution("kde")
    assert isinstance(kde, kn.Empirical) and kde.kde
    with pytest.raises(FitError, match="lognormal"):
        posterior.to_distribution("histogram")


def test_to_arviz_has_one_chain_per_walker(posterior):
    data = posterior.to_arviz()
    draws, walkers, _ = posterior.draws.shape
    assert data.posterior["CL"].shape == (walkers, draws)


def test_save_and_load_round_trip(tmp_path, posterior):
    path = tmp_path / "patient.npz"
    posterior.save(path)
    again = Posterior.load(path)
    np.testing.assert_array_equal(again.draws, posterior.draws)
    assert again.map == posterior.map and again.fixed == posterior.fixed
    np.testing.assert_array_equal(again.subject.times, posterior.subject.times)
    assert again.subject.regimen == posterior.subject.regimen
    assert again.model.typical == posterior.model.typical
    assert [f for f in os.listdir(tmp_path)] == ["patient.npz"]  # no temporary file left behind


def test_a_failed_save_leaves_the_old_file(tmp_path, posterior, monkeypatch):
    path = tmp_path / "patient.npz"
    posterior.save(path)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", crash)
    with pytest.raises(FitError, match=r"cannot save to .*: disk full"):
        posterior.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["patient.npz"]


def test_loading_something_else_is_one_sentence(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, x=np.arange(3))
    with pytest.raises(FitError, match="not a koopnb posterior file"):
        Posterior.load(path)
    with pytest.raises(FitError, match="there is no posterior file"):
        Posterior.load(tmp_path / "missing.npz")


def test_plots_return_figures(posterior):
    from matplotlib.figure import Figure

    from koopnb.plotting import plot_individual_fit, plot_posterior_pairs

    pairs = plot_posterior_pairs(posterior)
    fit = plot_individual_fit(posterior)
    assert isinstance(pairs, Figure) and isinstance(fit, Figure)
    assert len(pairs.axes) == 9
    band = fit.axes[0].collections[0].get_paths()[0].vertices
    assert np.all(np.isfinite(band))
