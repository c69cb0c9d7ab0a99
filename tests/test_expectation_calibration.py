"""Calibration: across models, distributions, metrics, windows, rules and tolerances 1e-2..1e-8, the
reported error covers the actual error, |value − truth| ≤ error.

Truths come from closed forms or from independent computations at tight tolerance that share no code
with the engine: scipy.integrate.quad over a density, or a large Gauss–Hermite grid from
scipy.special.roots_hermitenorm over the closed-form solution of the model (with its own vectorised
bisection for windows).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from scipy import integrate
from scipy.special import ndtr, roots_hermitenorm

import koopnb as kn

TOLERANCES = (1e-2, 1e-4, 1e-6, 1e-8)
ROUNDING = 4e-15
"""Relative rounding of a weighted sum of model values, which no level-to-level difference can see."""

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
THEO_DOSE = 320.0


def _gauss_hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = roots_hermitenorm(n)
    return x, w / w.sum()


def _theophylline_parameters(model, z: np.ndarray) -> tuple[np.ndarray, ...]:
    omega = np.sqrt(np.diag(model.omega))
    typical = np.array([model.typical[name] for name in model.parameters])
    ka, cl, v = (typical * np.exp(z * omega)).T
    return ka, cl, v


def _oral_auc(ka, cl, v, t1=24.0):
    """AUC(0, t1) of D·ka/(V(ka − k))·(e^{−kt} − e^{−ka t}), k = CL/V (the Bateman function)."""
    k = cl / v
    return THEO_DOSE * ka / (v * (ka - k)) * ((1 - np.exp(-k * t1)) / k - (1 - np.exp(-ka * t1)) / ka)


def _oral_cmax(ka, cl, v):
    """Peak of the Bateman function at t = log(ka/k)/(ka − k) (always before 24 h here)."""
    k = cl / v
    t = np.log(ka / k) / (ka - k)
    return THEO_DOSE * ka / (v * (ka - k)) * (np.exp(-k * t) - np.exp(-ka * t))


def theophylline_mean(model, metric) -> float:
    """E[metric] by a 64³ Gauss–Hermite grid on the closed form (agrees with 48³ to ~1e-13)."""
    x, w = _gauss_hermite(64)
    z = np.stack(np.meshgrid(x, x, x, indexing="ij"), axis=-1).reshape(-1, 3)
    weights = np.einsum("i,j,k->ijk", w, w, w).ravel()
    return float(weights @ metric(*_theophylline_parameters(model, z)))


def theophylline_window(model, low: float, high: float) -> float:
    """P(low ≤ AUC(0, 24) < high): for each (ka, V) of a 48² Gauss–Hermite grid, AUC is decreasing in CL,
    so the window is an interval of z_CL found by bisection; its normal mass is integrated over (ka, V)."""
    x, w = _gauss_hermite(48)
    za, zv = (grid.ravel() for grid in np.meshgrid(x, x, indexing="ij"))
    weights = np.outer(w, w).ravel()

    def z_cl_where_auc_is(level):
        lo, hi = np.full(za.shape, -40.0), np.full(za.shape, 40.0)

        def auc(z_cl):
            return _oral_auc(*_theophylline_parameters(model, np.column_stack([za, z_cl, zv])))

        never = auc(lo) < level  # even the smallest clearance stays below the level: empty
        for _ in range(80):
            mid = (lo + hi) / 2
            above = auc(mid) >= level
            lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
        return np.where(never, -np.inf, (lo + hi) / 2)

    mass = ndtr(z_cl_where_auc_is(low)) - ndtr(z_cl_where_auc_is(high))
    return float(weights @ mass)


def _lognormal_interval(median, omega, low, high):
    with np.errstate(divide="ignore"):
        return float(ndtr((np.log(high) - np.log(median)) / omega) - ndtr((np.log(low) - np.log(median)) / omega))


def _truncated_normal(mu=0.2, sd=0.08, low=0.05, high=0.4):
    return scipy.stats.truncnorm((low - mu) / sd, (high - mu) / sd, loc=mu, scale=sd), (mu, sd, low, high)


def build_cases() -> dict:
    """name -> (run(tolerance) -> ExpectationResult, truth, kind): kind 'relative' (rtol) or 'absolute' (atol)."""
    cases = {}
    iv = kn.Regimen.parse("100 mg iv")
    po = kn.Regimen.parse("320 mg po")
    nothing = kn.Regimen([])

    def relative(tolerance):
        return {"rtol": tolerance, "atol": 0.0}

    def absolute(tolerance):
        return {"atol": tolerance, "rtol": 0.0}

    # D/CL with log-normal CL: mean and windows in closed form
    flat = kn.parse_model("CL = 2.8 ~ 0.3\nd/dt(central) = 0\nc = central/CL\ndose central")
    cases["D/CL mean"] = (lambda t: kn.expectation(kn.Conc(1), flat, iv, flat.prior(), **relative(t)),
                          100 / 2.8 * np.exp(0.045), "relative")
    cases["D/CL window"] = (
        lambda t: kn.probability(kn.Window(kn.Conc(1), 30, 40), flat, iv, flat.prior(), **absolute(t)),
        _lognormal_interval(2.8, 0.3, 2.5, 100 / 30), "absolute")
    cases["D/CL upper tail"] = (
        lambda t: kn.probability(kn.Window(kn.Conc(1), 60, None), flat, iv, flat.prior(), **absolute(t)),
        _lognormal_interval(2.8, 0.3, 0.0, 100 / 60), "absolute")

    # IV bolus, CL and V log-normal: Cmax = D/V exactly, AUC(0, 24) by quad over CL with V fixed
    bolus = kn.parse_model("CL = 2.8 ~ 0.3\nV = 31.5 ~ 0.2\nd/dt(central) = -CL/V*central\nconc = central/V\n"
                           "dose central")
    cases["IV bolus Cmax"] = (lambda t: kn.expectation(kn.Cmax(0, 24), bolus, iv, bolus.prior(), **relative(t)),
                              100 / 31.5 * np.exp(0.02), "relative")
    cl_density = scipy.stats.lognorm(0.3, scale=2.8).pdf
    cases["IV bolus AUC, V typical"] = (
        lambda t: kn.expectation(kn.AUC(0, 24), bolus, iv, kn.Joint({"CL": kn.LogNormal(2.8, 0.3)}), **relative(t)),
        integrate.quad(lambda cl: 100 / cl * (1 - np.exp(-cl / 31.5 * 24)) * cl_density(cl), 0, np.inf,
                       epsabs=0, epsrel=1e-13)[0], "relative")

    # correlated log-normals: log(F/CL) is normal
    ratio = kn.parse_model("CL = 2.8 ~ 0.3\nF = 0.8 ~ 0.2\nd/dt(central) = 0\nc = F*central/CL\ndose central")
    cov = [[0.09, -0.036], [-0.036, 0.04]]
    s = np.sqrt(0.09 + 0.04 + 2 * 0.036)
    correlated = kn.MvLogNormal({"CL": 2.8, "F": 0.8}, cov)
    cases["F*D/CL mean, correlated"] = (
        lambda t: kn.expectation(kn.Conc(1), ratio, iv, correlated, **relative(t)), 80 / 2.8 * np.exp(s**2 / 2),
        "relative")
    cases["F*D/CL window, correlated"] = (
        lambda t: kn.probability(kn.Window(kn.Conc(1), 20, 35), ratio, iv, correlated, **absolute(t)),
        _lognormal_interval(80 / 2.8, s, 20, 35), "absolute")

    # uncertain initial condition (uniform) and rate (truncated normal)
    decay = kn.parse_model("x0 = 10\nk = 0.2\nd/dt(x) = -k*x\nx(0) = x0\nconc = x")
    k_dist, (mu, sd, low, high) = _truncated_normal()
    uniform_tn = kn.Joint({"x0": kn.Uniform(5, 15), "k": kn.TruncatedNormal(mu, sd, low, high)})
    alpha, beta = (low - mu) / sd, (high - mu) / sd
    mgf = np.exp(-mu * 3 + sd**2 * 9 / 2) * (ndtr(beta + 3 * sd) - ndtr(alpha + 3 * sd)) / (ndtr(beta) - ndtr(alpha))
    cases["x0 e^-kt mean, cubature"] = (
        lambda t: kn.expectation(kn.Conc(3), decay, nothing, uniform_tn, **relative(t)), 10 * mgf, "relative")
    cases["x0 e^-kt mean, tensor"] = (
        lambda t: kn.expectation(kn.Conc(3), decay, nothing, uniform_tn, rule="tensor", **relative(t)), 10 * mgf,
        "relative")
    cases["x0 AUC(0, 10) mean"] = (
        lambda t: kn.expectation(kn.AUC(0, 10), decay, nothing, uniform_tn, **relative(t)),
        10 * integrate.quad(lambda k: k_dist.pdf(k) * (1 - np.exp(-10 * k)) / k, low, high,
                            epsabs=0, epsrel=1e-13)[0], "relative")

    def x0_interval(k):  # P(4 e^{3k} ≤ x0 < 6 e^{3k}) for x0 ~ U(5, 15)
        return (np.clip(6 * np.exp(3 * k), 5, 15) - np.clip(4 * np.exp(3 * k), 5, 15)) / 10

    cases["x0 e^-kt window"] = (
        lambda t: kn.probability(kn.Window(kn.Conc(3), 4, 6), decay, nothing, uniform_tn, **absolute(t)),
        integrate.quad(lambda k: k_dist.pdf(k) * x0_interval(k), low, high, points=[np.log(5 / 4) / 3],
                       epsabs=1e-15, epsrel=1e-13)[0], "absolute")

    # normal parameters, nonlinear (ODE) solver: y(1) = a + b, fourth moment
    line = kn.parse_model("a = 1\nb = 2\nd/dt(x) = b\nx(0) = a\ny = x")
    normals = kn.Joint({"a": kn.Normal(1.0, 0.5), "b": kn.Normal(2.0, 0.3)})
    cases["(a+b)^4, normals"] = (
        lambda t: kn.expectation(lambda out: out["y"][:, 0] ** 4, line, nothing, normals, times=[1.0],
                                 **relative(t)),
        scipy.stats.norm(3.0, np.sqrt(0.34)).moment(4), "relative")

    # theophylline (3 random effects)
    theo = kn.parse_model(THEOPHYLLINE)
    cases["theophylline AUC(0,24) tensor"] = (
        lambda t: kn.expectation(kn.AUC(0, 24), theo, po, theo.prior(), **relative(t)),
        theophylline_mean(theo, _oral_auc), "relative")
    cases["theophylline AUC(0,24) smolyak"] = (
        lambda t: kn.expectation(kn.AUC(0, 24), theo, po, theo.prior(), rule="smolyak", **relative(t)),
        theophylline_mean(theo, _oral_auc), "relative")
    cases["theophylline Cmax(0,24)"] = (
        lambda t: kn.expectation(kn.Cmax(0, 24), theo, po, theo.prior(), **relative(t)),
        theophylline_mean(theo, _oral_cmax), "relative")
    cases["theophylline P(AUC in 80..120)"] = (
        lambda t: kn.probability(kn.Window(kn.AUC(0, 24), 80, 120), theo, po, theo.prior(), **absolute(t)),
        theophylline_window(theo, 80, 120), "absolute")
    cases["theophylline P(AUC >= 130)"] = (
        lambda t: kn.probability(kn.Window(kn.AUC(0, 24), 130, None), theo, po, theo.prior(), **absolute(t)),
        theophylline_window(theo, 130, np.inf), "absolute")

    # ten random effects (Smolyak): E[100·exp(−2 Σ k_i)] = 100·(E[exp(−2k)])^10
    names = [f"k{i}" for i in range(1, 11)]
    ten = kn.parse_model("\n".join([f"{name} = 0.02 ~ 0.3" for name in names]
                                   + [f"d/dt(x) = -({' + '.join(names)})*x", "x(0) = 100", "conc = x"]))
    k_density = scipy.stats.lognorm(0.3, scale=0.02).pdf
    one = integrate.quad(lambda k: np.exp(-2 * k) * k_density(k), 0, np.inf, epsabs=0, epsrel=1e-13)[0]
    cases["10-D decay mean, smolyak"] = (
        lambda t: kn.expectation(kn.Conc(2), ten, nothing, ten.prior(), **relative(t)), 100 * one**10, "relative")
    return cases


CASES = build_cases()


@pytest.mark.parametrize("tolerance", TOLERANCES, ids=lambda t: f"{t:.0e}")
@pytest.mark.parametrize("name", list(CASES))
def test_reported_error_covers_the_actual_error(name, tolerance):
    run, truth, kind = CASES[name]
    result = run(tolerance)
    actual = abs(result.value - truth)
    assert actual <= result.error + ROUNDING * abs(truth), (
        f"{name} at tolerance {tolerance:g}: value {result.value!r}, truth {truth!r}, actual error {actual:.3g} "
        f"> reported {result.error:.3g} ({result.rule}, {result.n_evals} evaluations)")
    if result.converged:
        # a converged answer also meets the tolerance it was asked for
        scale = abs(truth) if kind == "relative" else 1.0
        assert actual <= 1.01 * tolerance * scale + ROUNDING * abs(truth)
