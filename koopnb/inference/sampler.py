"""The machinery shared by every fit: find the posterior mode, then run emcee from around it.

1. Maximum a posteriori (MAP) by L-BFGS-B from several starts; the gradient is a central finite
   difference whose 2k+1 points are one batched evaluation of the log-posterior.
2. The Laplace approximation at the mode (inverse of a finite-difference Hessian, again one batch)
   sets where the walkers start, so burn-in is short.
3. emcee's affine-invariant ensemble sampler (Goodman & Weare, Comm. App. Math. Comp. Sci. 5:65, 2010;
   Foreman-Mackey et al., PASP 125:306, 2013) in vectorised mode: each call evaluates half the
   ensemble at once; the stretch move's acceptance step is vectorised too and the sampler skips its
   per-step random-state snapshots (koopnb/inference/ensemble.py: the same chain as emcee's own).
   Burn-in is discarded from the integrated autocorrelation time τ (Sokal's adaptive window,
   ``emcee.autocorr.integrated_time``); a chain shorter than 50 τ raises a
   :class:`ConvergenceWarning`, as the emcee documentation advises.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import emcee
import numpy as np
import scipy.optimize
from tqdm.auto import tqdm

from koopnb.errors import FitError
from koopnb.inference.ensemble import EnsembleSampler, VectorisedStretchMove

LogDensity = Callable[[np.ndarray], np.ndarray]
"""A log-density evaluated for a batch of points (batch, k) → (batch,), -inf where impossible."""

TRUSTED_LENGTH = 50
"""A chain is trusted when it is at least this many autocorrelation times long (emcee's advice)."""


class ConvergenceWarning(UserWarning):
    """The sampler ran, but its chain is too short (or mixes too poorly) to trust the intervals."""


@dataclass(frozen=True)
class Chain:
    """The kept part of an emcee run: ``points`` (draws, walkers, k), ``log_density`` (draws, walkers)."""

    points: np.ndarray
    log_density: np.ndarray
    acceptance: np.ndarray
    autocorrelation: np.ndarray
    burn: int
    steps: int

    @property
    def effective_size(self) -> np.ndarray:
        """(k,) effective number of independent draws of each coordinate: walkers × kept steps / τ."""
        draws, walkers, _ = self.points.shape
        return draws * walkers / np.maximum(self.autocorrelation, 1.0)


def seeds(seed) -> tuple[np.random.Generator, np.random.RandomState]:
    """Two independent random streams from one seed: for the optimiser's starts and for emcee."""
    sequence = np.random.SeedSequence(seed)
    starts, walk = sequence.spawn(2)
    return np.random.default_rng(starts), np.random.RandomState(walk.generate_state(1)[0])


def find_mode(log_density: LogDensity, starts: np.ndarray, *, step: float = 1e-6) -> tuple[np.ndarray, float]:
    """The highest mode reached by L-BFGS-B from each of ``starts`` (m, k); returns (point, log density)."""
    k = starts.shape[1]
    offsets = np.concatenate([np.zeros((1, k)), step * np.eye(k), -step * np.eye(k)])

    def objective(x):
        values = log_density(x[None] + offsets)
        if not np.all(np.isfinite(values)):
            return (np.inf if not np.isfinite(values[0]) else -values[0]), np.zeros(k)
        gradient = (values[1:k + 1] - values[k + 1:]) / (2 * step)
        return -values[0], -gradient

    best, best_value = None, -np.inf
    start_values = log_density(starts)
    for start, value in zip(starts, start_values, strict=True):
        if not np.isfinite(value):
            continue
        result = scipy.optimize.minimize(objective, start, jac=True, method="L-BFGS-B",
                                         options={"maxiter": 500, "ftol": 1e-12, "gtol": 1e-7})
        if np.isfinite(result.fun) and -result.fun > best_value:
            best, best_value = result.x, -float(result.fun)
    if best is None:
        raise FitError("the posterior is not finite at any starting point: check the data against the model "
                       "(units, dose amounts, observation times)")
    return best, best_value


def central_differences(centre: np.ndarray, step: float) -> tuple[np.ndarray, Callable]:
    """The 2k² + 1 points of a central-difference stencil around ``centre`` (k,) and a function turning values at
    them (points, ...) into the value, gradient (k, ...) and Hessian (k, k, ...) at the centre."""
    k = centre.size
    eye = step * np.eye(k)
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    points = [centre, *(centre + eye), *(centre - eye)]
    for i, j in pairs:
        points += [centre + eye[i] + eye[j], centre + eye[i] - eye[j], centre - eye[i] + eye[j],
                   centre - eye[i] - eye[j]]

    def assemble(values: np.ndarray):
        middle, plus, minus = values[0], values[1:k + 1], values[k + 1:2 * k + 1]
        hessian = np.zeros((k, k, *values.shape[1:]))
        for i in range(k):
            hessian[i, i] = (plus[i] - 2 * middle + minus[i]) / step**2
        for n, (i, j) in enumerate(pairs):
            pp, pm, mp, mm = values[2 * k + 1 + 4 * n: 2 * k + 5 + 4 * n]
            hessian[i, j] = hessian[j, i] = (pp - pm - mp + mm) / (4 * step**2)
        return middle, (plus - minus) / (2 * step), hessian

    return np.array(points), assemble


def laplace_covariance(log_density: LogDensity, mode: np.ndarray, *, step: float = 1e-3) -> np.ndarray:
    """Inverse of the negative Hessian at ``mode`` by central differences (one batch of 2k²+1 points).

    Directions with non-positive curvature (flat or numerically noisy) get a unit variance instead.  Only where
    the walkers start depends on it, so one batch by hand; ``scipy.differentiate.hessian`` needs hundreds of
    times more points on these log-densities and does not converge on them (the inner solvers' tolerance is
    noise to its extrapolation; measured in FoceObjective.curvature's docstring, koopnb/inference/foce.py).
    """
    points, assemble = central_differences(mode, step)
    _, _, hessian = assemble(log_density(points))
    curvature, vectors = np.linalg.eigh(-hessian)
    curvature = np.where(np.isfinite(curvature) & (curvature > 0), curvature, 1.0)
    return (vectors / curvature) @ vectors.T


def start_walkers(log_density: LogDensity, mode: np.ndarray, covariance: np.ndarray, walkers: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Walkers drawn from the Laplace approximation (shrunk towards the mode until each is finite)."""
    factor = np.linalg.cholesky(covariance + 1e-12 * np.eye(mode.size))
    draws = rng.standard_normal((walkers, mode.size))
    points = mode + draws @ factor.T
    for shrink in (0.5, 0.25, 0.1, 0.01, 0.0):
        bad = ~np.isfinite(log_density(points))
        if not bad.any():
            return points
        points[bad] = mode + shrink * draws[bad] @ factor.T
    raise FitError("the posterior is not finite around its mode, so the walkers cannot start")


MAX_WALKER_STEPS = 20_000_000
"""Most walkers × steps one chain may hold (8 bytes per parameter each: 160 MB per sampled parameter)."""


def run_ensemble(log_density: LogDensity, initial: np.ndarray, steps: int, burn: int | None,
                 random_state: np.random.RandomState, progress: bool, label: str, moves=None) -> Chain:
    """Run emcee (vectorised) for ``steps`` and keep the draws after burn-in; ``moves`` as emcee takes them
    (default: the stretch move, vectorised)."""
    walkers, k = initial.shape
    if steps < 10:
        raise FitError(f"steps must be at least 10, not {steps}")
    if walkers * steps > MAX_WALKER_STEPS:
        raise FitError(f"{walkers:,} walkers × {steps:,} steps is more than the {MAX_WALKER_STEPS:,} walker-steps "
                       "one fit may keep in memory; use fewer walkers or steps")
    if burn is not None and not 0 <= burn < steps:
        raise FitError(f"burn must be between 0 and steps - 1 ({steps - 1}), not {burn}")
    sampler = EnsembleSampler(walkers, k, log_density, vectorize=True, moves=moves or VectorisedStretchMove())
    sampler.random_state = random_state.get_state()
    with tqdm(total=steps, desc=label, disable=not progress, leave=False) as bar:
        for _ in sampler.sample(initial, iterations=steps):
            bar.update(1)
    chain = sampler.get_chain()
    tau = emcee.autocorr.integrated_time(chain, tol=0)
    tau = np.where(np.isfinite(tau), tau, float(steps))
    if burn is None:
        burn = min(int(np.ceil(2 * tau.max())), steps // 2)
    if steps < TRUSTED_LENGTH * tau.max():
        warnings.warn(
            f"the chain of {steps} steps is only {steps / tau.max():.0f} autocorrelation times long "
            f"(τ ≈ {tau.max():.0f} steps); run at least {int(np.ceil(TRUSTED_LENGTH * tau.max()))} steps before "
            "trusting the intervals", ConvergenceWarning, stacklevel=3)
    return Chain(points=chain[burn:], log_density=sampler.get_log_prob()[burn:],
                 acceptance=np.asarray(sampler.acceptance_fraction), autocorrelation=tau, burn=burn, steps=steps)


def default_walkers(k: int, walkers: int | None) -> int:
    """The number of walkers: at least 32 and 4 per dimension, even; emcee needs more than 2k."""
    if walkers is None:
        walkers = max(32, 4 * k)
        return walkers + walkers % 2
    if walkers > MAX_WALKER_STEPS // 10:
        raise FitError(f"{walkers:,} walkers is more than one fit may run (at most {MAX_WALKER_STEPS // 10:,})")
    if walkers < 2 * k + 2 or walkers % 2:
        raise FitError(f"walkers must be an even number of at least {2 * k + 2} for {k} sampled parameters, "
                       f"not {walkers}")
    return int(walkers)
