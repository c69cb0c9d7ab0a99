"""kn.vpc: a visual predictive check whose prediction bands are quantiles computed by quadrature.

The predictive distribution of an observation at time t of subject s is a mixture over the random effects
η ~ N(0, Ω) of the residual error distribution around f_s(η, t):

    F_t(y) = mean over subjects s of  E_η[ Φ((y − f_s(η, t)) / sd(f_s(η, t))) ]

(for exponential error, of log y around log f).  The residual error is integrated in closed form (Φ); the
random effects by Gauss–Hermite quadrature (koopnb/expectation/gauss.py) in two layers, because Φ is steep in
η wherever the residual error is small against the spread the random effects give f, and quadrature of a
steep integrand needs many nodes, while f itself is smooth in η:

* the model is evaluated on collocation rules of 4, 5, 6, 8, … points per random effect and interpolated
  (tensor Lagrange polynomials through the nodes, of log f when f > 0);
* the mixture CDF is integrated on finer rules of 16, 20, 24, 32, … points per random effect applied to the
  interpolant, which costs no model evaluation (nodes of negligible weight left out).

Each band is the root of F_t(y) = q on the finest of both (safeguarded Newton on the mixture CDF), for every
time and level at once.  Its error estimate is δF / F'(y) for two CDF errors at the root — the larger of the
last two changes between collocation rules, and between integration rules — and both layers are refined until
every band point's estimate is within its tolerance, max(atol, rtol × the predictive SD there).
Observations are also binned by time (bins of about equal counts), and each bin gets its observed
percentiles and the same quantiles of the predictive distribution pooled over the bin's observations.

For a linear model with zero initial state, subjects whose doses differ only by a common factor share one
model evaluation per node (superposition: their predictions are that factor times one another's), so a
single-dose study costs one simulation per node, whatever its number of subjects.

``method="montecarlo"`` is the classic simulation-based VPC as the baseline: ``n`` simulated subjects
(data set replicates; each subject's η and each observation's ε drawn afresh), the same quantiles of the
pooled simulated values, with their Monte Carlo standard errors (from the order statistics of a binomial
interval, Maritz & Jarrett's idea).
"""

from __future__ import annotations

import time as clock
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.interpolate import BarycentricInterpolator
from scipy.special import ndtr, ndtri

from koopnb.errors import KoopnbError
from koopnb.expectation.adaptive import ORDERS
from koopnb.expectation.gauss import gauss_hermite, tensor_rule
from koopnb.inference.likelihood import Exponential, residual_error
from koopnb.inference.simulation import StackedSubjects
from koopnb.inference.subjects import Subject, all_subjects

Z_90 = 1.6448536269514722  # the 95th percentile of N(0, 1): a two-sided 90 % interval

COLLOCATION = tuple(n for n in ORDERS if n >= 4)
"""Gauss–Hermite points per random effect of the successive collocation rules (where the model is evaluated)."""

