"""Conditional modes of many random-effect problems at once: damped Gauss–Newton with the Newton decrement.

Both population fits (the emcee path's Laplace marginal in population.py and FOCE-I in foce.py) need, for every
row (a population point and a subject), the η maximising l(η) − ½ηᵀΩ⁻¹η.  One loop serves both: the rows still
moving take one batched Newton step, a step that does not improve a row is shortened for that row alone.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

NEWTON_REGION = 1.0
"""Newton decrement below which a row takes Newton steps (near its mode, where they converge quadratically);
above it, from a poor start, full Newton steps failed more often than Gauss–Newton ones (theophylline fit)."""
MAX_STEP = 2.0
"""Largest change of one η coordinate in one step (SD units of the log: a factor e² at most)."""


def conditional_modes(evaluate: Callable, eta: np.ndarray, iterations: int, tolerance: float,
                      smallest_step: float):
    """Maximise each row of ``eta`` (rows, r) in place; returns (eta, state).

    ``evaluate(eta_rows, rows)`` returns a state with per-row ``objective`` (rows,), ``gradient`` (rows, r) and
    ``curvature`` (rows, r, r) (positive definite: the Gauss–Newton negative Hessian) and
    ``update(rows, other, mask)``.  A state may also carry ``newton`` (rows, r, r), the observed negative Hessian:
    a row where it is positive definite then takes Newton steps, which converge quadratically where
    Gauss–Newton converges only linearly (large residuals); a Newton step that fails to improve the row is followed
    by Gauss–Newton steps, shortened by 4 after each failure, until one succeeds, then Newton steps again.  A row
    stops when its Newton decrement ½gᵀH⁻¹g (how far the objective can still rise) is below ``tolerance``, or its
    step has been shortened below ``smallest_step``.
    """
    state = evaluate(eta, np.arange(len(eta)))
    scale = np.ones(len(eta))
    active = np.isfinite(state.objective)
    has_newton = getattr(state, "newton", None) is not None
    newton_steps = np.full(len(eta), has_newton)
    for _ in range(iterations):
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        curvature = state.curvature[rows]
        if newton_steps.any():
            observed = state.newton[rows]
            usable = newton_steps[rows] & positive_definite(observed)
            curvature = np.where(usable[:, None, None], observed, curvature)
        else:
            usable = np.zeros(rows.size, dtype=bool)
        newton = np.linalg.solve(curvature, state.gradient[rows][..., None])[..., 0]
        decrement = 0.5 * np.einsum("br,br->b", state.gradient[rows], newton)
        far = usable & (decrement > NEWTON_REGION)
        if far.any():  # far from the mode a Newton step overshoots more often than not: Gauss–Newton there
            usable &= ~far
            newton[far] = np.linalg.solve(state.curvature[rows[far]], state.gradient[rows[far]][..., None])[..., 0]
            decrement[far] = 0.5 * np.einsum("br,br->b", state.gradient[rows[far]], newton[far])
        done = decrement < tolerance
        active[rows[done]] = False
        rows, newton, usable = rows[~done], newton[~done], usable[~done]
        if rows.size == 0:
            break
        step = np.clip(newton, -MAX_STEP, MAX_STEP) * scale[rows, None]
        candidate = evaluate(eta[rows] + step, rows)
        better = np.isfinite(candidate.objective) & (candidate.objective >= state.objective[rows] - 1e-12)
        accepted = rows[better]
        eta[accepted] += step[better]
        state.update(accepted, candidate, better)
        scale[accepted] = 1.0
        # A failed Newton step is retried at once as a full Gauss–Newton step; once that improves the row,
        # Newton steps (quadratic convergence) resume from the better point.
        newton_steps[rows[~better & usable]] = False
        newton_steps[rows[better & ~usable]] = has_newton
        scale[rows[~better & ~usable]] /= 4
        active[rows[scale[rows] < smallest_step]] = False
    return eta, state


def positive_definite(matrices: np.ndarray) -> np.ndarray:
    """(rows,) whether each symmetric matrix of (rows, r, r) is finite and positive definite.  One batched
    Cholesky factorisation answers for all when all are; otherwise Sylvester's criterion, every leading
    principal minor positive, finds which."""
    good = np.isfinite(matrices).all(axis=(1, 2))
    safe = np.where(good[:, None, None], matrices, np.eye(matrices.shape[1]))
    try:
        np.linalg.cholesky(safe)
        return good
    except np.linalg.LinAlgError:
        pass
    for k in range(1, matrices.shape[1] + 1):
        good &= np.linalg.det(safe[:, :k, :k]) > 0
    return good
