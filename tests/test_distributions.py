"""Distributions against closed forms and scipy.stats, reference maps, errors."""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats
from scipy.special import ndtr

from koopnb.distributions import (
    Distribution,
    Empirical,
    Joint,
    LogNormal,
    MvLogNormal,
    Normal,
    TruncatedNormal,
    Uniform,
)
from koopnb.errors import DistributionError

GRID_N = 2001
U_GRID = (np.arange(GRID_N) + 0.5) / GRID_N  # fine deterministic grid of the open unit interval
Z_GRID = np.linspace(-8.0, 8.0, 1601)

# each univariate next to the scipy.stats distribution it must reproduce
UNIVARIATES = [
    (LogNormal(2.8, 0.3, name="x"), scipy.stats.lognorm(s=0.3, scale=2.8)),
    (Normal(35.0, 5.0, name="x"), scipy.stats.norm(35.0, 5.0)),
    (Uniform(0.5, 2.0, name="x"), scipy.stats.uniform(0.5, 1.5)),
    (TruncatedNormal(0.8, 0.2, 0.0, 1.0, name="x"), scipy.stats.truncnorm(-4.0, 1.0, loc=0.8, scale=0.2)),
    (
        TruncatedNormal(1.0, 2.0, 0.0, np.inf, name="x"),
        scipy.stats.truncnorm(-0.5, np.inf, loc=1.0, scale=2.0),
    ),
]
IDS = ["lognormal", "normal", "uniform", "truncnormal", "halfopen-truncnormal"]

MV_MEDIAN = {"CL": 2.8, "V": 35.0, "KA": 1.2}
MV_COV = np.array([[0.09, 0.03, -0.01], [0.03, 0.04, 0.0], [-0.01, 0.0, 0.16]])


def column(values: dict[str, np.ndarray]) -> np.ndarray:
    return values["x"]


# ------------------------------------------------------------------ moments
def test_lognormal_moments_closed_form():
    m, w = 2.8, 0.3
    d = LogNormal(m, w, name="CL")
    assert d.mean()["CL"] == pytest.approx(m * np.exp(w**2 / 2), rel=1e-14)
    assert d.cov()[0, 0] == pytest.approx((np.exp(w**2) - 1) * m**2 * np.exp(w**2), rel=1e-14)
    assert d.median() == {"CL": m}
    assert d.std()["CL"] == pytest.approx(np.sqrt((np.exp(w**2) - 1) * m**2 * np.exp(w**2)), rel=1e-14)


def test_normal_and_uniform_moments_closed_form():
    assert Normal(35.0, 5.0, name="V").mean() == {"V": 35.0}
    assert Normal(35.0, 5.0, name="V").cov()[0, 0] == 25.0
    u = Uniform(0.5, 2.0, name="ka")
    assert u.mean()["ka"] == 1.25
    assert u.median()["ka"] == 1.25
    assert u.cov()[0, 0] == pytest.approx(1.5**2 / 12, rel=1e-15)


@pytest.mark.parametrize(("mean", "sd", "low", "high"), [(0.8, 0.2, 0.0, 1.0), (1.0, 2.0, 0.0, np.inf), (0, 1, 3, 4)])
def test_truncated_normal_moments_closed_form(mean, sd, low, high):
    a, b = (low - mean) / sd, (high - mean) / sd
    mass = ndtr(b) - ndtr(a)
    pdf = scipy.stats.norm.pdf
    b_pdf = 0.0 if np.isinf(b) else b * pdf(b)
    expected_mean = mean + sd * (pdf(a) - pdf(b)) / mass
    expected_var = sd**2 * (1 + (a * pdf(a) - b_pdf) / mass - ((pdf(a) - pdf(b)) / mass) ** 2)
    d = TruncatedNormal(mean, sd, low, high, name="F")
    assert d.mean()["F"] == pytest.approx(expected_mean, rel=1e-12)
    assert d.cov()[0, 0] == pytest.approx(expected_var, rel=1e-10)
    median = d.median()["F"]
    assert (ndtr((median - mean) / sd) - ndtr(a)) / mass == pytest.approx(0.5, abs=1e-13)