FINE = (16, 20, 24, 32, 40, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
"""Points per random effect of the successive integration rules applied to the interpolated predictions (the
longer rules only in one or two dimensions: MAX_FINE_NODES stops the growth)."""

NEGLIGIBLE = 1e-14
"""Integration nodes whose product weight is below this are left out (most nodes of a tensor rule in three or
more dimensions); the mass they carry is added to the CDF's error."""

MAX_FINE_NODES = 400_000
"""Most integration nodes (after leaving out the negligible ones) a rule may have; refinement stops there."""

ROOT_SHARE = 1e-4
"""The root finding stops within this fraction of a band point's tolerance."""

CELLS = 100_000
"""Array elements (levels × mixture components × columns) handled at once in a CDF sweep: a block that stays in
the processor's cache (about three times faster than blocks of millions)."""

INTERPOLATION_CELLS = 4_000_000
"""Array elements an interpolation step holds at once (bounds its memory)."""


@dataclass(frozen=True)
class VPCResult:
    """A visual predictive check.

    ``times`` (T,) h; ``quantiles`` (Q,); ``bands`` (Q, T) the predictive quantiles at ``times`` and ``error``
    (Q, T) their error estimate in the output's units (quadrature: see :func:`vpc`; Monte Carlo: standard error).
    ``bins`` (B + 1,) edges in h and per bin: ``bin_times`` (B,) the median observation time, ``observed`` (Q, B)
    the observed percentiles, ``predicted`` (Q, B) the predictive quantiles pooled over the bin's
    observations and ``predicted_error`` (Q, B).  ``data`` holds the observations (ID, TIME, DV, BIN).
    ``n_evals`` counts model evaluations (parameter sets simulated).  Quadrature only: ``tolerance`` (Q, T) and
    ``predicted_tolerance`` (Q, B) each band point's tolerance; ``converged`` is True when every error estimate
    is within its tolerance.  ``rule`` says how the bands were computed.
    """

    method: str
    quantiles: np.ndarray
    times: np.ndarray
    bands: np.ndarray
    error: np.ndarray
    bins: np.ndarray
    bin_times: np.ndarray
    observed: np.ndarray
    predicted: np.ndarray
    predicted_error: np.ndarray
    data: pd.DataFrame
    n_evals: int
    converged: bool
    elapsed: float
    output: str
    tolerance: np.ndarray | None = None
    predicted_tolerance: np.ndarray | None = None
    rule: str = ""


def vpc(population_or_model, data, quantiles=(0.05, 0.5, 0.95), *, times=None, bins: int | None = None,
        method: str = "koopman", rtol: float = 1e-3, atol: float = 0.0, max_points: int = 24, n: int = 100_000,
        seed=None, output: str | None = None) -> VPCResult:
    """Visual predictive check of a population (a fit, or a Model's own typical values, Ω and residual error)
    against a NONMEM-style table of many subjects (their doses, covariates and observations).

    ``quantiles``: levels in (0, 1).  ``times``: where the bands are drawn (h; default 100 points from 0 to the
    last observation).  ``bins``: number of time bins of about equal counts (default: the median number of
    observations per subject).  ``method``: ``"koopman"`` (quadrature, at most ``max_points`` Gauss–Hermite
    collocation points per random effect) or ``"montecarlo"`` (``n`` simulated subjects, ``seed``).

    Quadrature tolerance, per band point: its error estimate must be within max(``atol``, ``rtol`` × the standard
    deviation of the predictive distribution there), ``atol`` in the output's units.  A quantile's error is
    judged against the spread of the distribution it is a quantile of: rtol = 1e-3 is about the standard error
    of a band from 10⁶ simulated subjects (√(q(1 − q)/n) / density, between 1.25 and 2.1 times 10⁻³ SD for the
    5 %, 50 % and 95 % levels of a normal).
    """
    started = clock.perf_counter()
    model, typical, omega, error_values, output = _population(population_or_model, output)
    levels = np.asarray(quantiles, dtype=float)
    if levels.ndim != 1 or levels.size == 0 or np.any((levels <= 0) | (levels >= 1)):
        raise KoopnbError("quantiles must be levels strictly between 0 and 1, such as (0.05, 0.5, 0.95)")
    if method not in ("koopman", "montecarlo"):
        raise KoopnbError(f"method must be 'koopman' or 'montecarlo', not {method!r}")
    if max_points < COLLOCATION[2] or n < 1 or not (rtol >= 0 and atol >= 0 and rtol + atol > 0):
        raise KoopnbError(f"max_points must be at least {COLLOCATION[2]} (three rules to compare), n at least 1 and "
                          f"the tolerances non-negative and not both 0, not {max_points}, {n}, {rtol} and {atol}")
    subjects = all_subjects(model, data, None, output)
    observations = _observations(subjects, bins)
    grid = (np.linspace(0.0, float(observations["TIME"].max()), 100) if times is None
            else np.asarray(times, dtype=float))
    if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)) or grid.min() < 0:
        raise KoopnbError("times must be a non-empty 1-D array of finite, non-negative hours")
    design = _Design(model, subjects, grid, output, typical, omega)
    error, _ = residual_error(model.error_models[output])
    edges, bin_times, observed = _observed(observations, levels)
    if method == "koopman":
        q = _quadrature(design, error, error_values, levels, observations, rtol, atol, max_points)
        return VPCResult(method, levels, grid, q.bands, q.error, edges, bin_times, observed, q.predicted, q.bin_error,
                         observations, q.n_evals, q.converged, clock.perf_counter() - started, output, q.tolerance,
                         q.bin_tolerance, q.rule)
    bands, predicted, band_error, bin_error = _simulation(design, error, error_values, levels, observations,
                                                         n, np.random.default_rng(seed))
    return VPCResult(method, levels, grid, bands, band_error, edges, bin_times, observed, predicted, bin_error,
                     observations, design.simulations(n), True, clock.perf_counter() - started, output,
                     rule=f"{design.simulations(n):,} simulated subjects")


