"""The Koopman expectation against closed forms, plus its contract: errors, seeds, counts, memory bounds.

Every value is compared with the truth both through the engine's own error estimate
(|value − truth| ≤ error) and through a fixed tolerance that a real mistake would break.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from scipy import integrate
from scipy.special import ndtr

import koopnb as kn
from koopnb.expectation import integrand as integrand_module

DOSE = 100.0

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

# No elimination and c = central/CL: after a bolus D, c(t) = D/CL exactly for every t > 0.
DOSE_OVER_CL = "CL = 2.8 [L/h] ~ 0.3\nd/dt(central) = 0\nc = central/CL\ndose central"
DOSE_TIMES_F_OVER_CL = "CL = 2.8 ~ 0.3\nF = 0.8 ~ 0.2\nd/dt(central) = 0\nc = F*central/CL\ndose central"
IV_BOLUS = "CL = 2.8 [L/h] ~ 0.3\nV = 31.5 [L] ~ 0.2\nd/dt(central) = -CL/V*central\nconc = central/V\ndose central"
# x(t) = x0·exp(−k t): uncertain initial condition and rate.
DECAY = "x0 = 10\nk = 0.2\nd/dt(x) = -k*x\nx(0) = x0\nconc = x"
# y(t) = a + b·t: the outputs are affine in normal parameters.
LINE = "a = 1\nb = 2\nd/dt(x) = b\nx(0) = a\ny = x"
THEOPHYLLINE_AUC24 = 99.6494830761839  # 80^3-node Gauss-Hermite on the closed-form AUC (agrees with 60^3 to 1e-13)


@pytest.fixture(scope="module")
def theophylline():
    return kn.parse_model(THEOPHYLLINE)


@pytest.fixture(scope="module")
def dose_over_cl():
    return kn.parse_model(DOSE_OVER_CL)


@pytest.fixture(scope="module")
def decay():
    return kn.parse_model(DECAY)


@pytest.fixture(scope="module")
def line():
    return kn.parse_model(LINE)


@pytest.fixture
def count_simulated(monkeypatch):
    """Counts every parameter set the expectation simulates and records the largest batch."""
    record = {"sets": 0, "largest": 0, "calls": 0}
    solve = integrand_module.solve_for

    def counting(model, metrics, params, *args, **kwargs):
        size = len(np.atleast_1d(next(iter(params.values()))))
        record["sets"] += size
        record["largest"] = max(record["largest"], size)
        record["calls"] += 1
        return solve(model, metrics, params, *args, **kwargs)

    monkeypatch.setattr(integrand_module, "solve_for", counting)
    return record


def lognormal_interval(median: float, omega: float, low: float, high: float) -> float:
    """P(low < X ≤ high) for log X ~ N(log median, omega²)."""
    with np.errstate(divide="ignore"):
        return float(ndtr((np.log(high) - np.log(median)) / omega) - ndtr((np.log(low) - np.log(median)) / omega))


ROUNDING = 4e-15
"""Relative rounding of a weighted sum of model values: a level-to-level difference cannot see it once the
rule is exact (a polynomial), so honesty is checked up to a few ulps of the value."""


def check(result, truth: float, tolerance: float) -> None:
    """The estimate is honest (covers the actual error) and the value is within ``tolerance`` of the truth."""
    actual = abs(result.value - truth)
    assert actual <= result.error + ROUNDING * abs(truth), \
        f"actual error {actual:.3g} exceeds the estimate {result.error:.3g}"
    assert actual <= tolerance, f"value {result.value!r} is {actual:.3g} from the truth {truth!r}"
    assert result.converged


# --- closed forms ---------------------------------------------------------------------------------------------

def test_expected_dose_over_clearance_is_the_lognormal_mean(dose_over_cl):
    truth = DOSE / 2.8 * np.exp(0.3**2 / 2)
    result = kn.expectation(kn.Conc(1), dose_over_cl, kn.Regimen.parse("100 mg iv"), dose_over_cl.prior(),
                            rtol=1e-10, atol=0)
    check(result, truth, 1e-9 * truth)
    assert result.n_evals < 100
    assert result.method == "koopman" and result.elapsed > 0


@pytest.mark.parametrize(("low", "high"), [(30, 40), (60, None), (None, 25.0)])
def test_window_probability_of_dose_over_clearance_is_a_normal_cdf_difference(dose_over_cl, low, high):
    # low ≤ D/CL < high  ⇔  D/high < CL ≤ D/low
    truth = lognormal_interval(2.8, 0.3, DOSE / high if high else 0.0, DOSE / low if low else np.inf)
    result = kn.probability(kn.Window(kn.Conc(1), low, high), dose_over_cl, kn.Regimen.parse("100 mg iv"),
                            dose_over_cl.prior(), atol=1e-10, rtol=0)
    check(result, truth, 1e-10)


def test_auc_to_a_long_horizon_of_an_iv_bolus_is_dose_over_clearance():
    model = kn.parse_model(IV_BOLUS)
    # AUC(0, T) = D/CL·(1 − exp(−CL/V·T)); with T = 5000 h the tail is below 1e-100 wherever the density matters.
    result = kn.expectation(kn.AUC(0, 5000), model, kn.Regimen.parse("100 mg iv"), model.prior(), rtol=1e-9, atol=0)
    truth = DOSE / 2.8 * np.exp(0.3**2 / 2)
    check(result, truth, 1e-8 * truth)


def test_correlated_lognormals_combine_through_the_covariance_of_the_logs():
    model = kn.parse_model(DOSE_TIMES_F_OVER_CL)
    rho, s_cl, s_f = -0.6, 0.3, 0.2
    cov = [[s_cl**2, rho * s_cl * s_f], [rho * s_cl * s_f, s_f**2]]
    dist = kn.MvLogNormal({"CL": 2.8, "F": 0.8}, cov)
    # log(F/CL) ~ N(log(0.8/2.8), s_f² + s_cl² − 2ρ s_f s_cl)
    s = np.sqrt(s_f**2 + s_cl**2 - 2 * rho * s_cl * s_f)
    regimen = kn.Regimen.parse("100 mg iv")
    mean = kn.expectation(kn.Conc(1), model, regimen, dist, rtol=1e-9, atol=0)
    check(mean, DOSE * 0.8 / 2.8 * np.exp(s**2 / 2), 1e-7)
    window = kn.probability(kn.Window(kn.Conc(1), 20, 35), model, regimen, dist, atol=1e-8, rtol=0)
    check(window, lognormal_interval(DOSE * 0.8 / 2.8, s, 20, 35), 1e-8)
    # the independent version differs by far more than the tolerance: the correlation is really used
    independent = kn.probability(kn.Window(kn.Conc(1), 20, 35), model, regimen,
                                 kn.MvLogNormal({"CL": 2.8, "F": 0.8}, np.diag([s_cl**2, s_f**2])), atol=1e-8, rtol=0)
    assert abs(independent.value - window.value) > 1e-3


def test_moments_of_normal_parameters(line):
    mean_a, sd_a, mean_b, sd_b = 1.0, 0.5, 2.0, 0.3
    dist = kn.Joint({"a": kn.Normal(mean_a, sd_a), "b": kn.Normal(mean_b, sd_b)})
    # y(1) = a + b ~ N(3, 0.34): raw moments from scipy's normal
    y1 = scipy.stats.norm(mean_a + mean_b, np.hypot(sd_a, sd_b))
    moments = [lambda out, p=p: out["y"][:, 1] ** p for p in (1, 2, 3, 4)]
    result = kn.expectation(moments, line, kn.Regimen([]), dist, times=[0.0, 1.0], rtol=1e-10, atol=0)
    truth = np.array([y1.moment(p) for p in (1, 2, 3, 4)])
    assert np.all(np.abs(result.value - truth) <= result.error + ROUNDING * np.abs(truth))
    np.testing.assert_allclose(result.value, truth, rtol=1e-13)


def test_interactions_invisible_on_the_axes_are_not_mistaken_for_flat_directions(line):
    # E[a² b²] = 1 for independent standard normals, yet a²b² vanishes on both axes through the origin.
    dist = kn.Joint({"a": kn.Normal(0, 1), "b": kn.Normal(0, 1)})

    def product_squared(out):
        a, b = out["y"][:, 0], out["y"][:, 1] - out["y"][:, 0]
        return (a * b) ** 2

    result = kn.expectation(product_squared, line, kn.Regimen([]), dist, times=[0.0, 1.0], rtol=1e-8)
    check(result, 1.0, 1e-8)


def test_uniform_initial_condition_and_truncated_normal_rate(decay):
    mu, sd, low, high, t = 0.2, 0.08, 0.05, 0.4, 3.0
    dist = kn.Joint({"x0": kn.Uniform(5, 15), "k": kn.TruncatedNormal(mu, sd, low, high)})
    # E[x0·e^{−kt}] = E[x0]·M(−t) with the truncated-normal moment generating function M
    alpha, beta, s = (low - mu) / sd, (high - mu) / sd, -t
    mgf = np.exp(mu * s + sd**2 * s**2 / 2) * (ndtr(beta - sd * s) - ndtr(alpha - sd * s)) / (ndtr(beta) - ndtr(alpha))
    truth = 10.0 * mgf
    result = kn.expectation(kn.Conc(t), decay, kn.Regimen([]), dist, rtol=1e-7, atol=0)
    assert result.rule.startswith("tensor Gauss-Legendre") and "truncated-normal" in result.rule
    check(result, truth, 1e-6 * truth)
    cubature = kn.expectation(kn.Conc(t), decay, kn.Regimen([]), dist, rule="cubature", rtol=1e-7, atol=0)
    assert "cubature" in cubature.rule
    check(cubature, truth, 1e-6 * truth)


# -- Gauss rules of bounded and non-gaussian densities, in parameter space ----------------------------

SCIML_TRUTH = 0.0539231161  # SciMLExpectations.jl's test of u' = p·u (quoted to 10 digits)


def _truncnorm_expectation(function, mean, sd, low, high):
    """E[function(X)] for X ~ TruncatedNormal by scipy.integrate.quad at tight tolerance (independent of koopnb)."""
    density = scipy.stats.truncnorm((low - mean) / sd, (high - mean) / sd, loc=mean, scale=sd).pdf
    return integrate.quad(lambda x: function(x) * density(x), low, high, epsabs=0, epsrel=1e-13, limit=200)[0]


def test_sciml_expectations_case_to_1e_8_in_under_2000_evaluations():
    """u' = p·u, u0 ~ TruncatedNormal(3, 2, −5, 11), p ~ TruncatedNormal(−0.7, 0.1, −1, 0):
    E[u(6)] = E[u0]·E[e^{6p}]."""
    model = kn.parse_model("u0 = 3\np = -0.7\nd/dt(u) = p*u\nu(0) = u0\nconc = u")
    dist = kn.Joint({"u0": kn.TruncatedNormal(3, 2, -5, 11), "p": kn.TruncatedNormal(-0.7, 0.1, -1, 0)})
    truth = (_truncnorm_expectation(lambda x: x, 3, 2, -5, 11)
             * _truncnorm_expectation(lambda x: np.exp(6 * x), -0.7, 0.1, -1, 0))
    assert truth == pytest.approx(SCIML_TRUTH, rel=1e-9)
    result = kn.expectation(kn.Conc(6), model, kn.Regimen([]), dist, rtol=1e-8, atol=0)
    assert result.converged and result.n_evals <= 2000
    assert "truncated-normal" in result.rule
    check(result, truth, 1e-8 * truth)


def test_uniform_parameters_use_gauss_legendre(decay):
    """x0 ~ U(5, 15), k ~ U(0.05, 0.4): E[x0·e^{−kt}] = 10·(e^{−0.05t} − e^{−0.4t}) / (0.35 t)."""
    t = 3.0
    dist = kn.Joint({"x0": kn.Uniform(5, 15), "k": kn.Uniform(0.05, 0.4)})
    truth = 10.0 * (np.exp(-0.05 * t) - np.exp(-0.4 * t)) / (0.35 * t)
    result = kn.expectation(kn.Conc(t), decay, kn.Regimen([]), dist, rtol=1e-10, atol=0)
    assert result.rule.startswith("tensor Gauss-Legendre") and result.converged
    assert result.n_evals < 200
    check(result, truth, 1e-10 * truth)


def test_mixed_joint_of_lognormal_uniform_and_truncated_normal():
    """x(t) = x0·e^{−(k1 + k2) t} with x0 ~ U(5, 15), k1 ~ LogNormal(0.1, 0.3), k2 ~ TruncatedNormal: a product of
    three one-dimensional expectations, each by scipy quad."""
    model = kn.parse_model("x0 = 10\nk1 = 0.1\nk2 = 0.2\nd/dt(x) = -(k1 + k2)*x\nx(0) = x0\nconc = x")
    t = 2.0
    dist = kn.Joint({"k1": kn.LogNormal(0.1, 0.3), "x0": kn.Uniform(5, 15),
                     "k2": kn.TruncatedNormal(0.2, 0.1, 0.0, np.inf)})
    lognormal = scipy.stats.lognorm(0.3, scale=0.1).pdf
    truth = (10.0 * integrate.quad(lambda k: np.exp(-k * t) * lognormal(k), 0, np.inf, epsabs=0, epsrel=1e-13)[0]
             * _truncnorm_expectation(lambda k: np.exp(-k * t), 0.2, 0.1, 0.0, 3.0))
    result = kn.expectation(kn.Conc(t), model, kn.Regimen([]), dist, rtol=1e-9, atol=0)
    assert "Gauss-Hermite" in result.rule and "Gauss-Legendre" in result.rule and "truncated-normal" in result.rule
    assert result.converged and result.n_evals < 2000
    check(result, truth, 1e-9 * truth)
    sparse = kn.expectation(kn.Conc(t), model, kn.Regimen([]), dist, rule="smolyak", rtol=1e-8, atol=0)
    check(sparse, truth, 1e-8 * truth)


@pytest.mark.parametrize("mean, sd, low, high", [
    (3, 2, -5, 11), (-0.7, 0.1, -1, 0), (0, 1, 0, np.inf), (0, 1, -np.inf, -30), (1, 1, 0.5, 0.6),
])
def test_truncated_normal_gauss_rules_match_the_moments(mean, sd, low, high):
    """The n-point rule integrates x^k exactly for k ≤ 2n − 1 (moments by quad on scipy's truncnorm density)."""
    from koopnb.expectation.families import truncated_normal

    family = truncated_normal(mean, sd, low, high)
    density = scipy.stats.truncnorm((low - mean) / sd, (high - mean) / sd, loc=mean, scale=sd)
    centre, scale = density.mean(), density.std()
    finite_low, finite_high = max(low, centre - 200 * scale), min(high, centre + 200 * scale)
    moments = [integrate.quad(lambda x, k=k: ((x - centre) / scale) ** k * density.pdf(x), finite_low, finite_high,
                              epsabs=1e-15, epsrel=1e-12, limit=200)[0] for k in range(12)]
    for n in (1, 2, 3, 6, 20, 64, 96, 200):
        nodes, weights = family.rule(n)
        assert np.all((nodes >= low) & (nodes <= high)) and np.all(weights >= 0)  # far-tail weights underflow
        for k in range(min(2 * n, 12)):
            assert weights @ ((nodes - centre) / scale) ** k == pytest.approx(moments[k], rel=1e-10, abs=1e-11)


def test_window_of_a_decaying_uncertain_initial_condition(decay):
    mu, sd, low, high, t, a, b = 0.2, 0.08, 0.05, 0.4, 3.0, 4.0, 6.0
    dist = kn.Joint({"x0": kn.Uniform(5, 15), "k": kn.TruncatedNormal(mu, sd, low, high)})
    k_density = scipy.stats.truncnorm((low - mu) / sd, (high - mu) / sd, loc=mu, scale=sd).pdf

    def x0_interval(k):  # P(a·e^{kt} ≤ x0 < b·e^{kt}) for x0 ~ U(5, 15)
        return (np.clip(b * np.exp(k * t), 5, 15) - np.clip(a * np.exp(k * t), 5, 15)) / 10

    kinks = [np.log(5 / b) / t, np.log(5 / a) / t]
    truth = integrate.quad(lambda k: k_density(k) * x0_interval(k), low, high, points=[p for p in kinks if p > low],
                           epsabs=1e-14, epsrel=1e-13)[0]
    result = kn.probability(kn.Window(kn.Conc(t), a, b), decay, kn.Regimen([]), dist, atol=1e-7, rtol=0)
    check(result, truth, 1e-7)


def test_parameters_outside_the_distribution_take_their_typical_values():
    model = kn.parse_model(IV_BOLUS)
    dist = kn.Joint({"CL": kn.LogNormal(2.8, 0.3)})  # V stays at 31.5 L

    def auc(cl):
        return DOSE / cl * (1 - np.exp(-cl / 31.5 * 24))

    density = scipy.stats.lognorm(0.3, scale=2.8).pdf
    truth = integrate.quad(lambda cl: auc(cl) * density(cl), 0, np.inf, epsabs=1e-13, epsrel=1e-13)[0]
    result = kn.expectation(kn.AUC(0, 24), model, kn.Regimen.parse("100 mg iv"), dist, rtol=1e-9, atol=0)
    check(result, truth, 1e-7 * truth)
    assert result.rule.startswith("tensor Gauss-Hermite")


def test_theophylline_expected_auc_matches_an_independent_quadrature(theophylline):
    result = kn.expectation(kn.AUC(0, 24), theophylline, kn.Regimen.parse("320 mg po"), theophylline.prior(),
                            rtol=1e-6, atol=0)
    check(result, THEOPHYLLINE_AUC24, 1e-6 * THEOPHYLLINE_AUC24)


# --- vector and callable quantities -------------------------------------------------------------------------------

def test_a_list_of_quantities_shares_model_evaluations(theophylline, count_simulated):
    regimen, prior = kn.Regimen.parse("320 mg po"), theophylline.prior()
    quantities = [kn.AUC(0, 24), kn.Cmax(0, 24), kn.Window(kn.AUC(0, 24), 80, 120)]
    together = kn.expectation(quantities, theophylline, regimen, prior, rtol=1e-6, atol=1e-7)
    assert count_simulated["sets"] == together.n_evals
    assert together.value.shape == together.error.shape == (3,)
    assert together.label == ("E[auc(0, 24)]", "E[cmax(0, 24)]", "P(auc(0, 24) in 80..120)")
    separate = [kn.expectation(q, theophylline, regimen, prior, rtol=1e-6, atol=1e-7) for q in quantities]
    for value, error, alone in zip(together.value, together.error, separate, strict=True):
        assert abs(value - alone.value) <= error + alone.error
    assert together.n_evals < sum(alone.n_evals for alone in separate)
    # the two smooth quantities are integrated with one rule: fewer evaluations than both apart
    smooth = kn.expectation(quantities[:2], theophylline, regimen, prior, rtol=1e-6, atol=1e-7)
    assert smooth.n_evals < separate[0].n_evals + separate[1].n_evals


def test_a_callable_of_the_outputs_at_given_times(theophylline):
    regimen, prior = kn.Regimen.parse("320 mg po"), theophylline.prior()
    metric = kn.expectation(kn.Conc(2.0), theophylline, regimen, prior, rtol=1e-8, atol=0)
    callable_ = kn.expectation(lambda out: out["conc"][:, 1], theophylline, regimen, prior, times=[1.0, 2.0],
                               rtol=1e-8, atol=0)
    assert abs(callable_.value - metric.value) <= 1e-7 * metric.value
    with pytest.raises(kn.ExpectationError, match="one number per parameter set"):
        kn.expectation(lambda out: out["conc"], theophylline, regimen, prior, times=[1.0, 2.0])


# --- posterior samples --------------------------------------------------------------------------------------------

def test_empirical_samples_are_averaged_exactly(theophylline, count_simulated):
    samples = theophylline.prior().sample(300, seed=11)
    regimen = kn.Regimen.parse("320 mg po")
    exact = kn.AUC(0, 24).evaluate(theophylline, samples, regimen).mean()
    result = kn.expectation(kn.AUC(0, 24), theophylline, regimen, kn.Empirical(samples))
    assert result.value == pytest.approx(exact, rel=1e-13)
    assert result.n_evals == count_simulated["sets"] == 300


def test_kernel_density_of_clearance_samples(dose_over_cl):
    cl = dose_over_cl.prior().sample(200, seed=5)["CL"]
    # log-space Gaussian kernels with scipy's Scott bandwidth: E[D/CL] = mean_i(D/cl_i)·exp(h²/2)
    h2 = float(scipy.stats.gaussian_kde(np.log(cl)).covariance[0, 0])
    truth = np.mean(DOSE / cl) * np.exp(h2 / 2)
    result = kn.expectation(kn.Conc(1), dose_over_cl, kn.Regimen.parse("100 mg iv"),
                            kn.Empirical({"CL": cl}, kde=True), rtol=1e-9, atol=0)
    check(result, truth, 1e-8 * truth)


# --- errors -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("call", "message"), [
    (lambda m, r: kn.expectation(kn.AUC(0, 24), m, r, kn.Joint({"Cl": kn.LogNormal(2.8, 0.3)})), "'Cl'"),
    (lambda m, r: kn.expectation(kn.AUC(0, 24), m, r, m.prior(), method="mc"), "unknown method 'mc'"),
    (lambda m, r: kn.expectation(kn.AUC(0, 24), m, r, m.prior(), rule="gauss"), "unknown rule 'gauss'"),
    (lambda m, r: kn.probability(kn.AUC(0, 24), m, r, m.prior()), "needs a Window"),
    (lambda m, r: kn.expectation(lambda out: out["conc"][:, 0], m, r, m.prior()), "needs times="),
    (lambda m, r: kn.expectation([], m, r, m.prior()), "empty"),
    (lambda m, r: kn.expectation("auc", m, r, m.prior()), "cannot take the expectation"),
    (lambda m, r: kn.expectation(kn.AUC(0, 24), m, r, {"CL": 2.8}), "koopnb distribution"),
    (lambda m, r: kn.expectation(kn.AUC(0, 24), m, r, m.prior(), rtol=-1), "tolerances"),
    (lambda m, r: kn.expectation(kn.AUC(0, 24), m, r, m.prior(), rtol=0, atol=0), "tolerances"),
    (lambda m, r: kn.expectation(kn.AUC(0, 24), m, r, m.prior(), method="montecarlo", n=1), "n >= 2"),
])
def test_bad_requests_raise_expectation_errors(theophylline, call, message):
    with pytest.raises(kn.ExpectationError, match=message) as raised:
        call(theophylline, kn.Regimen.parse("320 mg po"))
    assert isinstance(raised.value, kn.KoopnbError)
    assert "\n" not in str(raised.value)


