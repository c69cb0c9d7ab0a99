"""kn.vpc: a visual predictive check whose prediction bands are quantiles computed by quadrature.

The predictive distribution of an observation at time t of subject s is a mixture over the random effects
η ~ N(0, Ω) of the residual error distribution around f_s(η, t):

    F_t(y) = mean over subjects s of  E_η[ Φ((y − f_s(η, t)) / sd(f_s(η, t))) ]

(for exponential error, of log y around log f).  The residual error is integrated in closed form (Φ), the
random effects by a tensor Gauss–Hermite rule — the quadrature koopnb's expectations use
(koopnb/expectation/gauss.py) — and each band is the root of F_t(y) = q, found by bisection on the
quadrature CDF, for every time and level at once.  The rule grows (4, 6, 8, … points per dimension) until the
error estimate, twice the larger of the last two changes between successive rules, is within ``rtol`` of the
bands' spread.
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

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from koopnb.errors import KoopnbError
from koopnb.expectation.gauss import tensor_rule
from koopnb.inference.likelihood import Exponential, residual_error
from koopnb.inference.simulation import StackedSubjects
from koopnb.inference.subjects import Subject, all_subjects

Z_90 = 1.6448536269514722  # the 95th percentile of N(0, 1): a two-sided 90 % interval


@dataclass(frozen=True)
class VPCResult:
    """A visual predictive check.

    ``times`` (T,) h; ``quantiles`` (Q,); ``bands`` (Q, T) the predictive quantiles at ``times`` and ``error``
    (Q, T) their error estimate (quadrature: difference of two rules; Monte Carlo: standard error).
    ``bins`` (B + 1,) edges in h and per bin: ``bin_times`` (B,) the median observation time, ``observed`` (Q, B)
    the observed percentiles, ``predicted`` (Q, B) the predictive quantiles pooled over the bin's
    observations and ``predicted_error`` (Q, B).  ``data`` holds the observations (ID, TIME, DV, BIN).
    ``n_evals`` counts model evaluations (parameter sets simulated).
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


def vpc(population_or_model, data, quantiles=(0.05, 0.5, 0.95), *, times=None, bins: int | None = None,
        method: str = "koopman", rtol: float = 1e-3, max_points: int = 24, n: int = 100_000, seed=None,
        output: str | None = None) -> VPCResult:
    """Visual predictive check of a population (a fit, or a Model's own typical values, Ω and residual error)
    against a NONMEM-style table of many subjects (their doses, covariates and observations).

    ``quantiles``: levels in (0, 1).  ``times``: where the bands are drawn (h; default 100 points from 0 to the
    last observation).  ``bins``: number of time bins of about equal counts (default: the median number of
    observations per subject).  ``method``: ``"koopman"`` (quadrature; ``rtol`` of the band spread,
    at most ``max_points`` Gauss–Hermite points per random effect) or ``"montecarlo"`` (``n`` simulated
    subjects, ``seed``).
    """
    started = clock.perf_counter()
    model, typical, omega, error_values, output = _population(population_or_model, output)
    levels = np.asarray(quantiles, dtype=float)
    if levels.ndim != 1 or levels.size == 0 or np.any((levels <= 0) | (levels >= 1)):
        raise KoopnbError("quantiles must be levels strictly between 0 and 1, such as (0.05, 0.5, 0.95)")
    if method not in ("koopman", "montecarlo"):
        raise KoopnbError(f"method must be 'koopman' or 'montecarlo', not {method!r}")
    if max_points < 8 or n < 1:
        raise KoopnbError(f"max_points must be at least 8 (three rules to compare) and n at least 1, not "
                          f"{max_points} and {n}")
    subjects = all_subjects(model, data, None, output)
    observations = _observations(subjects, bins)
    grid = (np.linspace(0.0, float(observations["TIME"].max()), 100) if times is None
            else np.asarray(times, dtype=float))
    if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)) or grid.min() < 0:
        raise KoopnbError("times must be a non-empty 1-D array of finite, non-negative hours")
    design = _Design(model, subjects, grid, output, typical, omega)
    error, _ = residual_error(model.error_models[output])
    if method == "koopman":
        bands, predicted, band_error, bin_error, n_evals, converged = _quadrature(
            design, error, error_values, levels, observations, rtol, max_points)
    else:
        bands, predicted, band_error, bin_error = _simulation(design, error, error_values, levels, observations,
                                                             n, np.random.default_rng(seed))
        n_evals, converged = design.simulations(n), True
    edges, bin_times, observed = _observed(observations, levels)
    return VPCResult(method, levels, grid, bands, band_error, edges, bin_times, observed, predicted, bin_error,
                     observations, n_evals, converged, clock.perf_counter() - started, output)


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