def test_mvlognormal_moments_closed_form():
    d = MvLogNormal(MV_MEDIAN, MV_COV)
    m = np.array(list(MV_MEDIAN.values()))
    mean = m * np.exp(np.diag(MV_COV) / 2)
    assert np.allclose(list(d.mean().values()), mean, rtol=1e-14)
    assert np.allclose(d.cov(), np.outer(mean, mean) * (np.exp(MV_COV) - 1), rtol=1e-14)
    assert d.median() == MV_MEDIAN
    # each marginal is a univariate lognormal
    for i, name in enumerate(MV_MEDIAN):
        marginal = scipy.stats.lognorm(s=np.sqrt(MV_COV[i, i]), scale=m[i])
        assert d.mean()[name] == pytest.approx(marginal.mean(), rel=1e-13)
        assert d.std()[name] == pytest.approx(marginal.std(), rel=1e-13)


def test_mvlognormal_reproduces_its_covariance_by_sampling():
    d = MvLogNormal(MV_MEDIAN, MV_COV)
    n = 200_000
    draws = d.sample(n, seed=2024)
    logs = np.log(np.column_stack([draws[name] for name in d.names]))
    sample_cov = np.cov(logs, rowvar=False)
    # standard error of a sample covariance of gaussians: sqrt((S_ij² + S_ii S_jj) / n)
    standard_error = np.sqrt((MV_COV**2 + np.outer(np.diag(MV_COV), np.diag(MV_COV))) / n)
    assert np.all(np.abs(sample_cov - MV_COV) < 4 * standard_error)
    assert np.all(np.abs(logs.mean(axis=0) - np.log(list(MV_MEDIAN.values()))) < 4 * np.sqrt(np.diag(MV_COV) / n))
    x = np.exp(logs)
    mean = np.array(list(d.mean().values()))
    assert np.all(np.abs(x.mean(axis=0) - mean) < 4 * x.std(axis=0) / np.sqrt(n))


# --------------------------------------------------- reference maps vs scipy
@pytest.mark.parametrize(("dist", "reference"), UNIVARIATES, ids=IDS)
def test_from_cube_is_the_scipy_quantile_function(dist, reference):
    assert np.allclose(column(dist.from_cube(U_GRID)), reference.ppf(U_GRID), rtol=1e-12, atol=1e-14)


def truncated_normal_quantile(z: np.ndarray, d: TruncatedNormal) -> np.ndarray:
    """Closed-form quantile at Φ(z): lower half from Φ(a) + Φ(z) Z, upper half from Φ(-b) + Φ(-z) Z."""
    a, b = (d.low - d.mean_value) / d.sd, (d.high - d.mean_value) / d.sd
    mass = ndtr(b) - ndtr(a)
    lower = d.mean_value + d.sd * scipy.special.ndtri(ndtr(a) + ndtr(z) * mass)
    upper = d.mean_value - d.sd * scipy.special.ndtri(ndtr(-b) + ndtr(-z) * mass)
    return np.where(z <= 0, lower, upper)


