"""Refinement drivers: apply a family of quadrature rules level by level until two levels agree.

Each driver integrates a vectorised function ``f(w (n, d)) -> (n, k)`` against a product measure — N(0, I_d)
by default, or the one-dimensional measures of ``families`` (koopnb.expectation.families) — and reports
the finest level's value with the larger of the last two level-to-level differences as its error
estimate.  One difference alone can vanish by coincidence at low order (two rules that happen to agree);
two successive ones rarely do, and each measures the error of a coarser level, so for a convergent rule
the estimate is cautious for the finest one.  It is an estimate, not a proven bound: the calibration
benchmark (benchmarks/calibration.py) measures how often it covers the true error.  No answer is given on a
rule with fewer than MIN_ORDER points in a direction the integrand depends on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from koopnb.expectation.families import HERMITE
from koopnb.expectation.gauss import smolyak_rule, tensor_rule, tensor_size

ORDERS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64)
"""Gauss orders tried per direction; roughly geometric so the work grows by a bounded factor."""

MIN_ORDER = 3
"""Fewest points of the final rule in a direction the integrand depends on: two 1- and 2-point rules can agree
by coincidence (an odd or symmetric integrand), so the answer is never taken from a 2-point rule."""


@dataclass
class Outcome:
    """What a driver found: value and error (k,), whether the tolerance was met, and the levels it went through."""

    value: np.ndarray
    error: np.ndarray
    converged: bool
    rule: str
    history: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    orders: tuple[int, ...] = ()
    """Points per direction of the final tensor rule (empty for other rules)."""


def within(value: np.ndarray, error: np.ndarray, rtol: float, atol: float) -> bool:
    """True when every component's error is within max(atol, rtol·|value|)."""
    return bool(np.all(error <= np.maximum(atol, rtol * np.abs(value))))


def _next_order(n: int) -> int:
    larger = [m for m in ORDERS if m > n]
    return larger[0] if larger else int(n * 1.5)


ROUNDING = 32 * np.finfo(float).eps
"""Relative rounding floor of a quadrature sum: once two levels agree to the last bits, the error is
still at least this times Σ|w·f| (the sum cannot be more accurate than its terms)."""


