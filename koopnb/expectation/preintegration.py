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

from koopnb.expectation.adaptive import Outcome, smolyak_adaptive, tensor_adaptive, within
from koopnb.expectation.lines import MonotoneLines, NotMonotone

MAX_REACH = 12.0
"""The farthest |s| ever looked at: Φ(−12) ≈ 2e−33, far below any tolerance."""

OUTER_MAX_NODES = 4096
"""Most nodes of the outer rule along one conditioning direction (64 × 64 in two dimensions).  A conditional
probability that needs more has a kink the direction does not resolve, and the rule's outer nodes lie past any
reach (|y| > 14) where parameters under- or overflow: the next direction is tried instead (seen: the CL axis of a
vancomycin trough window refined to ~180 × 180 nodes, 660,000 model evaluations, before failing)."""

PROBES = np.linspace(-1.0, 1.0, 7)
"""Points along each line (as fractions of the reach) where the metric is evaluated first: they check
monotonicity and bracket the roots."""


def reach_for(tolerance: float) -> float:
    """|s| beyond which the normal mass (two tails) is a twentieth of the tolerance.

    Roots beyond the reach are treated as infinite and monotonicity is only checked within it, so the
    outer mass 2Φ(−reach) is added to the error estimate.
    """
    return float(min(MAX_REACH, max(3.0, -ndtri(tolerance / 40))))


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
        # Every window end along every line is one root problem; all of them are refined together so that
        # each step is one model call.  The probes' monotone interpolant gives each a close first guess.
        problems = []
        for column, (low, high) in enumerate(self.bounds):
            lines = MonotoneLines(grid, probes[:, :, column])
            for bound, is_low in ((low, True), (high, False)):
                if bound is not None:
                    guess = lines.crossing(np.array([float(bound)]))[0]
                    problems.append((column, float(bound), lines.positive and bound > 0, lines.increasing == is_low,
                                     guess))
        lower_end, upper_end = np.full(n, -np.inf), np.full(n, np.inf)
        roots = self._refine(y, grid, probes, problems)
        for (_, _, _, lower, _), root in zip(problems, roots, strict=True):
            if lower:
                lower_end = np.maximum(lower_end, root)
            else:
                upper_end = np.minimum(upper_end, root)
        return np.clip(ndtr(upper_end) - ndtr(lower_end), 0.0, 1.0)[:, None]

    def _refine(self, y, grid, probes, problems) -> list[np.ndarray]:
        """Roots on the model itself, from the interpolated guesses: safeguarded secant steps inside each
        guess's probe cell, for every (problem, node) at once.

        Kept hand-written because it is measurably cheaper than scipy.optimize.elementwise.find_root on the same
        brackets: find_root re-evaluates the model at both cell ends and cannot start from the interpolated guess,
        which cost 33–57 % more model evaluations on benchmarks (b) and (c) of
        benchmarks/koopman_vs_montecarlo.py at atol 1e-4 and 1e-6 (1,515 → 2,241; 6,701 → 10,527; 7,646 → 10,423;
        119,592 → 158,491), for the same values.
        """
        roots = [problem[4].copy() for problem in problems]
        rows, which, lo, hi, f_lo, f_hi, x = [], [], [], [], [], [], []
        for k, (column, bound, logarithmic, _, guess) in enumerate(problems):
            inside = np.flatnonzero(np.isfinite(guess))
            cell = np.clip(np.searchsorted(grid, guess[inside]) - 1, 0, len(grid) - 2)
            h = _level_function(probes[inside, :, column], bound, logarithmic)
            rows.append(inside)
            which.append(np.full(len(inside), k))
            lo.append(grid[cell])
            hi.append(grid[cell + 1])
            f_lo.append(h[np.arange(len(inside)), cell])
            f_hi.append(h[np.arange(len(inside)), cell + 1])
            x.append(guess[inside])
        if not rows or not sum(len(r) for r in rows):
            return roots
        rows, which = np.concatenate(rows), np.concatenate(which)
        lo, hi, f_lo, f_hi, x = (np.concatenate(a) for a in (lo, hi, f_lo, f_hi, x))
        columns = np.array([problems[k][0] for k in which])
        bounds = np.array([problems[k][1] for k in which])
        logarithmic = np.array([problems[k][2] for k in which])
        # The previous iterate starts at the cell end with the larger |f|: the first step is then a
        # regula falsi step from the interpolated guess, the following ones secant steps.
        x_prev = np.where(np.abs(f_lo) > np.abs(f_hi), lo, hi)
        f_prev = np.where(np.abs(f_lo) > np.abs(f_hi), f_lo, f_hi)
        active = np.ones(len(rows), dtype=bool)
        for _ in range(100):
            index = np.flatnonzero(active)
            if not len(index):
                break
            values = self._values(y[rows[index]], x[index])[np.arange(len(index)), columns[index]]
            f = _level_function(values, bounds[index], logarithmic[index])
            same_as_lo = np.sign(f) == np.sign(f_lo[index])
            lo[index] = np.where(same_as_lo, x[index], lo[index])
            f_lo[index] = np.where(same_as_lo, f, f_lo[index])
            hi[index] = np.where(same_as_lo, hi[index], x[index])
            f_hi[index] = np.where(same_as_lo, f_hi[index], f)
            with np.errstate(divide="ignore", invalid="ignore"):
                step = x[index] - f * (x[index] - x_prev[index]) / (f - f_prev[index])
            safe = np.isfinite(step) & (step > lo[index]) & (step < hi[index])
            step = np.where(safe, step, (lo[index] + hi[index]) / 2)
            done = (np.abs(step - x[index]) <= self.root_tolerance) | (f == 0) \
                | (hi[index] - lo[index] <= self.root_tolerance)
            x_prev[index], f_prev[index] = x[index], f
            x[index] = np.where(f == 0, x[index], step)
            active[index[done]] = False
        for k in range(len(problems)):
            chosen = which == k
            roots[k][rows[chosen]] = x[chosen]
        return roots


