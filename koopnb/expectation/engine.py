"""``expectation``: one entry, many interchangeable rules, the same problem for Koopman and Monte Carlo."""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np

from koopnb.distributions import Distribution, Empirical
from koopnb.errors import ExpectationError
from koopnb.expectation.adaptive import Outcome, smolyak_adaptive, tensor_adaptive, within
from koopnb.expectation.cube import adaptive_cubature
from koopnb.expectation.families import HERMITE, ProductMeasure, product_measure
from koopnb.expectation.integrand import CHUNK, AllWindows, Integrand, label, quantities
from koopnb.expectation.preintegration import NotMonotone, window_probability
from koopnb.expectation.result import ExpectationResult
from koopnb.expectation.sampling import monte_carlo, randomized_qmc
from koopnb.metrics import Metric, Window
from koopnb.units import result_unit

RULES = ("auto", "tensor", "smolyak", "cubature", "preintegration", "qmc")
TENSOR_MAX_DIM = 6
SMOLYAK_MAX_DIM = 12
WINDOW_QMC_SEED = 20_181_212
"""Seed of the scramblings for windows that no direction makes monotone: fixed, so the same call gives the
same number (a nomogram on a cluster equals its serial run)."""


def expectation(g, model, regimen, dist: Distribution, method: str = "koopman", rtol: float = 1e-4,
                atol: float = 1e-8, covariates: Mapping[str, float] | None = None, *, rule: str = "auto",
                n: int = 10_000, seed=None, times=None, max_nodes: int = 1_000_000, max_subdivisions: int = 500,
                chunk: int = CHUNK, solve_options: Mapping | None = None) -> ExpectationResult:
    """E[g(θ)] for patient parameters θ ~ ``dist`` under ``regimen``, with an error estimate.

    ``g`` is a metric (``AUC(0, 24)``), a ``Window`` (its expectation is the probability of landing in
    it), a callable of the outputs at ``times`` (h), or a list of these (sharing model evaluations).
    Parameters that ``dist`` does not cover take the model's typical values.

    ``method="koopman"`` integrates with quadrature; ``rule`` picks it ("auto": tensor Gauss rules
    up to 6 dimensions, Smolyak sparse grids up to 12, randomised QMC beyond — Gauss–Hermite for normal and
    log-normal parameters, Gauss–Legendre for Uniform and the Gauss rule of the truncated normal weight for
    TruncatedNormal ones, in parameter space; adaptive cubature in the unit cube for a Joint with an
    Empirical member; pre-integration for windows, and randomised QMC with a fixed seed — a statistical
    estimate, said in the result's warnings — for a window no direction makes monotone).  Refinement stops when
    the error estimate is within max(atol, rtol·|value|), or reports ``converged=False`` when ``max_nodes``
    (nodes held at once) would be exceeded.  ``method="montecarlo"`` draws ``n`` parameter sets with
    ``seed`` and reports the standard error; ``method="qmc"`` uses scrambled Sobol' points.  Whatever the
    method, ``converged`` is True only when the reported error estimate is within max(atol, rtol·|value|).
    """
    started = time.perf_counter()
    items, single = quantities(g)
    if method not in ("koopman", "montecarlo", "qmc"):
        raise ExpectationError(f"unknown method {method!r}; use 'koopman', 'montecarlo' or 'qmc'")
    if rule not in RULES:
        raise ExpectationError(f"unknown rule {rule!r}; the rules are {', '.join(RULES)}")
    if not isinstance(dist, Distribution):
        raise ExpectationError(f"dist must be a koopnb distribution (e.g. model.prior()), not {type(dist).__name__}")
    if not (rtol >= 0 and atol >= 0 and rtol + atol > 0):
        raise ExpectationError("tolerances must be non-negative and not both zero")
    integrand = Integrand(items, model, regimen, dist, covariates, times, solve_options, chunk)
    counter = lambda: integrand.n_evals  # noqa: E731
    warnings: list[str] = []

    if method == "montecarlo":
        outcome = monte_carlo(integrand, lambda size, rng: dist.sample(size, rng), int(n), seed, chunk)
        zero = outcome.error == 0
        if np.any(zero):  # a sample with no spread (e.g. no draw in the window) earns no zero error
            outcome.error = np.where(zero, 3.0 / int(n), outcome.error)
            warnings.append("every draw gave the same value; the error shown is the rule-of-three estimate 3/n")
        outcomes = [(list(range(len(items))), outcome)]
    elif method == "qmc" or rule == "qmc":
        outcomes = [(list(range(len(items))), _qmc(integrand, dist, rtol, atol, seed, max_nodes, counter))]
    elif isinstance(dist, Empirical):
        outcomes = [(list(range(len(items))), _empirical(integrand, dist, rtol, atol, max_nodes, counter))]
    else:
        outcomes = _koopman(items, integrand, dist, rule, rtol, atol, max_nodes, max_subdivisions, counter, warnings)

    value = np.empty(len(items))
    error = np.empty(len(items))
    rules, history = [], []
    for indices, outcome in outcomes:
        value[indices] = outcome.value
        error[indices] = outcome.error
        rules.append(outcome.rule)
        history.extend(outcome.history)
        warnings.extend(outcome.warnings)
    # Every method, Monte Carlo with a fixed n and sample averages included, has converged only when its
    # reported error meets the tolerance.
    converged = all(o.converged for _, o in outcomes) and within(value, error, rtol, atol)
    labels = tuple(label(item) for item in items)
    return ExpectationResult(
        value=float(value[0]) if single else value, error=float(error[0]) if single else error,
        n_evals=integrand.n_evals, method=method, converged=bool(converged),
        elapsed=time.perf_counter() - started, rule="; ".join(dict.fromkeys(rules)),
        label=labels[0] if single else labels, history=tuple(history), warnings=tuple(dict.fromkeys(warnings)),
        orders=outcomes[0][1].orders if len(outcomes) == 1 else (), quantity=items[0] if single else tuple(items),
        unit=result_unit(model, items[0] if single else tuple(items), regimen))