def _population(source, output):
    """The model and the population to predict: typical values, Ω (n_p, n_p) and residual error values."""
    from koopnb.inference.posterior import PopulationPosterior
    from koopnb.model.model import Model

    if isinstance(source, PopulationPosterior):
        model, output = source.model, output or source.output
        typical, omega = source.typical, np.asarray(source.omega, dtype=float)
        error, values = residual_error(model.error_models[output])
        sigma = source.sigma
        values = tuple(sigma.get(f"{output}.{name}", value) for name, value in zip(error.names, values, strict=True))
    elif isinstance(source, Model):
        model = source
        output = output or model.default_output
        typical, omega = model.typical, np.asarray(model.omega, dtype=float)
        if output not in model.error_models:
            raise KoopnbError(f"output {output!r} has no residual error model, so it has no predictive distribution")
        _, values = residual_error(model.error_models[output])
    else:
        raise KoopnbError(f"vpc needs a population fit or a Model, not {type(source).__name__}")
    if not np.any(np.diag(omega) > 0):
        raise KoopnbError("the model has no parameter with IIV, so a VPC has only the residual error to show")
    return model, dict(typical), omega, values, output


def _observations(subjects: list[Subject], bins: int | None) -> pd.DataFrame:
    """Every measured observation (not below a limit) with its subject index and time bin."""
    rows = [(s_index, subject.id, t, y) for s_index, subject in enumerate(subjects)
            for t, y, below in zip(subject.times, subject.values, subject.below, strict=True) if not below]
    table = pd.DataFrame(rows, columns=["SUBJECT", "ID", "TIME", "DV"])
    count = int(np.median([s.times.size for s in subjects])) if bins is None else int(bins)
    if count < 1:
        raise KoopnbError(f"bins must be at least 1, not {bins}")
    edges = np.unique(np.quantile(table["TIME"], np.linspace(0, 1, count + 1)))
    if edges.size == 1:  # every observation at one time: one bin
        edges = np.repeat(edges, 2)
    table["BIN"] = np.clip(np.searchsorted(edges, table["TIME"], side="right") - 1, 0, len(edges) - 2)
    table.attrs["edges"] = edges
    return table


def _observed(observations: pd.DataFrame, levels: np.ndarray):
    edges = observations.attrs["edges"]
    groups = observations.groupby("BIN")
    observed = np.stack([np.quantile(group["DV"], levels) for _, group in groups], axis=1)
    return edges, groups["TIME"].median().to_numpy(), observed


class _Design:
    """Subjects grouped for evaluation: the members of a group have the same dosing pattern and covariates
    and amounts in a common ratio, so (for a linear model from a zero state) one evaluation of the group's
    first member at every member's times serves them all."""

    def __init__(self, model, subjects, grid, output, typical, omega):
        self.model, self.output, self.grid = model, output, grid
        self.subjects = subjects
        self.random = np.flatnonzero(np.diag(omega) > 0)
        self.factor = np.linalg.cholesky(omega[np.ix_(self.random, self.random)])
        self.typical = np.array([typical[name] for name in model.parameters], dtype=float)
        linear = model.is_linear and all(expr == 0 for expr in model.spec.initial.values())
        keys = [_dosing_key(subject) if linear else None for subject in subjects]
        leader_of: dict = {}
        self.group_of = np.array([leader_of.setdefault(key[0], s) if key else s for s, key in enumerate(keys)])
        self.scale = np.array([key[1] / keys[self.group_of[s]][1] if key else 1.0 for s, key in enumerate(keys)])
        self.leaders = np.unique(self.group_of)
        # each leader evaluated at the grid and at the observation times of every member of its group
        self.times = {leader: np.unique(np.concatenate(
            [grid] + [subjects[s].times for s in np.flatnonzero(self.group_of == leader)])) for leader in self.leaders}
        self.stack = StackedSubjects(model, [_at(subjects[leader], self.times[leader]) for leader in self.leaders],
                                     output)

    def simulations(self, n: int) -> int:
        return int(np.ceil(n / len(self.subjects)) * len(self.subjects))

    def predict(self, eta: np.ndarray) -> dict[int, np.ndarray]:
        """Each leader's predictions (n_nodes, its times) for random effects ``eta`` (n_nodes, r)."""
        parameters = np.tile(self.typical, (len(eta), 1))
        parameters[:, self.random] *= np.exp(eta)
        result = {}
        for g, leader in enumerate(self.leaders):
            values = self.stack.predict(np.full(len(eta), g), parameters)
            result[leader] = values[:, :self.times[leader].size]
        return result

    def subject_values(self, predictions: dict, s: int, times: np.ndarray) -> np.ndarray:
        """(n_nodes, len(times)) predictions of subject ``s`` at ``times`` (which its leader was evaluated at)."""
        leader = self.group_of[s]
        columns = np.searchsorted(self.times[leader], times)
        return self.scale[s] * predictions[leader][:, columns]


