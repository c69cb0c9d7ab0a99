"""kn.vpc: quadrature bands against closed forms, scipy, and the simulation-based VPC."""

import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize, stats

import koopnb as kn
from koopnb.errors import KoopnbError

matplotlib.use("Agg")

DOSES = {1: 100.0, 2: 150.0, 3: 80.0}
TIMES = (0.5, 2.0, 4.0, 8.0)
K, V, OMEGA = 0.2, 10.0, 0.3


def bolus_model(error: str) -> kn.Model:
    return kn.parse_model(f"""
V = {V} [L] ~ {OMEGA}
k = {K} [1/h]
d/dt(central) = -k * central
conc = central / V
conc ~ {error}
dose central
""")


def bolus_data() -> pd.DataFrame:
    rows = []
    rng = np.random.default_rng(0)
    for subject, dose in DOSES.items():
        rows.append({"ID": subject, "TIME": 0.0, "AMT": dose, "DV": np.nan, "EVID": 1})
        for time in TIMES:
            level = dose / V * np.exp(-K * time) * np.exp(0.3 * rng.standard_normal())
            rows.append({"ID": subject, "TIME": time, "AMT": 0.0, "DV": level, "EVID": 0})
    return pd.DataFrame(rows)


def mixture_quantile(cdf, level, low, high):
    return optimize.brentq(lambda y: cdf(y) - level, low, high, xtol=1e-12)


def test_exponential_error_bands_are_the_closed_form_lognormal_mixture():
    """log y = log(D/V) − k t − η + ε with η ~ N(0, ω²), ε ~ N(0, s²): each subject's level is log-normal with
    log-variance ω² + s²; the band is the quantile of the equal mixture over the three subjects (brentq)."""
    s = 0.2
    result = kn.vpc(bolus_model(f"exponential({s})"), bolus_data(), times=np.array(TIMES), rtol=1e-5,
                    max_points=40)
    assert result.converged
    sd = np.hypot(OMEGA, s)
    for j, time in enumerate(TIMES):
        centres = [np.log(dose / V) - K * time for dose in DOSES.values()]

        def cdf(y, centres=centres):
            return np.mean([stats.norm.cdf((np.log(y) - c) / sd) for c in centres])

        for i, level in enumerate(result.quantiles):
            exact = mixture_quantile(cdf, level, 1e-6, 1e3)
            assert result.bands[i, j] == pytest.approx(exact, rel=2e-5)
            assert abs(result.bands[i, j] - exact) <= result.error[i, j]  # the error estimate is honest


@pytest.mark.slow
def test_additive_error_bands_match_scipy_quadrature():
    """y = (D/V) e^{−kt} e^{−η} + ε, ε ~ N(0, a²): the CDF E_η[Φ((y − f(η))/a)] by scipy.integrate.quad."""
    a = 2.0
    times = (0.5, 4.0)
    result = kn.vpc(bolus_model(f"additive({a})"), bolus_data(), times=np.array(times), rtol=1e-4,
                    max_points=40)
    assert result.converged
    for j, time in enumerate(times):
        def cdf(y, time=time):
            return np.mean([integrate.quad(
                lambda z, dose=dose: stats.norm.cdf((y - dose / V * np.exp(-K * time - OMEGA * z)) / a)
                * stats.norm.pdf(z), -12, 12, epsabs=1e-13, epsrel=1e-12)[0] for dose in DOSES.values()])

        for i, level in enumerate(result.quantiles):
            exact = mixture_quantile(cdf, level, -10, 100)
            assert result.bands[i, j] == pytest.approx(exact, abs=1e-4 * np.ptp(result.bands))  # rtol
            assert abs(result.bands[i, j] - exact) <= max(result.error[i, j], 1e-9)


def test_a_small_residual_error_is_reported_as_not_converged():
    """Φ((y − f(η))/a) is nearly a step in η when a is small against the spread IIV gives f; Gauss–Hermite rules
    then converge slowly, and the result says so rather than claiming its tolerance."""
    result = kn.vpc(bolus_model("additive(0.2)"), bolus_data(), times=np.array(TIMES), max_points=10)
    assert not result.converged
    assert result.error.max() > 1e-3 * np.ptp(result.bands)


