"""One-dimensional Gauss rules for each kind of parameter density, and the product measure they make.

A distribution with independent blocks (a ``Joint``, or one univariate) is integrated coordinate by
coordinate with the Gauss rule of each coordinate's own measure, so no smooth integrand is made steep by
a change of variables:

* a gaussian block (Normal, LogNormal, MvLogNormal) is integrated over its whitened coordinates z with
  Gauss–Hermite rules and mapped by the block's ``from_normal``;
* a Uniform(low, high) coordinate is integrated in parameter space with Gauss–Legendre on [low, high];
* a TruncatedNormal coordinate is integrated in parameter space with the Gauss rule of its own weight
  φ((x − mean)/sd) on [low, high]: its three-term recurrence comes from the discretised Stieltjes
  procedure (Gautschi 1982, "On generating orthogonal polynomials", SIAM J Sci Stat Comput 3:289; 2004,
  "Orthogonal Polynomials: Computation and Approximation", §2.2.3) on a composite Gauss–Legendre
  discretisation of the weight, and the nodes and weights from the Jacobi matrix (Golub & Welsch 1969).

The n-point rule of each family is exact for polynomials of degree 2n − 1 against its measure; the
1-point rule's node is the measure's mean, which serves as the centre of the axis probes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.linalg import eigh_tridiagonal
from scipy.special import roots_legendre

from koopnb.distributions import Distribution, Joint, TruncatedNormal, Uniform
from koopnb.errors import ExpectationError
from koopnb.expectation.gauss import gauss_hermite

BASE_ORDER = 64
"""Recurrence coefficients are computed for BASE_ORDER · 2^k polynomials, the smallest such count that covers the
order asked for (the probes never ask for more than 64; refinement past them doubles the count)."""
MAX_ORDER = 1024
"""Highest order of a truncated-normal rule."""

PANEL_WIDTH = 0.5
"""The discretised truncated-normal weight for ``count`` polynomials: Gauss–Legendre with 2·count points (exact for
degree 4·count − 1) on each of at least two panels of at most PANEL_WIDTH standard deviations, because the
Stieltjes procedure needs the inner products of polynomials up to degree 2·count with the weight to rounding; the
tests compare the rules' moments with scipy.stats.truncnorm."""

TAIL_REACH = 12.0
"""Standard deviations kept towards an infinite bound (φ(12)/φ(0) ≈ 5e−32: below double precision)."""


@dataclass(frozen=True)
class Family:
    """A family of one-dimensional Gauss rules: ``rule(n)`` gives nodes (n,) and weights (n,) summing to one.

    ``name`` says which rule it is; ``in_parameter_space`` is True when the nodes are parameter values
    themselves (False: whitened normal coordinates, mapped through the distribution).
    """

    name: str
    rule: Callable[[int], tuple[np.ndarray, np.ndarray]]
    in_parameter_space: bool

    def centre(self) -> float:
        """The 1-point rule's node: the mean of the measure."""
        return float(self.rule(1)[0][0])

    def probe_points(self) -> np.ndarray:
        """Three points inside the support, a typical deviation apart: the 3-point rule's nodes."""
        return np.asarray(self.rule(3)[0])

    def between(self, fraction: float) -> float:
        """A point a ``fraction`` of the way from the middle to the upper 3-point node (inside the support)."""
        nodes = self.probe_points()
        return float(nodes[1] + fraction * (nodes[2] - nodes[1]))


HERMITE = Family("Gauss-Hermite", gauss_hermite, False)


def legendre(low: float, high: float) -> Family:
    """Gauss–Legendre on [low, high] for Uniform(low, high)."""

    def rule(n: int) -> tuple[np.ndarray, np.ndarray]:
        nodes, weights = _legendre(n)
        return low + (high - low) * nodes, weights

    return Family("Gauss-Legendre", rule, True)