def _dosing_key(subject: Subject):
    """(pattern, first amount) — the doses with amounts divided by the first, resets and covariates — or None
    when the subject cannot share an evaluation (no doses, or a covariate history)."""
    doses = subject.regimen.doses
    if not doses or not doses[0].amount or not isinstance(subject.covariates, dict):
        return None
    first = doses[0].amount
    pattern = tuple(replace(d, amount=round(d.amount / first, 12)) for d in doses)
    resets = tuple(getattr(subject.regimen, "resets", ()))
    return (pattern, resets, tuple(sorted(subject.covariates.items()))), first


def _at(subject: Subject, times: np.ndarray) -> Subject:
    """The subject with observation times ``times`` (sorted), to be predicted there."""
    return replace(subject, times=times, values=np.ones(times.size), below=np.zeros(times.size, dtype=bool))


def _quadrature(design: _Design, error, values, levels, observations, rtol, atol, max_points) -> _Quadrature:
    """Bands from collocation rules of 4, 5, 6, 8, … Gauss–Hermite points per random effect until every band
    point's error estimate is within its tolerance, max(atol, rtol × the predictive standard deviation there).

    Each collocation rule's predictions are interpolated (tensor Lagrange polynomials in the whitened random
    effects, log predictions where all are positive) and the mixture CDF is integrated on an integration rule
    of 16, 20, 24, 32, … points per random effect, where the steep part, Φ((y − f(η)) / sd), costs no model
    evaluation.  A band point x solves F(x) = q on the finest of both; an error δF of the CDF at x moves it by
    δF / F'(x).  Its error estimate adds two such terms, each the larger of the last two differences (the rule
    of koopnb/expectation/adaptive.py): between the last three collocation rules on one integration rule
    (interpolation), and between the last three integration rules on one interpolant (integration); the
    mass of the nodes left out; and the root finding's stopping precision.  The integration rule is refined
    while its term exceeds half the tolerance.
    """
    r = design.random.size
    orders = [n for n in COLLOCATION if n <= max_points]
    surrogates, n_evals, fine, start = [], 0, 0, None

    def solve(surrogate, rule):
        """The mixtures of ``surrogate`` on ``rule`` with their band points solved, and their tolerances."""
        nonlocal start
        mixtures = _mixtures(design, surrogate.on(rule), rule.weights, error, values, levels, observations)
        tolerances = [np.maximum(atol, rtol * mixture.sd()) for mixture in mixtures]
        for j, (mixture, tolerance) in enumerate(zip(mixtures, tolerances, strict=True)):
            mixture.solve(None if start is None else start[j], ROOT_SHARE * tolerance)
        start = [mixture.x for mixture in mixtures]
        return mixtures, tolerances

    def spread(best, finer, coarser, rule_finer, rule_coarser):
        """Per mixture, the error term from two coarser (surrogate, rule) pairs evaluated at best's band points."""
        one = _cdfs(design, finer, rule_finer, error, values, levels, observations, best)
        zero = _cdfs(design, coarser, rule_coarser, error, values, levels, observations, best)
        return [m.spread_error(c1, c0) for m, c1, c0 in zip(best, one, zero, strict=True)]

    for points in orders:
        nodes, _ = tensor_rule((points,) * r)
        surrogates.append(_Surrogate(design, points, design.predict(nodes @ design.factor.T)))
        n_evals += len(nodes) * len(design.leaders)
        if len(surrogates) < 3:
            continue
        rules = [_IntegrationRule(FINE[fine + j], r) for j in range(3)]
        best, tolerance = solve(surrogates[-1], rules[2])
        interpolation = spread(best, surrogates[-2], surrogates[-3], rules[2], rules[2])
        if points != orders[-1] and any(np.any(e > t / 2) for e, t in zip(interpolation, tolerance, strict=True)):
            continue  # the interpolation is not there yet: a finer integration rule would not help
        while True:
            integration = spread(best, surrogates[-1], surrogates[-1], rules[1], rules[0])
            short = any(np.any(e > t / 2) for e, t in zip(integration, tolerance, strict=True))
            if not short or fine + 3 == len(FINE) or _IntegrationRule(FINE[fine + 3], r).count > MAX_FINE_NODES:
                break
            fine += 1
            rules = [_IntegrationRule(FINE[fine + j], r) for j in range(3)]
            best, tolerance = solve(surrogates[-1], rules[2])
            interpolation = None
        if interpolation is None:  # the integration rule changed: the interpolation term again, on the new one
            interpolation = spread(best, surrogates[-2], surrogates[-3], rules[2], rules[2])
        errors = [e1 + e2 + m.natural_error(rules[2].dropped) + ROOT_SHARE * t
                  for m, e1, e2, t in zip(best, integration, interpolation, tolerance, strict=True)]
        result = _Quadrature(best[0].quantiles(), np.concatenate([m.quantiles() for m in best[1:]], axis=1),
                             errors[0], np.concatenate(errors[1:], axis=1), tolerance[0],
                             np.concatenate(tolerance[1:], axis=1), n_evals, False,
                             f"Gauss–Hermite collocation {'×'.join([str(points)] * r)} interpolated, integrated "
                             f"on {'×'.join([str(rules[2].points)] * r)} ({rules[2].count:,} nodes)")
        if np.all(result.error <= result.tolerance) and np.all(result.bin_error <= result.bin_tolerance):
            return result._replace(converged=True)
    return result


