"""Window probabilities by pre-integration (conditioning on one direction).

P(low ≤ M(θ) < high) with θ = T(z), z ~ N(0, I_d), is an integral of an indicator, which
quadrature handles badly.  Following Griebel, Kuo & Sloan (2013, "The smoothing effect of
integration in R^d and the ANOVA decomposition") and Gilbert, Kuo & Sloan (2022, "Preintegration is
not smoothing when monotonicity fails"): pick the unit direction u along which M changes most (the
gradient of log M at the origin), write z = s·u + Q y with Q an orthonormal basis of u's complement,
so s ~ N(0, 1) independent of y ~ N(0, I_{d−1}).  If M is monotone in s, then for each y the
window is an interval of s whose ends are roots of M = low and M = high, found by batched bracketed
root finding, and the inner integral is exactly Φ(s_high) − Φ(s_low).  That function of y is smooth,
so a Gauss–Hermite rule in the remaining d − 1 dimensions converges fast.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.special import ndtr, ndtri

from koopnb.expectation.adaptive import Outcome, smolyak_adaptive, tensor_adaptive

MAX_REACH = 12.0
"""The farthest |s| ever looked at: Φ(−12) ≈ 2e−33, far below any tolerance."""

PROBES = np.linspace(-1.0, 1.0, 7)
"""Points along each line (as fractions of the reach) where the metric is evaluated first: they check
monotonicity and bracket the roots."""


def reach_for(tolerance: float) -> float:
    """|s| beyond which the normal mass (two tails) is a twentieth of the tolerance.

    Roots beyond the reach are treated as infinite and monotonicity is only checked within it, so the
    outer mass 2Φ(−reach) is added to the error estimate.
    """
    return float(min(MAX_REACH, max(3.0, -ndtri(tolerance / 40))))


class NotMonotone(Exception):
    """The metric is not monotone along the conditioning direction at some node."""


def direction(metric: Callable[[np.ndarray], np.ndarray], dim: int, step: float = 1e-4) -> np.ndarray:
    """Unit vector of the central-difference gradient of log|M| (or M) of the first metric at the origin;
    2d evaluations."""
    points = np.concatenate([np.eye(dim) * step, -np.eye(dim) * step])
    values = metric(points)[:, 0]
    positive = np.all(values > 0)
    values = np.log(values) if positive else values
    gradient = (values[:dim] - values[dim:]) / (2 * step)
    norm = np.linalg.norm(gradient)
    if not np.isfinite(norm) or norm == 0:
        raise NotMonotone("the metric does not change near the typical patient, so no direction to condition on")
    return gradient / norm


def complement(u: np.ndarray) -> np.ndarray:
    """(d, d−1) orthonormal basis of the directions perpendicular to u."""
    q, _ = np.linalg.qr(np.column_stack([u, np.eye(len(u))]))
    return q[:, 1:len(u)]


class Preintegrated:
    """The conditional probability that every window holds, as a function of the remaining coordinates y (n, d−1).

    ``metric`` maps whitened points z (n, d) to metric values (n, m), one column per window; ``bounds``
    gives each window's (low, high).  Each metric must be monotone along s (its own direction of
    monotonicity); the set of s where all windows hold is then an intersection of intervals.  Raises
    NotMonotone when the probe values along s at some node are not monotone.
    """

    def __init__(self, metric: Callable[[np.ndarray], np.ndarray], dim: int,
                 bounds: list[tuple[float | None, float | None]], u: np.ndarray, root_tolerance: float = 1e-12,
                 reach: float = MAX_REACH):
        self.metric, self.dim, self.bounds, self.reach = metric, dim, bounds, reach
        self.u, self.basis = u, complement(u)
        self.root_tolerance = root_tolerance

    def _values(self, y: np.ndarray, s: np.ndarray) -> np.ndarray:
        """Metric values (n, m) at z = s·u + Q y for y (n, d−1) and s (n,)."""
        z = s[:, None] * self.u[None, :] + y @ self.basis.T
        return self.metric(z)

    def __call__(self, y: np.ndarray) -> np.ndarray:
        n, grid = len(y), PROBES * self.reach
        probes = self._values(np.repeat(y, len(grid), axis=0), np.tile(grid, n)).reshape(n, len(grid), -1)
        lower_end, upper_end = np.full(n, -np.inf), np.full(n, np.inf)
        for column, (low, high) in enumerate(self.bounds):
            probe = probes[:, :, column]
            steps = np.diff(probe, axis=1)
            if np.all(steps >= 0):
                sign = 1.0
            elif np.all(steps <= 0):
                sign = -1.0
            else:
                raise NotMonotone("the metric is not monotone along the conditioning direction")
            # {low ≤ M} is s ≥ s_low when M increases in s, s ≤ s_low when it decreases.
            for bound, is_low in ((low, True), (high, False)):
                if bound is None:
                    continue
                root = self._root(y, probe, grid, bound, sign, column)
                if (sign > 0) == is_low:
                    lower_end = np.maximum(lower_end, root)
                else:
                    upper_end = np.minimum(upper_end, root)
        return np.clip(ndtr(upper_end) - ndtr(lower_end), 0.0, 1.0)[:, None]

    def _root(self, y: np.ndarray, probe: np.ndarray, grid: np.ndarray, bound: float, sign: float,
              column: int) -> np.ndarray:
        """s where M = bound along each node's line; ±inf where the line stays on one side within the reach."""
        transform = bool(np.all(probe > 0) and bound > 0)
        # log M is close to linear in s for power-law dependence (AUC ∝ 1/CL): fewer secant steps.
        h = np.log(probe) - np.log(bound) if transform else probe - bound
        above = h >= 0
        # With M monotone, the crossing lies in the cell where `above` flips.
        flips = above[:, 1:] != above[:, :-1]
        has_root = flips.any(axis=1)
        cell = np.argmax(flips, axis=1)
        everywhere_above = above.all(axis=1)
        result = np.where(everywhere_above == (sign > 0), -np.inf, np.inf)
        todo = np.flatnonzero(has_root)
        if len(todo):
            c = cell[todo]
            result[todo] = self._illinois(y[todo], grid[c].copy(), grid[c + 1].copy(), h[todo, c].copy(),
                                          h[todo, c + 1].copy(), bound, transform, column)
        return result

    def _illinois(self, y, lo, hi, f_lo, f_hi, bound, transform, column) -> np.ndarray:
        """Batched Illinois iterations on a bracket until it is below the root tolerance."""
        side = np.zeros(len(lo), dtype=int)
        active = np.ones(len(lo), dtype=bool)
        for _ in range(200):
            width = hi - lo
            active &= width > self.root_tolerance
            if not np.any(active):
                break
            index = np.flatnonzero(active)
            denominator = f_hi[index] - f_lo[index]
            guess = hi[index] - f_hi[index] * width[index] / np.where(denominator == 0, 1, denominator)
            guess = np.where((guess > lo[index]) & (guess < hi[index]), guess, (lo[index] + hi[index]) / 2)
            value = self._values(y[index], guess)[:, column]
            f = np.log(value) - np.log(bound) if transform else value - bound
            if transform and np.any(value <= 0):
                raise NotMonotone("the metric is not positive along the conditioning direction")
            same = np.sign(f) == np.sign(f_hi[index])
            keep_hi = same & (side[index] == 1)
            keep_lo = ~same & (side[index] == -1)
            f_lo[index] = np.where(keep_hi, f_lo[index] / 2, f_lo[index])
            f_hi[index] = np.where(keep_lo, f_hi[index] / 2, f_hi[index])
            hi[index] = np.where(same, guess, hi[index])
            f_hi[index] = np.where(same, f, f_hi[index])
            lo[index] = np.where(same, lo[index], guess)
            f_lo[index] = np.where(same, f_lo[index], f)
            side[index] = np.where(same, 1, -1)
            exact = f == 0
            lo[index[exact]] = hi[index[exact]] = guess[exact]
        return (lo + hi) / 2