# --- sampling baselines -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["montecarlo", "qmc"])
def test_same_seed_same_answer(dose_over_cl, method):
    regimen, prior = kn.Regimen.parse("100 mg iv"), dose_over_cl.prior()
    options = {"n": 4000} if method == "montecarlo" else {"rtol": 1e-4, "atol": 0}
    first = kn.expectation(kn.Conc(1), dose_over_cl, regimen, prior, method=method, seed=7, **options)
    again = kn.expectation(kn.Conc(1), dose_over_cl, regimen, prior, method=method, seed=7, **options)
    other = kn.expectation(kn.Conc(1), dose_over_cl, regimen, prior, method=method, seed=8, **options)
    assert (first.value, first.error, first.n_evals) == (again.value, again.error, again.n_evals)
    assert first.value != other.value
    truth = DOSE / 2.8 * np.exp(0.3**2 / 2)
    assert abs(first.value - truth) <= 5 * first.error  # a standard error: 5σ is a real test, not a flake
    assert first.method == method
    # converged compares the reported error with the tolerance (default rtol 1e-4) for Monte Carlo too
    assert first.converged == (first.error <= 1e-4 * abs(first.value))
    assert first.converged == (method == "qmc")


@pytest.mark.parametrize("rtol, converged", [(1e-4, False), (0.05, True)])
def test_monte_carlo_and_sample_averages_converge_only_within_the_tolerance(dose_over_cl, rtol, converged):
    regimen, prior = kn.Regimen.parse("100 mg iv"), dose_over_cl.prior()
    monte_carlo = kn.expectation(kn.Conc(1), dose_over_cl, regimen, prior, method="montecarlo", n=4000, seed=3,
                                 rtol=rtol, atol=0)
    samples = kn.Empirical(prior.sample(4000, seed=3))
    average = kn.expectation(kn.Conc(1), dose_over_cl, regimen, samples, rtol=rtol, atol=0)
    for result in (monte_carlo, average):
        assert 1e-4 < result.error / result.value < 0.05
        assert result.converged is converged