def _level_function(values: np.ndarray, bound, logarithmic) -> np.ndarray:
    """log(M) − log(bound) where the metric is positive (near-linear in s for power laws such as AUC ∝ 1/CL),
    M − bound otherwise; a non-positive value on a logarithmic line counts as far below the bound."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(np.maximum(values, 1e-300)) - np.log(np.maximum(bound, 1e-300))
    return np.where(logarithmic, logs, values - bound)


def window_probability(metric: Callable[[np.ndarray], np.ndarray], dim: int,
                       bounds: list[tuple[float | None, float | None]], rtol: float, atol: float, max_nodes: int,
                       counter: Callable[[], int], rule: str = "tensor",
                       parameters: np.ndarray | None = None) -> Outcome:
    """P(low_i ≤ M_i(z) < high_i for every i) for z ~ N(0, I_dim) by pre-integration.

    ``metric(z)`` returns (n, m) values, one column per window; ``parameters`` (optional, (k, dim)) are
    directions along which one parameter alone changes, tried for conditioning after the steepest one.  Raises
    NotMonotone if no direction keeps every metric monotone and its outer rule within OUTER_MAX_NODES nodes; a
    direction that is monotone but whose outer rule reaches ``max_nodes`` first gives its
    unconverged answer.
    """
    tolerance = max(atol, 1e-3 * rtol)
    root_tolerance = max(1e-13, 0.1 * tolerance)
    reach = reach_for(tolerance)
    tail = 2 * ndtr(-reach)
    capped = OUTER_MAX_NODES < max_nodes
    for u in candidate_directions(metric, dim, parameters):
        conditional = Preintegrated(metric, dim, bounds, u, root_tolerance, reach)
        try:
            outcome = _integrate(conditional, dim, rtol, atol, min(max_nodes, OUTER_MAX_NODES),
                                 counter, rule, root_tolerance, tail)
        except NotMonotone:
            continue
        if outcome.converged or not capped:
            return outcome
    raise NotMonotone("no direction was found along which every metric is monotone and the conditional "
                      f"probability smooth enough for {OUTER_MAX_NODES} nodes")


def candidate_directions(metric: Callable[[np.ndarray], np.ndarray], dim: int,
                         parameters: np.ndarray | None = None):
    """Directions to condition on, best first: the steepest one of the first metric, then the directions
    along which one parameter alone changes (``parameters`` rows, e.g. log CL with the others fixed — these
    often keep several metrics monotone at once where the steepest direction of one does not, also for
    correlated posteriors), then the coordinate axes; each family in order of alignment with the gradient."""
    u = direction(metric, dim)
    yield u
    seen = [u]
    rows = [] if parameters is None else [r / np.linalg.norm(r) for r in parameters if np.linalg.norm(r) > 0]
    for family in (rows, list(np.eye(dim))):
        for v in sorted(family, key=lambda v: -abs(v @ u)):
            v = v if v @ u >= 0 else -v
            if not any(np.allclose(v, w) for w in seen):
                seen.append(v)
                yield v


def _integrate(conditional: Preintegrated, dim, rtol, atol, max_nodes, counter, rule, root_tolerance,
               tail) -> Outcome:
    """The outer integral of the conditional probability over the remaining d − 1 directions."""
    if dim == 1:
        value = conditional(np.zeros((1, 0)))[0]
        error = np.full(1, 0.4 * root_tolerance + tail)
        return Outcome(value, error, True, "pre-integration (1-D, exact up to root finding)",
                       [(counter(), value, error)])
    driver = smolyak_adaptive if rule == "smolyak" else tensor_adaptive
    # The outer rule gets 90 % of the tolerance: the tail and root-finding terms take the rest.
    outcome = driver(conditional, dim - 1, 0.9 * rtol, 0.9 * atol, max_nodes, counter)
    outcome.error = outcome.error + tail + 0.4 * root_tolerance
    outcome.converged = outcome.converged and within(outcome.value, outcome.error, rtol, atol)
    outcome.rule = f"pre-integration + {outcome.rule}"
    return outcome