@pytest.mark.parametrize(("dist", "reference"), UNIVARIATES, ids=IDS)
def test_from_normal_is_quantile_of_normal_cdf(dist, reference):
    z = np.linspace(-6.0, 6.0, 1201)
    # scipy's truncnorm.isf loses the upper tail, so truncated normals use the closed form
    if isinstance(dist, TruncatedNormal):
        expected = truncated_normal_quantile(z, dist)
    else:
        expected = np.where(z <= 0, reference.ppf(ndtr(z)), reference.isf(ndtr(-z)))
    assert np.allclose(column(dist.from_normal(z)), expected, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize(("dist", "reference"), UNIVARIATES, ids=IDS)
def test_from_cube_pushes_the_uniform_grid_onto_the_distribution(dist, reference):
    # the empirical CDF of the mapped grid matches the scipy CDF up to the grid resolution
    x = np.sort(column(dist.from_cube(U_GRID)))
    assert np.max(np.abs(reference.cdf(x) - U_GRID)) < 1e-12


@pytest.mark.parametrize(("dist", "reference"), UNIVARIATES, ids=IDS)
def test_round_trips(dist, reference):
    # near a finite bound the parameter itself cannot resolve z beyond ~5 (x = low + 1e-7 keeps 9 digits)
    z = (Z_GRID if dist.gaussian else Z_GRID[np.abs(Z_GRID) <= 5])[:, None]
    assert np.allclose(dist.to_normal(dist.from_normal(z)), z, rtol=1e-9, atol=1e-9)
    u = U_GRID[:, None]
    assert np.allclose(dist.to_cube(dist.from_cube(u)), u, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(("dist", "reference"), UNIVARIATES, ids=IDS)
def test_logpdf_matches_scipy(dist, reference):
    x = reference.ppf(U_GRID)
    assert np.allclose(dist.logpdf({"x": x}), reference.logpdf(x), rtol=1e-12, atol=1e-12)
    low, high = reference.support()
    outside = [v for v in (low - 1.0, high + 1.0) if np.isfinite(v)]
    assert np.all(dist.logpdf({"x": outside}) == -np.inf)


@pytest.mark.parametrize(("dist", "reference"), UNIVARIATES, ids=IDS)
def test_tails_are_finite_and_in_the_support(dist, reference):
    u = np.array([1e-300, 1e-100, 1e-16, 1 - 1e-16])
    x = column(dist.from_cube(u))
    low, high = reference.support()
    assert np.all(np.isfinite(x))
    assert np.all((x >= low) & (x <= high))
    assert np.all(np.diff(x) >= 0)
    z = np.array([-38.0, -20.0, 20.0, 38.0])
    x = column(dist.from_normal(z))
    assert np.all(np.isfinite(x))
    assert np.all((x >= low) & (x <= high))


def test_upper_tail_keeps_full_precision():
    # far from the bounds a truncated normal is the normal: z = 30 must come back as 30, not 8.2
    nearly_normal = TruncatedNormal(0.0, 1.0, -50.0, 50.0, name="x")
    z = np.array([-30.0, -10.0, 10.0, 30.0])
    assert np.allclose(column(nearly_normal.from_normal(z)), z, rtol=1e-12)
    # the upper tail goes through the survival function: 0 - 1·Φ(-10) keeps every digit of Φ(-10)
    uniform = Uniform(-1.0, 0.0, name="x")
    assert column(uniform.from_normal(np.array([10.0])))[0] == pytest.approx(-ndtr(-10.0), rel=1e-14, abs=0)
    # towards an infinite bound probabilities below the smallest double still map to finite values
    open_below = TruncatedNormal(0.0, 1.0, -np.inf, 50.0, name="x")
    assert column(open_below.from_normal(np.array([-40.0, -60.0])))[0] == pytest.approx(-40.0, rel=1e-13)
    assert column(open_below.from_normal(np.array([-60.0])))[0] == pytest.approx(-60.0, rel=1e-13)
    assert open_below.to_normal({"x": [-60.0]})[0, 0] == pytest.approx(-60.0, rel=1e-13)
    # u = 1 - 2^-53: sf = 2^-53 of Normal(1, 2²) truncated to [0, inf)
    half_open = TruncatedNormal(1.0, 2.0, 0.0, np.inf, name="x")
    q = 2.0**-53
    expected = 1.0 - 2.0 * scipy.stats.norm.ppf(q * scipy.stats.norm.sf(-0.5))
    assert column(half_open.from_cube(np.array([1 - q])))[0] == pytest.approx(expected, rel=1e-12)


def test_gaussian_from_normal_closed_forms():
    z = Z_GRID
    assert np.allclose(LogNormal(2.8, 0.3, name="x").from_normal(z)["x"], 2.8 * np.exp(0.3 * z), rtol=1e-14)
    assert np.allclose(Normal(35.0, 5.0, name="x").from_normal(z)["x"], 35.0 + 5.0 * z, rtol=1e-14)


def test_mvlognormal_maps_and_logpdf():
    d = MvLogNormal(MV_MEDIAN, MV_COV)
    factor = d.scale_matrix
    assert np.allclose(factor, np.tril(factor))
    assert np.allclose(factor @ factor.T, MV_COV, rtol=1e-14, atol=1e-16)
    assert np.allclose(d.location, np.log(list(MV_MEDIAN.values())))
    assert d.log_space == (True, True, True)
    z = np.random.default_rng(7).standard_normal((500, 3))
    x = d.from_normal(z)
    expected = np.exp(d.location + z @ factor.T)
    assert np.allclose(np.column_stack([x[n] for n in d.names]), expected, rtol=1e-14)
    assert np.allclose(d.to_normal(x), z, atol=1e-12)
    u = ndtr(z)
    assert np.allclose(d.to_cube(d.from_cube(u)), u, atol=1e-12)
    logs = np.log(np.column_stack([x[n] for n in d.names]))
    reference = scipy.stats.multivariate_normal(d.location, MV_COV).logpdf(logs) - logs.sum(axis=1)
    assert np.allclose(d.logpdf(x), reference, rtol=1e-12)
    assert d.logpdf({"CL": -1.0, "V": 35.0, "KA": 1.0})[0] == -np.inf


def test_mvlognormal_accepts_zero_variance_directions():
    cov = np.array([[0.09, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.04]])
    d = MvLogNormal(MV_MEDIAN, cov)
    assert np.allclose(d.scale_matrix @ d.scale_matrix.T, cov, atol=1e-16)
    z = np.random.default_rng(3).standard_normal((200, 3)) * 5
    x = d.from_normal(z)
    assert np.all(x["V"] == 35.0)  # exactly the median, not merely close
    # logpdf: the varying part's lognormal densities, the constant a point mass
    independent = scipy.stats.lognorm(0.3, scale=2.8).logpdf(x["CL"]) + scipy.stats.lognorm(0.2, scale=1.2).logpdf(
        x["KA"]
    )
    assert np.allclose(d.logpdf(x), independent, rtol=1e-10)
    assert d.logpdf({"CL": 2.8, "V": 36.0, "KA": 1.2})[0] == -np.inf
    same_as_joint = Joint({"CL": LogNormal(2.8, 0.3), "V": LogNormal(35.0, 0.0), "KA": LogNormal(1.2, 0.2)})
    assert np.allclose(same_as_joint.logpdf(x), d.logpdf(x), rtol=1e-12)
    assert np.allclose(d.cov()[1], 0.0)


def test_mvlognormal_perfect_correlation_uses_a_semidefinite_factor():
    cov = np.array([[0.09, 0.06], [0.06, 0.04]])  # correlation exactly 1
    d = MvLogNormal({"CL": 2.8, "V": 35.0}, cov)
    assert np.allclose(d.scale_matrix @ d.scale_matrix.T, cov, atol=1e-15)
    x = d.from_normal(np.random.default_rng(5).standard_normal((100, 2)))
    assert np.allclose(np.log(x["CL"] / 2.8) / 0.3, np.log(x["V"] / 35.0) / 0.2, atol=1e-12)


def test_lognormal_with_zero_omega_is_a_constant():
    d = LogNormal(2.8, 0.0, name="CL")
    assert np.all(d.from_normal(Z_GRID)["CL"] == 2.8)
    assert d.cov()[0, 0] == 0.0
    assert list(d.logpdf({"CL": [2.8, 2.9]})) == [0.0, -np.inf]
    assert np.all(d.to_normal({"CL": 2.8}) == 0.0)
    assert Normal(1.0, 0.0, name="x").std() == {"x": 0.0}


# ---------------------------------------------------------------------- joint
def test_joint_orders_names_and_combines_members():
    mv = MvLogNormal({"Q": 3.0, "V2": 50.0}, [[0.04, 0.01], [0.01, 0.09]])
    j = Joint({"CL": LogNormal(2.8, 0.3), "V": Normal(35.0, 5.0), "peripheral": mv, "F": Uniform(0.5, 1.0)})
    assert j.names == ("CL", "V", "Q", "V2", "F")
    assert j.dim == 5
    assert not j.gaussian
    z = np.random.default_rng(11).standard_normal((300, 5))
    x = j.from_normal(z)
    assert np.allclose(x["CL"], 2.8 * np.exp(0.3 * z[:, 0]))
    assert np.allclose(x["V"], 35.0 + 5.0 * z[:, 1])
    mv_part = mv.from_normal(z[:, 2:4])
    assert np.allclose(x["Q"], mv_part["Q"]) and np.allclose(x["V2"], mv_part["V2"])
    assert np.allclose(x["F"], 0.5 + 0.5 * ndtr(z[:, 4]))
    assert np.allclose(j.to_normal(x), z, atol=1e-10)
    expected = (
        scipy.stats.lognorm(0.3, scale=2.8).logpdf(x["CL"])
        + scipy.stats.norm(35, 5).logpdf(x["V"])
        + mv.logpdf(x)
        + scipy.stats.uniform(0.5, 0.5).logpdf(x["F"])
    )
    assert np.allclose(j.logpdf(x), expected, rtol=1e-12)
    assert np.allclose(j.cov()[:2, :2], np.diag([LogNormal(2.8, 0.3, name="a").cov()[0, 0], 25.0]))
    assert np.allclose(j.cov()[2:4, 2:4], mv.cov())
    assert j.cov()[0, 2] == 0.0
    assert j.mean()["F"] == 0.75 and j.median()["Q"] == 3.0


def test_gaussian_joint_exposes_its_affine_structure():
    mv = MvLogNormal({"Q": 3.0, "V2": 50.0}, [[0.04, 0.01], [0.01, 0.09]])
    j = Joint({"CL": LogNormal(2.8, 0.3), "V": Normal(35.0, 5.0), "peripheral": mv})
    assert j.gaussian
    assert j.log_space == (True, False, True, True)
    assert np.allclose(j.location, [np.log(2.8), 35.0, np.log(3.0), np.log(50.0)])
    factor = j.scale_matrix
    assert factor.shape == (4, 4)
    assert np.allclose(factor[:2, :2], np.diag([0.3, 5.0])) and np.allclose(factor[2:, 2:], mv.scale_matrix)
    assert np.all(factor[:2, 2:] == 0) and np.all(factor[2:, :2] == 0)
    z = np.random.default_rng(1).standard_normal((50, 4))
    y = j.location + z @ factor.T
    x = j.from_normal(z)
    mapped = np.where(j.log_space, np.exp(y), y)
    assert np.allclose(np.column_stack([x[n] for n in j.names]), mapped, rtol=1e-14)


def test_nested_joint_and_names_from_keys():
    inner = Joint({"CL": LogNormal(2.8, 0.3), "V": LogNormal(35.0, 0.2)})
    outer = Joint({"pk": inner, "KA": LogNormal(1.2, 0.4, name="KA")})
    assert outer.names == ("CL", "V", "KA")
    assert outer.sample(4, seed=3)["KA"].shape == (4,)


def test_same_seed_same_answer():
    j = Joint({"CL": LogNormal(2.8, 0.3), "F": TruncatedNormal(0.8, 0.2, 0, 1), "ka": Uniform(0.5, 2)})
    a, b, c = j.sample(100, seed=42), j.sample(100, seed=42), j.sample(100, seed=43)
    assert all(np.array_equal(a[n], b[n]) for n in j.names)
    assert not np.array_equal(a["CL"], c["CL"])
    e = Empirical({"x": np.arange(10.0), "y": np.arange(10.0) ** 2})
    assert np.array_equal(e.sample(20, 5)["y"], e.sample(20, 5)["y"])


@pytest.mark.parametrize(("dist", "reference"), UNIVARIATES, ids=IDS)
def test_samples_follow_the_distribution(dist, reference):
    draws = column(dist.sample(20_000, seed=9))
    assert scipy.stats.kstest(draws, reference.cdf).pvalue > 1e-3


def test_joint_with_an_empirical_member():
    e = Empirical({"CL": [2.0, 3.0, 4.0], "V": [30.0, 35.0, 40.0]})
    j = Joint({"posterior": e, "F": Uniform(0.5, 1.0)})
    assert j.names == ("CL", "V", "F")
    draws = j.sample(50, seed=2)
    assert set(draws["CL"]) <= {2.0, 3.0, 4.0} and np.all((draws["F"] >= 0.5) & (draws["F"] <= 1.0))
    assert j.mean() == {"CL": 3.0, "V": 35.0, "F": 0.75}
    with pytest.raises(DistributionError, match=r"integrate over its points\(\)$"):
        j.from_normal(np.zeros((1, 3)))


# ------------------------------------------------------------------ empirical
def test_empirical_discrete_measure():
    cl = np.array([2.0, 3.0, 5.0, 4.0])
    v = np.array([30.0, 40.0, 35.0, 45.0])
    e = Empirical({"CL": cl, "V": v})
    points, weights = e.points()
    assert np.array_equal(points["CL"], cl) and np.array_equal(points["V"], v)
    assert np.allclose(weights, 0.25) and weights.sum() == pytest.approx(1.0)
    assert e.mean() == {"CL": 3.5, "V": 37.5}
    assert e.median() == {"CL": 3.5, "V": 37.5}
    assert np.allclose(e.cov(), np.cov(np.column_stack([cl, v]), rowvar=False, bias=True))
    draws = e.sample(1000, seed=1)
    pairs = set(zip(draws["CL"], draws["V"], strict=True))
    assert pairs <= set(zip(cl, v, strict=True)) and len(pairs) == 4
    assert not e.gaussian


def kde_samples() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(17)
    return {"CL": rng.lognormal(1.0, 0.3, 60), "shift": rng.normal(0.0, 1.0, 60)}


def test_kde_logpdf_matches_scipy_gaussian_kde_with_jacobian():
    samples = kde_samples()
    e = Empirical(samples, kde=True)
    reference = scipy.stats.gaussian_kde(np.vstack([np.log(samples["CL"]), samples["shift"]]))
    rng = np.random.default_rng(4)
    x = {"CL": rng.lognormal(1.0, 0.5, 300), "shift": rng.normal(0.0, 1.5, 300)}
    expected = reference.logpdf(np.vstack([np.log(x["CL"]), x["shift"]])) - np.log(x["CL"])
    assert np.allclose(e.logpdf(x), expected, rtol=1e-10)
    assert e.logpdf({"CL": -1.0, "shift": 0.0})[0] == -np.inf
    centres, factor, weights, log_space = e.mixture()
    assert log_space == (True, False)
    assert np.allclose(centres, np.column_stack([np.log(samples["CL"]), samples["shift"]]))
    assert np.allclose(factor @ factor.T, reference.covariance, rtol=1e-12)
    assert np.allclose(weights, 1 / 60)


def test_kde_moments_against_quadrature():
    samples = kde_samples()
    e = Empirical(samples, kde=True)
    centres, factor, weights, _ = e.mixture()
    # independent check: Gauss-Hermite over each gaussian component (exp is smooth, 60 nodes converge)
    nodes, gh_weights = np.polynomial.hermite_e.hermegauss(60)
    gh_weights = gh_weights / gh_weights.sum()
    z1, z2 = np.meshgrid(nodes, nodes, indexing="ij")
    w = np.outer(gh_weights, gh_weights).ravel()
    z = np.column_stack([z1.ravel(), z2.ravel()])
    y = centres[:, None, :] + (z @ factor.T)[None, :, :]  # (k, nodes, 2)
    x = np.stack([np.exp(y[..., 0]), y[..., 1]], axis=-1)
    mean = np.einsum("k,n,kni->i", weights, w, x)
    second = np.einsum("k,n,kni,knj->ij", weights, w, x, x)
    assert np.allclose(list(e.mean().values()), mean, rtol=1e-12)
    assert np.allclose(e.cov(), second - np.outer(mean, mean), rtol=1e-10, atol=1e-12)
    # marginal median: half the mass below it
    median = e.median()
    reference = scipy.stats.gaussian_kde(
        np.log(samples["CL"]), bw_method=e.mixture()[1][0, 0] / np.std(np.log(samples["CL"]), ddof=1)
    )
    assert reference.integrate_box_1d(-np.inf, np.log(median["CL"])) == pytest.approx(0.5, abs=1e-10)
    assert np.mean(ndtr((median["shift"] - centres[:, 1]) / np.sqrt(factor[1, 0] ** 2 + factor[1, 1] ** 2))) == (
        pytest.approx(0.5, abs=1e-12)
    )


def test_kde_sampling_matches_its_moments():
    e = Empirical(kde_samples(), kde=True)
    n = 100_000
    draws = e.sample(n, seed=8)
    for name in e.names:
        assert abs(draws[name].mean() - e.mean()[name]) < 4 * e.std()[name] / np.sqrt(n)


def test_kde_logpdf_integrates_to_one():
    e = Empirical({"CL": kde_samples()["CL"]}, kde=True)
    total, _ = scipy.integrate.quad(lambda t: np.exp(e.logpdf({"CL": t})[0]), 0, np.inf, limit=200)
    assert total == pytest.approx(1.0, abs=1e-8)


# --------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: LogNormal(0.0, 0.3), "LogNormal median must be positive, got 0.0"),
        (lambda: LogNormal(2.8, -0.1), "LogNormal omega (SD of the log) must be non-negative, got -0.1"),
        (lambda: LogNormal(np.nan, 0.3), "LogNormal median must be a finite number, got nan"),
        (lambda: LogNormal("big", 0.3), "LogNormal median must be a number, got 'big'"),
        (lambda: Normal(1.0, -1.0), "Normal sd must be non-negative, got -1.0"),
        (lambda: Normal(np.inf, 1.0), "Normal mean must be a finite number, got inf"),
        (lambda: Uniform(2.0, 1.0), "Uniform needs low < high, got low=2.0, high=1.0"),
        (lambda: Uniform(0.0, np.inf), "Uniform high must be a finite number, got inf"),
        (lambda: TruncatedNormal(0, 0, 0, 1), "TruncatedNormal sd must be positive, got 0.0"),
        (lambda: TruncatedNormal(0, 1, 1, 1), "TruncatedNormal needs low < high, got low=1.0, high=1.0"),
        (
            lambda: LogNormal(1.0, 0.1, name=""),
            "LogNormal needs parameter names that are non-empty strings, got ''",
        ),
        (lambda: MvLogNormal({}, []), "MvLogNormal median must be a non-empty dict name -> positive number"),
        (lambda: MvLogNormal({"CL": -1.0}, [[1.0]]), "MvLogNormal median of 'CL' must be positive, got -1.0"),
        (
            lambda: MvLogNormal({"CL": 1.0, "V": 2.0}, np.eye(3)),
            "MvLogNormal cov must have shape (2, 2) to match the median names ('CL', 'V'), got (3, 3)",
        ),
        (
            lambda: MvLogNormal({"CL": 1.0, "V": 2.0}, [[1.0, 0.5], [0.2, 1.0]]),
            "the covariance matrix is not symmetric: entry (CL, V) = 0.5 but (V, CL) = 0.2",
        ),
        (
            lambda: MvLogNormal({"CL": 1.0, "V": 2.0}, [[1.0, 2.0], [2.0, 1.0]]),
            "the covariance matrix is not positive semi-definite (smallest eigenvalue -1)",
        ),
        (
            lambda: MvLogNormal({"CL": 1.0, "V": 2.0}, [[1.0, 0.0], [0.0, -1.0]]),
            "the covariance matrix has a negative variance for 'V'",
        ),
        (
            lambda: MvLogNormal({"CL": 1.0}, [[np.nan]]),
            "the covariance matrix contains a non-finite entry",
        ),
        (lambda: Joint({}), "Joint needs a non-empty dict name -> distribution"),
        (lambda: Joint({"CL": 3.0}), "Joint member 'CL' is not a distribution: 3.0"),
        (
            lambda: Joint({"CL": LogNormal(1.0, 0.1), "mv": MvLogNormal({"CL": 1.0}, [[0.1]])}),
            "Joint has the parameter 'CL' more than once",
        ),
        (
            lambda: Joint({"CL": LogNormal(1.0, 0.1, name="V")}),
            "Joint key 'CL' disagrees with the name 'V' of its member LogNormal(median=1.0, omega=0.1, name='V')",
        ),
        (lambda: Empirical({}), "Empirical needs a non-empty dict name -> 1-D array of samples"),
        (lambda: Empirical({"CL": [1.0]}), "Empirical needs at least 2 samples of 'CL', got 1"),
        (lambda: Empirical({"CL": [1.0, np.nan, 2.0]}), "Empirical sample 1 of 'CL' is not finite (nan)"),
        (
            lambda: Empirical({"CL": [1.0, 2.0], "V": [1.0, 2.0, 3.0]}),
            "Empirical samples must have equal lengths, got {'CL': 2, 'V': 3}",
        ),
        (
            lambda: Empirical({"CL": [[1.0, 2.0]]}),
            "Empirical samples of 'CL' must be a 1-D array, got shape (1, 2)",
        ),
        (
            lambda: Empirical({"CL": [1.0, 2.0, 3.0], "V": [5.0, 5.0, 5.0]}, kde=True),
            "Empirical(kde=True) needs spread in 'V'; all its samples are equal",
        ),
        (
            lambda: Empirical({"a": [0.0, 1.0, 2.0], "b": [0.0, -2.0, -4.0]}, kde=True),
            "Empirical(kde=True) samples are linearly dependent (in log space for positive columns), "
            "so the kernel covariance is singular",
        ),
    ],
)
def test_constructor_errors(build, message):
    with pytest.raises(DistributionError, match=re.escape(message) + "$"):
        build()