def _rounding(f_values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return ROUNDING * (np.abs(weights) @ np.abs(f_values))


def _rule_value(f: Callable, nodes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return weights @ f(nodes)


def tensor_adaptive(f: Callable, dim: int, rtol: float, atol: float, max_nodes: int,
                    counter: Callable[[], int], families=None) -> Outcome:
    """Anisotropic tensor Gauss rules (Gauss–Hermite, or ``families``) with per-direction orders chosen by
    one-dimensional probes.

    A probe integrates f along each axis through the centre with rules of increasing order until two
    successive orders agree to a quarter of the tolerance: the lower of the two becomes the direction's
    coarse order and the higher its fine order (directions f does not depend on keep one point; the others
    get at least MIN_ORDER fine points).  The coarse and fine tensor rules are then compared; while they
    disagree, both move up one order.
    """
    history: list = []
    coarse_orders, fine_orders = _probe_orders(f, dim, rtol, atol, families)
    active = [n > 1 for n in fine_orders]
    fine_orders = [max(n, MIN_ORDER) if a else n for n, a in zip(fine_orders, active, strict=True)]
    coarse_orders = [_previous_order(n) if a else n for n, a in zip(fine_orders, active, strict=True)]
    rules = [tuple(_previous_order(n) if a else n for n, a in zip(coarse_orders, active, strict=True)),
             tuple(coarse_orders)]
    values = [_rule_value(f, *tensor_rule(rule, families)) for rule in rules]
    history.extend((counter(), v, np.full_like(v, np.nan)) for v in values)
    fine_rule = tuple(fine_orders)
    while True:
        if tensor_size(fine_rule) > max_nodes:
            error = history[-1][2]
            return Outcome(values[-1], np.where(np.isnan(error), np.inf, error), False,
                           _tensor_name(rules[-1], families), history,
                           [f"stopped refining: the next tensor rule needs {tensor_size(fine_rule)} nodes, "
                            f"more than max_nodes={max_nodes}"], orders=rules[-1])
        nodes, weights = tensor_rule(fine_rule, families)
        f_values = f(nodes)
        values.append(weights @ f_values)
        rules.append(fine_rule)
        error = np.maximum(np.maximum(np.abs(values[-1] - values[-2]), np.abs(values[-2] - values[-3])),
                           _rounding(f_values, weights))
        history.append((counter(), values[-1], error))
        if within(values[-1], error, rtol, atol) or not any(active):
            return Outcome(values[-1], error, within(values[-1], error, rtol, atol),
                           _tensor_name(fine_rule, families), history, orders=fine_rule)
        fine_rule = tuple(_next_order(n) if a else n for n, a in zip(fine_rule, active, strict=True))


def _independent_of(f: Callable, j: int, dim: int, families=None) -> bool:
    """Whether f stays the same when z_j moves at a generic point off the axes.

    Equal 1- and 2-point integrals along an axis also happen when f is odd there (a linear function of
    a centred parameter) or when z_j acts only together with other directions (z_1² z_2² vanishes on
    both axes); treating such a direction as flat would give one node and a false zero error.
    """
    point = np.array([_family(families, i).between(0.35 + 0.13 * i % 0.6) for i in range(dim)])
    points = np.tile(point, (3, 1))
    points[:, j] = _family(families, j).probe_points()
    values = f(points)
    return bool(np.all(values == values[0]))


def _family(families, j: int):
    return HERMITE if families is None else families[j]


def _probe_orders(f: Callable, dim: int, rtol: float, atol: float, families=None) -> tuple[list[int], list[int]]:
    """Per-direction (coarse, fine) orders from one-dimensional probes along the axes.

    The probes of every direction still refining are evaluated in one call of f per order, so that an
    integrand that costs a model call per evaluation (pre-integration) is called a few times only.
    """
    previous: list = [None] * dim
    previous_order = [ORDERS[0]] * dim
    order = [ORDERS[0]] * dim
    value: list = [None] * dim
    refining = list(range(dim))
    centre = np.array([_family(families, j).centre() for j in range(dim)])
    while refining:
        blocks = []
        for j in refining:
            x, _ = _family(families, j).rule(order[j])
            nodes = np.tile(centre, (order[j], 1))
            nodes[:, j] = x
            blocks.append(nodes)
        results = f(np.concatenate(blocks))
        start = 0
        still = []
        for j in refining:
            _, w = _family(families, j).rule(order[j])
            value[j] = w @ results[start:start + order[j]]
            start += order[j]
            agree = previous[j] is not None and within(value[j], np.abs(value[j] - previous[j]), rtol / 4, atol / 4)
            if not agree and order[j] < ORDERS[-1]:
                previous[j], previous_order[j], order[j] = value[j], order[j], _next_order(order[j])
                still.append(j)
        refining = still
    coarse, fine = [], []
    for j in range(dim):
        flat = (previous[j] is not None and order[j] == ORDERS[1] and np.all(value[j] == previous[j])
                and _independent_of(f, j, dim, families))
        coarse.append(1 if flat else previous_order[j])
        fine.append(1 if flat else order[j])
    return coarse, fine


def _previous_order(n: int) -> int:
    smaller = [m for m in ORDERS if m < n]
    return smaller[-1] if smaller else 1


def _tensor_name(orders: tuple[int, ...], families=None) -> str:
    names = dict.fromkeys(_family(families, j).name for j in range(len(orders)))
    if len(names) == 1:
        return f"tensor {next(iter(names))} {'x'.join(str(n) for n in orders)} ({tensor_size(orders)} nodes)"
    parts = " x ".join(f"{_family(families, j).name} {n}" for j, n in enumerate(orders))
    return f"tensor {parts} ({tensor_size(orders)} nodes)"


class _Cache:
    """Values of f at nodes already evaluated, matched by rounded coordinates (vectorised)."""

    def __init__(self, f: Callable):
        self.f = f
        self.keys = None
        self.values = None

    def __call__(self, nodes: np.ndarray) -> np.ndarray:
        keys = np.round(nodes, 12)
        if self.keys is None:
            self.keys, self.values = keys, self.f(nodes)
            return self.values
        everything = np.concatenate([self.keys, keys])
        unique, first, inverse = np.unique(everything, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.ravel()
        known = first < len(self.keys)
        new_rows = np.flatnonzero(~known)
        values = np.empty((len(unique), self.values.shape[1]))
        values[known] = self.values[first[known]]
        if len(new_rows):
            values[new_rows] = self.f(everything[first[new_rows]])
        self.keys, self.values = unique, values
        return values[inverse[len(everything) - len(keys):]]


def smolyak_adaptive(f: Callable, dim: int, rtol: float, atol: float, max_nodes: int,
                     counter: Callable[[], int], families=None) -> Outcome:
    """Smolyak sparse grids of increasing level (Gauss–Hermite, or the Gauss rules of ``families``); nodes
    shared between levels are evaluated once.  The first answer is the level with 5-point rules in each
    direction (never a 2-point one)."""
    cached = _Cache(f)
    history: list = []
    level = dim + 2
    values = [_rule_value(cached, *smolyak_rule(dim, q, families)) for q in (dim, dim + 1)]
    history.extend((counter(), v, np.full_like(v, np.nan)) for v in values)
    while True:
        nodes, weights = smolyak_rule(dim, level, families)
        if len(nodes) > max_nodes:
            error = history[-1][2]
            return Outcome(values[-1], np.where(np.isnan(error), np.inf, error), False,
                           f"Smolyak {_smolyak_families(families, dim)} level {level - 1 - dim}", history,
                           [f"stopped refining: the next sparse grid needs {len(nodes)} nodes, more than "
                            f"max_nodes={max_nodes}"])
        f_values = cached(nodes)
        values.append(weights @ f_values)
        error = np.maximum(np.maximum(np.abs(values[-1] - values[-2]), np.abs(values[-2] - values[-3])),
                           _rounding(f_values, weights))
        history.append((counter(), values[-1], error))
        if within(values[-1], error, rtol, atol):
            return Outcome(values[-1], error, True,
                           f"Smolyak {_smolyak_families(families, dim)} level {level - dim} ({len(nodes)} nodes)",
                           history)
        level += 1


def _smolyak_families(families, dim: int) -> str:
    return " and ".join(dict.fromkeys(_family(families, j).name for j in range(dim)))