def probability(window, model, regimen, dist: Distribution, **options) -> ExpectationResult:
    """P(window) = E[1(low ≤ metric < high)]; options as for :func:`expectation`.

    A list of windows gives the probability that all of them hold at once.
    """
    if isinstance(window, (list, tuple)):
        window = AllWindows(window)
    if not isinstance(window, (Window, AllWindows)):
        raise ExpectationError(f"probability needs a Window, e.g. Window(AUC(0, 24), 400, 600), not {window!r}")
    return expectation(window, model, regimen, dist, **options)


def _in_normal(integrand: Integrand, dist: Distribution):
    return lambda z: integrand(dist.from_normal(z))


def _koopman(items, integrand, dist, rule, rtol, atol, max_nodes, max_subdivisions, counter, warnings):
    """Split the quantities into windows (pre-integration) and smooth ones (one shared rule)."""
    dim = dist.dim
    windows = [i for i, item in enumerate(items) if isinstance(item, (Window, AllWindows))]
    smooth = [i for i in range(len(items)) if i not in windows]
    if rule in ("tensor", "smolyak", "cubature"):
        smooth, windows = list(range(len(items))), []
    outcomes = []
    for index in windows:
        window = items[index]
        parts = window.windows if isinstance(window, AllWindows) else (window,)
        metric = _metrics_in_normal(integrand, [w.metric for w in parts], dist)
        try:
            outcome = window_probability(metric, dim, [(w.low, w.high) for w in parts], rtol, atol, max_nodes,
                                         counter, rule=_outer_rule(dim), parameters=_single_parameter_directions(dist))
        except NotMonotone as reason:
            # Not adaptive cubature: its error estimate compares two rules on the same few nodes, and an
            # indicator that no node hits integrates to 0 ± 0 — a false certificate (seen: a joint window of true
            # probability 1.2 % reported as 0 ± 1e-18).  Replicated scrambled Sobol' points give an honest standard
            # error, and the rule of three while no point has hit the window.
            warnings.append(f"{window}: {reason}; estimated by randomised QMC instead (a statistical estimate: "
                            "its error is a standard error)")
            outcome = randomized_qmc(_restricted(integrand, [index]), dist.from_cube, dim, rtol, atol,
                                     WINDOW_QMC_SEED, max_nodes=max_nodes, counter=counter, indicator=True)
        outcomes.append(([index], outcome))
    if smooth:
        f = _restricted(integrand, smooth)
        chosen = rule if rule not in ("auto", "preintegration") else _auto_rule(dist, dim)
        # Gauss rules of each coordinate's own measure; without one (an Empirical member), Gauss–Hermite
        # through the distribution's normal map
        measure = product_measure(dist) or ProductMeasure((HERMITE,) * dim, dist.from_normal)
        families = None if measure.gauss_hermite else measure.families
        if chosen == "tensor":
            outcome = tensor_adaptive(lambda w: f(measure.to_params(w)), dim, rtol, atol, max_nodes, counter,
                                      families)
        elif chosen == "smolyak":
            outcome = smolyak_adaptive(lambda w: f(measure.to_params(w)), dim, rtol, atol, max_nodes, counter,
                                       families)
        elif chosen == "cubature":
            outcome = adaptive_cubature(f, dist.from_cube, dim, rtol, atol, max_subdivisions, counter)
        else:
            outcome = randomized_qmc(f, dist.from_cube, dim, rtol, atol, None, max_nodes=max_nodes, counter=counter)
        outcomes.append((smooth, outcome))
    return outcomes