def _quadrature(design: _Design, error, values, levels, observations, rtol, max_points):
    """Bands from tensor Gauss–Hermite rules of 4, 6, 8, … points per random effect until the error estimate —
    twice the larger of the last two changes between successive rules (a safety factor: for nearly stepped
    integrands the rules converge slowly and the last change alone understates the error) — is within
    ``rtol`` of the bands' spread."""
    r = design.random.size
    history, n_evals, converged = [], 0, False
    for points in range(4, max_points + 1, 2):
        nodes, weights = tensor_rule((points,) * r)
        predictions = design.predict(nodes @ design.factor.T)
        n_evals += len(nodes) * len(design.leaders)
        history.append(_mixture_bands(design, predictions, weights, error, values, levels, observations))
        if len(history) < 3:
            continue
        (bands, predicted), middle, oldest = history[-1], history[-2], history[-3]
        band_error = 2 * np.maximum(np.abs(bands - middle[0]), np.abs(middle[0] - oldest[0]))
        bin_error = 2 * np.maximum(np.abs(predicted - middle[1]), np.abs(middle[1] - oldest[1]))
        spread = max(float(np.ptp(bands)), float(np.ptp(predicted)), 1e-300)
        if max(band_error.max(), bin_error.max()) <= rtol * spread:
            converged = True
            break
    return bands, predicted, band_error, bin_error, n_evals, converged


def _mixture_bands(design, predictions, weights, error, values, levels, observations):
    """Quantiles of the quadrature mixtures: at each grid time over subjects × nodes, and per bin over the
    bin's observations × nodes."""
    grid_means = np.concatenate([design.subject_values(predictions, s, design.grid)
                                 for s in range(len(design.subjects))])  # (S·nodes, T)
    grid_weights = np.tile(weights, len(design.subjects)) / len(design.subjects)
    bands = _mixture_quantiles(grid_weights[:, None] * np.ones_like(grid_means), grid_means, error, values, levels)
    per_bin = []
    for _, group in observations.groupby("BIN"):
        means = np.concatenate([design.subject_values(predictions, s, np.array([t]))
                                for s, t in zip(group["SUBJECT"], group["TIME"], strict=True)], axis=1)
        column = np.tile(weights, len(group)) / len(group)  # observation-major, as means.T
        per_bin.append(_mixture_quantiles(column[:, None], means.T.reshape(-1, 1), error, values, levels)[:, 0])
    return bands, np.stack(per_bin, axis=1)


def _mixture_quantiles(weights, means, error, values, levels, iterations: int = 80) -> np.ndarray:
    """(Q, K) roots of Σ_m w_mk P(y ≤ Y | f = means_mk) = q for each column k: safeguarded Newton steps on the
    mixture CDF (its density is the derivative), from the normal with the mixture's mean and variance; a step
    that leaves the bracket of known signs is replaced by bisection."""
    with np.errstate(all="ignore"):
        if isinstance(error, Exponential):
            (s,) = values
            centre, sd, back = np.log(means), np.full_like(means, s), np.exp
        else:
            centre, sd, back = means, np.broadcast_to(error.sd(means, values), means.shape), (lambda x: x)
    finite = np.isfinite(centre) & np.isfinite(sd)
    weights = np.where(finite, weights, 0.0)
    weights = weights / weights.sum(axis=0)
    centre, sd = np.where(finite, centre, 0.0), np.where(finite & (sd > 0), sd, 1e-300)
    low = np.where(finite, centre - 10 * sd, np.inf).min(axis=0)[None].repeat(len(levels), 0)
    high = np.where(finite, centre + 10 * sd, -np.inf).max(axis=0)[None].repeat(len(levels), 0)
    target = levels[:, None]
    mean = np.einsum("mk,mk->k", weights, centre)
    spread = np.sqrt(np.maximum(np.einsum("mk,mk->k", weights, sd**2 + centre**2) - mean**2, 0.0))
    y = np.clip(mean + ndtri(levels)[:, None] * spread, low, high)
    tolerance = 1e-10 * (np.abs(high - low).max() + 1.0)
    active = np.arange(y.shape[1])  # columns still moving: only they are evaluated again
    for _ in range(iterations):
        w, c, d = weights[:, active], centre[:, active], sd[:, active]
        z = (y[:, None, active] - c[None]) / d[None]
        cdf = np.einsum("mk,qmk->qk", w, ndtr(z))
        density = np.einsum("mk,qmk->qk", w / d, np.exp(-0.5 * z * z)) / np.sqrt(2 * np.pi)
        below = cdf < target
        low[:, active] = np.where(below, y[:, active], low[:, active])
        high[:, active] = np.where(below, high[:, active], y[:, active])
        with np.errstate(all="ignore"):
            step = y[:, active] - (cdf - target) / density
        inside = np.isfinite(step) & (step > low[:, active]) & (step < high[:, active])
        moved = np.where(inside, step, 0.5 * (low[:, active] + high[:, active]))
        still = np.any(np.abs(moved - y[:, active]) >= tolerance, axis=0)
        y[:, active] = moved
        active = active[still]
        if active.size == 0:
            break
    return back(y)


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