def test_usage_errors():
    unnamed = LogNormal(2.8, 0.3)
    with pytest.raises(DistributionError, match=re.escape("LogNormal(median=2.8, omega=0.3) has no parameter name")):
        unnamed.sample(3, seed=1)
    d = LogNormal(2.8, 0.3, name="CL")
    with pytest.raises(DistributionError, match=r"^parameter values are missing 'CL'$"):
        d.logpdf({"V": 1.0})
    with pytest.raises(DistributionError, match=r"^parameter values must be a dict name -> array, got list$"):
        d.logpdf([1.0])
    j = Joint({"CL": LogNormal(2.8, 0.3), "V": Normal(35.0, 5.0)})
    with pytest.raises(
        DistributionError, match=re.escape("parameter arrays have different lengths (CL: (2,), V: (3,))")
    ):
        j.logpdf({"CL": [1.0, 2.0], "V": [1.0, 2.0, 3.0]})
    with pytest.raises(DistributionError, match=r"must have shape \(n, 2\) .* got \(4, 3\)$"):
        j.from_normal(np.zeros((4, 3)))
    with pytest.raises(DistributionError, match=r"^from_cube needs points u strictly between 0 and 1$"):
        j.from_cube(np.array([[0.5, 1.0]]))
    with pytest.raises(DistributionError, match=r"^from_normal needs finite points z"):
        j.from_normal(np.array([[0.0, np.inf]]))
    with pytest.raises(DistributionError, match=r"^CL = -1.0 \(row 0\) is outside the support \[0.0, inf\] of Joint"):
        j.to_normal({"CL": -1.0, "V": 0.0})
    with pytest.raises(DistributionError, match=r"^the number of samples must be a non-negative integer, got 2.5$"):
        j.sample(2.5, seed=1)
    with pytest.raises(
        DistributionError, match=r"^Uniform\(low=0.0, high=1.0, name='u'\) is not a transform of a normal"
    ):
        Uniform(0, 1, name="u").scale_matrix  # noqa: B018
    with pytest.raises(
        DistributionError, match=r"^Joint\(.*\) is not a transform of a normal vector, so it has no location$"
    ):
        Joint({"CL": LogNormal(2.8, 0.3), "F": Uniform(0, 1)}).location  # noqa: B018