def _outer_rule(dim: int) -> str:
    return "smolyak" if dim - 1 > TENSOR_MAX_DIM else "tensor"


def _single_parameter_directions(dist: Distribution) -> np.ndarray | None:
    """Rows: the whitened directions along which exactly one (transformed) parameter changes, L⁻¹ e_p."""
    if not dist.gaussian:
        return None
    return np.linalg.pinv(np.asarray(dist.scale_matrix, dtype=float)).T


def _auto_rule(dist: Distribution, dim: int) -> str:
    if product_measure(dist) is None:
        return "cubature" if dim <= TENSOR_MAX_DIM else "qmc"
    if dim <= TENSOR_MAX_DIM:
        return "tensor"
    return "smolyak" if dim <= SMOLYAK_MAX_DIM else "qmc"


def _restricted(integrand: Integrand, columns: list[int]):
    """The integrand's chosen columns as a function of parameter dicts."""
    return lambda params: integrand(params)[:, columns]


def _metrics_in_normal(integrand: Integrand, metrics: list[Metric], dist: Distribution):
    """Raw metric values (n, m) at whitened points, through a copy of the integrand that shares its count."""
    probe = Integrand(metrics, integrand.model, integrand.regimen, dist, integrand.covariates,
                      None, integrand.solve_options, integrand.chunk)

    def values(z: np.ndarray) -> np.ndarray:
        result = probe(dist.from_normal(z))
        integrand.n_evals += len(z)
        return result

    return values


def _qmc(integrand, dist, rtol, atol, seed, max_nodes, counter) -> Outcome:
    if isinstance(dist, Empirical):
        raise ExpectationError("QMC needs a continuous distribution; an Empirical one is averaged exactly instead")
    return randomized_qmc(integrand, dist.from_cube, dist.dim, rtol, atol, seed, max_nodes=max_nodes,
                          counter=counter)


def _empirical(integrand, dist: Empirical, rtol, atol, max_nodes, counter) -> Outcome:
    """Posterior samples: the exact average over the samples (kde=False), or Gauss–Hermite on each kernel."""
    if not dist.kde:
        points, weights = dist.points()
        values = integrand(points)
        mean = weights @ values
        spread = np.sqrt(weights @ (values - mean) ** 2 / len(weights))
        return Outcome(mean, spread, True,
                       f"average over {len(weights)} samples (error: Monte Carlo standard error of the sample)",
                       [(counter(), mean, spread)])
    centres, factor, weights, log_space = dist.mixture()
    log_space = np.asarray(log_space)
    k, dim = centres.shape

    def mixed(z: np.ndarray) -> np.ndarray:
        y = centres[None, :, :] + (z @ factor.T)[:, None, :]
        x = np.where(log_space, np.exp(y), y).reshape(-1, dim)
        values = integrand(dict(zip(dist.names, x.T, strict=True)))
        return np.einsum("mkq,k->mq", values.reshape(len(z), k, -1), weights)

    outcome = tensor_adaptive(mixed, dim, rtol, atol, max(max_nodes // k, 1), counter)
    outcome.rule = f"kernel mixture of {k} components, {outcome.rule} each"
    return outcome