class _Quadrature(NamedTuple):
    bands: np.ndarray
    predicted: np.ndarray
    error: np.ndarray
    bin_error: np.ndarray
    tolerance: np.ndarray
    bin_tolerance: np.ndarray
    n_evals: int
    converged: bool
    rule: str


class _IntegrationRule:
    """The tensor Gauss–Hermite rule with ``points`` per random effect (r of them), without the nodes whose
    product weight is below NEGLIGIBLE: ``index`` (P, r) the kept nodes' 1-D indices, ``weights`` (P,),
    ``dropped`` the left-out mass.  Built dimension by dimension, so the full tensor is never held."""

    def __init__(self, points: int, r: int):
        self.points = points
        self.nodes, weights = gauss_hermite(points)
        index, log_weight = np.zeros((1, 0), dtype=int), np.zeros(1)
        for _ in range(r):  # a partial product below the threshold stays below it: every weight is < 1
            index = np.column_stack([np.repeat(index, points, axis=0), np.tile(np.arange(points), len(index))])
            with np.errstate(divide="ignore"):  # the outermost weights of long rules underflow to 0
                log_weight = (log_weight[:, None] + np.log(weights)[None]).ravel()
            keep = log_weight >= np.log(NEGLIGIBLE)
            index, log_weight = index[keep], log_weight[keep]
        self.index, self.weights = index, np.exp(log_weight)
        self.count = len(index)
        self.dropped = max(0.0, 1.0 - float(self.weights.sum()))