def window_probability(metric: Callable[[np.ndarray], np.ndarray], dim: int,
                       bounds: list[tuple[float | None, float | None]], rtol: float, atol: float, max_nodes: int,
                       counter: Callable[[], int], rule: str = "tensor") -> Outcome:
    """P(low_i ≤ M_i(z) < high_i for every i) for z ~ N(0, I_dim) by pre-integration.

    ``metric(z)`` returns (n, m) values, one column per window.  Raises NotMonotone if it does not apply.
    """
    tolerance = max(atol, 1e-3 * rtol)
    root_tolerance = max(1e-13, 0.1 * tolerance)
    reach = reach_for(tolerance)
    tail = 2 * ndtr(-reach)
    for u in candidate_directions(metric, dim):
        conditional = Preintegrated(metric, dim, bounds, u, root_tolerance, reach)
        try:
            return _integrate(conditional, dim, rtol, atol, max_nodes, counter, rule, root_tolerance, tail)
        except NotMonotone:
            continue
    raise NotMonotone("no direction was found along which every metric is monotone")


def candidate_directions(metric: Callable[[np.ndarray], np.ndarray], dim: int):
    """Directions to condition on, best first: the steepest one of the first metric, then the coordinate
    axes in order of that gradient's components (an axis such as log CL often keeps several metrics
    monotone at once where the steepest direction of one does not)."""
    u = direction(metric, dim)
    yield u
    for axis in np.argsort(-np.abs(u)):
        e = np.zeros(dim)
        e[axis] = 1.0
        if not np.allclose(e, np.abs(u)):
            yield e * (1.0 if u[axis] >= 0 else -1.0)


def _integrate(conditional: Preintegrated, dim, rtol, atol, max_nodes, counter, rule, root_tolerance,
               tail) -> Outcome:
    if dim == 1:
        value = conditional(np.zeros((1, 0)))[0]
        bound = np.full(1, 0.4 * root_tolerance + tail)
        return Outcome(value, bound, True, "pre-integration (1-D, exact up to root finding)",
                       [(counter(), value, bound)])
    driver = smolyak_adaptive if rule == "smolyak" else tensor_adaptive
    outcome = driver(conditional, dim - 1, rtol, atol, max_nodes, counter)
    outcome.error = outcome.error + tail + 0.4 * root_tolerance
    outcome.rule = f"pre-integration + {outcome.rule}"
    return outcome