def test_monte_carlo_standard_error_matches_the_lognormal_variance(dose_over_cl):
    n = 20_000
    result = kn.expectation(kn.Conc(1), dose_over_cl, kn.Regimen.parse("100 mg iv"), dose_over_cl.prior(),
                            method="montecarlo", n=n, seed=1)
    # Var[D/CL] for log CL ~ N(log 2.8, 0.3²): (D/2.8)²·(e^{2ω²} − e^{ω²})
    sd = DOSE / 2.8 * np.sqrt(np.exp(2 * 0.09) - np.exp(0.09))
    assert result.error == pytest.approx(sd / np.sqrt(n), rel=0.05)
    assert result.n_evals == n


# --- honesty about convergence and cost ---------------------------------------------------------------------------

def test_too_few_nodes_is_reported_as_not_converged(theophylline):
    regimen, prior = kn.Regimen.parse("320 mg po"), theophylline.prior()
    result = kn.expectation(kn.AUC(0, 24), theophylline, regimen, prior, rtol=1e-12, atol=0, max_nodes=40)
    assert not result.converged
    assert any("max_nodes=40" in warning for warning in result.warnings)
    assert abs(result.value - THEOPHYLLINE_AUC24) <= result.error
    assert "NOT converged" in str(result)
    window = kn.probability(kn.Window(kn.AUC(0, 24), 80, 120), theophylline, regimen, prior, atol=1e-10, rtol=0,
                            max_nodes=8)
    assert not window.converged and window.warnings


