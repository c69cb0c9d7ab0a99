"""Quadrature rules for the standard normal measure: Gauss–Hermite, anisotropic tensors, Smolyak sparse grids.

All rules integrate against N(0, I_d) and return ``(nodes (n, d), weights (n,))`` with weights summing
to one.  The n-point Gauss–Hermite rule is exact for polynomials of degree 2n − 1 (Golub & Welsch 1969,
through ``scipy.special.roots_hermitenorm``).  The Smolyak rule is the combination technique of
Smolyak (1963) as written by Gerstner & Griebel (1998), here on Gauss–Hermite rules of 1, 3, 5, ...
points so that every level contains the origin.
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from math import comb

import numpy as np
from scipy.special import roots_hermitenorm


@lru_cache(maxsize=128)
def gauss_hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n-point rule for N(0, 1): nodes (n,) and weights (n,) summing to 1."""
    nodes, weights = roots_hermitenorm(n)
    weights = weights / weights.sum()
    nodes.setflags(write=False)
    weights.setflags(write=False)
    return nodes, weights


def tensor_rule(orders: tuple[int, ...], families=None) -> tuple[np.ndarray, np.ndarray]:
    """The product of one-dimensional rules with ``orders[j]`` points in dimension j: Gauss–Hermite, or
    ``families[j].rule`` (koopnb.expectation.families) when given."""
    rules = [gauss_hermite(n) if families is None else families[j].rule(n) for j, n in enumerate(orders)]
    nodes = np.stack(np.meshgrid(*[r[0] for r in rules], indexing="ij"), axis=-1).reshape(-1, len(orders))
    weights = np.ones(1)
    for _, w in rules:
        weights = np.multiply.outer(weights, w).ravel()
    return nodes, weights


def tensor_size(orders: tuple[int, ...]) -> int:
    """Number of nodes of a tensor rule."""
    return int(np.prod(orders, dtype=np.int64))


def smolyak_indices(dim: int, level: int):
    """Multi-indices l (each ≥ 1) with level − dim + 1 ≤ |l| ≤ level, and their combination coefficients."""
    for total in range(max(dim, level - dim + 1), level + 1):
        coefficient = (-1) ** (level - total) * comb(dim - 1, level - total)
        for cut in itertools.combinations(range(1, total), dim - 1):
            parts = np.diff((0, *cut, total))
            yield tuple(int(p) for p in parts), coefficient


def smolyak_rule(dim: int, level: int, families=None) -> tuple[np.ndarray, np.ndarray]:
    """Smolyak sparse grid of the given level (≥ dim) with 2l − 1 points at 1-D level l (Gauss–Hermite, or
    the Gauss rules of ``families``).

    Exact for polynomials of total degree 2(level − dim) + 1.  Coinciding nodes are merged and their
    weights added; weights may be negative.
    """
    nodes, weights = [], []
    for index, coefficient in smolyak_indices(dim, level):
        grid, w = tensor_rule(tuple(2 * l - 1 for l in index), families)
        nodes.append(grid)
        weights.append(coefficient * w)
    nodes, weights = np.concatenate(nodes), np.concatenate(weights)
    keys = np.round(nodes, 12)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    merged = np.zeros(len(unique))
    np.add.at(merged, inverse.ravel(), weights)
    keep = merged != 0
    return unique[keep], merged[keep]