def test_dose_proportional_subjects_share_one_evaluation_per_node():
    """The three subjects differ only in the dose, so a linear model evaluates one of them per node."""
    result = kn.vpc(bolus_model("additive(0.5)"), bolus_data(), times=np.array(TIMES))
    points = np.arange(4, 25, 2)
    assert result.n_evals in np.cumsum(points)  # one random effect: `points` nodes per rule, one subject


@pytest.fixture(scope="module")
def theophylline_model():
    return kn.parse_model("""
ka = 1.59 [1/h] ~ 0.63
CL = 2.75 [L/h] ~ 0.26
V  = 31.8 [L]   ~ 0.14
d/dt(depot)   = -ka*depot
d/dt(central) =  ka*depot - CL/V*central
conc = central / V
conc ~ additive(0.69)
dose depot
""")


def test_koopman_bands_agree_with_simulation(theophylline_model):
    """The quadrature bands (rules of up to 14 points per random effect: 6,264 model evaluations) equal the
    simulation-based ones within 4 combined errors, at 10× fewer model evaluations than this (small) simulation;
    observed percentiles are those of the data per bin."""
    data = kn.datasets.theophylline()
    grid = np.array([0.5, 1.0, 2.0, 5.0, 9.0, 24.0])
    koopman = kn.vpc(theophylline_model, data, times=grid, max_points=14)
    simulated = kn.vpc(theophylline_model, data, times=grid, method="montecarlo", n=63_000, seed=4)
    assert koopman.n_evals == 6264 and koopman.method == "koopman" and simulated.method == "montecarlo"
    assert koopman.error.max() < 0.03 and koopman.predicted_error.max() < 0.03
    spread = np.sqrt(simulated.error**2 + koopman.error**2)
    assert np.all(np.abs(koopman.bands - simulated.bands) < 4 * spread)
    spread = np.sqrt(simulated.predicted_error**2 + koopman.predicted_error**2)
    assert np.all(np.abs(koopman.predicted - simulated.predicted) < 4 * spread)
    assert simulated.n_evals >= 10 * koopman.n_evals
    table = koopman.data
    for b, group in table.groupby("BIN"):
        np.testing.assert_allclose(koopman.observed[:, b], np.quantile(group["DV"], koopman.quantiles))
    assert len(koopman.bin_times) == koopman.observed.shape[1] == 11  # 11 observations per subject


def test_vpc_of_a_fit_and_its_plot(theophylline_model):
    from koopnb.plotting import plot_vpc

    data = kn.datasets.theophylline()
    fit = kn.fit_population(theophylline_model, data, method="ml")
    result = kn.vpc(fit, data, times=np.linspace(0, 24, 13), max_points=10)
    figure = plot_vpc(result, baseline=kn.vpc(fit, data, times=np.linspace(0, 24, 13), method="montecarlo",
                                              n=5_000, seed=1))
    assert len(figure.axes) == 1
    lowest = figure.axes[0].lines[1].get_data()[1]  # after the observations: the first level's band
    np.testing.assert_allclose(lowest, result.bands[0])


def test_vpc_errors_are_one_sentence(theophylline_model):
    data = kn.datasets.theophylline()
    with pytest.raises(KoopnbError, match="quantiles must be levels strictly between 0 and 1"):
        kn.vpc(theophylline_model, data, quantiles=(0.05, 1.0))
    with pytest.raises(KoopnbError, match="method must be 'koopman' or 'montecarlo'"):
        kn.vpc(theophylline_model, data, method="mc")
    with pytest.raises(KoopnbError, match="vpc needs a population fit or a Model"):
        kn.vpc("model", data)
    with pytest.raises(KoopnbError, match="times must be a non-empty 1-D array"):
        kn.vpc(theophylline_model, data, times=[-1.0])
