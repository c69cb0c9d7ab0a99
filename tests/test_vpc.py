"""kn.vpc: quadrature bands against closed forms, scipy, and the simulation-based VPC."""

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize, special, stats

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
    exact = np.empty_like(result.bands)
    for j, time in enumerate(TIMES):
        centres = [np.log(dose / V) - K * time for dose in DOSES.values()]

        def cdf(y, centres=centres):
            return np.mean([stats.norm.cdf((np.log(y) - c) / sd) for c in centres])

        exact[:, j] = [mixture_quantile(cdf, level, 1e-6, 1e3) for level in result.quantiles]
    np.testing.assert_allclose(result.bands, exact, rtol=2e-5)
    assert np.all(np.abs(result.bands - exact) <= result.tolerance)  # converged means within the tolerance
    # the estimate is not below the true error (per level, the largest over the times)
    assert np.all(np.abs(result.bands - exact).max(axis=1) <= result.error.max(axis=1))


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
                lambda z, dose=dose: special.ndtr((y - dose / V * math.exp(-K * time - OMEGA * z)) / a)
                * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi), -12, 12, epsabs=1e-13, epsrel=1e-12)[0]
                for dose in DOSES.values()])

        for i, level in enumerate(result.quantiles):
            exact = mixture_quantile(cdf, level, -10, 100)
            assert abs(result.bands[i, j] - exact) <= result.tolerance[i, j]  # 1e-4 of the predictive SD


def bolus_cl_model(error: str) -> kn.Model:
    return kn.parse_model(f"""
CL = {K * V} [L/h] ~ {OMEGA}
V = {V} [L]
d/dt(central) = -CL / V * central
conc = central / V
conc ~ {error}
dose central
""")


@pytest.mark.parametrize("error", ["additive(0.8)", "proportional(0.15)", "combined(0.3, 0.1)"])
def test_bands_converge_to_the_quantiles_of_the_scipy_predictive_distribution(error):
    """IV bolus with log-normal CL only: f(z) = (D/V) exp(−(CL/V) e^{ωz} t), z ~ N(0, 1); the predictive CDF of an
    observation is the 1-D integral E_z[Φ((y − f(z)) / sd(f(z)))], here by scipy.integrate.quad at 1e-12 (equal
    mixture over the three subjects, and in each bin over its observations); the quantile by brentq.  The bands
    report converged at the default tolerance (1e-3 of the predictive SD), and every band point and bin quantile
    is within its tolerance of the reference."""
    model = bolus_cl_model(error)
    data = bolus_data()
    times = np.array([0.25, 1.0, 3.0, 8.0, 16.0])
    result = kn.vpc(model, data, times=times)
    assert result.converged and result.method == "koopman"
    assert np.all(result.error <= result.tolerance) and np.all(result.predicted_error <= result.predicted_tolerance)
    sd_of = {"additive(0.8)": lambda f: 0.8, "proportional(0.15)": lambda f: 0.15 * f,
             "combined(0.3, 0.1)": lambda f: math.hypot(0.3, 0.1 * f)}[error]

    def f(dose, t, z):
        return dose / V * math.exp(-K * math.exp(OMEGA * z) * t)

    def conditional(z, y, dose, t):  # P(observation ≤ y | z) times the density of z (scalar special functions)
        level = f(dose, t, z)
        return special.ndtr((y - level) / sd_of(level)) * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)

    def cdf(y, pairs):
        return np.mean([integrate.quad(conditional, -12, 12, args=(y, dose, t), epsabs=1e-13, epsrel=1e-12,
                                       limit=200)[0] for dose, t in pairs])

    def quantiles(pairs):
        top = max(dose for dose, _ in pairs) / V
        return np.array([mixture_quantile(lambda y: cdf(y, pairs), level, -10, 3 * top + 10)
                         for level in result.quantiles])

    exact = np.stack([quantiles([(dose, t) for dose in DOSES.values()]) for t in times], axis=1)
    assert np.all(np.abs(result.bands - exact) <= result.tolerance)
    doses = [DOSES[i] for i in result.data["ID"]]
    for b, group in result.data.assign(DOSE=doses).groupby("BIN"):
        exact_bin = quantiles(list(zip(group["DOSE"], group["TIME"], strict=True)))
        assert np.all(np.abs(result.predicted[:, b] - exact_bin) <= result.predicted_tolerance[:, b])
    assert result.tolerance.max() < 0.01  # 1e-3 of an SD of a few mg/L: a tolerance that catches real mistakes


def test_too_few_collocation_points_are_reported_as_not_converged():
    """With six points per random effect (three collocation rules, the fewest that give an error estimate) the
    error estimate of the two-parameter response's bands is still tens of tolerances (1e-3 of the predictive SD)
    somewhere, and the result says so rather than claiming its tolerance."""
    model = kn.parse_model(f"""
V = {V} [L] ~ {OMEGA}
k = {K} [1/h] ~ 0.5
d/dt(central) = -k * central
conc = central / V
conc ~ additive(1.0)
dose central
""")
    result = kn.vpc(model, bolus_data(), times=np.array(TIMES), max_points=6)
    assert not result.converged
    assert np.any(result.error > 10 * result.tolerance)
    assert result.n_evals == 4**2 + 5**2 + 6**2


def test_dose_proportional_subjects_share_one_evaluation_per_node():
    """The three subjects differ only in the dose, so a linear model evaluates one of them per node."""
    result = kn.vpc(bolus_model("additive(0.5)"), bolus_data(), times=np.array(TIMES))
    points = np.array([4, 5, 6, 8, 10, 12, 16, 20, 24])
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
    """The quadrature bands (three random effects, converged at the default tolerance) equal the simulation-based
    ones within 4 combined errors, at over 10× fewer model evaluations than this (small) simulation; observed
    percentiles are those of the data per bin."""
    data = kn.datasets.theophylline()
    grid = np.array([0.5, 1.0, 2.0, 5.0, 9.0, 24.0])
    koopman = kn.vpc(theophylline_model, data, times=grid)
    simulated = kn.vpc(theophylline_model, data, times=grid, method="montecarlo", n=63_000, seed=4)
    assert koopman.converged and koopman.method == "koopman" and simulated.method == "montecarlo"
    assert np.all(koopman.error <= koopman.tolerance) and np.all(koopman.predicted_error <= koopman.predicted_tolerance)
    assert koopman.tolerance.max() < 0.005  # 1e-3 of the predictive SD (under 5 mg/L)
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
    result = kn.vpc(fit, data, times=np.linspace(0, 24, 13), rtol=1e-2)
    figure = plot_vpc(result, baseline=kn.vpc(fit, data, times=np.linspace(0, 24, 13), method="montecarlo",
                                              n=5_000, seed=1))
    assert len(figure.axes) == 1
    assert result.converged and "converged: error ≤" in figure.axes[0].get_title()
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
    with pytest.raises(KoopnbError, match="max_points must be at least 6"):
        kn.vpc(theophylline_model, data, max_points=5)
    with pytest.raises(KoopnbError, match="the tolerances non-negative and not both 0"):
        kn.vpc(theophylline_model, data, rtol=0.0)