@lru_cache(maxsize=64)
def _legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre on [0, 1], weights summing to one."""
    nodes, weights = roots_legendre(n)
    return _frozen(0.5 * (nodes + 1.0), 0.5 * weights)


def truncated_normal(mean: float, sd: float, low: float, high: float) -> Family:
    """The Gauss rule of the weight φ((x − mean)/sd) on [low, high] (either end may be infinite)."""
    a, b = (low - mean) / sd, (high - mean) / sd

    def rule(n: int) -> tuple[np.ndarray, np.ndarray]:
        nodes, weights = _truncated_normal_standard(float(a), float(b), n)
        return np.clip(mean + sd * nodes, low, high), weights

    return Family("Gauss truncated-normal", rule, True)


@lru_cache(maxsize=256)
def _truncated_normal_standard(a: float, b: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    if n > MAX_ORDER:
        raise ExpectationError(f"a truncated-normal Gauss rule of more than {MAX_ORDER} points is not built; the "
                               "integrand is too steep for it, use rule='cubature' or method='qmc'")
    count = BASE_ORDER
    while count < n:
        count *= 2
    alpha, beta = _recurrence(a, b, count)
    if n == 1:
        return _frozen(alpha[:1].copy(), np.ones(1))
    nodes, vectors = eigh_tridiagonal(alpha[:n], np.sqrt(beta[1:n]))
    weights = vectors[0] ** 2
    return _frozen(nodes, weights / weights.sum())


@lru_cache(maxsize=64)
def _recurrence(a: float, b: float, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Recurrence coefficients (alpha, beta) of the monic orthogonal polynomials of φ on [a, b], ``count`` each.

    Discretised Stieltjes procedure: the weight is replaced by a composite Gauss–Legendre rule (panels of
    PANEL_WIDTH standard units, 2·count points each), exact to rounding for the degrees needed; the polynomials are
    evaluated at its points (one loop over the degree, vectorised over points) and normalised at every
    step so that nothing overflows.
    """
    lo = a if np.isfinite(a) else min(b, 0.0) - TAIL_REACH
    hi = b if np.isfinite(b) else max(a, 0.0) + TAIL_REACH
    edges = np.linspace(lo, hi, max(int(np.ceil((hi - lo) / PANEL_WIDTH)), 2) + 1)
    unit_nodes, unit_weights = roots_legendre(2 * count)
    half = 0.5 * np.diff(edges)[:, None]
    x = (0.5 * (edges[:-1] + edges[1:])[:, None] + half * unit_nodes).ravel()
    # relative to the density's largest value on [lo, hi], so that a far truncation (a = 30) does not underflow
    peak = min(max(0.0, lo), hi)
    w = (half * unit_weights).ravel() * np.exp(-0.5 * (x - peak) * (x + peak))
    alpha, beta = np.empty(count), np.empty(count)
    previous, current = np.zeros_like(x), np.ones_like(x)
    norm = beta[0] = w.sum()
    for k in range(count):
        alpha[k] = (w * x * current**2).sum() / norm
        following = (x - alpha[k]) * current - (beta[k] if k else 0.0) * previous
        following_norm = (w * following**2).sum()
        if k + 1 < count:
            beta[k + 1] = following_norm / norm
        # p_k and p_{k+1} rescaled by one factor: the recurrence is unchanged and nothing overflows
        scale = np.sqrt(following_norm)
        previous, current, norm = current / scale, following / scale, 1.0
    return alpha, beta


def _frozen(nodes: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    nodes, weights = np.array(nodes, dtype=float), np.array(weights, dtype=float)
    nodes.setflags(write=False)
    weights.setflags(write=False)
    return nodes, weights


@dataclass(frozen=True)
class ProductMeasure:
    """A distribution as a product of one-dimensional measures: one rule family per column, and the map from
    reference points (n, dim) — whitened normal coordinates or parameter values, per family — to parameters."""

    families: tuple[Family, ...]
    to_params: Callable[[np.ndarray], dict[str, np.ndarray]]

    @property
    def gauss_hermite(self) -> bool:
        """True when every column is a whitened normal coordinate."""
        return all(family is HERMITE for family in self.families)


def product_measure(dist: Distribution) -> ProductMeasure | None:
    """The product measure of ``dist``: its gaussian blocks in whitened coordinates (Gauss–Hermite), its Uniform and
    TruncatedNormal coordinates in parameter space (their own Gauss rules); None when a member has neither
    (an Empirical)."""
    if dist.gaussian:
        return ProductMeasure((HERMITE,) * dist.dim, dist.from_normal)
    if isinstance(dist, Uniform):
        return ProductMeasure((legendre(dist.low, dist.high),), lambda x: {dist.names[0]: x[:, 0]})
    if isinstance(dist, TruncatedNormal):
        family = truncated_normal(dist.mean_value, dist.sd, dist.low, dist.high)
        return ProductMeasure((family,), lambda x: {dist.names[0]: x[:, 0]})
    if not isinstance(dist, Joint):
        return None
    parts = [product_measure(member) for member in dist.members]
    if any(part is None for part in parts):
        return None
    edges = np.cumsum([0] + [member.dim for member in dist.members])

    def to_params(points: np.ndarray) -> dict[str, np.ndarray]:
        values: dict[str, np.ndarray] = {}
        for part, start, stop in zip(parts, edges[:-1], edges[1:], strict=True):
            values.update(part.to_params(points[:, start:stop]))
        return values

    return ProductMeasure(tuple(family for part in parts for family in part.families), to_params)