@pytest.mark.parametrize("case", ["mean", "window", "list", "cubature", "montecarlo", "qmc", "smolyak", "kde"])
def test_n_evals_counts_every_simulated_parameter_set(theophylline, decay, count_simulated, case):
    regimen, prior = kn.Regimen.parse("320 mg po"), theophylline.prior()
    auc, window = kn.AUC(0, 24), kn.Window(kn.AUC(0, 24), 80, 120)
    if case == "mean":
        result = kn.expectation(auc, theophylline, regimen, prior, rtol=1e-6)
    elif case == "window":
        result = kn.probability(window, theophylline, regimen, prior, atol=1e-5, rtol=0)
    elif case == "list":
        result = kn.expectation([auc, window], theophylline, regimen, prior, rtol=1e-4, atol=1e-5)
    elif case == "cubature":
        dist = kn.Joint({"x0": kn.Uniform(5, 15), "k": kn.TruncatedNormal(0.2, 0.08, 0.05, 0.4)})
        result = kn.expectation(kn.Conc(3), decay, kn.Regimen([]), dist, rtol=1e-5)
    elif case == "montecarlo":
        result = kn.expectation(auc, theophylline, regimen, prior, method="montecarlo", n=777, seed=1, chunk=100)
    elif case == "qmc":
        result = kn.expectation(auc, theophylline, regimen, prior, method="qmc", rtol=1e-3, seed=1)
    elif case == "smolyak":
        result = kn.expectation(auc, theophylline, regimen, prior, rule="smolyak", rtol=1e-5)
    else:
        samples = prior.sample(50, seed=2)
        result = kn.expectation(auc, theophylline, regimen, kn.Empirical(samples, kde=True), rtol=1e-5)
    assert result.n_evals == count_simulated["sets"] > 0