class _Surrogate:
    """Every leader's predictions at the collocation nodes (``points`` per random effect) and their tensor
    Lagrange interpolant in the whitened random effects: of log f where f > 0 at every node (log f is nearly
    linear in η for most PK models), of f otherwise.  Beyond the outermost nodes the interpolant stays at the
    boundary value (a polynomial would run away there); the mass out there is small and shrinks as the rule
    grows, so the differences between rules carry this error too."""

    def __init__(self, design: _Design, points: int, predictions: dict[int, np.ndarray]):
        self.points, self.r = points, design.random.size
        self.nodes, _ = gauss_hermite(points)
        self.values = {}
        for leader, f in predictions.items():
            if not np.all(np.isfinite(f)):
                raise KoopnbError(f"the model's predictions of {design.output} for subject "
                                  f"{design.subjects[leader].id} are not finite for some random effects within "
                                  f"{self.nodes[-1]:.1f} standard deviations, so they cannot be integrated")
            positive = np.all(f > 0, axis=0)
            self.values[leader] = (np.where(positive, np.log(np.where(positive, f, 1.0)), f), positive)

    def on(self, rule: _IntegrationRule) -> dict[int, np.ndarray]:
        """Each leader's interpolated predictions (P, its times) at the rule's kept nodes."""
        lagrange = BarycentricInterpolator(self.nodes, np.eye(self.points))(
            np.clip(rule.nodes, self.nodes[0], self.nodes[-1]))  # (m, n): the basis at the integration nodes
        result = {}
        for leader, (values, positive) in self.values.items():
            out = np.empty((rule.count, values.shape[1]))
            width = max(1, INTERPOLATION_CELLS // (self.points * max(rule.points ** (self.r - 1), rule.count)))
            for first in range(0, values.shape[1], width):
                out[:, first:first + width] = self._interpolate(values[:, first:first + width], lagrange, rule)
            result[leader] = np.where(positive, np.exp(out), out)
        return result

    def _interpolate(self, values: np.ndarray, lagrange: np.ndarray, rule: _IntegrationRule) -> np.ndarray:
        """(P, k) interpolated values from (n^r, k) node values: the last r − 1 directions are contracted on the
        full grid of integration points, the first only at the kept nodes."""
        if self.r == 1:
            return lagrange[rule.index[:, 0]] @ values
        grid = values.reshape((self.points,) * self.r + (-1,))
        for d in range(1, self.r):
            grid = np.moveaxis(np.tensordot(lagrange, grid, axes=([1], [d])), 0, d)
        rest = grid[(slice(None), *rule.index[:, 1:].T)]  # (n, P, k)
        return np.einsum("pa,apk->pk", lagrange[rule.index[:, 0]], rest)


def _mixtures(design: _Design, predictions, weights, error, values, levels, observations) -> list[_Mixture]:
    """The predictive distributions as mixtures over subjects × nodes: one at every grid time, and one per bin
    over the bin's observations × nodes."""
    count = len(design.subjects)
    means = np.concatenate([design.subject_values(predictions, s, design.grid) for s in range(count)])
    mixtures = [_Mixture(np.tile(weights, count), means, error, values, levels)]
    for _, group in observations.groupby("BIN"):
        means = np.concatenate([design.subject_values(predictions, s, np.array([t]))
                                for s, t in zip(group["SUBJECT"], group["TIME"], strict=True)])
        mixtures.append(_Mixture(np.tile(weights, len(group)), means, error, values, levels))
    return mixtures


def _cdfs(design, surrogate, rule, error, values, levels, observations, best) -> list[np.ndarray]:
    """The CDFs of the mixtures from ``surrogate`` on ``rule``, at the band points of ``best``."""
    mixtures = _mixtures(design, surrogate.on(rule), rule.weights, error, values, levels, observations)
    return [mixture.cdf(solved.x) for mixture, solved in zip(mixtures, best, strict=True)]


class _Mixture:
    """In each column k the distribution Σ_m w_m N(c_mk, d_mk²) of an observation on the working scale: log y
    for exponential error (a prediction of 0 is then an observation of exactly 0, c = −∞), y otherwise.

    ``weights`` (M,), ``means`` (M, K) the predictions f.  :meth:`solve` finds the working-scale quantiles
    ``x`` (Q, K) at ``levels`` and the density there.
    """

    def __init__(self, weights: np.ndarray, means: np.ndarray, error, values, levels: np.ndarray):
        self.weights, self.levels = weights / weights.sum(), levels
        self.exponential = isinstance(error, Exponential)
        if self.exponential:
            (s,) = values
            with np.errstate(divide="ignore"):
                self.centre = np.asfortranarray(np.log(np.maximum(means, 0.0)))
            self.scale = np.broadcast_to(float(s), means.shape)
        else:
            self.centre = np.asfortranarray(means)  # a column's components contiguous: the sweeps go by column
            self.scale = np.asfortranarray(np.maximum(np.broadcast_to(error.sd(means, values), means.shape), 1e-300))
        self.x = self.density = None

    def _sweep(self, x: np.ndarray, columns: np.ndarray, density: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """CDF and (when asked) density (Q, k) at x (Q, k) in ``columns``, in blocks of columns × components
        small enough to stay in cache."""
        cdf, pdf = np.zeros_like(x), np.zeros_like(x)
        levels, count = len(self.levels), len(self.weights)
        width = max(1, CELLS // (levels * count))
        for first in range(0, len(columns), width):
            part, where = columns[first:first + width], slice(first, first + width)
            block = max(1, CELLS // (levels * len(part)))
            for start in range(0, count, block):
                rows = slice(start, start + block)
                c, d, w = self.centre[rows, part][None], self.scale[rows, part][None], self.weights[rows]
                with np.errstate(invalid="ignore"):
                    z = (x[:, None, where] - c) / d
                z[np.isnan(z)] = np.inf  # x = c = −∞: an observation of 0 is ≤ 0
                cdf[:, where] += np.einsum("m,qmk->qk", w, ndtr(z))
                if density:
                    pdf[:, where] += np.einsum("m,qmk->qk", w, np.exp(-0.5 * z * z) / d)
        return cdf, pdf / np.sqrt(2 * np.pi)

    def cdf(self, x: np.ndarray) -> np.ndarray:
        return self._sweep(x, np.arange(x.shape[1]), density=False)[0]

    def solve(self, start: np.ndarray | None, precision: np.ndarray, iterations: int = 80) -> None:
        """Safeguarded Newton steps on the mixture CDF from ``start`` (or the normal with the mixture's mean and
        variance); a step that leaves the bracket of known signs is replaced by false position between the
        bracket's ends (bisection alone crawls when one end is already next to the root, as Newton's last
        iterate often is).  Stops when no step in a column moves a band point by ``precision`` (Q, K) in the
        output's units (Newton's last step bounds its error) or by 1e-10 of the bracket.  Levels that the mass at
        an observation of 0 already reaches get x = −∞."""
        finite = np.isfinite(self.centre)
        zero_mass = self.weights @ ~finite
        target = self.levels[:, None] * np.ones(self.centre.shape[1])
        at_zero = zero_mass[None] >= target
        low = np.where(finite, self.centre - 10 * self.scale, np.inf).min(axis=0)[None].repeat(len(target), 0)
        high = np.where(finite, self.centre + 10 * self.scale, -np.inf).max(axis=0)[None].repeat(len(target), 0)
        cdf_low, cdf_high = np.broadcast_to(zero_mass, target.shape).copy(), np.ones_like(target)
        if start is None:
            w = self.weights[:, None] * finite
            centre = np.where(finite, self.centre, 0.0)
            mass = np.maximum(w.sum(axis=0), 1e-300)
            mean = np.einsum("mk,mk->k", w, centre) / mass
            spread = np.sqrt(np.maximum(np.einsum("mk,mk->k", w, self.scale ** 2 + centre ** 2) / mass - mean ** 2,
                                        0.0))
            start = mean + ndtri(self.levels)[:, None] * spread
        x = np.where(at_zero, -np.inf, np.clip(start, low, high))
        density = np.zeros_like(x)
        tolerance = 1e-10 * (np.nanmax(np.where(np.isfinite(high - low), high - low, np.nan), initial=0.0) + 1.0)
        active = np.flatnonzero(~np.all(at_zero, axis=0))
        for _ in range(iterations):
            if active.size == 0:
                break
            here = np.ix_(np.arange(len(target)), active)
            cdf, dens = self._sweep(x[here], active)
            density[here] = dens
            below = cdf < target[here]
            low[here], cdf_low[here] = np.where(below, x[here], low[here]), np.where(below, cdf, cdf_low[here])
            high[here], cdf_high[here] = np.where(below, high[here], x[here]), np.where(below, cdf_high[here], cdf)
            with np.errstate(all="ignore"):
                newton = x[here] - (cdf - target[here]) / dens
                false_position = low[here] + (target[here] - cdf_low[here]) * (high[here] - low[here]) \
                    / (cdf_high[here] - cdf_low[here])
            inside = np.isfinite(newton) & (newton >= low[here]) & (newton <= high[here])  # = at a root found
            fallback = np.where(np.isfinite(false_position) & (false_position > low[here])
                                & (false_position < high[here]), false_position, 0.5 * (low[here] + high[here]))
            moved = np.where(at_zero[here], -np.inf, np.where(inside, newton, fallback))
            with np.errstate(invalid="ignore"):  # −∞ − (−∞) at an observation of 0: not moving
                step = np.abs(moved - x[here]) * (np.exp(np.maximum(moved, x[here])) if self.exponential else 1.0)
            # a false-position step may crawl (one end fixed), so only a short Newton step ends the search
            crawling = ~inside & ~at_zero[here] & (high[here] - low[here] >= tolerance)
            still = np.any(crawling | (step >= np.maximum(np.broadcast_to(precision, x.shape)[here], tolerance)),
                           axis=0)
            x[here] = moved
            active = active[still]
        self.x, self.density = x, density

    def quantiles(self) -> np.ndarray:
        """(Q, K) band points in the output's units."""
        return np.exp(self.x) if self.exponential else self.x

    def natural_error(self, delta_cdf) -> np.ndarray:
        """(Q, K) the error of the band points, in the output's units, that an error ``delta_cdf`` of the CDF at
        them gives: δF / F'(x), times dy/dx = y on the log scale.  Exact (0) at an observation of 0."""
        with np.errstate(divide="ignore", invalid="ignore"):
            error = np.asarray(delta_cdf) / self.density * (self.quantiles() if self.exponential else 1.0)
        return np.where(np.isneginf(self.x), 0.0, np.where(np.isnan(error), np.inf, error))

    def spread_error(self, cdf_1: np.ndarray, cdf_0: np.ndarray) -> np.ndarray:
        """The band points' error from the CDFs of two coarser approximations at them (``cdf_1`` the finer):
        the larger of the last two differences, |F₁(x) − q| (F(x) = q) and |F₀(x) − F₁(x)|, through δF / F'(x).
        At an observation of 0 it is 0 when both coarser ones put the level there too, else unknown (∞)."""
        delta = np.maximum(np.abs(cdf_1 - self.levels[:, None]), np.abs(cdf_0 - cdf_1))
        error = self.natural_error(delta)
        agree = (cdf_1 >= self.levels[:, None]) & (cdf_0 >= self.levels[:, None])
        return np.where(np.isneginf(self.x) & ~agree, np.inf, error)

    def sd(self) -> np.ndarray:
        """(Q, K) the predictive distribution's standard deviation in the output's units (the same per level)."""
        if self.exponential:
            s = self.scale[0, 0]
            mean = self.weights @ np.exp(self.centre + s * s / 2)
            variance = self.weights @ np.exp(2 * self.centre + 2 * s * s) - mean ** 2
        else:
            mean = self.weights @ self.centre
            variance = self.weights @ (self.scale ** 2 + self.centre ** 2) - mean ** 2
        return np.broadcast_to(np.sqrt(np.maximum(variance, 0.0)), (len(self.levels), self.centre.shape[1])).copy()


def _simulation(design: _Design, error, values, levels, observations, n, rng):
    """The classic VPC: replicate data sets (each subject a new η, each observation a new ε); quantiles of the
    pooled simulated values at each grid time and in each bin, with order-statistic standard errors."""
    replicates = int(np.ceil(n / len(design.subjects)))
    n_s = len(design.subjects)
    times = [np.unique(np.concatenate([design.grid, s.times])) for s in design.subjects]
    stack = StackedSubjects(design.model, [_at(s, t) for s, t in zip(design.subjects, times, strict=True)],
                            design.output)
    grid_columns = np.stack([np.searchsorted(t, design.grid) for t in times])  # (S, T)
    groups = [(b, group["SUBJECT"].to_numpy(),
               np.array([np.searchsorted(times[s], t) for s, t in zip(group["SUBJECT"], group["TIME"], strict=True)]))
              for b, group in observations.groupby("BIN")]
    grid_values, bin_values = [], [[] for _ in groups]
    chunk = max(1, 200_000 // n_s)
    for start in range(0, replicates, chunk):
        count = min(chunk, replicates - start)
        rows = np.tile(np.arange(n_s), count)
        eta = rng.standard_normal((len(rows), design.random.size)) @ design.factor.T
        parameters = np.tile(design.typical, (len(rows), 1))
        parameters[:, design.random] *= np.exp(eta)
        y = _with_residual(error, values, stack.predict(rows, parameters), rng).reshape(count, n_s, -1)
        grid_values.append(np.take_along_axis(y, grid_columns[None], axis=2).reshape(-1, design.grid.size)
                           .astype(np.float32))
        for k, (_, members, columns) in enumerate(groups):
            bin_values[k].append(y[:, members, columns].ravel().astype(np.float32))
    bands, band_error = _sample_quantiles(np.concatenate(grid_values), levels)
    per_bin = [_sample_quantiles(np.concatenate(values_k)[:, None], levels) for values_k in bin_values]
    return (bands, np.concatenate([p[0] for p in per_bin], axis=1), band_error,
            np.concatenate([p[1] for p in per_bin], axis=1))


def _with_residual(error, values, f, rng) -> np.ndarray:
    noise = rng.standard_normal(f.shape)
    if isinstance(error, Exponential):
        (s,) = values
        return f * np.exp(s * noise)
    return f + error.sd(f, values) * noise


def _sample_quantiles(samples: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Q, K) quantiles of each column of ``samples`` (N, K) and their standard errors: half the width of the
    order statistics that bound a 90 % binomial interval for the rank, divided by 2 × 1.645."""
    n = len(samples)
    ordered = np.sort(samples, axis=0)
    estimate = np.quantile(ordered, levels, axis=0, method="linear")
    half = Z_90 * np.sqrt(levels * (1 - levels) * n)
    low = np.clip(np.floor(levels * n - half).astype(int), 0, n - 1)
    high = np.clip(np.ceil(levels * n + half).astype(int), 0, n - 1)
    return estimate, (ordered[high] - ordered[low]) / (2 * Z_90)