def test_empirical_usage_errors():
    discrete = Empirical({"CL": [1.0, 2.0, 3.0]})
    with pytest.raises(DistributionError, match=r"^Empirical\(kde=False\) is a discrete measure with no density"):
        discrete.logpdf({"CL": 2.0})
    with pytest.raises(DistributionError, match=r"use points\(\) instead of mixture\(\)$"):
        discrete.mixture()
    with pytest.raises(DistributionError, match=r"integrate over its points\(\)$"):
        discrete.from_normal(np.zeros((1, 1)))
    kde = Empirical({"CL": [1.0, 2.0, 3.0]}, kde=True)
    with pytest.raises(DistributionError, match=r"use mixture\(\) instead of points\(\)$"):
        kde.points()
    with pytest.raises(DistributionError, match=r"integrate over its mixture\(\)$"):
        kde.from_cube(np.full((1, 1), 0.5))


# --------------------------------------------------------------- object model
def test_immutable_and_readable():
    d = LogNormal(2.8, 0.3)
    with pytest.raises(AttributeError, match="immutable"):
        d.omega = 0.5
    mv = MvLogNormal({"CL": 2.8, "V": 35.0}, [[0.09, 0.0], [0.0, 0.04]])
    with pytest.raises(ValueError, match="read-only"):
        mv.scale_matrix[0, 0] = 1.0
    assert repr(d) == "LogNormal(median=2.8, omega=0.3)"
    assert repr(Normal(1, 2, name="V")) == "Normal(mean=1.0, sd=2.0, name='V')"
    assert repr(mv) == "MvLogNormal(median={'CL': 2.8, 'V': 35.0}, cov=[[0.09, 0.0], [0.0, 0.04]])"
    assert repr(Joint({"CL": d, "F": Uniform(0, 1)})) == (
        "Joint({'CL': LogNormal(median=2.8, omega=0.3), 'F': Uniform(low=0.0, high=1.0)})"
    )
    assert repr(Empirical({"CL": [1.0, 2.0]})) == "Empirical(<2 samples of CL>, kde=False)"
    assert isinstance(d, Distribution) and d.dim == 1
    # naming inside a Joint does not change the original
    Joint({"CL": d})
    assert repr(d) == "LogNormal(median=2.8, omega=0.3)"