def _ten_parameter_model():
    """x' = −(k1 + … + k10)·x, x(0) = 100: E[x(2)] = 100·Π E[exp(−2 k_i)] with k_i ~ LogNormal(0.02, 0.3)."""
    names = [f"k{i}" for i in range(1, 11)]
    text = "\n".join([f"{name} = 0.02 ~ 0.3" for name in names]
                     + [f"d/dt(x) = -({' + '.join(names)})*x", "x(0) = 100", "conc = x"])
    density = scipy.stats.lognorm(0.3, scale=0.02).pdf
    one = integrate.quad(lambda k: np.exp(-2 * k) * density(k), 0, np.inf, epsabs=0, epsrel=1e-13)[0]
    return kn.parse_model(text), 100 * one**10


def test_ten_dimensions_hold_a_bounded_number_of_nodes(count_simulated):
    model, truth = _ten_parameter_model()
    result = kn.expectation(kn.Conc(2), model, kn.Regimen([]), model.prior(), rtol=1e-6, atol=0, chunk=64)
    assert result.rule.startswith("Smolyak")
    check(result, truth, 1e-6 * truth)
    # the integrand never sees more than `chunk` parameter sets at once
    assert count_simulated["largest"] <= 64
    assert count_simulated["sets"] == result.n_evals
    small = kn.expectation(kn.Conc(2), model, kn.Regimen([]), model.prior(), rtol=1e-10, atol=0, max_nodes=300)
    assert not small.converged
    assert any("max_nodes=300" in warning for warning in small.warnings)
    assert small.n_evals <= 2 * 300
    assert abs(small.value - truth) <= small.error


def test_no_answer_on_a_two_point_rule(theophylline, decay):
    """Even at a loose tolerance, every direction the integrand depends on has at least 3 points in the final
    rule (a 1- and a 2-point rule can agree by coincidence); the orders are structured fields, not text."""
    loose = kn.expectation(kn.AUC(0, 24), theophylline, kn.Regimen.parse("320 mg po"), theophylline.prior(),
                           rtol=0.05)
    assert len(loose.orders) == 3 and min(loose.orders) >= 3
    dist = kn.Joint({"x0": kn.Uniform(5, 15), "k": kn.TruncatedNormal(0.2, 0.08, 0.05, 0.4)})
    linear_in_x0 = kn.expectation(kn.Conc(3.0), decay, kn.Regimen([]), dist, rtol=0.05)
    assert min(linear_in_x0.orders) >= 3


# An output that overflows for clearances above 700/300 ≈ 2.33 L/h: most of the prior's mass.
OVERFLOWING = THEOPHYLLINE.replace("conc = central / V\n", "conc = central / V\neffect = exp(300*CL)*central/V\n")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's overflow warnings; the error is checked
@pytest.mark.parametrize("quantity", [
    kn.AUC(0, 24, "effect"),
    kn.Window(kn.Cmax(0, 24, "effect"), 1.0, None),   # a window must not count an infinite value as outside
])
@pytest.mark.parametrize("method", ["koopman", "montecarlo", "qmc"])
def test_an_output_that_is_not_finite_is_a_simulation_error(quantity, method):
    model = kn.parse_model(OVERFLOWING)
    with pytest.raises(kn.SimulationError,
                       match=r"effect\) is (inf|nan) for \d+ of \d+ parameter sets, e\.g\. at ka = .*CL = "):
        kn.expectation(quantity, model, kn.Regimen.parse("100 mg po"), model.prior(), method=method, n=1000,
                       seed=1)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's overflow warnings; the error is checked
def test_a_function_of_the_outputs_that_is_nan_is_a_simulation_error(theophylline):
    def log_of_excess(outputs):
        return np.log(outputs["conc"][:, -1] - 1.0)  # NaN wherever conc(24 h) < 1 mg/L

    with pytest.raises(kn.SimulationError, match=r"the function 'log_of_excess' is nan for \d+ of \d+ parameter"):
        kn.expectation(log_of_excess, theophylline, kn.Regimen.parse("100 mg po"), theophylline.prior(),
                       times=[0.0, 24.0])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's overflow warnings; the error is checked
def test_the_default_output_is_named_when_it_is_not_finite():
    model = kn.parse_model(IV_BOLUS.replace("conc = central/V", "effect = exp(300*CL)*central/V"))
    with pytest.raises(kn.SimulationError, match=r"^auc\(0, 24\) of output 'effect' is inf for \d+ of 1000 "):
        kn.expectation(kn.AUC(0, 24), model, kn.Regimen.parse("100 mg po"), model.prior(), method="montecarlo",
                       n=1000, seed=1)
